/**
 * Every byte intact through the real product: client on a1 → ClusterIP → a1's nft
 * REDIRECT → a1's proxy → tunnel → far agent → backend, and back. Two LANs behind
 * NAT, a relay in the cloud, PSK on, static catalog.
 *
 * Parameters (each one more row, nothing else changes):
 * - accelerator mode of a1's agent: node, splice, sockmap, addon absent
 *   (`EDGEWAY_NATIVE=off`, mode auto);
 * - path: same-LAN direct (a1 → a2) and cross-LAN relayed (a1 → b1);
 * - transport: the tunnel transport under test (`TRANSPORTS`; a fast data channel
 *   adds a row with the agent config that selects it).
 * Data channel flows meet both EWC1 implementations: with splice/sockmap a1 hands
 * its side to the addon's record pump, b1 (splice when the addon is built) its
 * side of the relayed flows, a2 always runs the JS codec — asserted from the
 * agents' `edgeway_tunnel_channel_handovers_total`.
 *
 * TCP: FLOWS flows at once per case, each MiB mebibytes of seeded random bytes,
 * upload and download, half-close in both orders (integrity-client.mjs cycles
 * through the four kinds); the backend checks each upload's sha256 and the bytes
 * sent after its own FIN, the client checks each download's sha256. UDP: 10k
 * datagrams with sequence numbers in 4 sessions; asserted: none corrupted, none
 * reordered or duplicated within a session, and every datagram accounted for
 * (received + lost = sent) with loss under 1 % (the client paces bursts of 16, so
 * a healthy path loses none; the agents count their own drops in
 * `udpDropped` of tunnel-state.json).
 *
 * Size: `EDGEWAY_INTEGRITY_MIB` (default 2 for CI; `npm run bench` runs
 * bench/tunnel-integrity.mjs with 64).
 *
 * IP plan (inside the lab's namespaces only; topology.ts): a1 10.1.0.2, a2 10.1.0.3,
 * b1 10.2.0.2, relay 10.200.0.10. Services: integ-a2 10.96.0.40:80 → a2:9000,
 * integ-b1 10.96.0.41:80 → b1:9000 (its EndpointSlice port has no name while the
 * service port has one: the plan's single-port rule), udp-a2 10.96.0.42:53 → a2:9001,
 * udp-b1 10.96.0.43:53 → b1:9001.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, kernelSkipReason, type ExitResult, type NsProcess } from '../helpers/netns.js';
import { buildTopology, IP, type Topology } from '../helpers/topology.js';
import { labCatalogYaml } from '../helpers/lab-catalog.js';

const MIB = Number(process.env.EDGEWAY_INTEGRITY_MIB ?? 2);
const FLOWS = Number(process.env.EDGEWAY_INTEGRITY_FLOWS ?? 16);
const PORT = 20006;
const READY_PORT = 9464;
const node = process.execPath;
const addonBuilt = existsSync('native/build/Release/edgeway_native.node');
const skip = kernelSkipReason() ?? (existsSync('dist/cli/main.js') ? undefined : 'dist/ missing: run `npm run build` first');
if (skip && process.env.CI === 'true') throw new Error(`integrity suite cannot run in CI: ${skip}`);
if (skip) console.warn(`skipping integrity e2e: ${skip}`);

/** `recordPump`: a1 hands data channel flows to the addon's EWC1 record pump (asserted from its metrics). */
interface Mode { readonly name: string; readonly accelerator: 'node' | 'splice' | 'sockmap' | 'auto'; readonly env?: Record<string, string>; readonly needsAddon: boolean; readonly recordPump?: boolean }
const MODES: readonly Mode[] = [
  { name: 'node', accelerator: 'node', needsAddon: false },
  { name: 'splice', accelerator: 'splice', needsAddon: true, recordPump: true },
  { name: 'sockmap', accelerator: 'sockmap', needsAddon: true, recordPump: true },
  { name: 'addon absent', accelerator: 'auto', env: { EDGEWAY_NATIVE: 'off' }, needsAddon: false },
];
interface Path { readonly name: string; readonly node: 'a2' | 'b1'; readonly tcp: string; readonly udp: string; readonly path: 'direct' | 'relayed' }
const PATHS: readonly Path[] = [
  { name: 'same-LAN direct a1→a2', node: 'a2', tcp: '10.96.0.40', udp: '10.96.0.42', path: 'direct' },
  { name: 'cross-LAN relayed a1→b1', node: 'b1', tcp: '10.96.0.41', udp: '10.96.0.43', path: 'relayed' },
];
/**
 * Tunnel transports: `tunnel` is merged into every agent's `tunnel` config;
 * `channel` = the data channel path expected per far node (absent: no channel).
 */
export interface Transport { readonly name: string; readonly tunnel: Record<string, unknown>; readonly channel?: Record<'a2' | 'b1', string> }
const TRANSPORTS: readonly Transport[] = [
  { name: 'libp2p streams', tunnel: { channel: { enabled: false } } },
  // Same LAN: a2's data listener; across the NATs: the relay's blind data port.
  { name: 'data channel', tunnel: {}, channel: { a2: 'lan', b1: 'relayed' } },
];

const catalog = labCatalogYaml(['a1', 'a2', 'b1'], [
  { name: 'integ-a2', clusterIP: '10.96.0.40', port: 80, targetPort: 9000, protocol: 'TCP', on: 'a2' },
  // An unnamed endpoint port under a named service port: the plan's single-port rule.
  { name: 'integ-b1', clusterIP: '10.96.0.41', port: 80, targetPort: 9000, protocol: 'TCP', on: 'b1', endpointPortName: '' },
  { name: 'udp-a2', clusterIP: '10.96.0.42', port: 53, targetPort: 9001, protocol: 'UDP', on: 'a2' },
  { name: 'udp-b1', clusterIP: '10.96.0.43', port: 53, targetPort: 9001, protocol: 'UDP', on: 'b1' },
]);

interface TcpResult { flows: number; ok: number; failures: { flow: number; kind: string; reason: string }[]; bytes: number; seconds: number }
interface UdpResult { sent: number; received: number; lost: number; corrupted: number; reordered: number; duplicated: number }
interface TunnelState { peerId: string; relays: { reserved?: boolean }[]; peers: { peerId: string; nodeName?: string; paths: string[]; everRelayed: boolean }[]; channels?: { peerId: string; nodeName: string; path?: string }[] }

/** SIGTERM a process we started: how it ended (SIGKILL after 15 s → names the signal, fails the check). */
const stopExitCode = (p: NsProcess): Promise<ExitResult> => p.exit(15_000);

describe.skipIf(!!skip).each(TRANSPORTS)('integrity through the real agents ($name)', (transport) => {
  const lab = new Lab();
  let topo: Topology;
  let dir = '';
  const procs: Record<string, NsProcess> = {};
  const servers: Record<string, NsProcess> = {};
  let seed = 1000;

  const cfgPath = (h: string): string => join(dir, `${h}.json`);
  const writeCfg = async (h: string, accelerator: Mode['accelerator'] = 'node'): Promise<void> => {
    await writeFile(cfgPath(h), JSON.stringify({
      nodeName: h, stateDir: join(dir, h), log: { level: logDir ? 'debug' : 'warn' },
      // Inside each host's own namespace: /readyz tells when rules and listeners are up.
      metrics: { listen: h === 'relay' ? '' : `127.0.0.1:${READY_PORT}` },
      sources: { kubernetes: { enabled: false }, static: { paths: [join(dir, 'catalog.yaml')], pollMs: 200 } },
      dataplane: { mode: h === 'relay' ? 'none' : 'nftables', minSyncIntervalMs: 20 },
      accelerator: { mode: accelerator },
      dns: { enabled: false },
      // Busy CI boxes: the first flow to a peer waits for the dial (PSK, Noise,
      // yamux) and the far side's rendezvous lookup; 3 s was seen to be too short.
      proxy: { connectTimeoutMs: 15_000 },
      tunnel: {
        listenPort: PORT, directDialTimeoutMs: 1000, psk: { path: join(dir, 'swarm.key') },
        ...(h === 'relay' ? {} : { relayNodes: [{ nodeName: 'relay', advertiseAddress: [`${IP.relay}:${PORT}`] }] }),
        ...transport.tunnel,
      },
    }));
  };
  const state = async (h: string): Promise<TunnelState | undefined> => {
    try { return JSON.parse(await readFile(join(dir, h, 'tunnel-state.json'), 'utf8')) as TunnelState; } catch { return undefined; }
  };
  const waitReserved = async (hosts: readonly string[]): Promise<void> => {
    const end = Date.now() + 60_000;
    for (;;) {
      const s = await Promise.all(hosts.map(state));
      if (s.every((x) => x?.relays[0]?.reserved)) return;
      for (const h of hosts) if (procs[h]!.child.exitCode !== null) throw new Error(`agent ${h} exited ${procs[h]!.child.exitCode}`);
      if (Date.now() > end) throw new Error(`no reservations: ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  // EDGEWAY_INTEGRITY_LOGS=DIR keeps each process's log (stderr) in DIR/<host>.log.
  const logDir = process.env.EDGEWAY_INTEGRITY_LOGS;
  const spawnLogged = (h: string, args: string[], env: Record<string, string> = {}): NsProcess => logDir
    ? lab.spawn(topo.ns[h as 'a1'], 'sh', ['-c', `exec "$0" "$@" 2>>${join(logDir, `${h}.log`)}`, node, ...args], { ...process.env, ...env })
    : lab.spawn(topo.ns[h as 'a1'], node, args, { ...process.env, ...env });
  const startAgent = async (h: 'a1' | 'a2' | 'b1', env: Record<string, string> = {}): Promise<void> => {
    // A restarted agent must not be taken as ready from its predecessor's state file.
    await rm(join(dir, h, 'tunnel-state.json'), { force: true });
    procs[h] = spawnLogged(h, ['bin/edgeway.js', 'agent', '--config', cfgPath(h)], env);
  };
  /** A restarted agent: wait for its own readiness (catalog synced, rules applied, listeners up) and a fresh reservation. */
  const waitReady = async (h: 'a1' | 'a2' | 'b1'): Promise<void> => {
    const end = Date.now() + 90_000;
    const probe = `fetch('http://127.0.0.1:${READY_PORT}/readyz').then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))`;
    for (;;) {
      if (procs[h]!.child.exitCode !== null) throw new Error(`agent ${h} exited ${procs[h]!.child.exitCode}`);
      if (await lab.exec(topo.ns[h], node, ['-e', probe]).then(() => true, () => false)) break;
      if (Date.now() > end) throw new Error(`agent ${h} not ready`);
      await new Promise((r) => setTimeout(r, 300));
    }
    await waitReserved([h]);
  };
  /** Sum of a counter's series on an agent's /metrics whose labels include `labels`. */
  const metricsText = async (h: 'a1' | 'a2' | 'b1'): Promise<string> => {
    const probe = `fetch('http://127.0.0.1:${READY_PORT}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`;
    return (await lab.exec(topo.ns[h], node, ['-e', probe])).stdout;
  };
  /** The data channel's series of an agent (assertion messages). */
  const channelSeries = async (h: 'a1' | 'a2' | 'b1'): Promise<string> => (await metricsText(h)).split('\n').filter((l) => l.startsWith('edgeway_tunnel_channel_')).join('\n');
  const metric = async (h: 'a1' | 'a2' | 'b1', name: string, labels: Record<string, string>): Promise<number> => {
    const text = await metricsText(h);
    const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    return text.split('\n').filter((l) => l.startsWith(`${name}{`) && want.every((w) => l.includes(w))).reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
  };
  const client = async (args: string[]): Promise<string> => {
    const out = await lab.exec(topo.ns.a1, node, ['test/helpers/fixtures/integrity-client.mjs', ...args], { timeoutMs: 600_000 });
    return out.stdout.trim().split('\n').at(-1)!;
  };

  beforeAll(async () => {
    topo = await buildTopology(lab);
    dir = await mkdtemp(join(tmpdir(), 'ew-integrity-'));
    await writeFile(join(dir, 'catalog.yaml'), catalog);
    await writeFile(join(dir, 'swarm.key'), `/key/swarm/psk/1.0.0/\n/base16/\n${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    // b1 (the far end of the relayed path) runs the splice accelerator when the addon is built,
    // so its side of channel flows goes to the record pump too; a2 stays on the JS codec.
    for (const h of ['relay', 'a1', 'a2', 'b1']) await writeCfg(h, h === 'b1' && addonBuilt ? 'splice' : 'node');
    procs.relay = spawnLogged('relay', ['bin/edgeway.js', 'relay', '--config', cfgPath('relay')]);
    for (const h of ['a2', 'b1'] as const) {
      servers[h] = lab.spawn(topo.ns[h], node, ['test/helpers/fixtures/integrity-server.mjs', '--port', '9000', '--udp-port', '9001']);
      await servers[h].waitFor(/^listening/);
      await startAgent(h);
    }
    await waitReady('a2');
    await waitReady('b1');
  }, 180_000);

  afterAll(async () => {
    const codes: Record<string, number | string> = {};
    for (const [h, p] of Object.entries(procs)) codes[h] = await stopExitCode(p);
    await lab.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
    // Every agent and the relay exit 0 on SIGTERM.
    expect(codes).toEqual(Object.fromEntries(Object.keys(codes).map((h) => [h, 0])));
  }, 120_000);

  describe.each(MODES)('a1 accelerator: $name', (mode) => {
    const modeSkip = mode.needsAddon && !addonBuilt ? 'native addon not built' : undefined;
    if (modeSkip && process.env.CI === 'true') throw new Error(`integrity mode ${mode.name} cannot run in CI: ${modeSkip}`);
    if (modeSkip) console.warn(`skipping integrity mode ${mode.name}: ${modeSkip}`);

    beforeAll(async () => {
      if (modeSkip) return;
      await writeCfg('a1', mode.accelerator);
      await startAgent('a1', mode.env ?? {});
      await waitReady('a1');
    }, 120_000);

    afterAll(async () => {
      if (modeSkip || !procs.a1) return;
      const code = await stopExitCode(procs.a1);
      delete procs.a1;
      expect(code, `a1 (${mode.name}) exit code on SIGTERM`).toBe(0);
    }, 60_000);

    it.skipIf(!!modeSkip).each(PATHS)(`TCP ${FLOWS}×${MIB} MiB up/down, both close orders: $name`, async (p) => {
      const far = (await state(p.node))?.peerId;
      const channelPath = async (): Promise<string | undefined> => (await state('a1'))?.channels?.find((c) => c.peerId === far)?.path;
      if (transport.channel) {
        // One small flow first brings a1's channel to this peer up: flows that start
        // before it is up take libp2p (0.5 s wait), and on a busy box all of the
        // measured ones would.
        const warm = seed++;
        const lines = servers[p.node]!.lines.length;
        await client(['--host', p.tcp, '--port', '80', '--flows', '1', '--bytes', '4096', '--seed', String(warm)]);
        for (const until = Date.now() + 30_000; (await channelPath()) !== transport.channel[p.node] && Date.now() < until;) await new Promise((res) => setTimeout(res, 250));
        for (const until = Date.now() + 10_000; !servers[p.node]!.lines.slice(lines).includes(`verdict ${warm} ok`) && Date.now() < until;) await new Promise((res) => setTimeout(res, 100));
      }
      const first = seed;
      seed += FLOWS;
      const before = servers[p.node]!.lines.length;
      const pumpedBefore = await metric('a1', 'edgeway_tunnel_channel_handovers_total', { side: 'client', result: 'native' });
      const libp2pBefore = await metric('a1', 'edgeway_tunnel_channel_flows_total', { path: 'libp2p' });
      const r = JSON.parse(await client(['--host', p.tcp, '--port', '80', '--flows', String(FLOWS), '--bytes', String(MIB * 1024 * 1024), '--seed', String(first)])) as TcpResult;
      console.log(`integrity ${transport.name} / ${mode.name} / ${p.name}: ${FLOWS}×${MIB} MiB in ${r.seconds.toFixed(2)} s, ${r.ok}/${r.flows} ok (busy box)`);
      expect(r.failures).toEqual([]);
      expect(r.ok).toBe(FLOWS);
      // The backend's own verdict of each flow (uploads' sha256, bytes after its FIN).
      const end = Date.now() + 10_000;
      const verdicts = (): string[] => servers[p.node]!.lines.slice(before).filter((l) => l.startsWith('verdict '));
      while (verdicts().length < FLOWS && Date.now() < end) await new Promise((res) => setTimeout(res, 100));
      const want = Array.from({ length: FLOWS }, (_, i) => `verdict ${first + i} ok`).sort();
      expect(verdicts().sort()).toEqual(want);
      // By peer id (the state file names a peer only while its rendezvous answer is cached).
      // The state file is rewritten once a second: give it a few to catch up.
      const listed = (st: TunnelState | undefined): boolean => !!st?.peers.find((x) => x.peerId === far)?.paths.includes(p.path)
        && st.channels?.find((c) => c.nodeName === p.node)?.path === transport.channel?.[p.node];
      let s = await state('a1');
      for (const until = Date.now() + 10_000; !listed(s) && Date.now() < until; s = await state('a1')) await new Promise((res) => setTimeout(res, 250));
      const peer = s?.peers.find((x) => x.peerId === far);
      expect(peer?.paths, JSON.stringify(s)).toContain(p.path);
      if (p.path === 'direct') expect(peer?.everRelayed).toBe(false);
      // The channel carried the flows (the first ones may take libp2p while it comes up).
      expect(s?.channels?.find((c) => c.nodeName === p.node)?.path, JSON.stringify(s?.channels)).toBe(transport.channel?.[p.node]);
      // The measured flows rode the channel (none fell back to libp2p).
      if (transport.channel) expect(await metric('a1', 'edgeway_tunnel_channel_flows_total', { path: 'libp2p' }) - libp2pBefore, await channelSeries('a1')).toBe(0);
      // With the addon's record pump, a1 hands the channel's flows to it (the far agents run the JS codec: both implementations meet).
      const pumped = (await metric('a1', 'edgeway_tunnel_channel_handovers_total', { side: 'client', result: 'native' })) - pumpedBefore;
      if (transport.channel && mode.recordPump) expect(pumped, await channelSeries('a1')).toBeGreaterThan(0);
      else expect(pumped).toBe(0);
      if (transport.channel && p.node === 'b1' && addonBuilt) expect(await metric('b1', 'edgeway_tunnel_channel_handovers_total', { side: 'server', result: 'native' }), await channelSeries('b1')).toBeGreaterThan(0);
    }, 600_000);

    // UDP does not go through the accelerators: once, with the node mode (declared
    // only there, so CI sees no skipped rows).
    if (mode.name === 'node') it.each(PATHS)('UDP 10k datagrams, 4 sessions: $name', async (p) => {
      const r = JSON.parse(await client(['--udp', '--host', p.udp, '--port', '53', '--sessions', '4', '--datagrams', '10000', '--seed', String(seed)])) as UdpResult;
      seed += 4;
      console.log(`integrity UDP ${transport.name} / ${p.name}: ${JSON.stringify(r)}`);
      expect(r).toMatchObject({ sent: 10_000, corrupted: 0, reordered: 0, duplicated: 0 });
      expect(r.received + r.lost).toBe(r.sent);
      expect(r.lost).toBeLessThan(100);
    }, 300_000);
  });
});
