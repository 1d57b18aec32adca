/**
 * Real network namespaces for kernel tests and the demo: hosts and links that
 * exist only for one run. Names carry a per-run random tag so parallel runs never
 * collide (the demo uses the fixed tag `demo`, which no random hex tag can be, so
 * it can find its own leftovers), and `Lab.destroy()` (call it in afterAll/finally)
 * removes every namespace and kills every process the lab started — also after a
 * failure. Shared by test/ (through test/helpers/netns.ts) and src/demo/; nothing
 * in the agent imports it.
 *
 * IP plan: callers pick 10.x addresses; they exist only inside the lab's namespaces.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const pexec = promisify(execFile);

export interface ExecResult {
  stdout: string;
  stderr: string;
}

/** Run a command; rejects with its stderr in the message on non-zero exit. */
export async function run(cmd: string, args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<ExecResult> {
  if (opts.input !== undefined) {
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
      child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
      child.on('error', (e) => { clearTimeout(timer); reject(e); });
      child.on('close', (code) => {
        clearTimeout(timer);
        if (code === 0) resolve({ stdout, stderr });
        else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr.trim()}`));
      });
      child.stdin.end(opts.input);
    });
  }
  try {
    const r = await pexec(cmd, [...args], { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024 });
    return { stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as Error & { stderr?: string; code?: unknown };
    throw new Error(`${cmd} ${args.join(' ')} failed (${String(e.code)}): ${(e.stderr ?? e.message).trim()}`, { cause: err });
  }
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Why kernel tests cannot run here, or undefined when they can. Printed by skipping tests. */
export function kernelSkipReason(): string | undefined {
  if (process.platform !== 'linux') return 'kernel tests need Linux';
  if (!isRoot()) return 'kernel tests need root (network namespaces, nftables, BPF)';
  return undefined;
}

export interface NsProcess {
  readonly child: ChildProcess;
  /** Lines printed on stdout so far. */
  readonly lines: string[];
  /** Resolve when a stdout line matches (or reject after timeoutMs). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM, SIGKILL after 3 s. */
  stop(): Promise<void>;
  /** SIGTERM, SIGKILL after `killAfterMs`: how it ended (see {@link stopChild}). */
  exit(killAfterMs: number): Promise<ExitResult>;
  /** SIGKILL now and wait for the exit (at once when it is already gone). */
  kill(): Promise<void>;
}

/**
 * How a stopped process ended: its exit code, or what ended it by a signal —
 * `SIGKILL after N ms` (it ignored SIGTERM), `died before the stop: SIGSEGV`, or
 * the signal's name.
 */
export type ExitResult = number | string;

export class Lab {
  /** Per-run tag, part of every name (namespace names stay ≤ 15 chars for veths). */
  readonly tag: string;
  constructor(opts: { tag?: string } = {}) {
    this.tag = opts.tag ?? randomBytes(3).toString('hex');
  }
  private readonly namespaces: string[] = [];
  private readonly procs = new Set<NsProcess>();

  /** Create a namespace `ew<tag><short>` with loopback up; returns its name. */
  async ns(short: string): Promise<string> {
    const name = `ew${this.tag}${short}`;
    await run('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    await this.exec(name, 'ip', ['link', 'set', 'lo', 'up']);
    return name;
  }

  /**
   * Run a command inside a namespace. `cgroup` (a cgroup v2 directory) puts the
   * process in that cgroup first: `ip netns exec` remounts /sys, so the cgroup
   * must be joined before entering the namespace.
   */
  exec(ns: string, cmd: string, args: readonly string[], opts: { input?: string; timeoutMs?: number; cgroup?: string } = {}): Promise<ExecResult> {
    const [c, a] = inNs(ns, cmd, args, opts.cgroup);
    return run(c, a, opts);
  }

  /** Set sysctls inside a namespace (e.g. net.ipv4.ip_forward=1). */
  async sysctl(ns: string, ...kv: string[]): Promise<void> {
    for (const s of kv) await this.exec(ns, 'sysctl', ['-qw', s]);
  }

  /**
   * Connect two namespaces with a veth pair and give each end an address
   * (CIDR notation, e.g. 10.1.0.1/24; IPv6 too). Interface names: `v<tag><n>`.
   */
  private links = 0;
  async link(a: string, aAddr: string | string[], b: string, bAddr: string | string[]): Promise<{ aIf: string; bIf: string }> {
    const n = this.links++;
    const aIf = `va${this.tag}${n}`;
    const bIf = `vb${this.tag}${n}`;
    await run('ip', ['link', 'add', aIf, 'netns', a, 'type', 'veth', 'peer', 'name', bIf, 'netns', b]);
    for (const [ns, ifn, addrs] of [[a, aIf, aAddr], [b, bIf, bAddr]] as const) {
      for (const addr of Array.isArray(addrs) ? addrs : [addrs]) {
        await this.exec(ns, 'ip', ['addr', 'add', addr, 'dev', ifn, ...(addr.includes(':') ? ['nodad'] : [])]);
      }
      await this.exec(ns, 'ip', ['link', 'set', ifn, 'up']);
    }
    return { aIf, bIf };
  }

  /** Add a route inside a namespace, e.g. route(ns, 'default', 'via', '10.1.0.1'). */
  async route(ns: string, ...spec: string[]): Promise<void> {
    await this.exec(ns, 'ip', [...(spec.some((s) => s.includes(':')) ? ['-6'] : []), 'route', 'add', ...spec]);
  }

  /**
   * Start a long-running process inside a namespace. It is killed (SIGTERM, then
   * SIGKILL) by stop() or destroy(). stdout is split into lines for waitFor().
   * `hostMounts` enters only the network namespace (nsenter), keeping the host's
   * /sys (cgroup v2, bpffs) that `ip netns exec` would hide — as a hostNetwork
   * agent sees them.
   */
  spawn(ns: string, cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env, opts: { cgroup?: string; hostMounts?: boolean } = {}): NsProcess {
    const [c, a] = opts.hostMounts ? ['nsenter', [`--net=/run/netns/${ns}`, cmd, ...args]] : inNs(ns, cmd, args, opts.cgroup);
    const child = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], env });
    const lines: string[] = [];
    const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
    let buf = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        for (const w of [...waiters]) if (w.re.test(line)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(line); }
      }
    });
    child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-8192); });
    const proc: NsProcess = {
      child,
      lines,
      waitFor: (re, timeoutMs = 15_000) => {
        const hit = lines.find((l) => re.test(l));
        if (hit !== undefined) return Promise.resolve(hit);
        return new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`timeout waiting for ${re} from ${cmd}; stderr: ${stderr.slice(-2000)}`)), timeoutMs);
          const onExit = (code: number | null): void => { clearTimeout(t); reject(new Error(`${cmd} exited (${code}) before ${re}; stderr: ${stderr.slice(-2000)}`)); };
          child.once('exit', onExit);
          waiters.push({ re, resolve: (l) => { clearTimeout(t); child.off('exit', onExit); resolve(l); } });
        });
      },
      stop: () => stopChild(child).then(() => { this.procs.delete(proc); }),
      exit: (killAfterMs) => stopChild(child, { killAfterMs }).then((r) => { this.procs.delete(proc); return r; }),
      kill: () => stopChild(child, { signal: 'SIGKILL' }).then(() => { this.procs.delete(proc); }),
    };
    this.procs.add(proc);
    return proc;
  }

  /** Kill every process and delete every namespace of this lab. Safe to call twice. */
  async destroy(): Promise<void> {
    await Promise.all([...this.procs].map((p) => p.stop().catch(() => undefined)));
    this.procs.clear();
    for (const ns of this.namespaces.splice(0).reverse()) {
      // Kill anything still running inside (e.g. grandchildren), then delete.
      const pids = await run('ip', ['netns', 'pids', ns]).then((r) => r.stdout.split(/\s+/).filter(Boolean), () => []);
      for (const pid of pids) { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } }
      await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    }
  }

  /** Namespaces this lab currently owns. */
  get names(): readonly string[] {
    return this.namespaces;
  }
}

/** argv that runs `cmd args` inside `ns`, joining `cgroup` (cgroup v2 dir) first when given. */
function inNs(ns: string, cmd: string, args: readonly string[], cgroup?: string): [string, string[]] {
  if (!cgroup) return ['ip', ['netns', 'exec', ns, cmd, ...args]];
  return ['sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec ip netns exec "$@"', cgroup, ns, cmd, ...args]];
}

/**
 * Send `signal` (SIGTERM) to a child and wait for its exit, SIGKILL after
 * `killAfterMs`. A child that has already exited resolves at once: its 'exit' was
 * emitted before, and waiting for it would hang. The result names signals, so a
 * crash or a stop that needed SIGKILL never reads as a clean exit.
 */
export function stopChild(child: ChildProcess, o: { signal?: NodeJS.Signals; killAfterMs?: number } = {}): Promise<ExitResult> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  if (child.signalCode !== null) return Promise.resolve(`died before the stop: ${child.signalCode}`);
  const killAfterMs = o.killAfterMs ?? 3000;
  return new Promise((resolve) => {
    let killed = false;
    const t = setTimeout(() => { killed = true; child.kill('SIGKILL'); }, killAfterMs);
    child.once('exit', (code, signal) => { clearTimeout(t); resolve(code ?? (killed ? `SIGKILL after ${killAfterMs} ms` : String(signal))); });
    child.kill(o.signal ?? 'SIGTERM');
  });
}
