/**
 * One-shot commands (`catalog`, `render`) against a Kubernetes API that holds its
 * watches open, as a real one does: they print and exit 0 on their own, without a
 * kill. IP plan: see ../sources/kube-objects.ts (cluster IPs 10.96.0.0/16, pods
 * 10.244.0.0/16, nodes 192.168.50.0/24 — data only, nothing is routed).
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBuilt, runCli } from '../helpers/agent-process.js';
import { KubeApiServer } from '../helpers/kube-apiserver.js';
import { node, service, slice } from '../sources/kube-objects.js';

let dir = '';
let api: KubeApiServer | undefined;

beforeAll(async () => { await ensureBuilt(); }, 120_000);

afterEach(async () => {
  await api?.close();
  api = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = '';
});

async function writeConfig(apiUrl: string): Promise<string> {
  dir = await mkdtemp(join(tmpdir(), 'edgeway-oneshot-'));
  const file = join(dir, 'c.yaml');
  await writeFile(file, [
    'nodeName: edge-1',
    `stateDir: ${join(dir, 'state')}`,
    `sources: { kubernetes: { enabled: true, apiServer: "${apiUrl}", minBackoffMs: 20, maxBackoffMs: 200 } }`,
    'dataplane: { mode: nftables }',
  ].join('\n'));
  return file;
}

// Bounded by runCli's kill timer: a command that hangs is SIGKILLed and its code is -1.
const BOUND_MS = 45_000;

describe('one-shot commands with watches held open', () => {
  it.each([
    { name: 'catalog --json', args: ['catalog', '--json'], check: (out: string) => (JSON.parse(out) as { services: { key: string }[] }).services.map((s) => s.key) , want: ['default/db', 'default/web'] },
    { name: 'catalog (table)', args: ['catalog'], check: (out: string) => out.split('\n').filter((l) => l.startsWith('default/')).map((l) => l.split('\t')[0]), want: ['default/db', 'default/web'] },
    { name: 'render --format nft', args: ['render', '--format', 'nft'], check: (out: string) => ['10.96.0.10', '10.96.0.11', '10.244.1.1'].filter((ip) => out.includes(ip)), want: ['10.96.0.10', '10.96.0.11', '10.244.1.1'] },
  ])('$name prints and exits 0 by itself, the watches closed', async ({ args, check, want }) => {
    // Watches answered late, as by a distant API server: a stop between a list and
    // its watch must still close that watch.
    api = await KubeApiServer.start({ watchDelayMs: 300 });
    for (const o of [service('web', '10.96.0.10'), service('db', '10.96.0.11', [{ name: 'pg', port: 5432 }]), slice('web-a', 'web', ['10.244.1.1']), node('edge-1', '192.168.50.1')]) api.create(o);
    const config = await writeConfig(api.url);
    for (let round = 0; round < 2; round++) {
      const r = await runCli([args[0]!, '--config', config, ...args.slice(1)], BOUND_MS);
      expect(r.code, `round ${round}: ${r.stderr}`).toBe(0);
      expect(check(r.stdout)).toEqual(want);
      expect(r.stderr).not.toContain('still open');
    }
    // The command did watch, so the exit is not for lack of a watch.
    expect(api.requests.some((q) => q.watch)).toBe(true);
  }, 150_000);
});
