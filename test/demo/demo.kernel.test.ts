/**
 * `npm run demo` smoke test, non-interactive: the demo (dist/demo/main.js, as
 * `npm run demo` runs it) answers on every path with the path it should take,
 * every agent exits 0, and nothing is left behind — no namespace, no nft table in
 * the host namespace, no pin, no process, no state dir. Then the same after an
 * interrupted run: Ctrl-C (SIGINT) mid-setup tears down; a run killed outright
 * (SIGKILL) leaves things behind that the next run removes before it works.
 * IP plan: src/demo/scenario.ts (inside the demo's ewdemo* namespaces only).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { kernelSkipReason, run } from '../helpers/netns.js';
import type { DemoReport } from '../../src/demo/report.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const skip = kernelSkipReason() ?? (existsSync(join(root, 'dist/demo/main.js')) ? undefined : 'dist/ missing: run npm run build');
if (skip && process.env.CI === 'true') throw new Error(`demo smoke test cannot run in CI: ${skip}`);
if (skip) console.warn(`skipping demo smoke test: ${skip}`);
const stateDir = join(tmpdir(), 'edgeway-demo');

interface Run { code: number | null; signal: string | null; stdout: string; stderr: string }

/** Start the demo; `until` (a stderr pattern) plus `signal` interrupts it there. Bounded by timeoutMs. */
function demo(args: string[], interrupt?: { until: RegExp; signal: NodeJS.Signals }, timeoutMs = 400_000): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(root, 'dist/demo/main.js'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = false;
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (interrupt && !sent && interrupt.until.test(stderr)) { sent = true; child.kill(interrupt.signal); }
    });
    child.on('close', (code, signal) => { clearTimeout(t); resolve({ code, signal, stdout, stderr }); });
  });
}

/** What the demo could leave behind, named so a failure says what. */
async function leftovers(): Promise<string[]> {
  const out: string[] = [];
  const ns = (await run('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith('ewdemo'));
  out.push(...ns.map((n) => `namespace ${n}`));
  const tables = (await run('nft', ['list', 'tables'])).stdout;
  if (/edgeway_demo/.test(tables)) out.push('nft table edgeway_demo_* in the host namespace');
  if (existsSync('/sys/fs/bpf') && readdirSync('/sys/fs/bpf').some((p) => p.includes('demo'))) out.push('bpf pin *demo*');
  if (existsSync(stateDir)) out.push(`state dir ${stateDir}`);
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmd = '';
    try { cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' '); } catch { continue; }
    if (cmd.includes(stateDir) || cmd.includes('dist/demo/')) out.push(`process ${pid}: ${cmd.slice(0, 120)}`);
  }
  return out;
}

describe.skipIf(!!skip)('npm run demo', () => {
  afterAll(async () => {
    // A failed assertion must not leave the next run (or other suites) a mess.
    const left = await leftovers();
    if (left.length > 0) await demo(['--json', '--bulk-mib', '1']).catch(() => undefined);
  });

  it('every path answers as it should, every process exits 0, nothing is left behind', async () => {
    const r = await demo(['--json', '--bulk-mib', '1']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as DemoReport;
    const byName = Object.fromEntries(report.services.map((s) => [s.name, s]));
    expect(byName['hello-local']).toMatchObject({ ok: true, backend: 'a1', path: 'kernel-local', errors: 0, sha256ok: true });
    expect(byName['hello-lan']).toMatchObject({ ok: true, backend: 'a2', path: 'kernel-lan', errors: 0, sha256ok: true });
    expect(byName['hello-remote']).toMatchObject({ ok: true, backend: 'b1', errors: 0, sha256ok: true });
    expect(byName['hello-remote']!.path).toMatch(/^tunnel-(relayed|direct)( \(hole-punched\))?$/);
    // Called again once a1 and b1 have punched a hole through both NATs: direct.
    expect(byName['hello-remote (again)']).toMatchObject({ ok: true, backend: 'b1', errors: 0, sha256ok: true, path: 'tunnel-direct (hole-punched)' });
    for (const s of report.services) expect(s.dnsMs, s.name).toBeGreaterThan(0);
    // The cross-LAN megabyte went through a1's tunnel (its metrics say so); the kernel paths did not.
    expect(report.a1TunnelBytes).toBeGreaterThanOrEqual(1024 * 1024);
    expect(report.where.join('\n')).toMatch(/metrics/);
    // The gateway step runs when `edgeway gateway` is built, and must then answer.
    expect(report.gateway.ok, report.gateway.detail).toBe(true);
    // Agents and relay were stopped with SIGTERM; anything but exit 0 is printed as a warning.
    expect(r.stderr).not.toMatch(/^warning:/m);
    expect(r.stderr).toMatch(/tearing down/);
    expect(await leftovers()).toEqual([]);
  }, 420_000);

  it('Ctrl-C during set-up tears everything down', async () => {
    const r = await demo(['--json'], { until: /starting agents/, signal: 'SIGINT' });
    expect(r.code).toBe(130);
    expect(await leftovers()).toEqual([]);
  }, 420_000);

  it('after a run killed outright, the next run cleans up its leftovers and works', async () => {
    const killed = await demo(['--json'], { until: /starting agents/, signal: 'SIGKILL' });
    expect(killed.signal).toBe('SIGKILL');
    expect((await leftovers()).length).toBeGreaterThan(0);
    const r = await demo(['--json', '--bulk-mib', '1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/removed \d+ namespaces left by an earlier run/);
    const report = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as DemoReport;
    expect(report.services.every((s) => s.ok)).toBe(true);
    expect(await leftovers()).toEqual([]);
  }, 840_000);
});
