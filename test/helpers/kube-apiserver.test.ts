/**
 * The test API server's own tests: raw HTTP against it, checking the wire protocol
 * the Kubernetes client relies on (list, watch stream, 410, 404, bookmarks, controls).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { KubeApiServer, type KubeObject } from './kube-apiserver.js';

const svc = (name: string, ip: string): KubeObject => ({
  kind: 'Service',
  metadata: { name, namespace: 'default' },
  spec: { clusterIP: ip, ports: [{ port: 80 }] },
});

async function get(url: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.json() };
}

/** Open a watch and collect its newline-delimited events until `count` arrived or the stream ended. */
function watch(url: string, count: number, timeoutMs = 3000): Promise<{ status: number; events: { type: string; object: { metadata?: { name?: string; resourceVersion?: string }; code?: number } }[]; ended: boolean }> {
  return new Promise((resolve, reject) => {
    const events: { type: string; object: never }[] = [];
    let buf = '';
    const req = request(url, (res) => {
      const timer = setTimeout(() => { req.destroy(); resolve({ status: res.statusCode ?? 0, events, ended: false }); }, timeoutMs);
      res.on('data', (d: Buffer) => {
        buf += d.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          events.push(JSON.parse(buf.slice(0, i)) as never);
          buf = buf.slice(i + 1);
        }
        if (events.length >= count) { clearTimeout(timer); req.destroy(); resolve({ status: res.statusCode ?? 0, events, ended: false }); }
      });
      res.on('end', () => { clearTimeout(timer); resolve({ status: res.statusCode ?? 0, events, ended: true }); });
    });
    req.on('error', (e) => { if (events.length < count) reject(e); });
    req.end();
  });
}

describe('KubeApiServer (test stand-in for the Kubernetes API)', () => {
  let api: KubeApiServer | undefined;
  afterEach(async () => { await api?.close(); api = undefined; });

  it('lists with a List kind and the global resourceVersion, then streams changes after it', async () => {
    api = await KubeApiServer.start();
    api.create(svc('a', '10.96.0.1'));
    const list = await get(`${api.url}/api/v1/services`);
    expect(list.status).toBe(200);
    const body = list.body as { kind: string; metadata: { resourceVersion: string }; items: { metadata: { name: string } }[] };
    expect(body.kind).toBe('ServiceList');
    expect(body.items.map((i) => i.metadata.name)).toEqual(['a']);
    expect(body.metadata.resourceVersion).toBe(api.resourceVersion);

    const w = watch(`${api.url}/api/v1/services?watch=true&resourceVersion=${body.metadata.resourceVersion}`, 3);
    await new Promise((r) => setTimeout(r, 50));
    api.create(svc('b', '10.96.0.2'));
    api.update(svc('a', '10.96.0.3'));
    api.delete(svc('b', ''));
    const got = await w;
    expect(got.events.map((e) => `${e.type} ${e.object.metadata?.name}`)).toEqual(['ADDED b', 'MODIFIED a', 'DELETED b']);
    const rvs = got.events.map((e) => Number(e.object.metadata?.resourceVersion));
    expect(rvs).toEqual([...rvs].sort((x, y) => x - y));
    expect(new Set(rvs).size).toBe(3);
  });

  it('replays the history after an old resourceVersion', async () => {
    api = await KubeApiServer.start();
    const rv0 = api.resourceVersion;
    api.create(svc('a', '10.96.0.1'));
    api.create(svc('b', '10.96.0.2'));
    const got = await watch(`${api.url}/api/v1/services?watch=true&resourceVersion=${rv0}`, 2);
    expect(got.events.map((e) => e.object.metadata?.name)).toEqual(['a', 'b']);
  });

  it.each([
    { name: 'ERROR event with Status 410 (default, as the real server)', goneAs: 'event' as const, status: 200 },
    { name: 'HTTP 410', goneAs: 'status' as const, status: 410 },
  ])('refuses a watch from a compacted resourceVersion: $name', async ({ goneAs, status }) => {
    api = await KubeApiServer.start({ goneAs });
    const rv0 = api.resourceVersion;
    api.create(svc('a', '10.96.0.1'));
    api.compact();
    if (status === 200) {
      const got = await watch(`${api.url}/api/v1/services?watch=true&resourceVersion=${rv0}`, 1);
      expect(got.status).toBe(200);
      expect(got.events[0]?.type).toBe('ERROR');
      expect(got.events[0]?.object.code).toBe(410);
    } else {
      const got = await get(`${api.url}/api/v1/services?watch=true&resourceVersion=${rv0}`);
      expect(got.status).toBe(410);
      expect((got.body as { code: number }).code).toBe(410);
    }
    // A watch from the current resourceVersion is still fine.
    const ok = watch(`${api.url}/api/v1/services?watch=true&resourceVersion=${api.resourceVersion}`, 1);
    await new Promise((r) => setTimeout(r, 50));
    api.create(svc('b', '10.96.0.2'));
    expect((await ok).events[0]?.object.metadata?.name).toBe('b');
  });

  it.each([
    { name: 'EndpointSlices off', opts: { endpointSlices: false }, path: '/apis/discovery.k8s.io/v1/endpointslices', status: 404 },
    { name: 'Istio off by default', opts: {}, path: '/apis/networking.istio.io/v1/destinationrules', status: 404 },
    { name: 'Istio v1beta1 served', opts: { istio: 'v1beta1' as const }, path: '/apis/networking.istio.io/v1beta1/destinationrules', status: 200 },
    { name: 'Istio v1beta1 served, v1 not', opts: { istio: 'v1beta1' as const }, path: '/apis/networking.istio.io/v1/destinationrules', status: 404 },
    { name: 'unknown core resource', opts: {}, path: '/api/v1/pods', status: 404 },
    { name: 'discovery of a served group', opts: {}, path: '/apis/discovery.k8s.io/v1', status: 200 },
    { name: 'discovery of a missing group', opts: { endpointSlices: false }, path: '/apis/discovery.k8s.io/v1', status: 404 },
  ])('serves or 404s: $name', async ({ opts, path, status }) => {
    api = await KubeApiServer.start(opts);
    const got = await get(`${api.url}${path}`);
    expect(got.status).toBe(status);
    if (status === 404) expect((got.body as { kind: string; code: number })).toMatchObject({ kind: 'Status', code: 404 });
  });

  it('sends bookmarks, injects failures, drops watches and survives stop/restart on the same port', async () => {
    api = await KubeApiServer.start({ bookmarkIntervalMs: 30 });
    const got = await watch(`${api.url}/api/v1/nodes?watch=true&resourceVersion=${api.resourceVersion}`, 2);
    expect(got.events.map((e) => e.type)).toEqual(['BOOKMARK', 'BOOKMARK']);

    api.failNext('/api/v1/services', 500, { watch: false });
    expect((await get(`${api.url}/api/v1/services`)).status).toBe(500);
    expect((await get(`${api.url}/api/v1/services`)).status).toBe(200);

    const open = watch(`${api.url}/api/v1/services?watch=true&resourceVersion=${api.resourceVersion}`, 99, 3000);
    await new Promise((r) => setTimeout(r, 50));
    expect(api.openWatches).toBe(1);
    expect(api.dropWatches()).toBe(1);
    expect((await open).ended).toBe(true);

    const port = api.port;
    api.create(svc('kept', '10.96.0.9'));
    await api.stop();
    await expect(fetch(`http://127.0.0.1:${port}/api/v1/services`)).rejects.toThrow();
    await api.restart();
    expect(api.port).toBe(port);
    const list = (await get(`${api.url}/api/v1/services`)).body as { items: { metadata: { name: string } }[] };
    expect(list.items.map((i) => i.metadata.name)).toEqual(['kept']);
  });
});
