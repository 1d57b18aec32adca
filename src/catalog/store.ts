/**
 * The catalog store: the sink every source writes slim records into, and the one
 * place snapshots are built, published and persisted.
 *
 * - Sources get their own `SourceSink`; records are kept per source so two sources
 *   never clobber each other, and a source's relist replaces only its own records.
 * - Changes are coalesced: bursts (a 10k-object relist) give one snapshot.
 * - Nothing live is published until every registered source has synced once; until
 *   then a persisted snapshot (if any) is what downstream sees.
 * - Rejected objects are logged once per object and reason, and counted.
 */
import { EventEmitter } from 'node:events';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../util/log.js';
import type { Node, Service, Snapshot } from './types.js';
import { emptySnapshot } from './types.js';
import type { SlimPolicy, SlimService, SlimSlice } from './convert.js';
import type { IngressObject } from './ingress.js';
import { buildService } from './build.js';
import { SNAPSHOT_VERSION } from './types.js';
import { saveSnapshot } from './persist.js';

export type RecordKind = 'service' | 'slice' | 'node' | 'policy' | 'ingress';
type RecordOf<K extends RecordKind> = K extends 'service' ? SlimService : K extends 'slice' ? SlimSlice : K extends 'node' ? Node : K extends 'ingress' ? IngressObject : SlimPolicy;

export type SourceState = 'starting' | 'synced' | 'degraded' | 'stopped';

/** What a source may do to the catalog. */
export interface SourceSink {
  upsert<K extends RecordKind>(kind: K, key: string, record: RecordOf<K>): void;
  remove(kind: RecordKind, key: string): void;
  /** Replace every record of `kind` from this source (a relist / file re-read). */
  replaceAll<K extends RecordKind>(kind: K, records: ReadonlyMap<string, RecordOf<K>>): void;
  /** An object that failed validation (or was deleted after failing): logged once, counted. */
  reject(kind: RecordKind, ref: string, reason: string): void;
  /** The object `ref` is valid again (or gone): forget its rejection. */
  clearRejection(kind: RecordKind, ref: string): void;
  setState(state: SourceState, detail?: string): void;
  /** Count a raw watch/list event (for the sync-events metric). */
  event(kind: RecordKind, type: 'add' | 'update' | 'delete' | 'relist' | 'error'): void;
}

export interface CatalogStoreOptions {
  logger: Logger;
  registry: Registry;
  /** Where snapshots are persisted; undefined = no persistence (render/catalog commands). */
  stateDir?: string;
  /** Coalescing delay for bursts of changes (ms). */
  coalesceMs?: number;
  /** Minimum time between two snapshot writes (ms, default 1000); the newest snapshot is always written. */
  persistIntervalMs?: number;
}

interface SourceEntry {
  name: string;
  state: SourceState;
  detail?: string;
  /** Listed completely at least once (a later outage keeps its last records). */
  everSynced: boolean;
  records: { [K in RecordKind]: Map<string, RecordOf<K>> };
}

export interface CatalogStoreEvents {
  snapshot: [Snapshot];
}

/** Normalise a rejection reason into a bounded-cardinality metric label. */
export function reasonClass(reason: string): string {
  return reason.replace(/"[^"]*"/g, '').replace(/\[\d+\]/g, '[]').replace(/\d+(\.\d+)?/g, 'N').replace(/\s+/g, ' ').trim().slice(0, 80);
}

export class CatalogStore extends EventEmitter<CatalogStoreEvents> {
  private readonly sources = new Map<string, SourceEntry>();
  private readonly rejections = new Map<string, string>();
  private current: Snapshot = emptySnapshot();
  /**
   * Incremental build state: records indexed by the service they belong to, the
   * services built so far, and what changed since the last build. One endpoint
   * change rebuilds one service, so its cost does not grow with the catalog.
   */
  private readonly byService = {
    service: new Map<string, Map<string, SlimService>>(),
    slice: new Map<string, Map<string, SlimSlice>>(),
    policy: new Map<string, Map<string, SlimPolicy>>(),
  };
  private readonly built = new Map<string, Service>();
  private readonly filteredKeys = new Set<string>();
  private sortedKeys: string[] = [];
  private readonly dirty = new Set<string>();
  private nodesDirty = true;
  private ingressDirty = false;
  private revision = 0;
  private timer: NodeJS.Timeout | undefined;
  private persisting: Promise<void> = Promise.resolve();
  private persistPending: Snapshot | undefined;
  private persistGap: NodeJS.Timeout | undefined;
  private persistGapDone: (() => void) | undefined;
  private closing = false;
  private readonly log: Logger;
  private readonly coalesceMs: number;
  private readonly m: {
    services: Gauge; endpoints: Gauge; nodes: Gauge; rejected: Counter; events: Counter; sourceState: Gauge;
    origin: Gauge; persistErrors: Counter; snapshots: Counter; filtered: Gauge;
  };

  constructor(private readonly opts: CatalogStoreOptions) {
    super();
    this.log = opts.logger.child({ subsystem: 'catalog' });
    this.coalesceMs = opts.coalesceMs ?? 50;
    const r = opts.registry;
    this.m = {
      services: new Gauge({ name: 'edgeway_catalog_services', help: 'Services in the current snapshot', registers: [r] }),
      endpoints: new Gauge({ name: 'edgeway_catalog_endpoints', help: 'Endpoints in the current snapshot', registers: [r] }),
      nodes: new Gauge({ name: 'edgeway_catalog_nodes', help: 'Nodes in the current snapshot', registers: [r] }),
      filtered: new Gauge({ name: 'edgeway_catalog_services_filtered', help: 'Services excluded by the service filter', registers: [r] }),
      rejected: new Counter({ name: 'edgeway_catalog_objects_rejected_total', help: 'API objects rejected by validation', labelNames: ['kind', 'reason'], registers: [r] }),
      events: new Counter({ name: 'edgeway_catalog_sync_events_total', help: 'List/watch events received from sources', labelNames: ['source', 'kind', 'type'], registers: [r] }),
      sourceState: new Gauge({ name: 'edgeway_catalog_source_state', help: 'Source state (1 for the current state)', labelNames: ['source', 'state'], registers: [r] }),
      origin: new Gauge({ name: 'edgeway_catalog_snapshot_origin', help: 'Origin of the served snapshot (1 for the current origin: live or persisted)', labelNames: ['origin'], registers: [r] }),
      persistErrors: new Counter({ name: 'edgeway_catalog_persist_errors_total', help: 'Failed snapshot writes', registers: [r] }),
      snapshots: new Counter({ name: 'edgeway_catalog_snapshots_total', help: 'Snapshots published', labelNames: ['origin'], registers: [r] }),
    };
  }

  /** The snapshot downstream should use now. */
  get snapshot(): Snapshot {
    return this.current;
  }

  /** True once every registered source has synced at least once. */
  get synced(): boolean {
    return this.sources.size > 0 && [...this.sources.values()].every((s) => s.everSynced);
  }

  /** Ready = live and synced, or serving a persisted snapshot. */
  readiness(): { ready: boolean; detail: string } {
    if (this.current.origin === 'live' && this.current.revision > 0) return { ready: true, detail: `live revision ${this.current.revision}` };
    if (this.current.origin === 'persisted') return { ready: true, detail: `serving persisted snapshot (${this.current.builtAt}); sources not synced` };
    const waiting = [...this.sources.values()].filter((s) => s.state !== 'synced').map((s) => `${s.name}=${s.state}${s.detail ? ` (${s.detail})` : ''}`);
    return { ready: false, detail: `waiting for sources: ${waiting.join(', ') || 'none registered'}` };
  }

  sourceStates(): { name: string; state: SourceState; detail?: string }[] {
    return [...this.sources.values()].map((s) => ({ name: s.name, state: s.state, ...(s.detail ? { detail: s.detail } : {}) }));
  }

  /** Serve a persisted snapshot until the sources sync (called once at start). */
  usePersisted(snap: Snapshot): void {
    if (this.current.origin === 'live' && this.current.revision > 0) return;
    this.revision = Math.max(this.revision, 1);
    this.current = { ...snap, origin: 'persisted', revision: this.revision };
    this.publish(this.current);
  }

  /** Register a source and get its sink. */
  sink(name: string): SourceSink {
    if (this.sources.has(name)) throw new Error(`source ${name} registered twice`);
    const entry: SourceEntry = {
      name,
      state: 'starting',
      everSynced: false,
      records: { service: new Map(), slice: new Map(), node: new Map(), policy: new Map(), ingress: new Map() },
    };
    this.sources.set(name, entry);
    this.setStateMetric(entry);
    const changed = (): void => this.schedule();
    return {
      upsert: (kind, key, record) => { if (this.put(entry, kind, key, record)) changed(); },
      remove: (kind, key) => { if (this.put(entry, kind, key, undefined)) changed(); },
      replaceAll: (kind, records) => {
        let any = false;
        const map = entry.records[kind] as Map<string, unknown>;
        for (const key of [...map.keys()]) if (!records.has(key)) any = this.put(entry, kind, key, undefined) || any;
        for (const [key, rec] of records) any = this.put(entry, kind, key, rec) || any;
        if (any) changed();
      },
      reject: (kind, ref, reason) => {
        const k = `${name}\0${kind}\0${ref}`;
        if (this.rejections.get(k) === reason) return;
        this.rejections.set(k, reason);
        this.m.rejected.inc({ kind, reason: reasonClass(reason) });
        this.log.warn({ source: name, kind, object: ref, reason }, 'object rejected');
      },
      clearRejection: (kind, ref) => { this.rejections.delete(`${name}\0${kind}\0${ref}`); },
      setState: (state, detail) => {
        const was = entry.state;
        entry.state = state;
        entry.detail = detail;
        if (state === 'synced') entry.everSynced = true;
        this.setStateMetric(entry);
        if (was !== state) this.log.info({ source: name, state, detail }, 'source state');
        changed();
      },
      event: (kind, type) => { this.m.events.inc({ source: name, kind, type }); },
    };
  }

  /** Set (or delete, with undefined) one record; keeps the indexes and the dirty set. Returns whether anything changed. */
  private put(entry: SourceEntry, kind: RecordKind, key: string, rec: unknown): boolean {
    const map = entry.records[kind] as Map<string, unknown>;
    const old = map.get(key);
    if (old === rec) return false;
    if (rec === undefined) map.delete(key);
    else map.set(key, rec);
    if (kind === 'node') { this.nodesDirty = true; return true; }
    if (kind === 'ingress') { this.ingressDirty = true; return true; }
    const id = `${entry.name}\0${key}`;
    const index = this.byService[kind] as Map<string, Map<string, unknown>>;
    for (const [r, add] of [[old, false], [rec, true]] as const) {
      if (r === undefined) continue;
      const svcKey = serviceKeyOf(kind, r);
      this.dirty.add(svcKey);
      let m = index.get(svcKey);
      if (add) {
        if (!m) index.set(svcKey, (m = new Map()));
        m.set(id, r);
      } else if (m) {
        m.delete(id);
        if (m.size === 0) index.delete(svcKey);
      }
    }
    return true;
  }

  /** Rebuild the dirty services; returns whether the published content changed. */
  private rebuildDirty(): boolean {
    let changed = false;
    for (const key of this.dirty) {
      // Several sources may define one service: the first by source name wins (deterministic).
      const defs = [...(this.byService.service.get(key) ?? new Map<string, SlimService>()).entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1));
      const def = defs[0]?.[1];
      const prev = this.built.get(key);
      if (def?.filtered) this.filteredKeys.add(key);
      else this.filteredKeys.delete(key);
      if (!def || def.filtered) {
        if (prev) { this.built.delete(key); this.removeKey(key); changed = true; }
        continue;
      }
      const pols = [...(this.byService.policy.get(key)?.entries() ?? [])].sort((a, b) => (a[0] < b[0] ? -1 : 1));
      const next = buildService(def, [...(this.byService.slice.get(key)?.values() ?? [])], pols.at(-1)?.[1]);
      if (prev && JSON.stringify(prev) === JSON.stringify(next)) continue;
      if (!prev) this.insertKey(key);
      this.built.set(key, next);
      changed = true;
    }
    this.dirty.clear();
    return changed;
  }

  private insertKey(key: string): void {
    this.sortedKeys.splice(lowerBound(this.sortedKeys, key), 0, key);
  }

  private removeKey(key: string): void {
    const i = lowerBound(this.sortedKeys, key);
    if (this.sortedKeys[i] === key) this.sortedKeys.splice(i, 1);
  }

  private setStateMetric(entry: SourceEntry): void {
    for (const s of ['starting', 'synced', 'degraded', 'stopped'] as const) {
      this.m.sourceState.set({ source: entry.name, state: s }, entry.state === s ? 1 : 0);
    }
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => { this.timer = undefined; this.rebuild(); }, this.coalesceMs);
  }

  /** Build now (tests, and commands that want the final state without waiting). */
  flush(): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = undefined; }
    this.rebuild();
  }

  private rebuild(): void {
    // Until every source has listed once, a partial view must not replace the
    // persisted one (it would withdraw services that are merely not listed yet).
    if (!this.synced) return;
    const servicesChanged = this.rebuildDirty();
    let nodes = this.current.nodes;
    let nodesChanged = false;
    if (this.nodesDirty) {
      this.nodesDirty = false;
      const byName = new Map<string, Node>();
      for (const src of [...this.sources.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
        for (const n of src.records.node.values()) if (!byName.has(n.name)) byName.set(n.name, n);
      }
      const next = [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      nodesChanged = JSON.stringify(next) !== JSON.stringify(this.current.nodes);
      nodes = next;
    }
    let ingress = this.current.ingress;
    const ingressChanged = this.ingressDirty;
    if (this.ingressDirty) {
      this.ingressDirty = false;
      // Same rule as nodes: the first source by name wins a key.
      const byKey = new Map<string, IngressObject>();
      for (const src of [...this.sources.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
        for (const [k, r] of src.records.ingress) if (!byKey.has(k)) byKey.set(k, r);
      }
      ingress = [...byKey.keys()].sort().map((k) => byKey.get(k)!);
    }
    this.m.filtered.set(this.filteredKeys.size);
    const first = !(this.current.origin === 'live' && this.current.revision > 0);
    if (!first && !servicesChanged && !nodesChanged && !ingressChanged) return;
    this.revision++;
    const next: Snapshot = {
      version: SNAPSHOT_VERSION,
      revision: this.revision,
      builtAt: new Date().toISOString(),
      origin: 'live',
      services: this.sortedKeys.map((k) => this.built.get(k)!),
      nodes,
      ...(ingress && ingress.length > 0 ? { ingress } : {}),
    };
    this.current = next;
    this.publish(next);
    // Ingress records carry TLS private keys: they never reach the disk.
    const { ingress: _secretsIncluded, ...persistable } = next;
    this.persist(persistable);
  }

  private publish(snap: Snapshot): void {
    this.m.services.set(snap.services.length);
    this.m.endpoints.set(snap.services.reduce((n, s) => n + s.endpoints.length, 0));
    this.m.nodes.set(snap.nodes.length);
    this.m.origin.set({ origin: 'live' }, snap.origin === 'live' ? 1 : 0);
    this.m.origin.set({ origin: 'persisted' }, snap.origin === 'persisted' ? 1 : 0);
    this.m.snapshots.inc({ origin: snap.origin });
    this.log.info({ revision: snap.revision, origin: snap.origin, services: snap.services.length, nodes: snap.nodes.length }, 'catalog snapshot');
    this.emit('snapshot', snap);
  }

  /**
   * Serialised writes; only the newest pending snapshot is written after the one in
   * flight, and writes are spaced by `persistIntervalMs` so a churning 50k-service
   * catalog is not serialised to disk on every endpoint change.
   */
  private persist(snap: Snapshot): void {
    const dir = this.opts.stateDir;
    if (!dir) return;
    const first = this.persistPending === undefined;
    this.persistPending = snap;
    if (!first) return;
    this.persisting = this.persisting.then(async () => {
      const s = this.persistPending;
      this.persistPending = undefined;
      if (!s) return;
      try {
        await saveSnapshot(dir, s);
      } catch (err) {
        this.m.persistErrors.inc();
        this.log.error({ err, stateDir: dir }, 'persisting the catalog failed; the previous copy is kept');
      }
      if (!this.closing) await new Promise<void>((r) => { this.persistGap = setTimeout(r, this.opts.persistIntervalMs ?? 1000); this.persistGapDone = r; });
    });
  }

  /** Wait for pending writes, stop timers. */
  async close(): Promise<void> {
    if (this.timer) { clearTimeout(this.timer); this.timer = undefined; }
    this.closing = true;
    if (this.persistGap) { clearTimeout(this.persistGap); this.persistGapDone?.(); }
    await this.persisting;
  }
}

function serviceKeyOf(kind: RecordKind, r: unknown): string {
  if (kind === 'slice') { const x = r as SlimSlice; return `${x.namespace}/${x.serviceName}`; }
  if (kind === 'policy') { const x = r as SlimPolicy; return `${x.namespace}/${x.name}`; }
  return (r as SlimService).key;
}

/** First index whose element is >= key (binary search in a sorted array). */
function lowerBound(a: readonly string[], key: string): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
