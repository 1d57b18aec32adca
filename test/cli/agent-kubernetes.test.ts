/**
 * The real `edgeway agent` / `edgeway catalog` processes fed by the Kubernetes
 * source (`sources.kubernetes.apiServer` pointing at the test API server, as at
 * KubeEdge's metaServer): /readyz flips at sync, /metrics passes `promtool check
 * metrics`, and an agent started while the API is down serves its persisted
 * snapshot until the API comes back. IP plan: see ../sources/kube-objects.ts.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentProcess, ensureBuilt, runCli } from '../helpers/agent-process.js';
import { KubeApiServer } from '../helpers/kube-apiserver.js';
import { node, service, slice } from '../sources/kube-objects.js';

let dir = '';
const agents: AgentProcess[] = [];
let api: KubeApiServer | undefined;

beforeAll(async () => { await ensureBuilt(); }, 120_000);

afterEach(async () => {
  for (const a of agents.splice(0)) a.kill();
  await api?.close();
  api = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = '';
});

async function writeConfig(apiUrl: string, tunnelPort?: number, dataPort?: number): Promise<string> {
  dir = await mkdtemp(join(tmpdir(), 'edgeway-agent-'));
  const file = join(dir, 'agent.yaml');
  await writeFile(file, [
    'nodeName: edge-1',
    `stateDir: ${join(dir, 'state')}`,
    `sources: { kubernetes: { enabled: true, apiServer: "${apiUrl}", minBackoffMs: 20, maxBackoffMs: 200 } }`,
    'dataplane: { mode: none }',
    'dns: { enabled: false }',
    tunnelPort ? `tunnel: { enabled: true, listenPort: ${tunnelPort}, dataPort: ${dataPort ?? 0}, listenAddresses: ["127.0.0.1"] }` : 'tunnel: { enabled: false }',
    'metrics: { listen: "127.0.0.1:0" }',
  ].join('\n'));
  return file;
}

async function startAgent(config: string): Promise<AgentProcess> {
  const a = await AgentProcess.start(config);
  agents.push(a);
  return a;
}

async function until<T>(probe: () => Promise<T>, ok: (v: T) => boolean, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    last = await probe();
    if (ok(last)) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** One sample of a metric from the text format. */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`) || (labels === '' && l.startsWith(`${name} `)));
  return line ? Number(line.split(' ').at(-1)) : undefined;
}

async function expectPromtoolClean(text: string): Promise<void> {
  const r = await promtool(text);
  expect(r.out.split('\n').filter((l) => l.trim())).toEqual([]);
  expect(r.code).toBe(0); // 3 = lint findings, 1 = unparsable
}

function promtool(text: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = execFile('promtool', ['check', 'metrics'], { timeout: 10_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` });
    });
    child.stdin?.end(text);
  });
}

const objects = () => [
  service('web', '10.96.0.10'),
  service('db', '10.96.0.11', [{ name: 'pg', port: 5432 }]),
  slice('web-a', 'web', ['10.244.1.1']),
  node('edge-1', '192.168.50.1'),
];

describe('edgeway agent with the Kubernetes source', () => {
  it('promtool rejects what is not Prometheus text format (the check can fail)', async () => {
    expect((await promtool('garbage{ 1\n')).code).toBe(1);
    await expect(expectPromtoolClean('# HELP x_total y\n# TYPE x_total gauge\nx_total 1\n')).rejects.toThrow();
  });

  it('/readyz flips 503 → 200 when the first sync completes; /metrics passes promtool before and after', async () => {
    api = await KubeApiServer.start();
    for (const o of objects()) api.create(o);
    await api.stop(); // API down when the agent starts; back on the same port later
    const agent = await startAgent(await writeConfig(api.url));

    const notReady = await until(() => agent.get('/readyz'), (r) => r.text.includes('kubernetes=degraded'), 'degraded readiness');
    expect(notReady.status).toBe(503);
    const before = await agent.get('/metrics');
    expect(before.status).toBe(200);
    await expectPromtoolClean(before.text);
    expect(sample(before.text, 'edgeway_catalog_source_state', 'source="kubernetes",state="degraded"')).toBe(1);

    await api.restart();
    const ready = await until(() => agent.get('/readyz'), (r) => r.status === 200, 'ready');
    expect(ready.text).toMatch(/\[\+\]catalog: live revision \d+/);
    const after = (await agent.get('/metrics')).text;
    await expectPromtoolClean(after);
    expect(sample(after, 'edgeway_catalog_services', '')).toBe(2);
    expect(sample(after, 'edgeway_catalog_source_state', 'source="kubernetes",state="synced"')).toBe(1);
    expect(sample(after, 'edgeway_catalog_snapshot_origin', 'origin="live"')).toBe(1);
    expect(await agent.stop()).toBe(0);
  });

  it('serves the persisted snapshot while the API is down at start, then goes live', async () => {
    api = await KubeApiServer.start();
    for (const o of objects()) api.create(o);
    const config = await writeConfig(api.url);
    const first = await startAgent(config);
    await until(() => first.get('/readyz'), (r) => r.status === 200, 'first agent ready');
    const file = join(dir, 'state', 'catalog.json');
    await until(async () => (existsSync(file) ? JSON.parse(await readFile(file, 'utf8')) as { services: unknown[] } : { services: [] }), (s) => s.services.length === 2, 'snapshot persisted');
    expect(await first.stop()).toBe(0);

    await api.stop();
    const second = await startAgent(config);
    const ready = await until(() => second.get('/readyz'), (r) => r.status === 200, 'ready on the persisted snapshot');
    expect(ready.text).toContain('serving persisted snapshot');
    const m = (await second.get('/metrics')).text;
    expect(sample(m, 'edgeway_catalog_snapshot_origin', 'origin="persisted"')).toBe(1);
    expect(sample(m, 'edgeway_catalog_services', '')).toBe(2);
    expect(second.logs.some((l) => l.msg === 'serving the persisted catalog until the sources sync')).toBe(true);

    api.create(service('added-while-down', '10.96.0.12'));
    await api.restart();
    const live = await until(() => second.get('/metrics'), (r) => sample(r.text, 'edgeway_catalog_snapshot_origin', 'origin="live"') === 1, 'live snapshot');
    expect(sample(live.text, 'edgeway_catalog_snapshot_origin', 'origin="persisted"')).toBe(0);
    expect(sample(live.text, 'edgeway_catalog_services', '')).toBe(3);
    expect((await second.get('/readyz')).text).toMatch(/live revision/);
    expect(await second.stop()).toBe(0);
  });

  it('edgeway catalog --json prints what the API serves', async () => {
    api = await KubeApiServer.start({ endpointSlices: false });
    for (const o of objects().filter((o) => o.kind !== 'EndpointSlice')) api.create(o);
    api.create({ kind: 'Endpoints', metadata: { name: 'web', namespace: 'default' }, subsets: [{ addresses: [{ ip: '10.244.1.1' }], ports: [{ name: 'http', port: 8080 }] }] });
    const r = await runCli(['catalog', '--config', await writeConfig(api.url), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const snap = JSON.parse(r.stdout) as { services: { key: string; endpoints: { ip: string }[] }[] };
    expect(snap.services.map((s) => `${s.key} ${s.endpoints.map((e) => e.ip).join(',')}`)).toEqual(['default/db ', 'default/web 10.244.1.1']);
  });

  it.each([
    { name: 'published', forbidden: false },
    { name: 'refused by RBAC (403): logged, the agent still serves', forbidden: true },
  ])('the tunnel peer id on the Node annotation edgeway.io/peer-id: $name', async ({ forbidden }) => {
    api = await KubeApiServer.start();
    for (const o of objects()) api.create(o);
    api.patchForbidden = forbidden;
    const srv = (await import('node:net')).createServer();
    const tunnelPort = await new Promise<number>((r) => srv.listen(0, '127.0.0.1', () => r((srv.address() as { port: number }).port)));
    await new Promise((r) => srv.close(r));
    // The data channel's port explicitly: listenPort + 1 may be another test's port.
    const dataPort = await new Promise<number>((r) => srv.listen(0, '127.0.0.1', () => r((srv.address() as { port: number }).port)));
    await new Promise((r) => srv.close(r));
    const config = await writeConfig(api.url, tunnelPort, dataPort);
    const agent = await startAgent(config);
    const id = await runCli(['identity', '--state-dir', join(dir, 'state')]);
    const peerId = id.stdout.trim().split(/\s+/).find((w) => w.startsWith('12D3Koo'));
    expect(peerId).toBeDefined();
    const annotation = async (): Promise<string | undefined> => {
      const list = await (await fetch(`${api!.url}/api/v1/nodes`)).json() as { items: { metadata: { name: string; annotations?: Record<string, string> } }[] };
      return list.items.find((n) => n.metadata.name === 'edge-1')?.metadata.annotations?.['edgeway.io/peer-id'];
    };
    if (forbidden) {
      await until(async () => agent.logs, (l) => l.some((x) => String(x.msg).startsWith('cannot publish the peer id')), 'a warning');
      expect(await annotation()).toBeUndefined();
      // The refusal may come before the first sync: readiness follows, the agent serves.
      await until(() => agent.get('/readyz'), (r) => r.status === 200, 'ready despite the refused patch');
      expect(await annotation()).toBeUndefined();
    } else {
      await until(annotation, (v) => v === peerId, 'the annotation');
      // The catalog sees it through the watch, like any other node's.
      const r = await runCli(['catalog', '--config', config, '--json']);
      expect((JSON.parse(r.stdout) as { nodes: { name: string; peerId?: string }[] }).nodes.find((n) => n.name === 'edge-1')?.peerId).toBe(peerId);
    }
    expect(await agent.stop()).toBe(0);
  });
});
