/**
 * `kill -9` of a real agent mid-traffic, and its restart on the same state dir:
 * `edgeway relay` in the cloud, `edgeway agent` on a1 (LAN A) and b1 (LAN B); b1
 * in nftables mode, a1 in turn in nftables mode, in ebpf mode (socket-LB
 * programs attached to a test cgroup, pins in a per-run bpffs directory, the
 * client in that cgroup) and in iptables mode (our chains and the built-in
 * chains' jumps to them). A client on a1 runs back-to-back flows of seeded bytes (sha256
 * checked) to a ClusterIP whose only endpoint is on b1. Each agent in turn is
 * killed with SIGKILL while the flows run and started again on its state dir:
 * - it comes up over what the killed process left (its nft table, pinned and
 *   attached programs, iptables chains, the tunnel and proxy ports) — reclaimed,
 *   never doubled — keeps its peer id, and serves its persisted catalog while its
 *   source cannot answer (b1's catalog file is hidden over the restart);
 * - the other agent notices (its connections to the dead peer go) and redials;
 * - flows recover. The time from the kill to the first correct flow after it is
 *   printed (measured, never asserted: a busy 2-core box).
 *
 * Topology and IP plan: test/helpers/topology.ts (LAN A 10.1.0.0/24, LAN B
 * 10.2.0.0/24, relay 10.200.0.10; all inside the lab's namespaces).
 * Service: web 10.96.0.30:80 → b1 10.2.0.2:8080 (echo).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, kernelSkipReason, run, type NsProcess } from '../helpers/netns.js';
import { buildTopology, IP, type Topology } from '../helpers/topology.js';
import { labCatalogYaml } from '../helpers/lab-catalog.js';
import { requirement } from '../helpers/skip.js';
import { findCgroup2Root } from '../../src/dataplane/ebpf/host.js';
import { ensureObject } from '../ebpf/object.js';

const cgroupRoot = findCgroup2Root();
const skip = requirement('agent crash e2e', kernelSkipReason(),
  existsSync('dist/cli/main.js') ? undefined : 'dist/ missing: run `npm run build` first',
  cgroupRoot ? undefined : 'no cgroup v2 hierarchy',
  ensureObject());
const node = process.execPath;
const PORT = 20006;

const catalog = labCatalogYaml(['a1', 'b1'], [{ name: 'web', clusterIP: '10.96.0.30', port: 80, targetPort: 8080, portName: 'http', on: 'b1' }]);

interface TunnelState { peerId: string; relays: { reserved?: boolean }[]; peers: { peerId: string; nodeName?: string; paths: string[] }[] }
interface FlowLine { i: number; start: number; end: number; ok: boolean; err?: string }
type Host = 'a1' | 'b1';

describe.skipIf(!!skip).each(['nftables', 'ebpf', 'iptables'] as const)('agent kill -9 and restart on the same state dir (a1 in %s mode)', (a1Mode) => {
  const lab = new Lab();
  const ebpf = a1Mode === 'ebpf';
  const cgroup = join(cgroupRoot ?? '/nonexistent', `edgeway-crash-${lab.tag}`);
  const pinDir = `/sys/fs/bpf/ewcrash${lab.tag}`;
  let topo: Topology;
  let relay: NsProcess | undefined;
  let dir = '';
  const agents: Partial<Record<Host, NsProcess>> = {};
  const logs: Record<Host, string[]> = { a1: [], b1: [] };
  const cfg = (h: string): string => join(dir, `${h}.json`);
  const catalogFile = (h: Host): string => join(dir, `catalog-${h}.yaml`);
  const state = async (h: string): Promise<TunnelState | undefined> => {
    try { return JSON.parse(await readFile(join(dir, h, 'tunnel-state.json'), 'utf8')) as TunnelState; } catch { return undefined; }
  };
  const until = async (pred: () => Promise<boolean> | boolean, what: string, ms = 60_000): Promise<void> => {
    const end = Date.now() + ms;
    while (!(await pred())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const startAgent = (h: Host): NsProcess => {
    // ebpf: the host's cgroup2 and bpffs, as a hostNetwork pod sees them (nsenter --net).
    const p = lab.spawn(topo.ns[h], node, ['bin/edgeway.js', 'agent', '--config', cfg(h)], process.env, { hostMounts: h === 'a1' && ebpf });
    p.child.stderr?.on('data', (d: Buffer) => { for (const l of d.toString().split('\n')) if (l.trim()) logs[h].push(l); });
    agents[h] = p;
    return p;
  };
  const exitOf = (p: NsProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => new Promise((resolve) => {
    if (p.child.exitCode !== null || p.child.signalCode !== null) { resolve({ code: p.child.exitCode, signal: p.child.signalCode }); return; }
    p.child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const nftTables = async (h: Host): Promise<string[]> => (await lab.exec(topo.ns[h], 'nft', ['list', 'tables'])).stdout.split('\n').filter((l) => l.includes('edgeway'));
  /** Our nft tables, or in iptables mode the jumps into our chains in either backend (saves create no tables). */
  const ruleset = async (h: Host): Promise<string[]> => {
    if (!(h === 'a1' && a1Mode === 'iptables')) return nftTables(h);
    const out: string[] = [];
    for (const save of ['iptables-legacy-save', 'iptables-nft-save']) {
      const r = await lab.exec(topo.ns[h], save, []).catch(() => ({ stdout: '' }));
      out.push(...r.stdout.split('\n').filter((l) => /^-A (PREROUTING|OUTPUT|INPUT|FORWARD) .*-j EDGEWAY-/.test(l)).map((l) => `${save}: ${l}`));
    }
    return out.sort();
  };
  /** Programs attached to the test cgroup (ebpf mode), by attach type: a restart must not add a second set. */
  const attached = async (): Promise<string[]> => {
    const out = (await run('bpftool', ['-j', 'cgroup', 'show', cgroup])).stdout.trim() || '[]';
    return (JSON.parse(out) as { attach_type: string }[]).map((p) => p.attach_type).sort();
  };
  const reserved = async (h: Host): Promise<boolean> => (await state(h))?.relays[0]?.reserved === true;

  beforeAll(async () => {
    topo = await buildTopology(lab);
    if (ebpf) mkdirSync(cgroup);
    dir = await mkdtemp(join(tmpdir(), 'ew-agent-crash-'));
    const base = (name: string): object => ({
      nodeName: name, stateDir: join(dir, name), log: { level: 'info' }, metrics: { listen: '' },
      sources: { kubernetes: { enabled: false }, static: { paths: [catalogFile(name as Host)], pollMs: 200 } },
      dataplane: {
        mode: name === 'relay' ? 'none' : name === 'a1' ? a1Mode : 'nftables', minSyncIntervalMs: 20,
        ...(name === 'a1' && ebpf ? { ebpf: { cgroupPath: cgroup, pinDir } } : {}),
      },
      accelerator: { mode: 'node' },
      dns: { enabled: false },
      proxy: { connectTimeoutMs: 3000 },
      tunnel: { listenPort: PORT, directDialTimeoutMs: 1000, ...(name === 'relay' ? {} : { relayNodes: [{ nodeName: 'relay', advertiseAddress: [`${IP.relay}:${PORT}`] }] }) },
    });
    for (const h of ['relay', 'a1', 'b1']) await writeFile(cfg(h), JSON.stringify(base(h)));
    for (const h of ['a1', 'b1'] as const) await writeFile(catalogFile(h), catalog);
    relay = lab.spawn(topo.ns.relay, node, ['bin/edgeway.js', 'relay', '--config', cfg('relay')]);
    await relay.waitFor(/^relay /, 30_000);
    await lab.spawn(topo.ns.b1, node, ['test/helpers/fixtures/echo-server.mjs', '--id', 'b1', '--port', '8080', '--host', '0.0.0.0']).waitFor(/listening/);
    for (const h of ['b1', 'a1'] as const) startAgent(h);
    await until(async () => (await reserved('a1')) && (await reserved('b1')), 'both agents reserved on the relay');
  }, 150_000);

  afterAll(async () => {
    await lab.destroy();
    if (ebpf) {
      // Programs and pins go with `edgeway cleanup`, run in a fresh namespace (it also removes the nft table there).
      const clean = new Lab();
      try {
        const ns = await clean.ns('c');
        if (dir) await run('nsenter', [`--net=/run/netns/${ns}`, node, 'bin/edgeway.js', 'cleanup', '--config', cfg('a1')]).catch(() => undefined);
      } finally {
        await clean.destroy();
      }
      for (let i = 0; i < 20 && existsSync(cgroup); i++) {
        try { rmdirSync(cgroup); } catch { await new Promise((r) => setTimeout(r, 100)); }
      }
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Run the flow loop on a1 around `event`; returns the flow lines. */
  const aroundEvent = async (seed: string, event: (flows: () => FlowLine[]) => Promise<void>): Promise<FlowLine[]> => {
    const stop = join(dir, `stop-${seed}`);
    // In the socket-LB cgroup in ebpf mode: its connects are translated by the agent's programs.
    const loop = lab.spawn(topo.ns.a1, node, ['test/e2e/fixtures/flow-loop.mjs', '--host', '10.96.0.30', '--port', '80', '--bytes', String(256 * 1024), '--seed', seed, '--stop', stop, '--timeout-ms', '5000'], process.env, ebpf ? { cgroup } : {});
    const parsed = (): FlowLine[] => loop.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as FlowLine);
    // Traffic flows before the event.
    await until(() => parsed().filter((f) => f.ok).length >= 3, 'three correct flows before the kill');
    await event(parsed);
    await writeFile(stop, '');
    const done = exitOf(loop);
    expect((await done).code).toBe(0);
    return parsed();
  };

  it.each(['b1', 'a1'] as const)('kill -9 %s mid-traffic: it comes back on its state dir, the other redials, flows recover', async (h) => {
    const other: Host = h === 'a1' ? 'b1' : 'a1';
    const before = await state(h);
    expect(before?.peerId).toBeTruthy();
    const rules = await ruleset(h);
    expect(rules.length).toBeGreaterThan(0);
    if (!(h === 'a1' && a1Mode === 'iptables')) expect(rules).toHaveLength(1);
    const progs = h === 'a1' && ebpf ? await attached() : [];
    if (h === 'a1' && ebpf) {
      expect(progs.length).toBeGreaterThan(0);
      expect(existsSync(pinDir)).toBe(true);
    }
    const victim = agents[h]!;
    let killedAt = 0;
    let restartedAt = 0;
    const flows = await aroundEvent(`crash-${h}`, async (sofar) => {
      killedAt = Date.now();
      process.kill(victim.child.pid!, 'SIGKILL');
      expect((await exitOf(victim)).signal).toBe('SIGKILL');
      await victim.stop();
      // What the killed process left stays in the kernel: its nft table or iptables chains (and, in ebpf mode, its pinned, attached programs).
      expect(await ruleset(h)).toEqual(rules);
      if (h === 'a1' && ebpf) expect(await attached()).toEqual(progs);
      // The other agent notices: its connections to the dead peer go.
      await until(async () => !(await state(other))?.peers.some((p) => p.peerId === before!.peerId), `${other} dropping its connection to the killed ${h}`);
      // Its source cannot answer over the restart: only the persisted catalog can serve.
      await rename(catalogFile(h), `${catalogFile(h)}.hidden`);
      logs[h].length = 0;
      restartedAt = Date.now();
      startAgent(h);
      await until(() => logs[h].some((l) => l.includes('serving the persisted catalog until the sources sync')), `${h} serving its persisted catalog`);
      // Flows recover while the source is still down.
      await until(() => sofar().some((f) => f.ok && f.start >= restartedAt), `a correct flow after ${h} restarted`, 90_000);
      await rename(`${catalogFile(h)}.hidden`, catalogFile(h));
      // And keep flowing once the source answers again.
      const n = sofar().length;
      await until(() => sofar().slice(n).filter((f) => f.ok).length >= 3, 'correct flows with the source back');
    });
    const after = await state(h);
    expect(after?.peerId).toBe(before!.peerId);
    expect(await ruleset(h)).toEqual(rules);
    // Reclaimed, not doubled: one program per attach point, as before the kill.
    if (h === 'a1' && ebpf) expect(await attached()).toEqual(progs);
    expect(agents[h]!.child.exitCode).toBeNull();
    // No flow ever got altered bytes back.
    expect(flows.filter((f) => f.err?.startsWith('sha256')), JSON.stringify(flows.filter((f) => !f.ok))).toEqual([]);
    // A cut flow is a reset, never a clean end with bytes missing — except the flows
    // the killed a1 was proxying itself: the kernel closes a dead process's sockets
    // with FIN when it had read everything (true of any userspace proxy).
    const truncated = flows.filter((f) => f.err?.startsWith('truncated'));
    expect(truncated.filter((f) => h !== 'a1' || f.start >= killedAt), JSON.stringify(truncated)).toEqual([]);
    const firstOk = flows.find((f) => f.ok && f.start >= killedAt);
    expect(firstOk, JSON.stringify(flows.slice(-10))).toBeDefined();
    const failed = flows.filter((f) => !f.ok && f.end >= killedAt).length;
    console.log(`[agent-crash] (a1 ${a1Mode}) kill -9 ${h}: first correct flow ${firstOk!.end - killedAt} ms after the kill (${firstOk!.end - restartedAt} ms after the restart began); ${failed} flows failed meanwhile; ${flows.filter((f) => f.ok && f.start >= firstOk!.start).length} correct flows after recovery (busy 2-core box)`);
    // The other agent is connected to the restarted one again (same peer id).
    await until(async () => (await state(other))?.peers.some((p) => p.peerId === before!.peerId) === true, `${other} reconnected to ${h}`);
  }, 240_000);

  it('every process exits 0 on SIGTERM (the restarted agents and the relay)', async () => {
    for (const [who, p] of [['a1', agents.a1], ['b1', agents.b1], ['relay', relay]] as const) {
      const ex = exitOf(p!);
      p!.child.kill('SIGTERM');
      const r = await Promise.race([ex, new Promise<'hung'>((res) => setTimeout(() => res('hung'), 20_000))]);
      if (r === 'hung') p!.child.kill('SIGKILL');
      expect(r === 'hung' ? 'no exit 20 s after SIGTERM' : r.code, `${who}: ${who === 'relay' ? '' : logs[who].slice(-30).join('\n')}`).toBe(0);
    }
  }, 90_000);
});
