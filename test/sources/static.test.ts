import { mkdtemp, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CatalogStore } from '../../src/catalog/store.js';
import { StaticSource } from '../../src/sources/static.js';
import { createRegistry } from '../../src/metrics/registry.js';
import { silentLogger } from '../../src/util/log.js';
import type { Snapshot } from '../../src/catalog/types.js';

const svcDoc = (name: string, ip: string, port = 80): string => `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: default }
spec: { clusterIP: ${ip}, ports: [{ name: http, port: ${port} }] }
`;
const sliceDoc = (svc: string, ips: string[]): string => `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${svc}-1, namespace: default, labels: { kubernetes.io/service-name: ${svc} } }
addressType: IPv4
ports: [{ name: http, port: 8080 }]
endpoints: [${ips.map((i) => `{ addresses: [${i}] }`).join(', ')}]
`;

describe('StaticSource', () => {
  const sources: StaticSource[] = [];
  afterEach(async () => { for (const s of sources.splice(0)) await s.stop(); });

  async function setup(files: Record<string, string>): Promise<{ dir: string; store: CatalogStore; snaps: Snapshot[]; registry: ReturnType<typeof createRegistry>; src: StaticSource }> {
    const dir = await mkdtemp(join(tmpdir(), 'ew-static-'));
    for (const [f, t] of Object.entries(files)) await writeFile(join(dir, f), t);
    const registry = createRegistry({ defaultMetrics: false });
    const store = new CatalogStore({ logger: silentLogger(), registry, coalesceMs: 5 });
    const snaps: Snapshot[] = [];
    store.on('snapshot', (s) => snaps.push(s));
    const src = new StaticSource(store.sink('static'), { paths: Object.keys(files).map((f) => join(dir, f)), pollMs: 50, filterMode: 'FilterIfLabelExists', logger: silentLogger() });
    sources.push(src);
    await src.start();
    return { dir, store, snaps, registry, src };
  }
  const until = async (cond: () => boolean, ms = 3000): Promise<void> => {
    const end = Date.now() + ms;
    while (!cond()) { if (Date.now() > end) throw new Error('condition not met'); await new Promise((r) => setTimeout(r, 20)); }
  };

  it('reads multi-document files (and Lists) from several paths', async () => {
    const { snaps } = await setup({
      'a.yaml': `${svcDoc('web', '10.96.0.10')}---\n${sliceDoc('web', ['10.244.0.1', '10.244.0.2'])}`,
      'b.yaml': `kind: List\nitems:\n  - ${svcDoc('api', '10.96.0.11').trim().split('\n').join('\n    ')}\n`,
    });
    await until(() => snaps.length > 0);
    const s = snaps.at(-1)!;
    expect(s.services.map((x) => [x.key, x.endpoints.length])).toEqual([['default/api', 0], ['default/web', 2]]);
  });

  it('re-reads a file when it changes (atomic replace too)', async () => {
    const { dir, snaps } = await setup({ 'a.yaml': `${svcDoc('web', '10.96.0.10')}---\n${sliceDoc('web', ['10.244.0.1'])}` });
    await until(() => snaps.length > 0);
    await writeFile(join(dir, 'tmp'), `${svcDoc('web', '10.96.0.10')}---\n${sliceDoc('web', ['10.244.0.1', '10.244.0.9'])}`);
    await rename(join(dir, 'tmp'), join(dir, 'a.yaml'));
    await until(() => snaps.at(-1)!.services[0]!.endpoints.length === 2);
  });

  it('keeps the last good records when a file breaks, and reports degraded', async () => {
    const { dir, snaps, store } = await setup({ 'a.yaml': svcDoc('web', '10.96.0.10') });
    await until(() => snaps.length > 0);
    await writeFile(join(dir, 'a.yaml'), 'kind: Service\nmetadata: [unclosed\n');
    await until(() => store.sourceStates()[0]!.state === 'degraded');
    expect(store.snapshot.services.map((s) => s.key)).toEqual(['default/web']);
    await writeFile(join(dir, 'a.yaml'), svcDoc('web2', '10.96.0.12'));
    await until(() => store.snapshot.services[0]?.key === 'default/web2');
    expect(store.sourceStates()[0]!.state).toBe('synced');
  });

  it('rejects a malformed object alone and counts it; the rest stays', async () => {
    const { snaps, registry } = await setup({ 'a.yaml': `${svcDoc('web', '10.96.0.10')}---\n${svcDoc('bad', '10.96.0.300')}---\n${svcDoc('worse', '10.96.0.13', 99999)}---\nkind: Pod\nmetadata: { name: p }\n` });
    await until(() => snaps.length > 0);
    expect(snaps.at(-1)!.services.map((s) => s.key)).toEqual(['default/web']);
    const m = await registry.getSingleMetricAsString('edgeway_catalog_objects_rejected_total');
    expect(m).toMatch(/reason="spec.clusterIPs\[\] is not an IP address"} 1/);
    expect(m).toMatch(/reason="spec.ports\[\].port N is out of range N-N"} 1/);
    expect(m).toMatch(/unsupported kind/);
  });

  it('strict refresh throws a clear error naming the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ew-static-'));
    const registry = createRegistry({ defaultMetrics: false });
    const store = new CatalogStore({ logger: silentLogger(), registry });
    const src = new StaticSource(store.sink('static'), { paths: [join(dir, 'nope.yaml')], pollMs: 50, filterMode: 'FilterIfLabelExists', logger: silentLogger() });
    await expect(src.refresh(true)).rejects.toThrow(/nope\.yaml/);
  });
});
