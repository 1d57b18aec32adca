/**
 * The whole product across two LANs behind NAT, with the real binaries only:
 * `edgeway relay` in the cloud, `edgeway agent` on a1 (LAN A) and b1 (LAN B) in
 * nftables mode, fed the same static catalog. A client on a1 dials a ClusterIP
 * whose only endpoint runs on b1: a1's nft rules redirect it to the agent's
 * userspace port, the proxy picks the remote endpoint and opens a tunnel stream
 * through the relay, b1's agent checks the target is its own backend and dials it.
 *
 * Topology and IP plan: test/helpers/topology.ts (10.1.0.0/24 LAN A, 10.2.0.0/24
 * LAN B, relay 10.200.0.10; all inside the lab's namespaces). Services:
 *   web 10.96.0.30:80 → b1 10.2.0.2:8080 (echo "b1") · dns 10.96.0.31:53/UDP → b1 :8080
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, kernelSkipReason, type NsProcess } from '../helpers/netns.js';
import { buildTopology, IP, type Topology } from '../helpers/topology.js';
import { labCatalogYaml } from '../helpers/lab-catalog.js';

const skip = kernelSkipReason() ?? (existsSync('dist/cli/main.js') ? undefined : 'dist/ missing: run `npm run build` first');
if (skip) console.warn(`skipping cross-LAN e2e: ${skip}`);
const node = process.execPath;
const PORT = 20006;

const catalog = labCatalogYaml(['a1', 'b1'], [
  { name: 'web', clusterIP: '10.96.0.30', port: 80, targetPort: 8080, portName: 'http', on: 'b1' },
  { name: 'dns', clusterIP: '10.96.0.31', port: 53, targetPort: 8080, protocol: 'UDP', portName: 'dns', on: 'b1' },
]);

interface TunnelState { relays: { reserved?: boolean }[]; peers: { nodeName?: string; paths: string[] }[]; channels: { nodeName: string; path?: string }[] }

describe.skipIf(!!skip)('cross-LAN through the real agents and relay', () => {
  const lab = new Lab();
  let topo: Topology;
  let dir = '';
  const agents: Record<string, NsProcess> = {};
  const cfg = (h: string): string => join(dir, `${h}.json`);
  const state = async (h: string): Promise<TunnelState | undefined> => {
    try { return JSON.parse(await readFile(join(dir, h, 'tunnel-state.json'), 'utf8')) as TunnelState; } catch { return undefined; }
  };
  const whoami = async (host: string, port: number, n: number, udp = false): Promise<{ counts: Record<string, number>; errors: number; firstError?: string }> => {
    const out = await lab.exec(topo.ns.a1, node, ['test/helpers/fixtures/whoami-client.mjs', '--host', host, '--port', String(port), '--n', String(n), '--timeout', '5000', ...(udp ? ['--udp'] : [])], { timeoutMs: 90_000 });
    return JSON.parse(out.stdout.trim().split('\n').at(-1)!) as { counts: Record<string, number>; errors: number; firstError?: string };
  };

  beforeAll(async () => {
    topo = await buildTopology(lab);
    dir = await mkdtemp(join(tmpdir(), 'ew-cross-lan-'));
    await writeFile(join(dir, 'catalog.yaml'), catalog);
    const base = (name: string): object => ({
      nodeName: name, stateDir: join(dir, name), log: { level: 'warn' }, metrics: { listen: '' },
      sources: { kubernetes: { enabled: false }, static: { paths: [join(dir, 'catalog.yaml')], pollMs: 200 } },
      dataplane: { mode: name === 'relay' ? 'none' : 'nftables', minSyncIntervalMs: 20 },
      accelerator: { mode: 'node' },
      dns: { enabled: false },
      tunnel: { listenPort: PORT, directDialTimeoutMs: 1000, ...(name === 'relay' ? {} : { relayNodes: [{ nodeName: 'relay', advertiseAddress: [`${IP.relay}:${PORT}`] }] }) },
    });
    for (const h of ['relay', 'a1', 'b1']) await writeFile(cfg(h), JSON.stringify(base(h)));
    await lab.spawn(topo.ns.relay, node, ['bin/edgeway.js', 'relay', '--config', cfg('relay')]).waitFor(/^relay /, 30_000);
    await lab.spawn(topo.ns.b1, node, ['test/helpers/fixtures/echo-server.mjs', '--id', 'b1', '--port', '8080', '--host', '0.0.0.0', '--udp']).waitFor(/listening/);
    for (const h of ['b1', 'a1'] as const) agents[h] = lab.spawn(topo.ns[h], node, ['bin/edgeway.js', 'agent', '--config', cfg(h)]);
    // Both agents hold a reservation on the relay (they found each other through it).
    const end = Date.now() + 60_000;
    for (;;) {
      const [a, b] = [await state('a1'), await state('b1')];
      if (a?.relays[0]?.reserved && b?.relays[0]?.reserved) break;
      for (const h of ['a1', 'b1']) if (agents[h]!.child.exitCode !== null) throw new Error(`agent ${h} exited ${agents[h]!.child.exitCode}`);
      if (Date.now() > end) throw new Error(`no reservations: a1=${JSON.stringify(a)} b1=${JSON.stringify(b)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }, 150_000);

  afterAll(async () => {
    await lab.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a client on a1 reaches the backend on b1 by ClusterIP (TCP), through the tunnel', async () => {
    const r = await whoami('10.96.0.30', 80, 5);
    expect(r, JSON.stringify(r)).toMatchObject({ counts: { b1: 5 }, errors: 0 });
    // The state file is rewritten periodically: wait for the peer to show up in it.
    const end = Date.now() + 15_000;
    let s = await state('a1');
    while (!s?.peers.some((p) => p.nodeName === 'b1') && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 200));
      s = await state('a1');
    }
    expect(s?.peers.some((p) => p.nodeName === 'b1'), JSON.stringify(s)).toBe(true);
    // The data channel to b1 comes up through the relay's blind data port, and carries flows.
    while (!s?.channels.some((c) => c.nodeName === 'b1' && c.path === 'relayed') && Date.now() < end + 15_000) {
      await new Promise((r) => setTimeout(r, 200));
      s = await state('a1');
    }
    expect(s?.channels.find((c) => c.nodeName === 'b1'), JSON.stringify(s)).toMatchObject({ path: 'relayed' });
    const again = await whoami('10.96.0.30', 80, 5);
    expect(again, JSON.stringify(again)).toMatchObject({ counts: { b1: 5 }, errors: 0 });
  });

  it('UDP by ClusterIP reaches the backend on b1 through the tunnel', async () => {
    const r = await whoami('10.96.0.31', 53, 5, true);
    expect(r).toMatchObject({ counts: { b1: 5 }, errors: 0 });
  });
});
