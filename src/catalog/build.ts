/**
 * Joining slim records into a Snapshot. Pure: the same records always give the
 * same snapshot content (sorted, deduplicated), so diffs downstream are stable.
 */
import type { Endpoint, Node, Service, Snapshot } from './types.js';
import { SNAPSHOT_VERSION } from './types.js';
import type { SlimPolicy, SlimService, SlimSlice } from './convert.js';

export interface CatalogRecords {
  readonly services: Iterable<SlimService>;
  readonly slices: Iterable<SlimSlice>;
  readonly nodes: Iterable<Node>;
  readonly policies: Iterable<SlimPolicy>;
}

export interface BuildInfo {
  /** Services excluded by the service filter. */
  filtered: number;
}

/** Merge endpoints of several slices: one entry per IP; a ready copy wins over a non-ready one. */
function mergeEndpoints(slices: readonly SlimSlice[]): Endpoint[] {
  const byIp = new Map<string, Endpoint>();
  for (const s of slices) {
    for (const e of s.endpoints) {
      const prev = byIp.get(e.ip);
      if (!prev) { byIp.set(e.ip, e); continue; }
      if (e.ready && !prev.ready) { byIp.set(e.ip, { ...e, ports: mergePorts(e, prev) }); continue; }
      byIp.set(e.ip, { ...prev, ports: mergePorts(prev, e) });
    }
  }
  return [...byIp.values()].sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
}

function mergePorts(a: Endpoint, b: Endpoint): Endpoint['ports'] {
  const out = [...a.ports];
  for (const p of b.ports) if (!out.some((x) => x.name === p.name && x.protocol === p.protocol)) out.push(p);
  return out;
}

/** One service from its records (slices of every source, the matching policy). Pure. */
export function buildService(s: SlimService, slices: readonly SlimSlice[], policy: SlimPolicy | undefined): Service {
  const { filtered: _f, ...rest } = s;
  const svc: Service = { ...rest, endpoints: s.type === 'ExternalName' ? [] : mergeEndpoints(slices) };
  if (policy) Object.assign(svc, { lbPolicy: policy.policy });
  return svc;
}

/** Build a snapshot from records. `revision` and `builtAt` are supplied by the caller (the store). */
export function buildSnapshot(records: CatalogRecords, revision: number, builtAt: string, info?: BuildInfo): Snapshot {
  const slicesBySvc = new Map<string, SlimSlice[]>();
  for (const s of records.slices) {
    const k = `${s.namespace}/${s.serviceName}`;
    const list = slicesBySvc.get(k);
    if (list) list.push(s);
    else slicesBySvc.set(k, [s]);
  }
  const policyBySvc = new Map<string, SlimPolicy>();
  for (const p of records.policies) policyBySvc.set(`${p.namespace}/${p.name}`, p);

  const services: Service[] = [];
  let filtered = 0;
  for (const s of records.services) {
    if (s.filtered) { filtered++; continue; }
    services.push(buildService(s, slicesBySvc.get(s.key) ?? [], policyBySvc.get(s.key)));
  }
  if (info) info.filtered = filtered;
  services.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const nodes = [...records.nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { version: SNAPSHOT_VERSION, revision, builtAt, origin: 'live', services, nodes };
}
