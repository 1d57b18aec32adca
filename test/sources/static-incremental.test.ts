/**
 * A one-service edit in a large static file costs what the edit costs: unchanged
 * parts of the file are not parsed again (their records stay the same objects,
 * so the catalog rebuilds one service), and the nftables sync that follows is an
 * incremental transaction carrying only that service's elements. Asserted on
 * what is built and sent, never on time.
 * IP plan (data only): ClusterIPs 10.96.x.y, endpoints 10.100.x.y and 10.200.x.y
 * on node n2; the edited endpoint becomes 10.250.0.1.
 */
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { parseAllDocuments } from 'yaml';
import { CatalogStore } from '../../src/catalog/store.js';
import { parseConfig } from '../../src/config/load.js';
import { createDataplanePart } from '../../src/dataplane/part.js';
import { parseStaticFile, StaticSource, type ChunkCache } from '../../src/sources/static.js';
import { SourceError } from '../../src/sources/errors.js';
import { silentLogger } from '../../src/util/log.js';
import type { Snapshot } from '../../src/catalog/types.js';
import { FakeNftExecutor } from '../helpers/fake-nft-executor.js';

const N = 3000;
const svc = (i: number, ep: string): string => `apiVersion: v1
kind: Service
metadata: { name: s${i}, namespace: big }
spec: { clusterIP: 10.96.${i >> 8}.${i & 255}, ports: [{ name: p, port: 80, targetPort: 8080, protocol: TCP }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: s${i}-1, namespace: big, labels: { kubernetes.io/service-name: s${i} } }
addressType: IPv4
ports: [{ name: p, port: 8080, protocol: TCP }]
endpoints: [{ addresses: [${ep}], nodeName: n2 }, { addresses: [10.200.${i >> 8}.${i & 255}], nodeName: n2 }]
`;
const file = (edited?: number): string => ['apiVersion: v1\nkind: Node\nmetadata: { name: n1 }\n',
  ...Array.from({ length: N }, (_, i) => svc(i, i === edited ? '10.250.0.1' : `10.100.${i >> 8}.${i & 255}`))].join('---\n');

async function until(pred: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 3000 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!pred()) throw new Error(`timed out: ${what}`);
}

describe('static source: a one-service change in a large file stays proportional', () => {
  it(`${N} services: one edited endpoint → one rebuilt service, one incremental nft transaction with only its elements`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ew-static-big-'));
    const path = join(dir, 'services.yaml');
    await writeFile(path, file());
    const config = parseConfig({ nodeName: 'n1', dataplane: { mode: 'nftables', minSyncIntervalMs: 0, driftCheckIntervalMs: 3_600_000, routableCIDRs: ['10.0.0.0/8'] } }, 'test.yaml');
    const store = new CatalogStore({ logger: silentLogger(), registry: new Registry(), coalesceMs: 0 });
    const snaps: Snapshot[] = [];
    store.on('snapshot', (s) => snaps.push(s));
    const fake = new FakeNftExecutor();
    const part = (await createDataplanePart({ config, logger: silentLogger(), registry: new Registry(), store }, fake))!;
    await part.start();
    const src = new StaticSource(store.sink('static'), { paths: [path], pollMs: 3_600_000, filterMode: 'FilterIfLabelExists', logger: silentLogger() });
    try {
      await src.refresh(true);
      await until(() => snaps.length > 0 && fake.history.length > 0 && part.syncer!.appliedRevision === snaps.at(-1)!.revision, 'the first sync');
      const before = snaps.at(-1)!;
      expect(before.services).toHaveLength(N);
      const fullTx = fake.history.length;

      // Atomic replace (a poll never sees half a file); mtime/size/inode change.
      await writeFile(`${path}.tmp`, file(1234));
      await rename(`${path}.tmp`, path);
      await src.refresh(true);
      await until(() => snaps.at(-1) !== before && part.syncer!.appliedRevision === snaps.at(-1)!.revision, 'the sync of the edit');
      const after = snaps.at(-1)!;

      // Catalog: every other service is the very same object (nothing re-parsed or rebuilt).
      const rebuilt = after.services.filter((s, i) => s !== before.services[i]);
      expect(rebuilt.map((s) => s.key)).toEqual(['big/s1234']);

      // nftables: one incremental transaction, only the edited endpoint's element.
      expect(part.syncer!.lastResult?.kind).toBe('incremental');
      const sent = fake.history.slice(fullTx);
      expect(sent).toHaveLength(1);
      const tx = JSON.stringify(sent[0]);
      expect(sent[0]!.declare).toHaveLength(0);
      // The changed endpoint slot of s1234 (ClusterIP 10.96.4.210): its key deleted, re-added with the new address.
      expect(sent[0]!.commands.map((c) => Object.keys(c)[0])).toEqual(['delete', 'add']);
      expect(tx).toContain('10.250.0.1');
      expect(tx).not.toContain('10.100.');
      expect(tx.match(/10\.96\.\d+\.\d+/g)!.every((ip) => ip === '10.96.4.210')).toBe(true);
      const ep4 = fake.dump()!.sets.ep4_tcp!;
      expect(JSON.stringify(ep4)).toContain('10.250.0.1');
      expect(Object.keys(ep4)).toHaveLength(2 * N);
    } finally {
      await src.stop();
      await part.stop();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('parseStaticFile with a chunk cache', () => {
  const sink = (): { rejected: string[]; reject: (k: string, ref: string, reason: string) => void; clearRejection: () => void } => {
    const rejected: string[] = [];
    return { rejected, reject: (_k, ref, reason) => { rejected.push(`${ref}: ${reason}`); }, clearRejection: () => undefined };
  };
  const two = `${svc(1, '10.100.0.1')}---\n${svc(2, '10.100.0.2')}`;

  it('an unchanged chunk yields the same record objects; a changed one new ones', () => {
    const cache: ChunkCache = new Map();
    const a = parseStaticFile('f.yaml', two, 'FilterIfLabelExists', sink(), false, cache);
    const b = parseStaticFile('f.yaml', two.replace('10.100.0.2', '10.100.0.9'), 'FilterIfLabelExists', sink(), false, cache);
    expect(b.service.get('Service:big/s1')).toBe(a.service.get('Service:big/s1'));
    expect(b.slice.get('EndpointSlice:big/s1-1')).toBe(a.slice.get('EndpointSlice:big/s1-1'));
    expect(b.service.get('Service:big/s2')).toBe(a.service.get('Service:big/s2'));
    expect(b.slice.get('EndpointSlice:big/s2-1')).not.toBe(a.slice.get('EndpointSlice:big/s2-1'));
    expect(JSON.stringify(b.slice.get('EndpointSlice:big/s2-1'))).toContain('10.100.0.9');
    // Only the current chunks are kept.
    expect(cache.size).toBe(4);
  });

  it.each([
    { name: 'plain', cached: false },
    { name: 'after a cached read', cached: true },
  ])('errors and rejections name the document and line of the whole file ($name)', ({ cached }) => {
    const cache: ChunkCache = new Map();
    const bad = `${two}---\nkind: Widget\nmetadata: { name: w }\n---\napiVersion: v1\nkind: Service\nmetadata: { name: x\n`;
    if (cached) parseStaticFile('f.yaml', two, 'FilterIfLabelExists', sink(), false, cache);
    const s = sink();
    const err = (() => { try { parseStaticFile('f.yaml', bad, 'FilterIfLabelExists', s, false, cache); } catch (e) { return e; } return undefined; })();
    expect(err).toBeInstanceOf(SourceError);
    // The same numbers as a parse of the whole file in one piece.
    const whole = parseAllDocuments(bad)[5]!.errors[0]!;
    expect((err as SourceError).message).toBe(`f.yaml: document 6, line ${whole.linePos![0].line}: ${whole.message.split('\n')[0]}`);
    expect(s.rejected).toEqual(['f.yaml#5: unsupported kind "Widget"']);
  });

  it('a file with a % directive is parsed in one piece (the directive belongs to the next document)', () => {
    const text = `%YAML 1.2\n---\n${svc(1, '10.100.0.1')}`;
    const r = parseStaticFile('f.yaml', text, 'FilterIfLabelExists', sink(), false, new Map());
    expect([...r.service.keys()]).toEqual(['Service:big/s1']);
  });
});
