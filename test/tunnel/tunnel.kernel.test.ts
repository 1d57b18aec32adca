/**
 * The tunnel across two NATed LANs, in network namespaces (test/helpers/topology.ts):
 * real `edgeway relay`, tunnel peers built from dist/ (test/tunnel/fixtures/tunnel-node.mjs:
 * the agent's TunnelService + a minimal ingress), echo backends. Paths are asserted
 * from the peers' state files (tunnel-state.json), never from timing.
 *
 * IP plan: see topology.ts (LAN A 10.1.0.0/24, LAN B 10.2.0.0/24, cloud 10.200.0.0/16).
 * Ingress ports on a1 (127.0.0.1): 15001 echo@b1, 15002 echo@a2, 15003 udp echo@b1,
 * 15004 a forged target (b1's own 127.0.0.1:22).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kernelSkipReason, Lab, run, type NsProcess } from '../helpers/netns.js';
import { buildTopology, IP, type Topology } from '../helpers/topology.js';
import { labCatalogYaml } from '../helpers/lab-catalog.js';
import type { TunnelState } from '../../src/tunnel/service.js';
import { stateFiles } from './state-files.js';

const skip = kernelSkipReason();
const node = process.execPath;
const PORT = 20006;

const catalog = labCatalogYaml(['a1', 'a2', { name: 'b1', externalIP: IP.rbWan }], [
  { name: 'echo', clusterIP: '10.96.0.10', port: 80, targetPort: 8080, protocol: 'TCP', on: 'b1', ready: true },
  { name: 'echo-a2', clusterIP: '10.96.0.11', port: 80, targetPort: 8080, protocol: 'TCP', on: 'a2', ready: true },
  { name: 'echo-udp', clusterIP: '10.96.0.53', port: 53, targetPort: 8080, protocol: 'UDP', on: 'b1', ready: true },
]);

describe.skipIf(skip !== undefined)('tunnel across NATed LANs', () => {
  const lab = new Lab();
  let topo: Topology;
  let dir: string;
  let relay: NsProcess;
  let relayId: string;
  const peerIds: Record<string, string> = {};
  const cfg = (name: string): string => join(dir, `${name}.yaml`);

  const states = stateFiles(() => dir);
  const readState = states.read;
  const waitState = states.wait;
  const peer = (s: TunnelState, nodeName: string): TunnelState['peers'][number] | undefined => s.peers.find((p) => p.nodeName === nodeName);
  const whoami = async (port: number, n: number): Promise<{ counts: Record<string, number>; errors: number; firstError?: string }> => {
    const r = await lab.exec(topo.ns.a1, node, ['test/helpers/fixtures/whoami-client.mjs', '--host', '127.0.0.1', '--port', String(port), '--n', String(n), '--timeout', '5000'], { timeoutMs: 60_000 });
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as { counts: Record<string, number>; errors: number };
  };
  const startRelay = async (): Promise<void> => {
    relay = lab.spawn(topo.ns.relay, node, ['bin/edgeway.js', 'relay', '--config', cfg('relay')]);
    const line = await relay.waitFor(/^relay /, 20_000);
    relayId = line.split(' ')[1]!;
  };

  beforeAll(async () => {
    // CI builds before the tests; build here only when dist/ is missing (local runs).
    await readFile('dist/tunnel/service.js').catch(() => run('npm', ['run', 'build'], { timeoutMs: 120_000 }));
    topo = await buildTopology(lab);
    dir = await mkdtemp(join(tmpdir(), 'ew-tunnel-e2e-'));
    await writeFile(join(dir, 'catalog.yaml'), catalog);
    await writeFile(join(dir, 'swarm.key'), `/key/swarm/psk/1.0.0/\n/base16/\n${randomBytes(32).toString('hex')}\n`);
    await writeFile(join(dir, 'wrong.key'), `/key/swarm/psk/1.0.0/\n/base16/\n${randomBytes(32).toString('hex')}\n`);
    const base = (name: string): object => ({
      nodeName: name, stateDir: join(dir, name), log: { level: process.env.EW_DEBUG_LOG ? 'debug' : 'warn' }, metrics: { listen: '' },
      sources: { kubernetes: { enabled: false }, static: { paths: [join(dir, 'catalog.yaml')] } },
      dataplane: { mode: 'none' }, dns: { enabled: false },
      tunnel: {
        listenPort: PORT, psk: { path: join(dir, 'swarm.key') }, udpIdleTimeoutMs: 1500, directDialTimeoutMs: 1000,
        ...(name === 'relay' ? {} : { relayNodes: [{ nodeName: 'relay', advertiseAddress: [`${IP.relay}:${PORT}`] }] }),
      },
    });
    for (const h of ['relay', 'a1', 'a2', 'b1']) await writeFile(cfg(h), JSON.stringify(base(h)));
    await startRelay();
    await lab.spawn(topo.ns.b1, node, ['test/helpers/fixtures/echo-server.mjs', '--id', 'b1', '--port', '8080', '--host', '0.0.0.0', '--udp']).waitFor(/listening/);
    await lab.spawn(topo.ns.a2, node, ['test/helpers/fixtures/echo-server.mjs', '--id', 'a2', '--port', '8080', '--host', '0.0.0.0']).waitFor(/listening/);
    const fx = 'test/tunnel/fixtures/tunnel-node.mjs';
    const starts = [
      ['b1', []], ['a2', []],
      ['a1', ['--route', '15001=default/echo:80/TCP', '--route', '15002=default/echo-a2:80/TCP', '--route', '15003=default/echo-udp:53/UDP', '--raw-route', '15004=b1/127.0.0.1:22/default/echo:80']],
    ] as const;
    for (const [h, extra] of starts) {
      const p = lab.spawn(topo.ns[h], node, [fx, '--config', cfg(h), ...extra]);
      if (process.env.EW_DEBUG_LOG) { const { createWriteStream } = await import('node:fs'); p.child.stderr!.pipe(createWriteStream(`${process.env.EW_DEBUG_LOG}.${h}`)); }
      peerIds[h] = (await p.waitFor(/^ready /, 20_000)).split(' ')[1]!;
    }
    for (const h of ['a1', 'b1']) await waitState(h, (s) => s.relays[0]?.reserved === true, 'a relay reservation');
  }, 120_000);

  afterAll(async () => {
    await lab.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a1 → a2 on the same LAN goes direct, never through the relay', async () => {
    const r = await whoami(15002, 5);
    expect(r).toMatchObject({ counts: { a2: 5 }, errors: 0 });
    const s = await waitState('a1', (x) => peer(x, 'a2') !== undefined, 'a peer a2');
    expect(peer(s, 'a2')).toMatchObject({ paths: ['direct'], everRelayed: false });
    // The flows themselves ride the data channel to a2's data listener.
    expect((await waitState('a1', (x) => x.channels.some((c) => c.nodeName === 'a2' && c.path !== undefined), 'a channel to a2')).channels.find((c) => c.nodeName === 'a2')).toMatchObject({ path: 'lan' });
  });

  it('a1 → b1 (other LAN, behind NAT) goes through the relay, then direct once a path exists', async () => {
    expect(await whoami(15001, 3)).toMatchObject({ counts: { b1: 3 }, errors: 0 });
    const before = await waitState('a1', (x) => peer(x, 'b1') !== undefined, 'a peer b1');
    expect(peer(before, 'b1')!.paths).toEqual(['relayed']);
    expect((await waitState('a1', (x) => peer(x, 'b1')?.channel !== undefined, 'a channel to b1')).channels.find((c) => c.nodeName === 'b1')).toMatchObject({ path: 'relayed' });
    // The operator opens the tunnel ports (libp2p and data) on rb: the background upgrades find them.
    await topo.portForward('rb', PORT, IP.b1);
    await topo.portForward('rb', PORT + 1, IP.b1);
    const after = await waitState('a1', (x) => peer(x, 'b1')?.paths.includes('direct') === true && x.upgrades.successes >= 1, 'b1 upgraded to direct', 45_000);
    expect(peer(after, 'b1')!.everRelayed).toBe(true);
    expect(await whoami(15001, 3)).toMatchObject({ counts: { b1: 3 }, errors: 0 });
    // The idle relayed connection is closed once the direct one carries the traffic.
    await waitState('a1', (x) => JSON.stringify(peer(x, 'b1')?.paths) === '["direct"]', 'b1 direct only');
    // The data channel moved off the relay too (so killing the relay below spares the flows).
    await waitState('a1', (x) => peer(x, 'b1')?.channel === 'lan', 'the b1 channel on the LAN path', 45_000);
  }, 90_000);

  it('relay killed: the direct flow keeps going; relay back: reservations renew', async () => {
    const flow = lab.exec(topo.ns.a1, node, ['-e', `
      const s = require('net').connect(15001, '127.0.0.1');
      let got = 0, errors = 0;
      s.on('data', (d) => { got += (d.toString().match(/b1\\n/g) || []).length; });
      s.on('error', () => { errors++; });
      const t = setInterval(() => s.write('whoami\\n'), 100);
      setTimeout(() => { clearInterval(t); s.destroy(); console.log(JSON.stringify({ got, errors })); }, 5000);`], { timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 1000));
    await relay.stop();
    await waitState('a1', (x) => x.relays[0]?.connected === false, 'relay seen down', 15_000);
    const r = JSON.parse((await flow).stdout.trim()) as { got: number; errors: number };
    expect(r.errors).toBe(0);
    expect(r.got).toBeGreaterThanOrEqual(40);
    await startRelay();
    for (const h of ['a1', 'b1']) await waitState(h, (x) => x.relays[0]?.connected === true && x.relays[0]?.reserved === true, 'reservation renewed', 45_000);
  }, 90_000);

  it('a tunnel request for a target that is not a local backend (b1 127.0.0.1:22) is refused and counted', async () => {
    const r = await whoami(15004, 1);
    expect(r.errors).toBe(1);
    const s = await waitState('b1', (x) => (x.refusals['not-local'] ?? 0) >= 1, 'a not-local refusal');
    expect(s.refusals['not-local']).toBe(1);
  });

  it('a peer that is not a cluster node is refused, even with the PSK', async () => {
    const relayMa = `/ip4/${IP.relay}/tcp/${PORT}/p2p/${relayId}`;
    const out = await lab.exec(topo.ns.a2, node, ['test/tunnel/fixtures/tunnel-probe.mjs', '--psk', join(dir, 'swarm.key'), '--relay', relayMa, '--name', 'intruder',
      '--target', `${relayMa}/p2p-circuit/p2p/${peerIds.b1}`, '--service', 'default/echo:80', '--ip', IP.b1, '--port', '8080', '--node', 'b1'], { timeoutMs: 30_000 });
    expect(JSON.parse(out.stdout.trim())).toMatchObject({ result: 'unauthorised' });
    await waitState('b1', (x) => (x.refusals.unauthorised ?? 0) >= 1, 'an unauthorised refusal');
  }, 40_000);

  it('a peer with the wrong PSK cannot even connect', async () => {
    const out = await lab.exec(topo.ns.a2, node, ['test/tunnel/fixtures/tunnel-probe.mjs', '--psk', join(dir, 'wrong.key'),
      '--target', `/ip4/${IP.rbWan}/tcp/${PORT}/p2p/${peerIds.b1}`, '--service', 'default/echo:80', '--ip', IP.b1, '--port', '8080', '--node', 'b1'], { timeoutMs: 30_000 });
    expect(JSON.parse(out.stdout.trim())).toMatchObject({ result: 'dial-failed' });
  }, 40_000);

  it('UDP: 10,000 datagrams from 50 sessions; streams back to baseline after the idle timeout', async () => {
    const base = { a1: (await readState('a1'))!.streamsOpen, b1: (await readState('b1'))!.streamsOpen };
    const totalBefore = (await readState('a1'))!.streamsTotal.out;
    const out = await lab.exec(topo.ns.a1, node, ['test/tunnel/fixtures/udp-sessions.mjs', '--host', '127.0.0.1', '--port', '15003', '--sessions', '50', '--count', '200', '--timeout', '50000'], { timeoutMs: 70_000 });
    const r = JSON.parse(out.stdout.trim()) as { answered: number; retransmits: number; ms: number };
    // Every one of the 10,000 datagrams answered (retransmitted when UDP dropped one under load).
    expect(r.answered).toBe(10_000);
    console.log(`udp: 10,000 answered in ${r.ms} ms, ${r.retransmits} retransmits`);
    // One stream per client session (a session idle-closed and reopened may add one).
    const opened = (await waitState('a1', (x) => x.streamsOpen.out === base.a1.out, 'a1 streams back to baseline', 20_000)).streamsTotal.out - totalBefore;
    expect(opened).toBeGreaterThanOrEqual(50);
    expect(opened).toBeLessThan(150);
    await waitState('a1', (x) => x.streamsOpen.out === base.a1.out, 'a1 streams back to baseline', 20_000);
    await waitState('b1', (x) => x.streamsOpen.in === base.b1.in && x.inboundFlows === 0, 'b1 streams back to baseline', 20_000);
  }, 90_000);
});
