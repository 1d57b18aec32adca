/**
 * The soak (`npm run bench soak`, test/e2e/soak.kernel.test.ts): the two-LAN NAT
 * lab (topology.ts) with a relay and the real agents (PSK, tunnel, data channel,
 * addon when built). A load generator on a1 (soak-client.ts) drives mixed traffic
 * by ClusterIP through kernel → a1's proxy → tunnel → b1's agent → backend
 * (soak-backend.ts): it ramps to `flows` held TCP flows on a1's agent, holds them
 * under TCP/UDP/HTTP churn, pushes `extra` flows past the fd limit (EMFILE must be
 * counted, refused flows fail cleanly, the agent must not spin), releases every
 * held flow (sha256 checked), checks new flows succeed again, and waits for fds,
 * streams, channel connections and active resources to come back to the baseline.
 * Every process's exit code on SIGTERM and every warn/error log line are reported.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Lab, run, type ExitResult, type NsProcess } from './netns.js';
import { buildTopology, IP } from './topology.js';
import { soakCatalog, soakConfig, type SoakHost, METRICS_PORT, SVC } from './soak-plan.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const cli = join(root, 'bin/edgeway.js');

export interface SoakOptions {
  /** Held TCP flows on a1's agent. */
  flows: number;
  /** Flows opened past the hold (should meet the fd limit). */
  extra: number;
  /** How long the flows are held, with churn every `churnEveryMs`. */
  holdMs: number;
  churnEveryMs: number;
  /** Flows of each kind per churn round. */
  churn: number;
  /** How long a1's agent's CPU is sampled at the limit (default 10 s). */
  atLimitMs?: number;
  /**
   * The agents' accelerator (default auto). A flow holds 2 fds on a1 either way (the
   * addon's pool owns the sockets it forwards; src/native/README.md), so 9,000 flows
   * fit under a 20,000 fd limit in both modes.
   */
  accelerator?: 'auto' | 'off';
  /** Lower a1's agent's fd limit (soft and hard) with prlimit; undefined = the process default. */
  fdLimit?: number;
  /** fds above the baseline still counted as "back to baseline". */
  fdTolerance: number;
  /** Keep each process's log (stderr) in this directory, at `logLevel` (default warn). */
  logDir?: string;
  logLevel?: string;
  log?: (line: string) => void;
}

export interface Sample { t: number; phase: string; fds: Record<SoakHost, number>; rssMiB: Record<SoakHost, number>; cpuSeconds: Record<SoakHost, number> }
export interface Tally { ok: number; failed: number; bad: number; errors: Record<string, number> }
export interface MixResult { tcp: Tally; udp: Tally; http: Tally; ms: number }
/** Metrics of one agent at one moment (undefined when it could not be scraped). */
export type Metrics = Record<string, number>;

export interface SoakReport {
  options: Omit<SoakOptions, 'log'>;
  fdLimits: Record<SoakHost, string>;
  warmup: MixResult;
  baseline: { sample: Sample; metrics: Record<'a1' | 'b1', Metrics> };
  ramp: Tally & { held: number; ms: number };
  holdMix: MixResult[];
  past: Tally & { held: number; ms: number };
  /** a1's agent CPU while at the limit (cpu-s per wall-s over `atLimitMs`). */
  atLimitCpu: number;
  atLimitMs: number;
  release: Tally & { lostWhileHeld: Record<string, number>; ms: number };
  /** The last recovery round (the first clean one, unless the budget ran out), rounds tried, ms from release to its end. */
  recovery: MixResult;
  recoveryRounds: number;
  recoveryMs: number;
  after: { sample: Sample; metrics: Record<'a1' | 'b1', Metrics>; settledMs: number };
  samples: Sample[];
  /** On SIGTERM: the code, or the signal that ended it (netns.ts `stopChild`). */
  exitCodes: Record<string, ExitResult>;
  /** Warn/error log lines of the agents and the relay; `expected` = refusals for lack of fds. */
  problems: { who: string; line: string; expected: boolean }[];
}

const HOSTS: readonly SoakHost[] = ['a1', 'b1', 'relay'];
/** How long new flows may keep failing after the release (reconnects to the relay and the peer back off). */
export const RECOVERY_BUDGET_MS = 60_000;
/** Log lines that the fd limit is expected to cause (the refusals themselves). */
const EXPECTED = /file descriptors exhausted|EMFILE|ENFILE/;

function procOf(pid: number): { fds: number; rssMiB: number; cpuSeconds: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { fds: readdirSync(`/proc/${pid}/fd`).length, rssMiB: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024, cpuSeconds: (Number(f[11]) + Number(f[12])) / 100 };
  } catch {
    return { fds: NaN, rssMiB: NaN, cpuSeconds: NaN };
  }
}

/** The series the soak compares, summed over labels (active resources kept by type). */
export function pickMetrics(text: string): Metrics {
  const out: Metrics = {};
  const add = (k: string, v: number): void => { out[k] = (out[k] ?? 0) + v; };
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line) continue;
    const name = line.slice(0, line.search(/[{ ]/));
    const v = Number(line.split(' ').at(-1));
    if (name === 'edgeway_process_nodejs_active_resources') add(`resources:${/type="([^"]*)"/.exec(line)?.[1] ?? ''}`, v);
    else if (name === 'edgeway_tunnel_streams_open' || name === 'edgeway_tunnel_channel_warm_connections' || name === 'edgeway_proxy_active_flows'
      || name === 'edgeway_process_open_fds' || name === 'edgeway_process_nodejs_active_handles' || name === 'edgeway_tunnel_peers'
      // Where RSS went: live JS heap vs buffers outside it (a grown RSS with both back is the allocator keeping pages).
      || name === 'edgeway_process_nodejs_heap_size_used_bytes' || name === 'edgeway_process_nodejs_heap_size_total_bytes' || name === 'edgeway_process_nodejs_external_memory_bytes') add(name, v);
    else if (name === 'edgeway_proxy_fd_exhausted_seconds_total') add(name, v);
    else if (name === 'edgeway_proxy_accept_errors_total') add(`${name}:${/code="([^"]*)"/.exec(line)?.[1] ?? ''}`, v);
    else if (name === 'edgeway_proxy_drops_total' || name === 'edgeway_proxy_connections_total') add(`${name}:${/(?:reason|result)="([^"]*)"/.exec(line)?.[1] ?? ''}`, v);
    else if (name === 'edgeway_tunnel_refusals_total') add(`${name}:${/reason="([^"]*)"/.exec(line)?.[1] ?? ''}`, v);
  }
  return out;
}

export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  const log = o.log ?? (() => undefined);
  const lab = new Lab();
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-soak-'));
  const procs: Partial<Record<SoakHost, NsProcess>> = {};
  const problems: SoakReport['problems'] = [];
  let client: ChildProcess | undefined;
  try {
    // Firewalled NATs: hole punching can work, so the relay need not carry every flow.
    const topo = await buildTopology(lab, { firewall: true });
    const ns: Record<SoakHost, string> = { a1: topo.ns.a1, b1: topo.ns.b1, relay: topo.ns.relay };
    await writeFile(join(dir, 'swarm.key'), `/key/swarm/psk/1.0.0/\n/base16/\n${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    await writeFile(join(dir, 'catalog.yaml'), soakCatalog());
    for (const h of HOSTS) await writeFile(join(dir, `${h}.json`), JSON.stringify({ ...soakConfig(h, dir, o.flows + o.extra, o.accelerator), log: { level: o.logLevel ?? 'warn' } }));
    const watch = (h: SoakHost, p: NsProcess): void => {
      let buf = '';
      const file = o.logDir ? createWriteStream(join(o.logDir, `${h}.log`)) : undefined;
      p.child.stderr?.on('data', (d: Buffer) => {
        file?.write(d);
        buf += d.toString();
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          const level = /^\{"level":(\d+)/.exec(line)?.[1];
          if ((level === undefined || Number(level) >= 40) && line.trim() && problems.length < 200) problems.push({ who: h, line: line.slice(0, 400), expected: EXPECTED.test(line) });
        }
      });
    };
    procs.relay = lab.spawn(ns.relay, process.execPath, [cli, 'relay', '--config', join(dir, 'relay.json')]);
    watch('relay', procs.relay);
    await procs.relay.waitFor(/^relay /, 120_000);
    await lab.spawn(ns.b1, process.execPath, [join(root, 'dist/lab/soak-backend.js'), '--host', IP.b1]).waitFor(/^listening/, 30_000);
    // Stacks with process warnings (a MaxListeners warning names its caller).
    const env = { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --trace-warnings`.trim() };
    for (const h of ['b1', 'a1'] as const) { procs[h] = lab.spawn(ns[h], process.execPath, [cli, 'agent', '--config', join(dir, `${h}.json`)], env); watch(h, procs[h]); }
    const pid = (h: SoakHost): number => procs[h]!.child.pid!;
    await waitReserved(dir, procs);
    const fdLimits = {} as Record<SoakHost, string>;
    if (o.fdLimit) await run('prlimit', ['--pid', String(pid('a1')), `--nofile=${o.fdLimit}:${o.fdLimit}`]);
    for (const h of HOSTS) fdLimits[h] = (/Max open files\s+(\d+)\s+(\d+)/.exec(readFileSync(`/proc/${pid(h)}/limits`, 'utf8')) ?? []).slice(1).join('/');
    log(`fd limits (soft/hard): ${JSON.stringify(fdLimits)}`);

    const t0 = Date.now();
    const samples: Sample[] = [];
    const sample = (phase: string): Sample => {
      const s: Sample = { t: Date.now() - t0, phase, fds: {} as Sample['fds'], rssMiB: {} as Sample['rssMiB'], cpuSeconds: {} as Sample['cpuSeconds'] };
      for (const h of HOSTS) { const p = procOf(pid(h)); s.fds[h] = p.fds; s.rssMiB[h] = p.rssMiB; s.cpuSeconds[h] = p.cpuSeconds; }
      samples.push(s);
      return s;
    };
    const scrape = async (h: 'a1' | 'b1'): Promise<Metrics> => {
      const r = await lab.exec(ns[h], 'curl', ['-sf', '--max-time', '10', `http://127.0.0.1:${METRICS_PORT}/metrics`], { timeoutMs: 20_000 }).catch(() => undefined);
      return r ? pickMetrics(r.stdout) : {};
    };

    client = spawn('ip', ['netns', 'exec', ns.a1, process.execPath, join(root, 'dist/lab/soak-client.js'), '--tcp', SVC.echo, '--udp', SVC.udp, '--http', SVC.web], { stdio: ['pipe', 'pipe', 'inherit'] });
    const answers: ((l: string) => void)[] = [];
    createInterface({ input: client.stdout! }).on('line', (l) => answers.shift()?.(l));
    const cmd = <T>(line: string): Promise<T> => new Promise<T>((resolve, reject) => {
      const onExit = (): void => reject(new Error(`load generator exited (${client!.exitCode}) during "${line}"`));
      client!.once('exit', onExit);
      answers.push((l) => { client!.off('exit', onExit); resolve(JSON.parse(l) as T); });
      client!.stdin!.write(`${line}\n`);
    });

    // Warm-up: the first flows wait for the peer dial and the data channel; repeat until a round is clean.
    let warmup = await cmd<MixResult>(`mix ${o.churn}`);
    for (let i = 0; i < 10 && (warmup.tcp.failed + warmup.udp.failed + warmup.http.failed) > 0; i++) {
      await new Promise((r) => setTimeout(r, 2000));
      warmup = await cmd<MixResult>(`mix ${o.churn}`);
    }
    log(`warm-up: ${JSON.stringify(warmup)}`);
    await new Promise((r) => setTimeout(r, 3000));
    const baseline = { sample: sample('baseline'), metrics: { a1: await scrape('a1'), b1: await scrape('b1') } };
    log(`baseline: fds ${JSON.stringify(baseline.sample.fds)}`);

    log(`ramp to ${o.flows} held flows`);
    const ramp: SoakReport['ramp'] = { ok: 0, failed: 0, bad: 0, errors: {}, held: 0, ms: 0 };
    const step = Math.max(100, Math.ceil(o.flows / 10));
    for (let n = 0; n < o.flows; n += step) {
      const r = await cmd<SoakReport['ramp']>(`open ${Math.min(step, o.flows - n)}`);
      merge(ramp, r);
      ramp.held = r.held;
      ramp.ms += r.ms;
      sample('ramp');
    }
    log(`ramp: ${JSON.stringify(ramp)}`);

    const holdMix: MixResult[] = [];
    for (const end = Date.now() + o.holdMs; Date.now() < end;) {
      holdMix.push(await cmd<MixResult>(`mix ${o.churn}`));
      sample('hold');
      await new Promise((r) => setTimeout(r, Math.max(0, Math.min(o.churnEveryMs, end - Date.now()))));
    }

    log(`past the limit: ${o.extra} more flows`);
    const past = await cmd<SoakReport['past']>(`open ${o.extra}`);
    log(`past: ${JSON.stringify(past)}`);
    // At the limit, nothing asked of the agent: it must idle, not spin on accept.
    const atLimitMs = o.atLimitMs ?? 10_000;
    const c0 = sample('limit').cpuSeconds.a1;
    await new Promise((r) => setTimeout(r, atLimitMs));
    const atLimitCpu = (sample('limit').cpuSeconds.a1 - c0) / (atLimitMs / 1000);

    log('release');
    const release = await cmd<SoakReport['release']>('close');
    log(`release: ${JSON.stringify(release)}`);
    sample('release');
    // Recovery: rounds of new flows until one is clean (bounded); the time it took is reported.
    const releasedAt = Date.now();
    let recovery = await cmd<MixResult>(`mix ${o.churn}`);
    let recoveryRounds = 1;
    const failedIn = (m: MixResult): number => m.tcp.failed + m.udp.failed + m.http.failed;
    while (failedIn(recovery) > 0 && Date.now() - releasedAt < RECOVERY_BUDGET_MS) {
      await new Promise((r) => setTimeout(r, 1000));
      recovery = await cmd<MixResult>(`mix ${o.churn}`);
      recoveryRounds++;
    }
    const recoveryMs = Date.now() - releasedAt;
    log(`recovery after ${recoveryRounds} round(s), ${recoveryMs} ms: ${JSON.stringify(recovery)}`);

    // Settle: fds within the tolerance and open streams / flows back to the baseline
    // (bounded wait: idle UDP sessions and warm connections age out), then the closing figures.
    const settleStart = Date.now();
    const open = (m: Metrics): number => (m.edgeway_tunnel_streams_open ?? 0) + (m.edgeway_proxy_active_flows ?? 0);
    while (Date.now() - settleStart < 90_000) {
      const s = sample('settle');
      const [ma, mb] = [await scrape('a1'), await scrape('b1')];
      if (HOSTS.every((h) => s.fds[h] <= baseline.sample.fds[h] + o.fdTolerance) && open(ma) <= open(baseline.metrics.a1) && open(mb) <= open(baseline.metrics.b1)) break;
      await new Promise((r) => setTimeout(r, 2000));
    }
    const after = { sample: sample('after'), metrics: { a1: await scrape('a1'), b1: await scrape('b1') }, settledMs: Date.now() - settleStart };

    client.stdin!.end();
    await new Promise((r) => (client!.exitCode !== null ? r(undefined) : client!.once('exit', r)));
    const exitCodes: Record<string, ExitResult> = {};
    for (const h of ['a1', 'b1', 'relay'] as const) exitCodes[h] = await procs[h]!.exit(20_000);
    return { options: { flows: o.flows, extra: o.extra, holdMs: o.holdMs, churnEveryMs: o.churnEveryMs, churn: o.churn, fdTolerance: o.fdTolerance, ...(o.fdLimit ? { fdLimit: o.fdLimit } : {}) }, fdLimits, warmup, baseline, ramp, holdMix, past, atLimitCpu, atLimitMs, release, recovery, recoveryRounds, recoveryMs, after, samples, exitCodes, problems };
  } finally {
    if (client && client.exitCode === null) client.kill('SIGKILL');
    await lab.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}

function merge(into: Tally, r: Tally): void {
  into.ok += r.ok;
  into.failed += r.failed;
  into.bad += r.bad;
  for (const [k, v] of Object.entries(r.errors)) into.errors[k] = (into.errors[k] ?? 0) + v;
}

async function waitReserved(dir: string, procs: Partial<Record<SoakHost, NsProcess>>): Promise<void> {
  const end = Date.now() + 90_000;
  for (;;) {
    const states = await Promise.all(['a1', 'b1'].map((h) => readFile(join(dir, h, 'tunnel-state.json'), 'utf8').then((t) => JSON.parse(t) as { relays?: { reserved?: boolean }[] }, () => undefined)));
    if (states.every((s) => s?.relays?.[0]?.reserved)) return;
    for (const h of HOSTS) if (procs[h]?.child.exitCode != null) throw new Error(`${h} exited ${procs[h]!.child.exitCode}`);
    if (Date.now() > end) throw new Error(`no relay reservations: ${JSON.stringify(states)}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}
