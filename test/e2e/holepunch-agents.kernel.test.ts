/**
 * Hole punching on the whole agent path, real binaries only: `edgeway relay` in the
 * cloud, `edgeway agent` on a1 and b1 (nftables mode, data channel on, one static
 * catalog), both routers masquerading behind a stateful firewall, no port
 * forwards. A client on a1 dials a ClusterIP whose endpoint runs on b1: the flow
 * starts relayed, the data channel becomes punched (from a1's tunnel-state.json and
 * a1's kernel socket table), the relay is killed while a flow is held open, that
 * flow completes with its sha256 intact and a new flow still works. With rb's NAT
 * symmetric the punch fails (counted in a1's metrics), the channel stays relayed
 * and flows stay correct. Every process exits 0 on SIGTERM.
 *
 * IP plan: test/helpers/topology.ts (LAN A 10.1.0.0/24 behind ra WAN 10.200.1.2,
 * LAN B 10.2.0.0/24 behind rb WAN 10.200.2.2, relay 10.200.0.10). Service
 * echo 10.96.0.40:80 → b1 10.2.0.2:8080. Tunnel port 20006, data port 20007.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, kernelSkipReason, type ExitResult, type NsProcess } from '../helpers/netns.js';
import { buildTopology, IP, type NatMode, type Topology } from '../helpers/topology.js';
import { labCatalogYaml } from '../helpers/lab-catalog.js';
import { requirement } from '../helpers/skip.js';
import { runCli } from '../helpers/agent-process.js';
import { loadNative } from '../../src/native/addon.js';
import { punchUnavailableReason } from '../../src/tunnel/punch/sockets.js';
import type { TunnelState } from '../../src/tunnel/service.js';
import { stateFiles } from '../tunnel/state-files.js';

const skip = requirement('hole-punch agents e2e', kernelSkipReason(), existsSync('dist/cli/main.js') ? undefined : 'dist/ missing: run `npm run build` first',
  punchUnavailableReason(loadNative()));
const node = process.execPath;
const PORT = 20006;
const DATA_PORT = 20007;

/**
 * Nodes carry their agents' peer ids (the `edgeway.io/peer-id` annotation an agent
 * publishes with the Kubernetes source), so a node's identity does not depend on
 * the relay's rendezvous once the relay is gone.
 */
const catalog = (peer: Record<string, string>): string => labCatalogYaml([{ name: 'a1', peerId: peer.a1! }, { name: 'b1', peerId: peer.b1! }], [
  { name: 'echo', clusterIP: '10.96.0.40', port: 80, targetPort: 8080, on: 'b1' },
]);

interface Sha { sent: string; received: string; bytes: number; ms?: number }

/** A figure for the report (busy shared box), never a gate. */
const figure = (what: string, r: Sha): void => console.log(`${what}: ${r.bytes} B in ${String(r.ms)} ms = ${(r.bytes / 1e3 / Math.max(1, r.ms ?? 0)).toFixed(1)} MB/s`);

/** The two-LAN lab with the relay, b1's echo backend and both agents running. */
function agentsLab(nat: NatMode): {
  lab: Lab; topo: () => Topology; procs: Record<string, NsProcess>; dir: () => string;
  setup: () => Promise<void>; teardown: () => Promise<void>; flow: (bytes: number, seed: string) => Promise<Sha>; a1Metric: (re: RegExp) => Promise<number>;
} {
  const lab = new Lab();
  let topo: Topology;
  let dir = '';
  const procs: Record<string, NsProcess> = {};
  const cfg = (h: string): string => join(dir, `${h}.json`);
  return {
    lab, procs, topo: () => topo, dir: () => dir,
    async setup() {
      topo = await buildTopology(lab, { firewall: true, nat: { rb: nat } });
      dir = await mkdtemp(join(tmpdir(), 'ew-punch-agents-'));
      const peer: Record<string, string> = {};
      for (const h of ['a1', 'b1']) peer[h] = (await runCli(['identity', '--state-dir', join(dir, h)])).stdout.trim().split('\n')[0]!;
      await writeFile(join(dir, 'catalog.yaml'), catalog(peer));
      const base = (name: string): object => ({
        nodeName: name, stateDir: join(dir, name), log: { level: 'info' }, metrics: { listen: name === 'a1' ? '127.0.0.1:9464' : '' },
        sources: { kubernetes: { enabled: false }, static: { paths: [join(dir, 'catalog.yaml')], pollMs: 200 } },
        dataplane: { mode: name === 'relay' ? 'none' : 'nftables', minSyncIntervalMs: 20 },
        accelerator: { mode: 'node' }, dns: { enabled: false },
        tunnel: { listenPort: PORT, directDialTimeoutMs: 1000, ...(name === 'relay' ? {} : { relayNodes: [{ nodeName: 'relay', advertiseAddress: [`${IP.relay}:${PORT}`] }] }) },
      });
      for (const h of ['relay', 'a1', 'b1']) await writeFile(cfg(h), JSON.stringify(base(h)));
      procs.relay = lab.spawn(topo.ns.relay, node, ['bin/edgeway.js', 'relay', '--config', cfg('relay')]);
      await procs.relay.waitFor(/^relay /, 30_000);
      procs.echo = lab.spawn(topo.ns.b1, node, ['test/helpers/fixtures/echo-server.mjs', '--id', 'b1', '--port', '8080', '--host', '0.0.0.0']);
      await procs.echo.waitFor(/listening/);
      for (const h of ['b1', 'a1'] as const) procs[h] = lab.spawn(topo.ns[h], node, ['bin/edgeway.js', 'agent', '--config', cfg(h)]);
      const st = stateFiles(() => dir);
      for (const h of ['a1', 'b1']) await st.wait(h, (s) => s.relays[0]?.reserved === true, 'a relay reservation', 60_000);
    },
    async teardown() {
      await lab.destroy();
      if (dir) await rm(dir, { recursive: true, force: true });
    },
    async flow(bytes, seed) {
      const r = await lab.exec(topo.ns.a1, node, ['test/tunnel/fixtures/seeded-client.mjs', '--host', '10.96.0.40', '--port', '80', '--bytes', String(bytes), '--seed', seed], { timeoutMs: 120_000 });
      return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Sha;
    },
    async a1Metric(re) {
      const r = await lab.exec(topo.ns.a1, node, ['-e', "fetch('http://127.0.0.1:9464/metrics').then((r) => r.text()).then((t) => console.log(t))"]);
      const m = r.stdout.split('\n').find((l) => re.test(l));
      return m ? Number(m.split(' ').at(-1)) : 0;
    },
  };
}

/** SIGTERM and how it ended (a busy box gets 20 s before SIGKILL). */
const exitCode = (p: NsProcess): Promise<ExitResult> => p.exit(20_000);

const channelTo = (s: TunnelState, node: string): string | undefined => s.channels.find((c) => c.nodeName === node)?.path;

describe.skipIf(!!skip)('agents: relayed → hole-punched across two NATs, relay killed', () => {
  const t = agentsLab('cone');
  const st = stateFiles(t.dir);
  beforeAll(() => t.setup(), 150_000);
  afterAll(() => t.teardown());

  it('the channel to b1 starts relayed and becomes punched; flows are intact', async () => {
    const first = await t.flow(256 * 1024, 'punch-first');
    expect(first.received).toBe(first.sent);
    const s = await st.wait('a1', (x) => channelTo(x, 'b1') === 'punched', 'the b1 channel on the punched path', 90_000);
    // It was relayed first: the libp2p connection to b1 went through the relay.
    expect(s.peers.find((p) => p.nodeName === 'b1')?.everRelayed).toBe(true);
    expect(await t.a1Metric(/^edgeway_tunnel_punch_total\{side="outbound",result="ok"\}/)).toBeGreaterThanOrEqual(1);
    // a1's kernel holds direct connections between the data ports (through both NATs).
    const ss = await t.lab.exec(t.topo().ns.a1, 'ss', ['-tnH', 'state', 'established', 'dst', IP.rbWan]);
    expect(ss.stdout).toContain(`${IP.rbWan}:${DATA_PORT}`);
    const after = await t.flow(8 * 1024 * 1024, 'punch-direct');
    expect(after).toMatchObject({ received: after.sent, bytes: 8 * 1024 * 1024 });
    figure('echo flow over the punched channel', after);
  }, 180_000);

  it('the relay dies: a flow held open across it and a new flow both arrive intact', async () => {
    const go = join(t.dir(), 'go');
    const held = t.lab.spawn(t.topo().ns.a1, node, ['test/e2e/fixtures/held-flow.mjs', '--host', '10.96.0.40', '--port', '80', '--bytes', String(4 * 1024 * 1024), '--seed', 'held', '--go', go]);
    await held.waitFor(/^half$/, 60_000);
    expect(await exitCode(t.procs.relay!)).toBe(0);
    await st.wait('a1', (x) => x.relays[0]?.connected === false, 'the relay to be gone', 60_000);
    expect(channelTo((await st.read('a1'))!, 'b1')).toBe('punched');
    await writeFile(go, '');
    const done = JSON.parse(await held.waitFor(/^\{/, 60_000)) as Sha;
    expect(done).toMatchObject({ received: done.sent, bytes: 4 * 1024 * 1024 });
    const fresh = await t.flow(1024 * 1024, 'after-relay');
    expect(fresh).toMatchObject({ received: fresh.sent, bytes: 1024 * 1024 });
    for (const h of ['a1', 'b1', 'echo']) expect(await exitCode(t.procs[h]!), h).toBe(0);
  }, 180_000);
});

describe.skipIf(!!skip)('agents: symmetric NAT on rb, the punch fails and the channel stays relayed', () => {
  const t = agentsLab('symmetric');
  const st = stateFiles(t.dir);
  beforeAll(() => t.setup(), 150_000);
  afterAll(() => t.teardown());

  it('punch failures are counted, flows stay relayed and intact', async () => {
    const first = await t.flow(256 * 1024, 'sym-first');
    expect(first.received).toBe(first.sent);
    await st.wait('a1', (x) => channelTo(x, 'b1') === 'relayed', 'the b1 channel on the relayed path', 60_000);
    // Wait for the failure itself (from a1's metrics), not for time to pass.
    const deadline = Date.now() + 90_000;
    while (await t.a1Metric(/^edgeway_tunnel_punch_total\{side="outbound",result="failed"\}/) < 1) {
      if (Date.now() > deadline) throw new Error('no failed punch counted');
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(await t.a1Metric(/^edgeway_tunnel_punch_total\{side="outbound",result="ok"\}/)).toBe(0);
    expect(channelTo((await st.read('a1'))!, 'b1')).toBe('relayed');
    const after = await t.flow(8 * 1024 * 1024, 'sym-after');
    expect(after).toMatchObject({ received: after.sent, bytes: 8 * 1024 * 1024 });
    figure('echo flow over the relayed channel', after);
    for (const h of ['a1', 'b1', 'echo', 'relay']) expect(await exitCode(t.procs[h]!), h).toBe(0);
  }, 240_000);
});
