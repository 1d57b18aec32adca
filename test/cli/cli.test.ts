// The built CLI (bin/edgeway.js → dist/) run as a child process: exit codes per the
// contract, catalog output, and the agent's metrics/health endpoints.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(root, 'bin/edgeway.js');
const ew = (...args: string[]): ReturnType<typeof spawnSync> => spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: 'utf8', timeout: 30_000 });

describe('edgeway CLI', () => {
  it.each([
    { name: 'no command', args: [], code: 2 },
    { name: 'unknown command', args: ['nope'], code: 2 },
    { name: 'unknown flag', args: ['catalog', '--bogus'], code: 2 },
    { name: 'missing --config', args: ['catalog'], code: 2 },
    { name: '--help', args: ['--help'], code: 0 },
    { name: 'catalog --help', args: ['catalog', '--help'], code: 0 },
    { name: 'agent --help', args: ['agent', '--help'], code: 0 },
  ])('exit code: $name → $code', ({ args, code }) => {
    expect(ew(...args).status).toBe(code);
  });

  it('catalog prints the example catalog as JSON', () => {
    const r = ew('catalog', '--config', 'examples/standalone.yaml', '--json');
    expect(r.status).toBe(0);
    const snap = JSON.parse(String(r.stdout)) as { services: { key: string; endpoints: unknown[]; lbPolicy?: { kind: string } }[] };
    expect(snap.services.map((s) => s.key)).toEqual(['default/web', 'kube-system/dns-cache']);
    expect(snap.services[0]!.lbPolicy).toEqual({ kind: 'roundRobin' });
  });

  it('invalid config exits 2 naming file, key path and reason', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ew-cli-'));
    const f = join(dir, 'bad.yaml');
    await writeFile(f, 'dataplane:\n  mode: not-a-mode\n');
    const r = ew('catalog', '--config', f);
    expect(r.status).toBe(2);
    expect(String(r.stderr)).toMatch(/bad\.yaml[\s\S]*dataplane\.mode: Invalid option/);
  });

  it('a static file that cannot be read is a runtime failure (exit 1) naming it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ew-cli-'));
    const f = join(dir, 'c.yaml');
    await writeFile(f, `sources: { kubernetes: { enabled: false }, static: { paths: [${join(dir, 'gone.yaml')}] } }\n`);
    const r = ew('catalog', '--config', f);
    expect(r.status).toBe(1);
    expect(String(r.stderr)).toContain('gone.yaml');
  });
});

describe('edgeway agent', () => {
  const children: ReturnType<typeof spawn>[] = [];
  afterEach(() => { for (const c of children.splice(0)) c.kill('SIGKILL'); });

  it('starts on the example, logs a synced catalog, serves /metrics, /healthz, /readyz, and stops on SIGTERM', async () => {
    const state = await mkdtemp(join(tmpdir(), 'ew-agent-'));
    const child = spawn(process.execPath, [bin, 'agent', '--config', 'examples/standalone.yaml', '--state-dir', state, '--metrics-listen', '127.0.0.1:0'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const logs: Record<string, unknown>[] = [];
    let buf = '';
    child.stderr.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) { try { logs.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>); } catch { /* not JSON */ } buf = buf.slice(i + 1); }
    });
    const until = async (cond: () => unknown, ms = 10_000): Promise<void> => {
      const end = Date.now() + ms;
      while (!cond()) { if (Date.now() > end) throw new Error(`timeout; logs: ${JSON.stringify(logs).slice(0, 2000)}`); await new Promise((r) => setTimeout(r, 25)); }
    };
    await until(() => logs.some((l) => l.msg === 'catalog snapshot' && l.origin === 'live'));
    const listen = logs.find((l) => l.msg === 'metrics listening')!.listen as string;
    const base = `http://${listen}`;
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^edgeway_catalog_services 2$/m);
    expect(metrics).toMatch(/^edgeway_catalog_source_state\{source="static",state="synced"\} 1$/m);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.text()).toMatch(/\[\+\]catalog: live revision/);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
