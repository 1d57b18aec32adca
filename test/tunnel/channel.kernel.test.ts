/**
 * The data channel across two NATed LANs with the real relay binary and tunnel
 * peers from dist/ (test/tunnel/fixtures/tunnel-node.mjs), PSK on and off:
 * seeded bytes (sha256) on the same LAN (channel on a2's data listener) and across
 * the LANs (channel through the relay's blind data port), while a raw capture on
 * the relay proves it only ever saw ciphertext. Every process exits 0 on SIGTERM.
 * Paths are asserted from the peers' tunnel-state.json, never from timing.
 *
 * IP plan: topology.ts (LAN A 10.1.0.0/24, LAN B 10.2.0.0/24, relay 10.200.0.10).
 * Ingress ports on a1 (127.0.0.1): 15001 echo@b1, 15002 echo@a2, 15003 integrity
 * server@b1, 15004 integrity server@a2 (test/helpers/fixtures/integrity-*.mjs).
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
// @ts-expect-error -- a plain .mjs fixture (no types); tests share its generator
import { seededBytes } from './fixtures/seeded-client.mjs';

const skip = kernelSkipReason();
const node = process.execPath;
const PORT = 20006;
const BYTES = 8 * 1024 * 1024;

const catalog = labCatalogYaml(['a1', 'a2', 'b1'], ([['echo', 'b1', 10, 8080], ['echo-a2', 'a2', 11, 8080], ['integ-b1', 'b1', 12, 9000], ['integ-a2', 'a2', 13, 9000]] as const)
  .map(([name, on, n, targetPort]) => ({ name, clusterIP: `10.96.0.${n}`, port: 80, targetPort, protocol: 'TCP', on, ready: true })));

/** Offsets of plaintext windows that must not appear in the relay's capture. */
function windows(plain: Buffer, size = 48, step = 8192): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o + size <= plain.length; o += step) out.push(plain.subarray(o, o + size));
  return out;
}

describe.skipIf(skip !== undefined).each([{ psk: true }, { psk: false }])('data channel across NATed LANs (psk: $psk)', ({ psk }) => {
  const lab = new Lab();
  let topo: Topology;
  let dir: string;
  const procs: Record<string, NsProcess> = {};
  const cfg = (name: string): string => join(dir, `${name}.yaml`);

  const states = stateFiles(() => dir);
  const waitState = states.wait;
  const channelTo = (s: TunnelState, nodeName: string): TunnelState['channels'][number] | undefined => s.channels.find((c) => c.nodeName === nodeName);
  const seeded = async (port: number, seed: string): Promise<{ sent: string; received: string; bytes: number }> => {
    const r = await lab.exec(topo.ns.a1, node, ['test/tunnel/fixtures/seeded-client.mjs', '--host', '127.0.0.1', '--port', String(port), '--bytes', String(BYTES), '--seed', seed], { timeoutMs: 120_000 });
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as { sent: string; received: string; bytes: number };
  };

  beforeAll(async () => {
    await readFile('dist/tunnel/channel/manager.js').catch(() => run('npm', ['run', 'build'], { timeoutMs: 120_000 }));
    topo = await buildTopology(lab);
    dir = await mkdtemp(join(tmpdir(), 'ew-channel-e2e-'));
    await writeFile(join(dir, 'catalog.yaml'), catalog);
    await writeFile(join(dir, 'swarm.key'), `/key/swarm/psk/1.0.0/\n/base16/\n${randomBytes(32).toString('hex')}\n`);
    const base = (name: string): object => ({
      nodeName: name, stateDir: join(dir, name), log: { level: 'warn' }, metrics: { listen: '' },
      sources: { kubernetes: { enabled: false }, static: { paths: [join(dir, 'catalog.yaml')] } },
      dataplane: { mode: 'none' }, dns: { enabled: false },
      tunnel: {
        listenPort: PORT, directDialTimeoutMs: 1000, ...(psk ? { psk: { path: join(dir, 'swarm.key') } } : {}),
        ...(name === 'relay' ? {} : { relayNodes: [{ nodeName: 'relay', advertiseAddress: [`${IP.relay}:${PORT}`] }] }),
      },
    });
    for (const h of ['relay', 'a1', 'a2', 'b1']) await writeFile(cfg(h), JSON.stringify(base(h)));
    procs.relay = lab.spawn(topo.ns.relay, node, ['bin/edgeway.js', 'relay', '--config', cfg('relay')]);
    await procs.relay.waitFor(/^relay /, 20_000);
    procs.echoB1 = lab.spawn(topo.ns.b1, node, ['test/helpers/fixtures/echo-server.mjs', '--id', 'b1', '--port', '8080', '--host', '0.0.0.0']);
    procs.echoA2 = lab.spawn(topo.ns.a2, node, ['test/helpers/fixtures/echo-server.mjs', '--id', 'a2', '--port', '8080', '--host', '0.0.0.0']);
    await procs.echoB1.waitFor(/listening/);
    await procs.echoA2.waitFor(/listening/);
    for (const h of ['b1', 'a2'] as const) {
      procs[`integ${h}`] = lab.spawn(topo.ns[h], node, ['test/helpers/fixtures/integrity-server.mjs', '--port', '9000', '--udp-port', '9001']);
      await procs[`integ${h}`]!.waitFor(/^listening/);
    }
    const fx = 'test/tunnel/fixtures/tunnel-node.mjs';
    for (const [h, extra] of [['b1', []], ['a2', []], ['a1', ['--route', '15001=default/echo:80/TCP', '--route', '15002=default/echo-a2:80/TCP', '--route', '15003=default/integ-b1:80/TCP', '--route', '15004=default/integ-a2:80/TCP']]] as const) {
      // a1 without the native addon cannot hole-punch: its channel to b1 stays on the
      // relay, the path under test here (punching has its own e2e suites).
      procs[h] = lab.spawn(topo.ns[h], node, [fx, '--config', cfg(h), ...extra], h === 'a1' ? { ...process.env, EDGEWAY_NATIVE: 'off' } : process.env);
      await procs[h].waitFor(/^ready /, 20_000);
    }
    for (const h of ['a1', 'b1']) await waitState(h, (s) => s.relays[0]?.reserved === true, 'a relay reservation');
  }, 120_000);

  afterAll(async () => {
    await lab.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A first flow starts the channel; wait until it is up on `path` before measuring. */
  const channelUp = async (port: number, to: string, path: string): Promise<void> => {
    await lab.exec(topo.ns.a1, node, ['test/tunnel/fixtures/seeded-client.mjs', '--host', '127.0.0.1', '--port', String(port), '--bytes', '1000'], { timeoutMs: 60_000 });
    await waitState('a1', (x) => channelTo(x, to)?.path === path, `the channel to ${to} on ${path}`);
  };

  it('same LAN: seeded bytes intact over the channel on a2\'s data listener', async () => {
    await channelUp(15002, 'a2', 'lan');
    const r = await seeded(15002, 'lan');
    expect(r.received).toBe(r.sent);
    expect(r.bytes).toBe(BYTES);
    const s = await waitState('a1', (x) => channelTo(x, 'a2')?.path !== undefined, 'a channel to a2');
    expect(channelTo(s, 'a2')).toMatchObject({ path: 'lan', via: `${IP.a2}:${PORT + 1}` });
    expect(s.peers.find((p) => p.nodeName === 'a2')).toMatchObject({ everRelayed: false });
  }, 120_000);

  it('across the NATs: seeded bytes intact through the blind relay, which sees only ciphertext', async () => {
    await channelUp(15001, 'b1', 'relayed');
    const capFile = join(dir, 'relay.cap');
    const cap = lab.spawn(topo.ns.relay, '/usr/bin/python3', ['test/tunnel/fixtures/capture.py', capFile]);
    await cap.waitFor(/capturing/, 10_000);
    const r = await seeded(15001, 'relayed');
    await cap.stop();
    expect(cap.child.exitCode).toBe(0);
    expect(r.received).toBe(r.sent);
    expect(r.bytes).toBe(BYTES);
    const s = await waitState('a1', (x) => channelTo(x, 'b1')?.path !== undefined, 'a channel to b1');
    expect(channelTo(s, 'b1')).toMatchObject({ path: 'relayed', via: 'relay' });
    const captured = await readFile(capFile);
    // The flow went through the relay: 4 × BYTES cross its interface (in and out,
    // both directions); a user-space capture may miss some frames under load.
    expect(captured.length).toBeGreaterThan(BYTES);
    // …and no piece of the plaintext was ever on the relay's wire.
    const plain = seededBytes('relayed', BYTES) as Buffer;
    const seen = windows(plain).filter((w) => captured.includes(w)).length;
    expect(seen).toBe(0);
  }, 120_000);

  // The integrity suite's client and server (issue 11) over the channel alone (no proxy in between).
  it.each([{ port: 15004, to: 'a2', path: 'lan', seed: 1 }, { port: 15003, to: 'b1', path: 'relayed', seed: 100 }])('integrity: 16 flows × 2 MiB up/down, both close orders, channel $path', async ({ port, to, path, seed }) => {
    await waitState('a1', (x) => channelTo(x, to)?.path === path, `the channel to ${to} on ${path}`);
    const out = await lab.exec(topo.ns.a1, node, ['test/helpers/fixtures/integrity-client.mjs', '--host', '127.0.0.1', '--port', String(port), '--flows', '16', '--bytes', String(2 * 1024 * 1024), '--seed', String(seed)], { timeoutMs: 300_000 });
    const r = JSON.parse(out.stdout.trim().split('\n').at(-1)!) as { ok: number; failures: unknown[]; seconds: number };
    console.log(`channel integrity (${path}): 16×2 MiB in ${r.seconds.toFixed(2)} s (busy box)`);
    expect(r.failures).toEqual([]);
    expect(r.ok).toBe(16);
  }, 300_000);

  it('every process exits 0 on SIGTERM', async () => {
    for (const [name, p] of Object.entries(procs)) {
      await p.stop();
      expect({ name, code: p.child.exitCode, signal: p.child.signalCode }).toEqual({ name, code: 0, signal: null });
    }
  }, 60_000);
});
