/**
 * Kubernetes source against the test API server (test/helpers/kube-apiserver.ts):
 * real sockets on loopback, the real @kubernetes/client-node informers, the real
 * CatalogStore. IP plan: see ./kube-objects.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { KubeApiServer, type KubeApiServerOptions, type KubeObject } from '../helpers/kube-apiserver.js';
import { CatalogStore, type SourceSink, type SourceState } from '../../src/catalog/store.js';
import type { Snapshot } from '../../src/catalog/types.js';
import { createRegistry, type Registry } from '../../src/metrics/registry.js';
import { KubernetesSource, type KubernetesSourceOptions } from '../../src/sources/kubernetes.js';
import { convertObject } from '../../src/sources/dispatch.js';
import { toPlainObject } from '../../src/sources/kube-client.js';
import { createLogger, silentLogger, type Logger } from '../../src/util/log.js';
import { destinationRule, endpoints, node, service, slice } from './kube-objects.js';

interface Harness {
  api: KubeApiServer;
  store: CatalogStore;
  source: KubernetesSource;
  registry: Registry;
  states: { state: SourceState; detail?: string }[];
  logs: string[];
}

let current: Harness | undefined;
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  if (current) {
    await current.source.stop();
    await current.store.close();
    await current.api.close();
    current = undefined;
  }
  for (const c of cleanups.splice(0)) await c();
});

/** Start an API server with `objects`, then a source on it; resolves once the source is synced (unless `wait: false`). */
async function setup(opts: {
  api?: KubeApiServerOptions;
  objects?: KubeObject[];
  /** Source options, possibly derived from the started API server (e.g. a kubeconfig pointing at it). */
  source?: Partial<KubernetesSourceOptions> | ((api: KubeApiServer) => Promise<Partial<KubernetesSourceOptions>>);
  wait?: boolean;
} = {}): Promise<Harness> {
  const api = await KubeApiServer.start(opts.api);
  for (const o of opts.objects ?? []) api.create(o);
  const registry = createRegistry({ defaultMetrics: false });
  const logs: string[] = [];
  const logger: Logger = createLogger('debug', new Writable({ write(chunk: Buffer, _e, cb) { logs.push(chunk.toString()); cb(); } }));
  const store = new CatalogStore({ logger: silentLogger(), registry, coalesceMs: 5 });
  const inner = store.sink('kubernetes');
  const states: Harness['states'] = [];
  const sink: SourceSink = { ...inner, setState: (state, detail) => { states.push({ state, ...(detail ? { detail } : {}) }); inner.setState(state, detail); } };
  const source = new KubernetesSource(sink, {
    apiServer: api.url, kubeconfig: '', filterMode: 'FilterIfLabelExists', logger, minBackoffMs: 20, maxBackoffMs: 200, recheckMs: 100,
    ...(typeof opts.source === 'function' ? await opts.source(api) : opts.source),
  });
  current = { api, store, source, registry, states, logs };
  await source.start();
  if (opts.wait !== false) await until(() => state() === 'synced', 'source synced');
  return current;
}

function state(): SourceState | undefined {
  return current?.store.sourceStates().find((s) => s.name === 'kubernetes')?.state;
}

function snap(): Snapshot {
  current!.store.flush();
  return current!.store.snapshot;
}

async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; states: ${JSON.stringify(current?.states.slice(-5))}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const svcOf = (s: Snapshot, name: string) => s.services.find((x) => x.name === name);
const ipsOf = (s: Snapshot, name: string) => svcOf(s, name)?.endpoints.map((e) => e.ip) ?? [];

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  const values = (m?.values ?? []) as { value: number; labels: Record<string, string | number> }[];
  return values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((n, v) => n + v.value, 0);
}

const world = (): KubeObject[] => [
  service('web', '10.96.0.10'),
  service('db', '10.96.0.11', [{ name: 'pg', port: 5432 }], { sessionAffinity: 'ClientIP' }),
  slice('web-a', 'web', ['10.244.1.1', '10.244.1.2'], { zone: 'z1', hints: ['z1'] }),
  slice('db-a', 'db', ['10.244.2.1']),
  node('edge-1', '192.168.50.1', { zone: 'z1', peerId: '12D3KooWtest' }),
  node('edge-2', '192.168.50.2'),
  destinationRule('web', { simple: 'ROUND_ROBIN' }),
];

describe('KubernetesSource', () => {
  it('initial sync delivers every kind (services, slices, nodes, DestinationRules)', async () => {
    const h = await setup({ api: { istio: 'v1' }, objects: world() });
    const s = snap();
    expect(s.origin).toBe('live');
    expect(s.services.map((x) => x.key)).toEqual(['default/db', 'default/web']);
    expect(svcOf(s, 'web')).toMatchObject({ clusterIPs: ['10.96.0.10'], lbPolicy: { kind: 'roundRobin' } });
    expect(svcOf(s, 'db')?.sessionAffinity).toEqual({ kind: 'ClientIP', timeoutSeconds: 10800 });
    expect(svcOf(s, 'web')?.endpoints[0]).toMatchObject({ ip: '10.244.1.1', zone: 'z1', zoneHints: ['z1'], ready: true, serving: true, nodeName: 'edge-1' });
    expect(ipsOf(s, 'db')).toEqual(['10.244.2.1']);
    expect(s.nodes.map((n) => [n.name, n.zone, n.peerId])).toEqual([['edge-1', 'z1', '12D3KooWtest'], ['edge-2', undefined, undefined]]);
    expect(h.states.at(-1)).toEqual({ state: 'synced' });
    expect(await metric(h.registry, 'edgeway_catalog_sync_events_total', { type: 'relist' })).toBe(4);
  });

  it('reports synced only after every informer listed', async () => {
    // Hold the node list back with failures: services and slices list fine, the source must stay unsynced.
    const h = await setup({ objects: world(), wait: false, source: async (api) => { api.failNext('/api/v1/nodes', 503, { times: 3, watch: false }); return {}; } });
    await until(() => h.api.listCount('/api/v1/services') >= 1 && h.states.some((s) => s.state === 'degraded'), 'services listed and nodes failing');
    expect(h.store.synced).toBe(false);
    expect(h.states.find((s) => s.state === 'degraded')?.detail).toMatch(/^nodes: .*503/);
    await until(() => state() === 'synced', 'synced after node list recovers');
    expect(h.states.filter((s) => s.state === 'synced')).toHaveLength(1);
    expect(snap().nodes).toHaveLength(2);
  });

  it.each([
    {
      name: 'Service',
      create: service('api', '10.96.0.20'),
      update: service('api', '10.96.0.21'),
      check: (s: Snapshot) => svcOf(s, 'api')?.clusterIPs.join(),
      expected: ['10.96.0.20', '10.96.0.21', undefined],
    },
    {
      name: 'EndpointSlice',
      create: slice('web-b', 'web', ['10.244.1.9']),
      update: slice('web-b', 'web', ['10.244.1.9'], { ready: false }),
      check: (s: Snapshot) => svcOf(s, 'web')?.endpoints.filter((e) => e.ip === '10.244.1.9').map((e) => `ready=${e.ready}`).join(),
      expected: ['ready=true', 'ready=false', ''],
    },
    {
      name: 'Node',
      create: node('edge-3', '192.168.50.3'),
      update: node('edge-3', '192.168.50.33', { zone: 'z3' }),
      check: (s: Snapshot) => { const n = s.nodes.find((x) => x.name === 'edge-3'); return n && `${n.addresses[0]?.address} ${n.zone}`; },
      expected: ['192.168.50.3 undefined', '192.168.50.33 z3', undefined],
    },
    {
      name: 'DestinationRule',
      create: destinationRule('db', { simple: 'LEAST_REQUEST' }),
      update: destinationRule('db', { consistentHash: { httpHeaderName: 'X-User' } }),
      check: (s: Snapshot) => JSON.stringify(svcOf(s, 'db')?.lbPolicy),
      expected: ['{"kind":"leastRequest"}', '{"kind":"consistentHash","key":{"type":"header","name":"x-user"}}', undefined],
    },
  ])('add/update/delete of a $name is reflected in snapshots', async ({ create, update, check, expected }) => {
    const h = await setup({ api: { istio: 'v1' }, objects: world() });
    const before = snap();
    h.api.create(create);
    await until(() => check(snap()) === expected[0], 'add');
    h.api.update(update);
    await until(() => check(snap()) === expected[1], 'update');
    h.api.delete(create);
    await until(() => check(snap()) === expected[2], 'delete');
    // Nothing else moved.
    expect(snap().services.length).toBe(before.services.length);
    expect(snap().nodes.length).toBe(before.nodes.length);
    expect(h.api.listCount('/')).toBe(4); // one list per informer: everything came through the watches
  });

  it('resumes a dropped watch from its resourceVersion without relisting or losing changes', async () => {
    const h = await setup({ objects: world(), api: { bookmarkIntervalMs: 20 } });
    await new Promise((r) => setTimeout(r, 60)); // let bookmarks advance the informers' resourceVersion
    const lists = h.api.listCount('/');
    expect(h.api.dropWatches()).toBe(3);
    h.api.create(service('late', '10.96.0.30')); // lands between the drop and the reconnect
    await until(() => h.api.openWatches === 3, 'watches reopened');
    h.api.delete(slice('db-a', 'db', []));
    await until(() => !!svcOf(snap(), 'late') && ipsOf(snap(), 'db').length === 0, 'changes after the drop');
    expect(h.api.listCount('/')).toBe(lists);
    const rewatch = h.api.requests.filter((r) => r.watch).slice(-3);
    expect(rewatch.every((r) => Number(r.resourceVersion) > 0)).toBe(true);
    expect(h.states.some((s) => s.state === 'degraded')).toBe(false);
  });

  it('recovers from watch sockets reset mid-stream without losing changes', async () => {
    const h = await setup({ objects: world() });
    await until(() => h.api.openWatches === 3, 'watches open');
    h.api.dropWatches({ abrupt: true });
    h.api.delete(service('web', ''));
    h.api.create(node('edge-9', '192.168.50.9'));
    await until(() => !svcOf(snap(), 'web') && snap().nodes.some((n) => n.name === 'edge-9'), 'changes after the reset');
    await until(() => state() === 'synced' && h.api.openWatches === 3, 'synced with watches reopened');
    expect(snap().services.map((x) => x.name)).toEqual(['db']);
  });

  it.each([
    { name: 'as an ERROR event (real server)', goneAs: 'event' as const },
    { name: 'as HTTP 410', goneAs: 'status' as const },
  ])('410 Gone $name → relist without losing or duplicating objects', async ({ goneAs }) => {
    const h = await setup({ objects: world(), api: { goneAs } });
    const lists = h.api.listCount('/');
    // Disconnected: the streams end, then changes happen and the history is compacted
    // before the informers reconnect (all synchronous, so they cannot see the events).
    h.api.dropWatches();
    h.api.delete(service('db', ''));
    h.api.delete(slice('db-a', 'db', []));
    h.api.update(slice('web-a', 'web', ['10.244.1.1', '10.244.1.3']));
    h.api.create(service('new', '10.96.0.40'));
    h.api.delete(node('edge-2', ''));
    h.api.compact();
    await until(() => h.api.listCount('/') === lists + 3, 'relist of the three informers');
    await until(() => !svcOf(snap(), 'db') && !!svcOf(snap(), 'new') && snap().nodes.length === 1 && ipsOf(snap(), 'web').includes('10.244.1.3'), 'relisted state');
    const s = snap();
    expect(s.services.map((x) => x.name)).toEqual(['new', 'web']);
    expect(ipsOf(s, 'web')).toEqual(['10.244.1.1', '10.244.1.3']);
    expect(s.nodes.map((n) => n.name)).toEqual(['edge-1']);
    expect(h.states.some((x) => x.state === 'degraded')).toBe(false);
    // And the relisted informers follow live changes again.
    h.api.create(service('after', '10.96.0.41'));
    await until(() => !!svcOf(snap(), 'after'), 'live after relist');
    expect(snap().services.map((x) => x.name)).toEqual(['after', 'new', 'web']);
  });

  it.each([
    { name: 'HTTP 500 on the watch', outage: async (api: KubeApiServer) => { api.failNext('/api/v1/services', 500, { watch: true, times: 2 }); api.dropWatches(); } },
    { name: 'API server down, then back', outage: async (api: KubeApiServer) => { await api.stop(); await new Promise((r) => setTimeout(r, 150)); } },
  ])('API failure mid-run ($name): informer restarted with backoff, degraded then synced', async ({ outage }) => {
    const h = await setup({ objects: world() });
    await outage(h.api);
    await until(() => state() === 'degraded', 'degraded');
    expect(snap().services.length).toBe(2); // the catalog keeps serving its last records
    h.api.delete(service('db', ''));
    h.api.create(service('during', '10.96.0.50'));
    await h.api.restart();
    await until(() => state() === 'synced', 'synced again');
    await until(() => !svcOf(snap(), 'db') && !!svcOf(snap(), 'during'), 'changes made during the outage');
    expect(await metric(h.registry, 'edgeway_catalog_sync_events_total', { type: 'error' })).toBeGreaterThan(0);
    const degraded = h.states.find((s) => s.state === 'degraded');
    expect(degraded?.detail).toMatch(/services: /);
    expect(h.logs.some((l) => l.includes('kubernetes informer failed; restarting'))).toBe(true);
    // The restarted informers follow live changes.
    h.api.create(service('after', '10.96.0.51'));
    await until(() => !!svcOf(snap(), 'after'), 'live after restart');
  });

  it('uses core/v1 Endpoints when discovery.k8s.io/v1 is not served', async () => {
    const h = await setup({
      api: { endpointSlices: false },
      objects: [service('web', '10.96.0.10'), endpoints('web', ['10.244.1.1', '10.244.1.2']), node('edge-1', '192.168.50.1')],
    });
    expect(ipsOf(snap(), 'web')).toEqual(['10.244.1.1', '10.244.1.2']);
    expect(h.store.sourceStates()[0]?.detail).toContain('endpoints from core/v1 Endpoints');
    expect(h.logs.some((l) => l.includes('using core/v1 Endpoints'))).toBe(true);
    h.api.update(endpoints('web', ['10.244.1.3']));
    await until(() => ipsOf(snap(), 'web').join() === '10.244.1.3', 'Endpoints update');
    expect(h.api.requests.some((r) => r.path === '/api/v1/endpoints' && r.watch)).toBe(true);
  });

  it('treats DestinationRules it may not read (403) as not served', async () => {
    const h = await setup({
      api: { istio: 'v1' },
      objects: world(),
      source: async (a) => { a.failNext('/apis/networking.istio.io/', 403, { times: 1000 }); return {}; },
    });
    expect(h.store.sourceStates()[0]?.detail).toContain('destinationrules not served');
    expect(svcOf(snap(), 'web')?.lbPolicy).toBeUndefined();
    expect(h.logs.some((l) => l.includes('access forbidden'))).toBe(true);
  });

  it('treats an absent DestinationRule CRD as normal, and picks it up once served', async () => {
    const h = await setup({ objects: world() });
    expect(h.states.some((s) => s.state === 'degraded')).toBe(false);
    expect(h.store.sourceStates()[0]?.detail).toContain('destinationrules not served');
    expect(svcOf(snap(), 'web')?.lbPolicy).toBeUndefined();
    expect(await metric(h.registry, 'edgeway_catalog_sync_events_total', { type: 'error' })).toBe(0);
    expect(h.logs.filter((l) => /"level":(40|50)/.test(l))).toEqual([]);
    h.api.setServed({ istio: 'v1alpha3' });
    await until(() => svcOf(snap(), 'web')?.lbPolicy?.kind === 'roundRobin', 'DR picked up after recheck');
    expect(state()).toBe('synced');
  });

  it.each([
    { name: 'v1', version: 'v1' as const },
    { name: 'v1beta1', version: 'v1beta1' as const },
    { name: 'v1alpha3', version: 'v1alpha3' as const },
  ])('reads DestinationRules served as networking.istio.io/$name', async ({ version }) => {
    const h = await setup({ api: { istio: version }, objects: [...world(), destinationRule('db', { consistentHash: { useSourceIp: true } })] });
    expect(svcOf(snap(), 'web')?.lbPolicy).toEqual({ kind: 'roundRobin' });
    expect(svcOf(snap(), 'db')?.lbPolicy).toEqual({ kind: 'consistentHash', key: { type: 'sourceIp' } });
    await until(() => h.api.requests.some((r) => r.watch && r.path === `/apis/networking.istio.io/${version}/destinationrules`), 'DR watch');
  });

  const malformed: { name: string; obj: KubeObject; kind: string; reason: RegExp }[] = [
    { name: 'service port out of range', obj: service('bad', '10.96.1.1', [{ name: 'x', port: 70000 }]), kind: 'service', reason: /out of range/ },
    { name: 'unparsable cluster IP', obj: service('bad', '10.96.1.300'), kind: 'service', reason: /not an IP address/ },
    { name: 'duplicate port names', obj: service('bad', '10.96.1.2', [{ name: 'p', port: 80 }, { name: 'p', port: 81 }]), kind: 'service', reason: /duplicated/ },
    { name: 'service without spec', obj: { kind: 'Service', metadata: { name: 'bad', namespace: 'default' } }, kind: 'service', reason: /spec missing/ },
    { name: 'slice endpoint IP unparsable', obj: slice('bad', 'web', ['10.244.999.1']), kind: 'slice', reason: /not an IP address/ },
    { name: 'slice without addressType', obj: { ...slice('bad', 'web', ['10.244.1.7']), addressType: undefined }, kind: 'slice', reason: /addressType/ },
    { name: 'slice port out of range', obj: slice('bad', 'web', ['10.244.1.7'], { port: 0 }), kind: 'slice', reason: /out of range/ },
    { name: 'node address without type', obj: { kind: 'Node', metadata: { name: 'bad' }, status: { addresses: [{ address: '192.168.50.9' }] } }, kind: 'node', reason: /type and address/ },
    { name: 'DestinationRule with unknown policy', obj: destinationRule('db', { simple: 'FASTEST' }), kind: 'policy', reason: /unsupported/ },
  ];
  const phases = ['initial list', 'watch'] as const;
  it.each(malformed.flatMap((m) => phases.map((phase) => ({ ...m, phase, label: `${m.name} (${phase})` }))))(
    'rejects a malformed object alone: $label',
    async ({ obj, kind, reason, phase }) => {
      const h = await setup({ api: { istio: 'v1' }, objects: phase === 'initial list' ? [...world(), obj] : world() });
      if (phase === 'watch') h.api.create(obj);
      await until(async () => (await metric(h.registry, 'edgeway_catalog_objects_rejected_total', { kind })) > 0, 'rejection counted');
      const s = snap();
      // The rest of the snapshot is intact.
      expect(s.services.map((x) => x.name)).toEqual(['db', 'web']);
      expect(ipsOf(s, 'web')).toEqual(['10.244.1.1', '10.244.1.2']);
      expect(s.nodes.map((n) => n.name)).toEqual(['edge-1', 'edge-2']);
      expect(svcOf(s, 'web')?.lbPolicy).toEqual({ kind: 'roundRobin' });
      expect(svcOf(s, 'db')?.lbPolicy).toBeUndefined();
      const m = (await h.registry.getMetricsAsJSON()).find((x) => x.name === 'edgeway_catalog_objects_rejected_total');
      expect(m?.values.some((v) => v.labels.kind === kind && reason.test(String(v.labels.reason)))).toBe(true);
      expect(state()).toBe('synced');
    },
  );

  it('authenticates with a kubeconfig file (token sent on lists and watches)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'edgeway-kc-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'kubeconfig');
    const h = await setup({
      objects: world(),
      source: async (api) => {
        await writeFile(file, [
          'apiVersion: v1', 'kind: Config', 'current-context: test',
          'clusters:', '- name: test', `  cluster: { server: "${api.url}", insecure-skip-tls-verify: true }`,
          'users:', '- name: tester', '  user: { token: s3cret-token }',
          'contexts:', '- name: test', '  context: { cluster: test, user: tester }',
        ].join('\n'));
        return { apiServer: '', kubeconfig: file };
      },
    });
    await until(() => h.api.openWatches === 3, 'watches open');
    expect(snap().services.length).toBe(2);
    const gets = h.api.requests.filter((r) => r.path !== '/');
    expect(gets.filter((r) => r.watch).length).toBeGreaterThanOrEqual(3);
    expect(gets.every((r) => r.authorization === 'Bearer s3cret-token')).toBe(true);
    expect(h.logs.some((l) => l.includes(`kubeconfig ${file}`))).toBe(true);
  });

  it('normalises list (class instances, Date) and watch (plain JSON) shapes to the same records', () => {
    const json = {
      metadata: { name: 'web', namespace: 'default', creationTimestamp: '2026-01-01T00:00:00.000Z', labels: { 'kubernetes.io/service-name': 'web' } },
      addressType: 'IPv6',
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: [{ addresses: ['fd00:244::1'], conditions: { ready: false, serving: true, terminating: true }, hints: { forZones: [{ name: 'z1' }] }, zone: 'z1' }],
    };
    const typed = Object.assign(new V1EndpointSlice(), structuredClone(json), {
      metadata: { ...json.metadata, creationTimestamp: new Date(json.metadata.creationTimestamp) },
    });
    const svcJson = { metadata: { name: 'web', namespace: 'default' }, spec: { clusterIP: 'fd00:96::a', clusterIPs: ['fd00:96::a', '10.96.0.10'], ports: [{ name: 'http', port: 80, targetPort: 8080 }] } };
    const svcTyped = Object.assign(new V1Service(), structuredClone(svcJson));
    expect(Object.getPrototypeOf(toPlainObject(typed))).toBe(Object.prototype);
    const a = convertObject('EndpointSlice', toPlainObject(typed), 'FilterIfLabelExists');
    const b = convertObject('EndpointSlice', json, 'FilterIfLabelExists');
    expect(a).toEqual(b);
    expect(a.ok && (a.record as { endpoints: unknown[] }).endpoints[0]).toMatchObject({ ip: 'fd00:244::1', family: 6, ready: false, serving: true, terminating: true, zoneHints: ['z1'] });
    const c = convertObject('Service', toPlainObject(svcTyped), 'FilterIfLabelExists');
    expect(c).toEqual(convertObject('Service', svcJson, 'FilterIfLabelExists'));
    expect(c.ok && (c.record as { clusterIPs: string[] }).clusterIPs).toEqual(['fd00:96::a', '10.96.0.10']);
  });

  it('stop() ends every watch without logging the spurious informer error', async () => {
    const h = await setup({ objects: world() });
    await until(() => h.api.openWatches === 3, 'watches open');
    await h.source.stop();
    await until(() => h.api.openWatches === 0, 'watches closed');
    await new Promise((r) => setTimeout(r, 50));
    expect(h.logs.filter((l) => l.includes('informer failed'))).toEqual([]);
    expect(state()).toBe('stopped');
    expect(snap().services.length).toBe(2); // records stay
  });

  it('fails start() with ERR_KUBE_CONFIG when no credentials exist', async () => {
    const registry = createRegistry({ defaultMetrics: false });
    const store = new CatalogStore({ logger: silentLogger(), registry });
    const source = new KubernetesSource(store.sink('kubernetes'), {
      apiServer: '', kubeconfig: '/nonexistent/kubeconfig', filterMode: 'FilterIfLabelExists', logger: silentLogger(), minBackoffMs: 20, maxBackoffMs: 100,
    });
    await expect(source.start()).rejects.toMatchObject({ code: 'ERR_KUBE_CONFIG' });
    expect(store.sourceStates()[0]?.state).toBe('degraded');
    await store.close();
  });
});
