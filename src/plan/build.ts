/**
 * Plan builder (pure): snapshot + this node + config → what goes where for every
 * service port. Same inputs always give the same plan (sorted, deterministic
 * userspace ports), so compilers downstream can diff plans element by element.
 */
import { createHash } from 'node:crypto';
import type { Endpoint, Service, ServicePort, Snapshot } from '../catalog/types.js';
import { cidrContains } from '../catalog/ip.js';
import type { EndpointClass, Plan, PlannedEndpoint, PlannedPolicy, PlannedServicePort, PlannedTarget, UserspaceReason } from './types.js';

export type PlanMode = 'auto' | 'ebpf' | 'nftables' | 'iptables' | 'none';

export interface PlanOptions {
  readonly nodeName: string;
  /** Endpoints inside these CIDRs on other nodes are reached by kernel DNAT. */
  readonly routableCIDRs: readonly string[];
  /** `A-B`: local ports for userspace-served service ports. */
  readonly userspacePorts: string;
  /** 'iptables' → every service port goes to userspace. */
  readonly mode: PlanMode;
}

/** Parse `A-B` into an inclusive range. */
export function parsePortRange(range: string): { first: number; last: number } {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(range);
  if (!m) throw new Error(`bad port range "${range}"`);
  const first = Number(m[1]);
  const last = Number(m[2]);
  if (first < 1 || last > 65535 || first > last) throw new Error(`bad port range "${range}"`);
  return { first, last };
}

/** The stable id of a service port: `namespace/name:port/PROTO`. */
export function servicePortId(svc: Service, p: ServicePort): string {
  return `${svc.key}:${p.port}/${p.protocol}`;
}

/**
 * The endpoint's port for a service port. EndpointSlice ports carry the *service*
 * port's name (the controller resolves named targetPorts), so match by name and
 * protocol; a numeric targetPort is the fallback when the endpoint lists no port
 * of that name (static sources, single-port services with unnamed ports).
 */
export function resolveTargetPort(sp: ServicePort, ep: Endpoint, singlePort: boolean): number | undefined {
  const byName = ep.ports.find((p) => p.name === sp.name && p.protocol === sp.protocol);
  if (byName) return byName.port;
  if (singlePort) {
    const same = ep.ports.filter((p) => p.protocol === sp.protocol);
    if (same.length === 1 && (typeof sp.targetPort === 'string' || same[0]!.name === '')) return same[0]!.port;
  }
  if (ep.ports.length === 0 && typeof sp.targetPort === 'number') return sp.targetPort;
  return undefined;
}

function classify(ep: Endpoint, nodeName: string, cidrs: readonly string[]): EndpointClass {
  if (ep.nodeName === nodeName) return 'local';
  if (cidrs.some((c) => cidrContains(c, ep.ip))) return 'routable';
  // No node name: nothing to tunnel to; DNAT is the only way to reach it.
  if (ep.nodeName === undefined) return 'routable';
  return 'remote';
}

/**
 * Which endpoints to use: ready ones; serving-terminating ones only when none is
 * ready (kube-proxy's rule); `internalTrafficPolicy: Local` keeps only this node's;
 * then topology: EndpointSlice hints for this node's zone when every endpoint has
 * hints, else `trafficDistribution: PreferClose` keeps same-zone endpoints when any
 * exist. Zone filtering never empties the list.
 */
function selectEndpoints(svc: Service, eps: readonly Endpoint[], nodeName: string, zone: string | undefined): { eps: Endpoint[]; ready: boolean } {
  let pool = svc.internalTrafficPolicy === 'Local' ? eps.filter((e) => e.nodeName === nodeName) : [...eps];
  let ready = true;
  let chosen = pool.filter((e) => e.ready);
  if (chosen.length === 0) {
    chosen = pool.filter((e) => e.serving && e.terminating);
    ready = false;
  }
  pool = chosen;
  if (zone && pool.length > 0) {
    if (pool.every((e) => e.zoneHints.length > 0)) {
      const hinted = pool.filter((e) => e.zoneHints.includes(zone));
      if (hinted.length > 0) pool = hinted;
    } else if (svc.trafficDistribution === 'PreferClose') {
      const same = pool.filter((e) => e.zone === zone);
      if (same.length > 0) pool = same;
    }
  }
  return { eps: pool, ready };
}

function policyOf(svc: Service): { policy: PlannedPolicy; notes: string[] } {
  const notes: string[] = [];
  if (svc.sessionAffinity.kind === 'ClientIP') {
    if (svc.lbPolicy) notes.push(`sessionAffinity ClientIP overrides DestinationRule ${svc.lbPolicy.kind}`);
    return { policy: { kind: 'clientIp', timeoutSeconds: svc.sessionAffinity.timeoutSeconds }, notes };
  }
  const lb = svc.lbPolicy;
  if (!lb) return { policy: { kind: 'random' }, notes };
  return { policy: lb, notes };
}

function userspaceReasonOf(policy: PlannedPolicy, eps: readonly PlannedEndpoint[], mode: PlanMode): UserspaceReason | undefined {
  if (mode === 'iptables') return 'iptables-mode';
  if (policy.kind === 'leastRequest') return 'least-request';
  if (policy.kind === 'consistentHash') return 'l7-policy';
  if (eps.some((e) => e.class === 'remote')) return 'remote-endpoints';
  return undefined;
}

/** FNV-1a would do; sha256 keeps the slot stable across Node versions and is cheap at this size. */
function hashSlot(id: string, size: number): number {
  return createHash('sha256').update(id).digest().readUInt32BE(0) % size;
}

/**
 * Allocate one userspace port per id: ids in sorted order, each at its hash slot
 * with linear probing. Deterministic for a given set of ids; an id keeps its port
 * while the ids before it in probe order do not collide with it.
 */
export function allocateUserspacePorts(ids: readonly string[], range: string): { ports: Map<string, number>; exhausted: string[] } {
  const { first, last } = parsePortRange(range);
  const size = last - first + 1;
  const used = new Set<number>();
  const ports = new Map<string, number>();
  const exhausted: string[] = [];
  for (const id of [...ids].sort()) {
    if (used.size >= size) { exhausted.push(id); continue; }
    let slot = hashSlot(id, size);
    while (used.has(slot)) slot = (slot + 1) % size;
    used.add(slot);
    ports.set(id, first + slot);
  }
  return { ports, exhausted };
}

/** Build the plan. Pure and deterministic. */
export function buildPlan(snapshot: Snapshot, opts: PlanOptions): Plan {
  const zone = snapshot.nodes.find((n) => n.name === opts.nodeName)?.zone;
  type Draft = { -readonly [K in keyof PlannedServicePort]: PlannedServicePort[K] };
  const drafts: Draft[] = [];
  for (const svc of snapshot.services) {
    if (svc.headless || svc.type === 'ExternalName' || svc.clusterIPs.length === 0) continue;
    const { eps: selected, ready } = selectEndpoints(svc, svc.endpoints, opts.nodeName, zone);
    const { policy, notes } = policyOf(svc);
    const families = new Set(svc.clusterIPs.map((ip) => (ip.includes(':') ? 6 : 4)));
    for (const sp of svc.ports) {
      const endpoints: PlannedEndpoint[] = [];
      for (const ep of selected) {
        if (!families.has(ep.family)) continue;
        const port = resolveTargetPort(sp, ep, svc.ports.length === 1);
        if (port === undefined) continue;
        const pe: PlannedEndpoint = { ip: ep.ip, family: ep.family, port, class: classify(ep, opts.nodeName, opts.routableCIDRs), ready };
        if (ep.nodeName) Object.assign(pe, { nodeName: ep.nodeName });
        if (ep.zone) Object.assign(pe, { zone: ep.zone });
        endpoints.push(pe);
      }
      endpoints.sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : a.port - b.port));
      const reason = endpoints.length > 0 ? userspaceReasonOf(policy, endpoints, opts.mode) : undefined;
      const target: PlannedTarget = endpoints.length === 0 ? 'reject' : reason ? 'userspace' : 'kernel';
      const d: Draft = {
        id: servicePortId(svc, sp),
        serviceKey: svc.key,
        namespace: svc.namespace,
        name: svc.name,
        portName: sp.name,
        protocol: sp.protocol,
        port: sp.port,
        clusterIPs: svc.clusterIPs,
        endpoints,
        policy,
        target,
      };
      if (reason) d.userspaceReason = reason;
      if (notes.length) d.notes = notes;
      drafts.push(d);
    }
  }
  drafts.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const { ports, exhausted } = allocateUserspacePorts(drafts.filter((d) => d.target === 'userspace').map((d) => d.id), opts.userspacePorts);
  for (const d of drafts) {
    if (d.target !== 'userspace') continue;
    const p = ports.get(d.id);
    if (p === undefined) d.target = 'reject';
    else d.userspacePort = p;
  }
  return { nodeName: opts.nodeName, revision: snapshot.revision, servicePorts: drafts, userspacePortExhausted: exhausted };
}
