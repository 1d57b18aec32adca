/**
 * A lean agent: what a mode does not use is never loaded. The built CLI runs
 * with a resolution hook (fixtures/record-packages.mjs) that lists every package
 * the process imports; the agent must start, serve /readyz and exit 0 on SIGTERM.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureBuilt } from '../helpers/agent-process.js';
import { commands } from '../../src/cli/commands/index.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dirs: string[] = [];
afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });

async function packagesLoaded(config: string[]): Promise<{ packages: string[]; code: number | null }> {
  const dir = await mkdtemp(join(tmpdir(), 'ew-lean-'));
  dirs.push(dir);
  await writeFile(join(dir, 'agent.yaml'), [
    'nodeName: edge-1', `stateDir: ${join(dir, 'state')}`, 'metrics: { listen: "127.0.0.1:0" }', ...config,
  ].join('\n'));
  const list = join(dir, 'packages.txt');
  await writeFile(list, '');
  const child = spawn(process.execPath, ['--import', join(root, 'test/cli/fixtures/record-packages.mjs'), 'bin/edgeway.js', 'agent', '--config', join(dir, 'agent.yaml')], {
    cwd: root, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, EDGEWAY_TEST_PACKAGES: list },
  });
  let err = '';
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  const metrics = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`agent did not start: ${err}`)), 20_000);
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /"listen":"([^"]+)","msg":"metrics listening"/.exec(err);
      if (m) { clearTimeout(t); resolve(m[1]!); }
    });
    child.on('exit', (c) => { clearTimeout(t); reject(new Error(`agent exited ${c}: ${err}`)); });
  }).catch((e: unknown) => { child.kill('SIGKILL'); throw e; });
  // Ready = every part started (the tunnel's imports are done by then).
  for (let i = 0; ; i++) {
    const status = await fetch(`http://${metrics}/readyz`).then((r) => r.status, () => 0);
    if (status === 200) break;
    if (i > 400) { child.kill('SIGKILL'); throw new Error(`agent never ready: ${err}`); }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGTERM');
  const code = await exited;
  return { packages: (await readFile(list, 'utf8')).split('\n').filter(Boolean), code };
}

describe('the command index', () => {
  it.each(commands.map((c) => [c.name, c]))('%s: the index names and summarises the module it loads', async (_name, entry) => {
    const cmd = await entry.load();
    expect({ name: cmd.name, summary: cmd.summary }).toEqual({ name: entry.name, summary: entry.summary });
  });
});

describe('a lean agent', () => {
  beforeAll(async () => { await ensureBuilt(); }, 120_000);

  it('static source, tunnel and DNS off: no libp2p, no Kubernetes client, no DNS packet library', async () => {
    const r = await packagesLoaded([
      `sources: { kubernetes: { enabled: false }, static: { paths: ["${join(root, 'examples/services.yaml')}"] } }`,
      'dataplane: { mode: none }', 'dns: { enabled: false }', 'tunnel: { enabled: false }',
    ]);
    expect(r.code).toBe(0);
    expect(r.packages).toContain('prom-client'); // the hook saw the agent's imports
    expect(r.packages.filter((p) => /libp2p|@kubernetes\/|dns-packet/.test(p))).toEqual([]);
  });

  it('tunnel on: libp2p is loaded (the hook would see it)', async () => {
    const r = await packagesLoaded([
      `sources: { kubernetes: { enabled: false }, static: { paths: ["${join(root, 'examples/services.yaml')}"] } }`,
      'dataplane: { mode: none }', 'dns: { enabled: false }',
      `tunnel: { enabled: true, listenPort: ${await freePort()}, dataPort: ${await freePort()}, listenAddresses: ["127.0.0.1"] }`,
    ]);
    expect(r.code).toBe(0);
    expect(r.packages).toContain('libp2p');
  });
});

async function freePort(): Promise<number> {
  const srv = createServer();
  const port = await new Promise<number>((r) => srv.listen(0, '127.0.0.1', () => r((srv.address() as { port: number }).port)));
  await new Promise((r) => srv.close(r));
  return port;
}
