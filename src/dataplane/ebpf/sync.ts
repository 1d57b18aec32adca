/**
 * Pure part of the socket-LB data plane: plan → desired frontends, and the diff
 * between the maps' current content (a shadow copy) and that desired state as an
 * ordered list of map operations. No I/O here, so the ordering rules are unit
 * tested directly.
 *
 * Ordering (one `bpftool batch`, applied in sequence) never exposes a
 * half-updated service to a concurrent connect():
 *   1. new backends            (ids nobody references yet)
 *   2. slots 1..count          (each slot always names an existing backend)
 *   3. master entries          (count/flags/revision published last)
 *   4. slots beyond the new count, then removed services (master first, then slots)
 *   5. stale backends          (no slot references them any more)
 */
import type { Plan, PlannedServicePort } from '../../plan/types.js';
import { normalizeIp } from '../../catalog/ip.js';
import { IPPROTO, SVC_F_AFFINITY, type MapKey, type StructValue } from './layout.js';

export interface BackendAddr {
  readonly ip: string;
  readonly port: number;
}

/** One (vip, port, proto) the hooks translate. */
export interface Frontend {
  readonly key: string;
  readonly family: 4 | 6;
  readonly vip: string;
  readonly port: number;
  readonly proto: number;
  readonly flags: number;
  readonly affinityTimeout: number;
  /** Backends in slot order. */
  readonly backends: readonly BackendAddr[];
  readonly servicePortId: string;
}

/** Why a kernel-targeted service port (or one address family of it) is left to nftables. */
export type FallbackReason = 'userspace' | 'reject' | 'protocol' | 'no-family-endpoints';

export interface Desired {
  readonly frontends: ReadonlyMap<string, Frontend>;
  readonly fallbacks: ReadonlyMap<FallbackReason, number>;
}

export function canonicalIp(ip: string): string {
  return normalizeIp(ip) ?? ip;
}

export function frontendKey(family: 4 | 6, vip: string, port: number, proto: number): string {
  return `${family}|${canonicalIp(vip)}|${port}|${proto}`;
}

/** Frontends for every service port the kernel serves (target 'kernel', TCP/UDP, local/routable endpoints). */
export function desiredFrontends(plan: Plan): Desired {
  const frontends = new Map<string, Frontend>();
  const fallbacks = new Map<FallbackReason, number>();
  const fallback = (r: FallbackReason): void => { fallbacks.set(r, (fallbacks.get(r) ?? 0) + 1); };
  for (const sp of plan.servicePorts) {
    if (sp.target === 'userspace') { fallback('userspace'); continue; }
    if (sp.target === 'reject') { fallback('reject'); continue; }
    if (sp.protocol !== 'TCP' && sp.protocol !== 'UDP') { fallback('protocol'); continue; }
    for (const vip of sp.clusterIPs) {
      const fe = frontendFor(sp, vip);
      if (fe) frontends.set(fe.key, fe);
      else fallback('no-family-endpoints');
    }
  }
  return { frontends, fallbacks };
}

function frontendFor(sp: PlannedServicePort, vip: string): Frontend | undefined {
  const family: 4 | 6 = vip.includes(':') ? 6 : 4;
  const backends = sp.endpoints
    .filter((e) => e.family === family && e.class !== 'remote')
    .map((e) => ({ ip: canonicalIp(e.ip), port: e.port }));
  if (backends.length === 0) return undefined;
  const proto = IPPROTO[sp.protocol as 'TCP' | 'UDP'];
  const affinity = sp.policy.kind === 'clientIp';
  return {
    key: frontendKey(family, vip, sp.port, proto),
    family,
    vip: canonicalIp(vip),
    port: sp.port,
    proto,
    // random and roundRobin both pick a random slot in the kernel (per-socket
    // round robin would need shared mutable state on every connect).
    flags: affinity ? SVC_F_AFFINITY : 0,
    affinityTimeout: sp.policy.kind === 'clientIp' ? sp.policy.timeoutSeconds : 0,
    backends,
    servicePortId: sp.id,
  };
}

/** What the maps hold for one frontend (restored from the kernel or tracked after writes). */
export interface FrontendState {
  readonly family: 4 | 6;
  readonly vip: string;
  readonly port: number;
  readonly proto: number;
  svcId: number;
  revision: number;
  flags: number;
  affinityTimeout: number;
  /** Master entry present with this count (0 = no master entry). */
  count: number;
  /** slot (1-based) → backend id; may hold slots beyond `count` left by a crash. */
  slots: Map<number, number>;
}

export interface BackendState {
  readonly id: number;
  readonly family: 4 | 6;
  readonly ip: string;
  readonly port: number;
  readonly proto: number;
}

export interface LbState {
  readonly frontends: Map<string, FrontendState>;
  readonly backends: Map<number, BackendState>;
}

export function emptyState(): LbState {
  return { frontends: new Map(), backends: new Map() };
}

export function cloneState(s: LbState): LbState {
  const frontends = new Map<string, FrontendState>();
  for (const [k, f] of s.frontends) frontends.set(k, { ...f, slots: new Map(f.slots) });
  return { frontends, backends: new Map(s.backends) };
}

/** A map operation on a logical map; values are struct fields for layout.ts. */
export interface SyncOp {
  readonly op: 'update' | 'delete';
  readonly map: MapKey;
  readonly key: StructValue | number;
  readonly value?: StructValue;
}

/** Smallest unused positive ids (ids are u32 map keys; 0 means none). */
class IdAllocator {
  private cursor = 1;
  constructor(private readonly used: Set<number>) {}
  next(): number {
    while (this.used.has(this.cursor)) this.cursor++;
    this.used.add(this.cursor);
    return this.cursor;
  }
}

const svcMap = (family: 4 | 6): MapKey => (family === 4 ? 'svc4' : 'svc6');
const beMap = (family: 4 | 6): MapKey => (family === 4 ? 'backend4' : 'backend6');
const svcKey = (f: { vip: string; port: number; proto: number }, slot: number): StructValue => ({ vip: f.vip, dport: f.port, proto: f.proto, slot });

/**
 * Diff `current` against `desired`. Returns the ordered operations and the state
 * the maps hold once they all succeeded. Idempotent: a second call with the
 * returned state and the same desired set yields no operations.
 */
export function computeSync(current: LbState, desired: ReadonlyMap<string, Frontend>): { ops: SyncOp[]; next: LbState } {
  const next = cloneState(current);
  const newBackends: SyncOp[] = [];
  const slotWrites: SyncOp[] = [];
  const masters: SyncOp[] = [];
  const removals: SyncOp[] = [];
  const staleBackends: SyncOp[] = [];

  const svcIds = new IdAllocator(new Set([...next.frontends.values()].map((f) => f.svcId)));
  const beIds = new IdAllocator(new Set(next.backends.keys()));
  const referenced = new Set<number>();

  for (const fe of desired.values()) {
    let st = next.frontends.get(fe.key);
    if (!st) {
      st = { family: fe.family, vip: fe.vip, port: fe.port, proto: fe.proto, svcId: svcIds.next(), revision: 0, flags: 0, affinityTimeout: 0, count: 0, slots: new Map() };
      next.frontends.set(fe.key, st);
    }
    // Reuse backend ids this frontend already has for the same address (keeps
    // affinity entries and established reverse entries meaningful).
    const existing = new Map<string, number>();
    for (const id of st.slots.values()) {
      const b = next.backends.get(id);
      if (b) existing.set(`${b.ip}|${b.port}`, id);
    }
    const wanted = fe.backends.map((b) => {
      let id = existing.get(`${b.ip}|${b.port}`);
      if (id === undefined) {
        id = beIds.next();
        const bs: BackendState = { id, family: fe.family, ip: b.ip, port: b.port, proto: fe.proto };
        next.backends.set(id, bs);
        newBackends.push({ op: 'update', map: beMap(fe.family), key: id, value: { addr: b.ip, port: b.port, proto: fe.proto } });
        existing.set(`${b.ip}|${b.port}`, id);
      }
      referenced.add(id);
      return id;
    });
    let changed = st.count !== wanted.length || st.flags !== fe.flags || st.affinityTimeout !== fe.affinityTimeout;
    wanted.forEach((id, i) => {
      if (st.slots.get(i + 1) === id) return;
      changed = true;
      st.slots.set(i + 1, id);
      slotWrites.push({ op: 'update', map: svcMap(fe.family), key: svcKey(fe, i + 1), value: { backend_id: id, svc_id: st.svcId } });
    });
    if (changed) {
      st.revision = (st.revision + 1) >>> 0;
      st.count = wanted.length;
      st.flags = fe.flags;
      st.affinityTimeout = fe.affinityTimeout;
      masters.push({ op: 'update', map: svcMap(fe.family), key: svcKey(fe, 0), value: { count: st.count, flags: st.flags, revision: st.revision, svc_id: st.svcId, affinity_timeout: st.affinityTimeout } });
    }
    for (const slot of [...st.slots.keys()].sort((a, b) => a - b)) {
      if (slot <= wanted.length) continue;
      st.slots.delete(slot);
      removals.push({ op: 'delete', map: svcMap(fe.family), key: svcKey(fe, slot) });
    }
  }

  for (const [key, st] of [...next.frontends]) {
    if (desired.has(key)) continue;
    if (st.count > 0) removals.push({ op: 'delete', map: svcMap(st.family), key: svcKey(st, 0) });
    for (const slot of [...st.slots.keys()].sort((a, b) => a - b)) removals.push({ op: 'delete', map: svcMap(st.family), key: svcKey(st, slot) });
    next.frontends.delete(key);
  }

  for (const [id, b] of [...next.backends]) {
    if (referenced.has(id)) continue;
    staleBackends.push({ op: 'delete', map: beMap(b.family), key: id });
    next.backends.delete(id);
  }

  return { ops: [...newBackends, ...slotWrites, ...masters, ...removals, ...staleBackends], next };
}
