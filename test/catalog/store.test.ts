// Test IP plan: cluster IPs 10.96.0.0/16; endpoints 10.244.0.0/16.
import { mkdtemp, readFile, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CatalogStore } from '../../src/catalog/store.js';
import { loadSnapshot, saveSnapshot, snapshotPath } from '../../src/catalog/persist.js';
import { convertEndpointSlice, convertService, type SlimService, type SlimSlice } from '../../src/catalog/convert.js';
import { createRegistry } from '../../src/metrics/registry.js';
import { silentLogger } from '../../src/util/log.js';
import type { Snapshot } from '../../src/catalog/types.js';

function service(name: string, ip: string): SlimService {
  const r = convertService({ metadata: { name, namespace: 'default' }, spec: { clusterIP: ip, ports: [{ name: 'http', port: 80 }] } }, 'FilterIfLabelExists');
  if (!r.ok) throw new Error(r.reason);
  return r.value;
}
function slice(svc: string, name: string, ips: string[], ready = true): SlimSlice {
  const r = convertEndpointSlice({ metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': svc } }, addressType: 'IPv4', ports: [{ name: 'http', port: 8080 }], endpoints: ips.map((a) => ({ addresses: [a], conditions: { ready } })) });
  if (!r.ok) throw new Error(r.reason);
  return r.value;
}
function newStore(stateDir?: string): { store: CatalogStore; snaps: Snapshot[]; registry: ReturnType<typeof createRegistry> } {
  const registry = createRegistry({ defaultMetrics: false });
  const store = new CatalogStore({ logger: silentLogger(), registry, coalesceMs: 5, ...(stateDir ? { stateDir } : {}) });
  const snaps: Snapshot[] = [];
  store.on('snapshot', (s) => snaps.push(s));
  return { store, snaps, registry };
}
const tick = (ms = 20): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('CatalogStore', () => {
  it('publishes nothing live until every source has synced, then coalesces a burst into one snapshot', async () => {
    const { store, snaps } = newStore();
    const a = store.sink('a');
    const b = store.sink('b');
    for (let i = 0; i < 100; i++) a.upsert('service', `s${i}`, service(`s${i}`, `10.96.0.${i + 1}`));
    a.setState('synced');
    await tick();
    expect(snaps).toHaveLength(0);
    expect(store.readiness().ready).toBe(false);
    b.setState('synced');
    await tick();
    expect(snaps).toHaveLength(1);
    expect(snaps[0]!.services).toHaveLength(100);
    expect(store.readiness()).toMatchObject({ ready: true });
  });

  it('joins slices of two sources to their service and merges endpoints by IP (ready wins)', async () => {
    const { store, snaps } = newStore();
    const s = store.sink('s');
    s.upsert('service', 'web', service('web', '10.96.0.10'));
    s.upsert('slice', 'w1', slice('web', 'w1', ['10.244.0.2', '10.244.0.1']));
    s.upsert('slice', 'w2', slice('web', 'w2', ['10.244.0.1'], false));
    s.setState('synced');
    await tick();
    expect(snaps.at(-1)!.services[0]!.endpoints.map((e) => [e.ip, e.ready])).toEqual([['10.244.0.1', true], ['10.244.0.2', true]]);
  });

  it('skips snapshots whose content did not change, and bumps the revision when it did', async () => {
    const { store, snaps } = newStore();
    const s = store.sink('s');
    s.upsert('service', 'web', service('web', '10.96.0.10'));
    s.setState('synced');
    await tick();
    s.upsert('service', 'web', service('web', '10.96.0.10'));
    await tick();
    expect(snaps).toHaveLength(1);
    s.remove('service', 'web');
    await tick();
    expect(snaps).toHaveLength(2);
    expect(snaps[1]!.revision).toBeGreaterThan(snaps[0]!.revision);
    expect(snaps[1]!.services).toHaveLength(0);
  });

  it('counts a rejected object once per reason and logs it once', async () => {
    const { store, registry } = newStore();
    const s = store.sink('s');
    s.reject('service', 'default/bad', 'spec.ports[0].port 70000 is out of range 1-65535');
    s.reject('service', 'default/bad', 'spec.ports[0].port 70000 is out of range 1-65535');
    s.reject('service', 'default/worse', 'spec.ports[1].port 0 is out of range 1-65535');
    const m = await registry.getSingleMetricAsString('edgeway_catalog_objects_rejected_total');
    expect(m).toContain('edgeway_catalog_objects_rejected_total{kind="service",reason="spec.ports[].port N is out of range N-N"} 2');
  });

  it('serves a persisted snapshot until live, and persists every live snapshot atomically', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ew-store-'));
    const first = newStore(dir);
    const s = first.store.sink('s');
    s.upsert('service', 'web', service('web', '10.96.0.10'));
    s.setState('synced');
    await tick();
    await first.store.close();
    const saved = await loadSnapshot(dir);
    expect(saved.kind).toBe('loaded');
    expect((await readdir(dir)).filter((f) => f.includes('.tmp'))).toEqual([]);

    // Restart "offline": the source never syncs; the persisted copy is served.
    const second = newStore(dir);
    second.store.sink('s');
    if (saved.kind !== 'loaded') throw new Error('not loaded');
    second.store.usePersisted(saved.snapshot);
    expect(second.store.snapshot.origin).toBe('persisted');
    expect(second.store.snapshot.services.map((x) => x.key)).toEqual(['default/web']);
    expect(second.store.readiness().detail).toMatch(/persisted/);
    expect(await second.registry.getSingleMetricAsString('edgeway_catalog_snapshot_origin')).toContain('origin="persisted"} 1');
    await second.store.close();
  });

  it('loadSnapshot reports truncated, corrupt and wrong-version files without throwing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ew-persist-'));
    const { store } = newStore();
    store.sink('s').setState('synced');
    store.flush();
    await saveSnapshot(dir, { ...store.snapshot, services: [{ ...service('web', '10.96.0.1'), endpoints: [] }] });
    const good = await readFile(snapshotPath(dir), 'utf8');
    expect((await loadSnapshot(dir)).kind).toBe('loaded');
    await writeFile(snapshotPath(dir), good.slice(0, good.length / 2));
    expect(await loadSnapshot(dir)).toMatchObject({ kind: 'invalid', reason: expect.stringMatching(/truncated/) });
    await writeFile(snapshotPath(dir), JSON.stringify({ ...JSON.parse(good), version: 99 }));
    expect(await loadSnapshot(dir)).toMatchObject({ kind: 'invalid', reason: expect.stringMatching(/version 99/) });
    await writeFile(snapshotPath(dir), JSON.stringify({ ...JSON.parse(good), services: [{ key: 1 }] }));
    expect(await loadSnapshot(dir)).toMatchObject({ kind: 'invalid' });
    expect(await loadSnapshot(join(dir, 'nope'))).toEqual({ kind: 'absent' });
  });
});

describe('CatalogStore incremental build', () => {
  it('equals a from-scratch build after a seeded sequence of random changes from two sources', async () => {
    const { buildSnapshot } = await import('../../src/catalog/build.js');
    let seed = 42;
    const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    const { store } = newStore();
    const sinks = [store.sink('a'), store.sink('b')];
    const recs = [new Map<string, unknown>(), new Map<string, unknown>()].map(() => ({ service: new Map<string, SlimService>(), slice: new Map<string, SlimSlice>() }));
    for (const s of sinks) s.setState('synced');
    for (let step = 0; step < 400; step++) {
      const src = rnd(2);
      const svc = `s${rnd(12)}`;
      const op = rnd(5);
      if (op === 0) { recs[src]!.service.set(svc, service(svc, `10.96.0.${rnd(200) + 1}`)); sinks[src]!.upsert('service', svc, recs[src]!.service.get(svc)!); }
      else if (op === 1) { recs[src]!.service.delete(svc); sinks[src]!.remove('service', svc); }
      else if (op === 2) { const k = `${svc}-${rnd(2)}`; const sl = slice(svc, k, [`10.244.${rnd(3)}.${rnd(5) + 1}`], rnd(2) === 0); recs[src]!.slice.set(k, sl); sinks[src]!.upsert('slice', k, sl); }
      else if (op === 3) { const k = `${svc}-${rnd(2)}`; recs[src]!.slice.delete(k); sinks[src]!.remove('slice', k); }
      else { sinks[src]!.replaceAll('slice', new Map(recs[src]!.slice)); }
      if (step % 7 === 0) {
        store.flush();
        // Oracle: the first source by name wins for a service defined twice.
        const services = new Map<string, SlimService>();
        for (const r of recs) for (const s of r.service.values()) if (!services.has(s.key)) services.set(s.key, s);
        const want = buildSnapshot({ services: services.values(), slices: recs.flatMap((r) => [...r.slice.values()]), nodes: [], policies: [] }, 0, '');
        expect(JSON.stringify(store.snapshot.services), `step ${step}`).toBe(JSON.stringify(want.services));
      }
    }
  });
});
