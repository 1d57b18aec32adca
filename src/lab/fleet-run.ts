/**
 * Runs a fleet (fleet.ts) end to end for `npm run bench scale` and its CI variant:
 * relays, backends and agents started in their namespaces, sampled cross-LAN pairs
 * probed through the real path (nftables → proxy → tunnel → far agent → backend),
 * then the figures: time until the mesh serves, agent and relay RSS/CPU, direct vs
 * relayed share, tunnel connections per node, and every process's exit code on
 * SIGTERM. Optional partition step: cut one LAN's uplink, restore it, probe again.
 */
import { createWriteStream, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, type ExitResult, type NsProcess } from './netns.js';
import { backendArgs, buildFleet, fleetCatalogYaml, fleetConfig, planFleet, samplePairs, setUplink, type FleetNet, type FleetOptions, type FleetPlan } from './fleet.js';
import type { FleetProbeResult } from './fleet-probe.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const cli = join(root, 'bin/edgeway.js');
const probeJs = join(root, 'dist/lab/fleet-probe.js');

export interface FleetRunOptions extends FleetOptions {
  /** Cross-LAN targets probed per node. */
  pairsPerNode: number;
  /** Bytes sent per probe flow (sha256-checked by the backend). */
  bytes: number;
  /** Budget of one probing round (ms): a pair not answered by then is a failure. */
  deadlineMs: number;
  /** Probe processes at once. */
  probeConcurrency: number;
  /** Cut LAN 0's uplink for this long (ms), restore it and probe again; 0 = skip. */
  partitionMs: number;
  /** Kill relay 0 with SIGKILL, restart it after this long (ms) and probe every pair again; undefined = skip. */
  relayRestartMs?: number;
  /** Kill one agent (node 1) with SIGKILL, restart it on its state dir and probe its pairs again. */
  agentCrash?: boolean;
  /**
   * Agents started at once; the next batch starts when these have joined a relay
   * (reservation held, from tunnel-state.json). Default: all at once. Start-up is
   * 2.5–4 CPU-s per agent, so on a small box a batch keeps the load honest.
   */
  startBatch?: number;
  /**
   * Once every agent holds a reservation, measure this long with no traffic: each
   * agent's and relay's CPU as a share of a core (what an idle fleet costs). 0 = skip.
   */
  idleMs?: number;
  log?: (line: string) => void;
  /** Agents' and relays' log level (default warn) and a directory to keep their logs in. */
  logLevel?: string;
  logDir?: string;
}

export interface ProcFigures { rssMiB: number; cpuSeconds: number }

export interface FleetReport {
  options: Omit<FleetRunOptions, 'log'>;
  pairs: number;
  pairsOk: number;
  failures: FleetProbeResult[];
  /** From the agents' spawn until every sampled pair answered correctly. */
  meshServesMs: number;
  firstOkMs: number[];
  warmMs: number[];
  /** Flows that failed after their pair had answered once (counted, then retried). */
  warmResets: number;
  /** What those flows saw (first one per pair). */
  warmErrors: string[];
  agents: ProcFigures[];
  relays: ProcFigures[];
  /** Peers per node with a direct / only a relayed connection (from tunnel-state.json). */
  peersDirect: number[];
  peersRelayed: number[];
  /** libp2p peer connections per node (relays excluded) and the distinct peers that node's probes used. */
  connectionsPerNode: number[];
  peersUsedPerNode: number[];
  /** From the first agent spawned until the last one held a relay reservation (batched start only). */
  allJoinedMs?: number;
  /** Idle CPU, % of one core, over `idleMs` once all agents joined (no traffic). */
  idle?: { ms: number; agentPct: number[]; relayPct: number[] };
  /** Data channels by path (lan / punched / relayed) over all nodes, from tunnel-state.json. */
  channelPaths: Record<string, number>;
  partition?: StepReport & { cutMs: number };
  relayRestart?: StepReport & { downMs: number };
  agentCrash?: StepReport & { node: string; restartedMs: number };
  exitCodes: { agents: ExitResult[]; relays: ExitResult[] };
  /** Warn/error log lines of the agents and relays (first 40, by process). */
  problems: { who: string; line: string }[];
}

/** A disruption and the probing round after it: did every pair answer again, and by when. */
export interface StepReport { pairs: number; pairsOk: number; recoveredMs: number; warmResets: number; failures: FleetProbeResult[] }

interface TunnelStateFile { peers?: { nodeName?: string; paths: string[]; channel?: string }[]; relays?: { reserved: boolean }[] }

async function readState(dir: string, node: string): Promise<TunnelStateFile | undefined> {
  try { return JSON.parse(await readFile(join(dir, node, 'tunnel-state.json'), 'utf8')) as TunnelStateFile; } catch { return undefined; }
}

/** Wait (bounded) until every listed node holds a relay reservation. */
async function joined(dir: string, nodes: readonly string[], timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  const waiting = new Set(nodes);
  while (waiting.size > 0 && Date.now() < end) {
    for (const n of [...waiting]) if ((await readState(dir, n))?.relays?.some((r) => r.reserved)) waiting.delete(n);
    if (waiting.size > 0) await new Promise((r) => setTimeout(r, 500));
  }
}

function stepReport(results: FleetProbeResult[]): StepReport {
  const ok = results.filter((r) => r.ok);
  return { pairs: results.length, pairsOk: ok.length, recoveredMs: Math.max(0, ...ok.map((r) => r.firstOkMs ?? 0)), warmResets: results.reduce((n, r) => n + r.warmResets, 0), failures: results.filter((r) => !r.ok) };
}

function procFigures(pid: number | undefined): ProcFigures | undefined {
  if (!pid) return undefined;
  try {
    // Synchronous: tiny files, and the figures of one moment stay together.
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
    // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { rssMiB: rss, cpuSeconds: (Number(f[11]) + Number(f[12])) / 100 };
  } catch {
    return undefined;
  }
}

async function pool<T, R>(items: readonly T[], n: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) { const i = next++; out[i] = await fn(items[i]!); }
  }));
  return out;
}

/** Keep a process's warn/error JSON log lines (pino levels ≥ 40) and its non-JSON stderr. */
function collectProblems(p: NsProcess, who: string, into: { who: string; line: string }[], logDir?: string): void {
  let buf = '';
  const file = logDir ? createWriteStream(join(logDir, `${who}.log`)) : undefined;
  // An exit other than 0 (a crash, or the SIGKILL of a disruption step) is a problem line too, with its time.
  p.child.once('exit', (code, signal) => { if (code !== 0) into.push({ who, line: `${new Date().toISOString()} exited: code ${code}, signal ${signal}` }); });
  p.child.stderr?.on('data', (d: Buffer) => {
    file?.write(d);
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const level = /^\{"level":(\d+)/.exec(line)?.[1];
      if ((level === undefined || Number(level) >= 40) && line.trim() && into.length < 40) into.push({ who, line: line.slice(0, 400) });
    }
  });
}

async function probeAll(lab: Lab, plan: FleetPlan, net: FleetNet, pairs: [number, number][], o: FleetRunOptions, seed: number): Promise<FleetProbeResult[]> {
  const bySource = new Map<number, number[]>();
  for (const [from, to] of pairs) bySource.set(from, [...(bySource.get(from) ?? []), to]);
  // One budget for the whole round: probes started later get what is left of it.
  const end = Date.now() + o.deadlineMs;
  const runs = await pool([...bySource], o.probeConcurrency, async ([from, tos]) => {
    const targets = tos.map((t) => `${plan.nodes[t]!.serviceIP}=${plan.nodes[t]!.name}`).join(',');
    const left = Math.max(5000, end - Date.now());
    const r = await lab.exec(net.nodes[from]!, process.execPath, [probeJs, '--targets', targets, '--bytes', String(o.bytes), '--seed', String(seed + from * 1000), '--deadline-ms', String(left)], { timeoutMs: left + 60_000 });
    const offset = o.deadlineMs - left; // ms into the round when this probe started
    return (JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '[]') as FleetProbeResult[]).map((x) => (x.firstOkMs === undefined ? x : { ...x, firstOkMs: x.firstOkMs + Math.max(0, offset) }));
  });
  return runs.flat();
}

export async function runFleet(o: FleetRunOptions): Promise<FleetReport> {
  const log = o.log ?? (() => undefined);
  const plan = planFleet(o);
  const lab = new Lab();
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-fleet-'));
  const agents: NsProcess[] = [];
  const relays: NsProcess[] = [];
  const backends: NsProcess[] = [];
  const problems: { who: string; line: string }[] = [];
  try {
    log(`building ${o.nodes} nodes in ${o.lans} LANs behind NAT, ${o.relays} relay(s)`);
    const net = await buildFleet(lab, plan);
    const psk = join(dir, 'swarm.key');
    await writeFile(psk, `/key/swarm/psk/1.0.0/\n/base16/\n${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    await writeFile(join(dir, 'catalog.yaml'), fleetCatalogYaml(plan));
    for (const who of [...plan.relays, ...plan.nodes]) await writeFile(join(dir, `${who.name}.json`), JSON.stringify({ ...fleetConfig(plan, who, dir, psk), log: { level: o.logLevel ?? 'warn' } }));

    for (const [i, r] of plan.relays.entries()) {
      relays.push(lab.spawn(net.relays[i]!, process.execPath, [cli, 'relay', '--config', join(dir, `${r.name}.json`)]));
      collectProblems(relays.at(-1)!, r.name, problems, o.logDir);
    }
    await Promise.all(relays.map((r) => r.waitFor(/^relay /, 120_000)));
    for (const [i, n] of plan.nodes.entries()) backends.push(lab.spawn(net.nodes[i]!, 'socat', backendArgs(n)));

    const batch = Math.max(1, o.startBatch ?? plan.nodes.length);
    log(`starting agents${batch < plan.nodes.length ? ` ${batch} at a time` : ''}`);
    const t0 = Date.now();
    const startAgent = (i: number, suffix = ''): NsProcess => {
      const n = plan.nodes[i]!;
      const p = lab.spawn(net.nodes[i]!, process.execPath, [cli, 'agent', '--config', join(dir, `${n.name}.json`)]);
      collectProblems(p, `${n.name}${suffix}`, problems, o.logDir);
      return p;
    };
    for (let i = 0; i < plan.nodes.length; i += batch) {
      const names = plan.nodes.slice(i, i + batch).map((n) => n.name);
      for (let k = i; k < i + names.length; k++) agents.push(startAgent(k));
      if (batch < plan.nodes.length) await joined(dir, names, 120_000);
    }
    const allJoinedMs = batch < plan.nodes.length ? Date.now() - t0 : undefined;
    let idle: FleetReport['idle'];
    if (o.idleMs) {
      await joined(dir, plan.nodes.map((n) => n.name), 120_000);
      log(`all joined; measuring ${o.idleMs / 1000} s of idle CPU`);
      const cpu = (ps: NsProcess[]): number[] => ps.map((p) => procFigures(p.child.pid)?.cpuSeconds ?? NaN);
      const [a0, r0] = [cpu(agents), cpu(relays)];
      await new Promise((r) => setTimeout(r, o.idleMs));
      const pct = (before: number[], after: number[]): number[] => after.map((x, i) => (100 * (x - before[i]!)) / (o.idleMs! / 1000)).filter(Number.isFinite);
      idle = { ms: o.idleMs, agentPct: pct(a0, cpu(agents)), relayPct: pct(r0, cpu(relays)) };
    }
    const pairs = samplePairs(plan, o.pairsPerNode, 7);
    log(`probing ${pairs.length} cross-LAN pairs (${o.bytes} bytes each, sha256 checked)`);
    const probeStart = Date.now();
    const results = await probeAll(lab, plan, net, pairs, o, 1);
    const okResults = results.filter((r) => r.ok);
    const meshServesMs = (probeStart - t0) + Math.max(0, ...okResults.map((r) => r.firstOkMs ?? 0));
    // Let state files catch up (written every second), then read them and /proc.
    await new Promise((r) => setTimeout(r, 2500));
    const states = await Promise.all(plan.nodes.map(async (n) => (await readState(dir, n.name)) ?? {}));
    const channelPaths: Record<string, number> = {};
    for (const s of states) for (const p of s.peers ?? []) if (p.channel) channelPaths[p.channel] = (channelPaths[p.channel] ?? 0) + 1;
    const used = new Map<number, Set<number>>();
    for (const [from, to] of pairs) used.set(from, (used.get(from) ?? new Set()).add(to));
    const report: FleetReport = {
      options: { nodes: o.nodes, lans: o.lans, relays: o.relays, pairsPerNode: o.pairsPerNode, bytes: o.bytes, deadlineMs: o.deadlineMs, probeConcurrency: o.probeConcurrency, partitionMs: o.partitionMs, ...(o.relayRestartMs !== undefined ? { relayRestartMs: o.relayRestartMs } : {}), ...(o.agentCrash ? { agentCrash: true } : {}), ...(o.startBatch ? { startBatch: o.startBatch } : {}) },
      pairs: pairs.length,
      pairsOk: okResults.length,
      failures: results.filter((r) => !r.ok),
      meshServesMs,
      firstOkMs: okResults.map((r) => r.firstOkMs ?? 0),
      warmMs: okResults.map((r) => r.warmMs ?? 0),
      warmResets: results.reduce((n, r) => n + r.warmResets, 0),
      warmErrors: results.filter((r) => r.warmError).map((r) => `${r.node} via ${r.target}: ${r.warmError}`),
      agents: agents.map((a) => procFigures(a.child.pid)).filter((x): x is ProcFigures => !!x),
      relays: relays.map((r) => procFigures(r.child.pid)).filter((x): x is ProcFigures => !!x),
      peersDirect: states.map((s) => (s.peers ?? []).filter((p) => p.paths.includes('direct')).length),
      peersRelayed: states.map((s) => (s.peers ?? []).filter((p) => !p.paths.includes('direct')).length),
      connectionsPerNode: states.map((s) => (s.peers ?? []).length),
      channelPaths,
      ...(allJoinedMs !== undefined ? { allJoinedMs } : {}),
      ...(idle ? { idle } : {}),
      // Inbound flows make peers too: a node's peers are the ones it dialled and the ones that dialled it.
      peersUsedPerNode: plan.nodes.map((n) => new Set([...(used.get(n.index) ?? [])].concat(pairs.filter(([, to]) => to === n.index).map(([from]) => from))).size),
      exitCodes: { agents: [], relays: [] },
      problems,
    };

    if (o.partitionMs > 0) {
      log(`cutting LAN 0's uplink for ${o.partitionMs} ms`);
      await setUplink(lab, net, 0, false);
      await new Promise((r) => setTimeout(r, o.partitionMs));
      await setUplink(lab, net, 0, true);
      const cutPairs = pairs.filter(([from, to]) => plan.nodes[from]!.lan === 0 || plan.nodes[to]!.lan === 0);
      report.partition = { cutMs: o.partitionMs, ...stepReport(await probeAll(lab, plan, net, cutPairs, o, 100_000)) };
    }

    if (o.relayRestartMs !== undefined) {
      // The relay dies without a goodbye; its reservations and blind pairs go with it.
      log(`killing relay0 (SIGKILL), restarting it after ${o.relayRestartMs} ms`);
      await relays[0]!.kill();
      await new Promise((r) => setTimeout(r, o.relayRestartMs));
      relays[0] = lab.spawn(net.relays[0]!, process.execPath, [cli, 'relay', '--config', join(dir, `${plan.relays[0]!.name}.json`)]);
      collectProblems(relays[0], `${plan.relays[0]!.name}-restarted`, problems, o.logDir);
      await relays[0].waitFor(/^relay /, 120_000);
      report.relayRestart = { downMs: o.relayRestartMs, ...stepReport(await probeAll(lab, plan, net, pairs, o, 200_000)) };
    }

    if (o.agentCrash) {
      // Node 1 dies mid-life (no cleanup: its nft table, sockets and state files stay
      // as they were) and is started again on the same state dir.
      const victim = plan.nodes[Math.min(1, plan.nodes.length - 1)]!;
      log(`killing ${victim.name}'s agent (SIGKILL) and restarting it`);
      const tk = Date.now();
      await agents[victim.index]!.kill();
      agents[victim.index] = startAgent(victim.index, '-restarted');
      const restartedMs = Date.now() - tk;
      const itsPairs = pairs.filter(([from, to]) => from === victim.index || to === victim.index);
      report.agentCrash = { node: victim.name, restartedMs, ...stepReport(await probeAll(lab, plan, net, itsPairs, o, 300_000)) };
    }

    log('stopping');
    report.exitCodes.agents = await Promise.all(agents.map((a) => a.exit(15_000)));
    report.exitCodes.relays = await Promise.all(relays.map((r) => r.exit(15_000)));
    return report;
  } finally {
    await lab.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}

/** min / median / max of a list (NaN when empty). */
export function spread(xs: readonly number[]): { min: number; median: number; max: number } {
  if (xs.length === 0) return { min: NaN, median: NaN, max: NaN };
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0]!, median: s[Math.floor(s.length / 2)]!, max: s.at(-1)! };
}
