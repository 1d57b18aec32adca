/**
 * The compiler (pure): plan → the desired content of table `inet edgeway`.
 *
 * Layout (linear in the number of services; see README.md for the numbers):
 * - `svc4`/`svc6`: one verdict map keyed `addr . l4proto . port` → the service's
 *   choice chain. The only per-packet lookup for non-service traffic.
 * - random (default): shared chains `lb_K` (one per endpoint count K) doing
 *   `dnat to daddr . l4proto . dport . numgen random mod K map @ep4_tcp`: endpoints
 *   are elements of ONE global map per family and protocol, so a service costs
 *   elements, not sets.
 * - round robin: a chain per service port (`numgen inc` keeps its counter per rule,
 *   so a shared chain would interleave services) using the same global map.
 * - ClientIP affinity: a chain per service port; one dynamic timeout set per
 *   endpoint *position* (`aff4_i`, shared by all services) remembers
 *   `client . service` for position i; hits refresh it and DNAT at once, misses pick with
 *   `numgen random mod (K-i) == 0` rules (uniform) and record the pick.
 * - no endpoints: `goto reject` (TCP reset, else ICMP port unreachable).
 * - userspace: `goto userspace`, which redirects to the port in `usp4`/`usp6`.
 * - hairpin: postrouting masquerades DNATed packets whose source is the endpoint
 *   itself (`saddr . daddr` in `hairpin4`/`hairpin6`).
 */
import type { Plan, PlannedEndpoint, PlannedServicePort } from '../../plan/types.js';
import {
  concat, eq, goto, jump, keyText, meta, payload,
  type ChainDecl, type Element, type Expr, type Rule, type Ruleset, type SetDecl, type Stmt,
} from './model.js';
import { affinitySet, CHAIN, endpointMap, lbChain, serviceChain, SET } from './names.js';

export type Fam = 4 | 6;
const FAMS: readonly Fam[] = [4, 6];
const PROTOS = ['tcp', 'udp', 'sctp'] as const;
type Proto = (typeof PROTOS)[number];

const nf = (f: Fam): Stmt => eq(meta('nfproto'), f === 4 ? 'ipv4' : 'ipv6');
const ipProto = (f: Fam): 'ip' | 'ip6' => (f === 4 ? 'ip' : 'ip6');
const addrType = (f: Fam): string => (f === 4 ? 'ipv4_addr' : 'ipv6_addr');

/** Size of each affinity position set (clients remembered per position). */
export const AFFINITY_SET_SIZE = 262_144;

/** Chains and sets that exist whatever the plan. */
export function staticSets(): SetDecl[] {
  const sets: SetDecl[] = [];
  for (const f of FAMS) {
    const ip = ipProto(f);
    sets.push({ name: f === 4 ? SET.svc4 : SET.svc6, kind: 'map', type: [addrType(f), 'inet_proto', 'inet_service'], map: 'verdict' });
    for (const p of PROTOS) {
      sets.push({
        name: endpointMap(f, p),
        kind: 'map',
        // Concatenated data and a numgen key: not declarable in nft 1.0.6 JSON.
        text: `typeof ${ip} daddr . meta l4proto . th dport . numgen random mod 2 : ${ip} daddr . ${p} dport;`,
      });
    }
    sets.push({ name: f === 4 ? SET.usp4 : SET.usp6, kind: 'map', type: [addrType(f), 'inet_proto', 'inet_service'], map: 'inet_service' });
    sets.push({ name: f === 4 ? SET.hairpin4 : SET.hairpin6, kind: 'set', type: [addrType(f), addrType(f)] });
  }
  return sets;
}

function affinitySetDecl(f: Fam, i: number): SetDecl {
  return {
    name: affinitySet(f, i),
    kind: 'set',
    text: `type ${addrType(f)} . ${addrType(f)} . inet_proto . inet_service; size ${AFFINITY_SET_SIZE}; flags dynamic,timeout;`,
    dynamic: true,
  };
}

function staticChains(): ChainDecl[] {
  const svcLookup = (f: Fam): Rule => [
    nf(f),
    { vmap: { key: concat(payload(ipProto(f), 'daddr'), meta('l4proto'), payload('th', 'dport')), data: `@${f === 4 ? SET.svc4 : SET.svc6}` } },
  ];
  const hairpin = (f: Fam): Rule => [
    nf(f),
    { match: { op: 'in', left: { ct: { key: 'status' } }, right: 'dnat' } },
    eq(concat(payload(ipProto(f), 'saddr'), payload(ipProto(f), 'daddr')), `@${f === 4 ? SET.hairpin4 : SET.hairpin6}`),
    { masquerade: null },
  ];
  const redirect = (f: Fam, p: Proto): Rule => [
    nf(f),
    eq(meta('l4proto'), p),
    { redirect: { port: { map: { key: concat(payload(ipProto(f), 'daddr'), meta('l4proto'), payload(p, 'dport')), data: `@${f === 4 ? SET.usp4 : SET.usp6}` } } } },
  ];
  return [
    // dstnat for forwarded/pod traffic; output at -100 (nft 1.0.6 JSON rejects `dstnat` there).
    { name: CHAIN.prerouting, base: { type: 'nat', hook: 'prerouting', prio: -100, policy: 'accept' }, rules: [[jump(CHAIN.services)]] },
    { name: CHAIN.output, base: { type: 'nat', hook: 'output', prio: -100, policy: 'accept' }, rules: [[jump(CHAIN.services)]] },
    { name: CHAIN.postrouting, base: { type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' }, rules: FAMS.map(hairpin) },
    { name: CHAIN.services, rules: FAMS.map(svcLookup) },
    { name: CHAIN.reject, rules: [[eq(meta('l4proto'), 'tcp'), { reject: { type: 'tcp reset' } }], [{ reject: null }]] },
    { name: CHAIN.userspace, rules: FAMS.flatMap((f) => PROTOS.map((p) => redirect(f, p))) },
  ];
}

/** `dnat to daddr . l4proto . dport . numgen MODE mod K map @epF_P` for one family and protocol. */
function mapDnat(f: Fam, p: Proto, mode: 'random' | 'inc', k: number): Rule {
  const key = concat(payload(ipProto(f), 'daddr'), meta('l4proto'), payload('th', 'dport'), { numgen: { mode, mod: k } });
  return [nf(f), eq(meta('l4proto'), p), { dnat: { family: ipProto(f), addr: { map: { key, data: `@${endpointMap(f, p)}` } } } }];
}

function affinityRules(f: Fam, proto: Proto, eps: readonly PlannedEndpoint[], timeoutSeconds: number): Rule[] {
  const key = concat(payload(ipProto(f), 'saddr'), payload(ipProto(f), 'daddr'), meta('l4proto'), payload(proto, 'dport'));
  const dnat = (e: PlannedEndpoint): Stmt => ({ dnat: { family: ipProto(f), addr: e.ip, port: e.port } });
  const head = (): Stmt[] => [nf(f), eq(meta('l4proto'), proto)];
  const remember = (i: number): Stmt => ({ set: { op: 'update', elem: { elem: { val: key, timeout: timeoutSeconds } }, set: `@${affinitySet(f, i)}` } });
  // A hit refreshes the timeout (kube-proxy semantics: timeout since the last connection).
  const hits = eps.map((e, i): Rule => [...head(), eq(key, `@${affinitySet(f, i)}`), remember(i), dnat(e)]);
  const k = eps.length;
  // Position i is taken with probability 1/(K-i) among the rest: uniform overall.
  const picks = eps.map((e, i): Rule => [
    ...head(),
    ...(i < k - 1 ? [eq({ numgen: { mode: 'random', mod: k - i } }, 0)] : []),
    remember(i),
    dnat(e),
  ]);
  return [...hits, ...picks];
}

class Builder {
  readonly chains = new Map<string, ChainDecl>();
  readonly elements = new Map<string, Map<string, Element>>();
  readonly affinityDepth: Record<Fam, number> = { 4: 0, 6: 0 };

  elem(set: string, el: Element): void {
    let m = this.elements.get(set);
    if (!m) this.elements.set(set, (m = new Map()));
    m.set(keyText(el.key), el);
  }

  chain(c: ChainDecl): void {
    this.chains.set(c.name, c);
  }
}

function compileServicePort(b: Builder, sp: PlannedServicePort): void {
  const proto = sp.protocol.toLowerCase() as Proto;
  const affChain = serviceChain('aff', sp.id);
  const rrChain = serviceChain('rr', sp.id);
  const affRules: Rule[] = [];
  const rrRules: Rule[] = [];
  for (const ip of sp.clusterIPs) {
    const f: Fam = ip.includes(':') ? 6 : 4;
    const svcKey = concat(ip, proto, sp.port);
    const svcSet = f === 4 ? SET.svc4 : SET.svc6;
    if (sp.target === 'reject') { b.elem(svcSet, { key: svcKey, data: goto(CHAIN.reject) }); continue; }
    if (sp.target === 'userspace') {
      b.elem(svcSet, { key: svcKey, data: goto(CHAIN.userspace) });
      b.elem(f === 4 ? SET.usp4 : SET.usp6, { key: svcKey, data: sp.userspacePort! });
      continue;
    }
    const eps = sp.endpoints.filter((e) => e.family === f);
    if (eps.length === 0) { b.elem(svcSet, { key: svcKey, data: goto(CHAIN.reject) }); continue; }
    // Hairpin only happens for pods on this node (their traffic crosses our prerouting).
    for (const e of eps) if (e.class === 'local') b.elem(f === 4 ? SET.hairpin4 : SET.hairpin6, { key: concat(e.ip, e.ip) });
    if (sp.policy.kind === 'clientIp') {
      affRules.push(...affinityRules(f, proto, eps, sp.policy.timeoutSeconds));
      b.affinityDepth[f] = Math.max(b.affinityDepth[f], eps.length);
      b.elem(svcSet, { key: svcKey, data: goto(affChain) });
      continue;
    }
    eps.forEach((e, i) => b.elem(endpointMap(f, proto), { key: concat(ip, proto, sp.port, i), data: concat(e.ip, e.port) }));
    if (sp.policy.kind === 'roundRobin') {
      rrRules.push(mapDnat(f, proto, 'inc', eps.length));
      b.elem(svcSet, { key: svcKey, data: goto(rrChain) });
    } else {
      b.chain({ name: lbChain(eps.length), rules: FAMS.flatMap((ff) => PROTOS.map((p) => mapDnat(ff, p, 'random', eps.length))) });
      b.elem(svcSet, { key: svcKey, data: goto(lbChain(eps.length)) });
    }
  }
  if (affRules.length) b.chain({ name: affChain, rules: affRules });
  if (rrRules.length) b.chain({ name: rrChain, rules: rrRules });
}

/** What one service port adds to the table (chains may be shared, e.g. `lb_K`). */
export interface ServicePortPart {
  readonly chains: readonly ChainDecl[];
  readonly elements: readonly (readonly [string, Element])[];
  /** Affinity positions this port needs per family (`aff4_0..n-1`). */
  readonly affinityDepth: Readonly<Record<Fam, number>>;
}

/** One service port's contribution alone (the incremental tracker's unit; pure). */
export function compilePart(sp: PlannedServicePort): ServicePortPart {
  const b = new Builder();
  compileServicePort(b, sp);
  const elements: [string, Element][] = [];
  for (const [set, m] of b.elements) for (const el of m.values()) elements.push([set, el]);
  return { chains: [...b.chains.values()], elements, affinityDepth: { ...b.affinityDepth } };
}

/** The affinity sets for `depth` positions of family `f`. */
export function affinitySets(f: Fam, depth: number): SetDecl[] {
  return Array.from({ length: depth }, (_, i) => affinitySetDecl(f, i));
}

/** Compile a plan into the desired ruleset. Pure and deterministic. */
export function compile(plan: Plan): Ruleset {
  const b = new Builder();
  for (const c of staticChains()) b.chain(c);
  for (const s of staticSets()) if (!b.elements.has(s.name)) b.elements.set(s.name, new Map());
  for (const sp of plan.servicePorts) compileServicePort(b, sp);
  const sets = staticSets();
  for (const f of FAMS) for (let i = 0; i < b.affinityDepth[f]; i++) sets.push(affinitySetDecl(f, i));
  return { sets, chains: [...b.chains.values()], elements: b.elements };
}

/**
 * Shape of the table, for drift checks: rules per chain and elements per
 * (non-dynamic) set. From a shallow listing, rule counts are undefined and
 * elements empty (nft lists chains cheaply, but rules and elements only with a
 * full cache: seconds at 10k services).
 */
export interface TableSummary {
  readonly chains: ReadonlyMap<string, number | undefined>;
  readonly elements: ReadonlyMap<string, number>;
  readonly deep?: boolean;
}

export function summarize(rs: Ruleset): TableSummary {
  const dynamic = new Set(rs.sets.filter((s) => s.dynamic).map((s) => s.name));
  return {
    chains: new Map(rs.chains.map((c) => [c.name, c.rules.length])),
    elements: new Map(rs.sets.filter((s) => !dynamic.has(s.name)).map((s) => [s.name, rs.elements.get(s.name)?.size ?? 0])),
  };
}

/** Differences between an expected summary and what the kernel holds (empty = in sync). */
export function summaryDrift(want: TableSummary, got: TableSummary | undefined): string[] {
  if (!got) return ['table inet edgeway is missing'];
  const out: string[] = [];
  for (const [name, n] of want.chains) {
    const g = got.chains.get(name);
    if (!got.chains.has(name)) out.push(`chain ${name} missing`);
    else if (g !== undefined && g !== n) out.push(`chain ${name} has ${g} rules, want ${n}`);
  }
  if (got.deep === false) return out;
  for (const [name, n] of want.elements) {
    const g = got.elements.get(name);
    if (g === undefined) out.push(`set ${name} missing`);
    else if (g !== n) out.push(`set ${name} has ${g} elements, want ${n}`);
  }
  return out;
}

export type { Expr };
