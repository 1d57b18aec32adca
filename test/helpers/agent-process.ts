/**
 * Run the real `edgeway` CLI (bin/edgeway.js → dist/) as a child process for
 * agent-level tests: JSON log lines collected from stderr, the metrics address
 * learnt from the "metrics listening" log (config `metrics.listen: 127.0.0.1:0`),
 * and always killed by `stop()`/`kill()`.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = fileURLToPath(new URL('../..', import.meta.url));
const pexec = promisify(execFile);

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/**
 * Compile dist/ when it is missing or older than src/ (CI and `npm test` build
 * first, so this is a no-op there). Only the compiler runs: never `npm ci` while
 * other test files are running.
 */
export async function ensureBuilt(): Promise<void> {
  const main = join(root, 'dist/cli/main.js');
  if (existsSync(main) && statSync(main).mtimeMs >= newest(join(root, 'src'))) return;
  await pexec(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: root, timeout: 120_000 });
}

/** Run a CLI command to completion. */
export async function runCli(args: readonly string[], timeoutMs = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/edgeway.js', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); });
  });
}

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export class AgentProcess {
  readonly logs: LogLine[] = [];
  private exited: Promise<number>;
  metricsUrl = '';

  private constructor(readonly child: ChildProcess) {
    let buf = '';
    child.stderr?.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try { this.logs.push(JSON.parse(line) as LogLine); } catch { this.logs.push({ level: 0, msg: line }); }
      }
    });
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : -1))));
  }

  /** Start `edgeway <command> --config FILE` (agent by default); resolves once its metrics server listens. */
  static async start(config: string, timeoutMs = 15_000, command: 'agent' | 'gateway' = 'agent'): Promise<AgentProcess> {
    const child = spawn(process.execPath, ['bin/edgeway.js', command, '--config', config], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
    const a = new AgentProcess(child);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const l = a.logs.find((x) => x.msg === 'metrics listening');
      if (l) { a.metricsUrl = `http://${String(l.listen)}`; return a; }
      if (child.exitCode !== null || Date.now() > deadline) {
        a.kill();
        throw new Error(`agent did not start (exit ${child.exitCode}): ${a.logs.map((x) => x.msg).join(' | ')}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async get(path: string): Promise<{ status: number; text: string }> {
    const res = await fetch(`${this.metricsUrl}${path}`);
    return { status: res.status, text: await res.text() };
  }

  /** SIGTERM and wait for the exit code (SIGKILL after `timeoutMs`). */
  async stop(timeoutMs = 10_000): Promise<number> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.kill(), timeoutMs);
    try { return await this.exited; } finally { clearTimeout(t); }
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}
