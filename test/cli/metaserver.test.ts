/**
 * The agent on a KubeEdge edge node: its only source is the edge core's metaServer
 * (plain HTTP on 127.0.0.1:10550, no auth), which on older KubeEdge versions serves
 * Endpoints but no EndpointSlices. The agent's node DNS answers cluster names from
 * it, keeps answering — from its catalog and its persisted snapshot — when the
 * metaServer disappears (the edge lost the cloud and edgecore restarts), and
 * follows changes once it is back. The stand-in is the test API server
 * (test/helpers/kube-apiserver.ts: list + chunked watch, resourceVersion, 410).
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Resolver } from 'node:dns/promises';
import { createServer } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentProcess, ensureBuilt } from '../helpers/agent-process.js';
import { KubeApiServer } from '../helpers/kube-apiserver.js';
import { endpoints, node, service } from '../sources/kube-objects.js';

const METASERVER_PORT = 10550;
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

async function freeUdpTcpPort(): Promise<number> {
  const srv = createServer();
  const port = await new Promise<number>((r) => srv.listen(0, '127.0.0.1', () => r((srv.address() as { port: number }).port)));
  await new Promise((r) => srv.close(r));
  return port;
}

async function until<T>(probe: () => Promise<T>, ok: (v: T) => boolean, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('edgeway agent on a KubeEdge edge node (metaServer only)', () => {
  it('answers from Endpoints-only metaServer data, keeps answering while it is gone (also after a restart), follows it when back', async () => {
    api = await KubeApiServer.start({ endpointSlices: false, port: METASERVER_PORT });
    api.create(service('web', '10.96.0.10', [{ name: 'http', port: 80 }]));
    api.create(endpoints('web', ['10.244.1.5']));
    api.create(node('edge-1', '192.168.50.1'));
    dir = await mkdtemp(join(tmpdir(), 'edgeway-metaserver-'));
    const dnsPort = await freeUdpTcpPort();
    const config = join(dir, 'agent.yaml');
    await writeFile(config, [
      'nodeName: edge-1',
      `stateDir: ${join(dir, 'state')}`,
      `sources: { kubernetes: { enabled: true, apiServer: "http://127.0.0.1:${METASERVER_PORT}", minBackoffMs: 50, maxBackoffMs: 500 } }`,
      'dataplane: { mode: none }',
      `dns: { enabled: true, listen: ["127.0.0.1:${dnsPort}"], upstreams: ["127.0.0.1:9"] }`,
      'tunnel: { enabled: false }',
      'metrics: { listen: "127.0.0.1:0" }',
    ].join('\n'));
    const resolver = new Resolver({ timeout: 1000, tries: 1 });
    resolver.setServers([`127.0.0.1:${dnsPort}`]);
    const a4 = (name: string): Promise<string> => resolver.resolve4(name).then((r) => r.join(','), (e: NodeJS.ErrnoException) => `error ${e.code ?? e.message}`);

    const agent = await AgentProcess.start(config);
    agents.push(agent);
    await until(() => a4('web.default.svc.cluster.local'), (v) => v === '10.96.0.10', 'web from the metaServer');
    // The catalog came from Endpoints: the metaServer has no EndpointSlices.
    expect(api.requests.some((r) => r.path.startsWith('/api/v1/endpoints') && r.status === 200)).toBe(true);
    expect(api.requests.filter((r) => r.path.includes('endpointslices')).every((r) => r.status === 404)).toBe(true);

    // The edge loses the metaServer: the agent keeps serving what it has.
    await api.stop();
    await new Promise((r) => setTimeout(r, 1500));
    expect(await a4('web.default.svc.cluster.local')).toBe('10.96.0.10');
    expect((await agent.get('/readyz')).status).toBe(200);
    expect(await agent.stop()).toBe(0);

    // A restart while it is still gone: the persisted snapshot is served.
    const again = await AgentProcess.start(config);
    agents.push(again);
    await until(() => a4('web.default.svc.cluster.local'), (v) => v === '10.96.0.10', 'web from the persisted snapshot');

    // Back, with a change made meanwhile: the agent follows it.
    api.create(service('db', '10.96.0.11', [{ name: 'pg', port: 5432 }]));
    api.create(endpoints('db', ['10.244.1.6'], 5432));
    await api.restart();
    await until(() => a4('db.default.svc.cluster.local'), (v) => v === '10.96.0.11', 'db after the metaServer came back');
    expect(await again.stop()).toBe(0);
  }, 90_000);
});
