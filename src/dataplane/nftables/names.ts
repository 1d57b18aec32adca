/**
 * Deterministic, owned object names. Static objects have fixed names; per-service
 * chains are `<kind>_<hash8>_<readable>`: the hash (of the service-port id) makes
 * them unique and stable, the readable part lets an operator find them. Everything
 * lives in table `inet edgeway`, so cleanup and diffs never touch foreign state.
 */
import { createHash } from 'node:crypto';

export const CHAIN = {
  prerouting: 'prerouting',
  output: 'output',
  postrouting: 'postrouting',
  services: 'services',
  reject: 'no_endpoints',
  userspace: 'userspace',
} as const;

export const SET = {
  svc4: 'svc4',
  svc6: 'svc6',
  usp4: 'usp4',
  usp6: 'usp6',
  hairpin4: 'hairpin4',
  hairpin6: 'hairpin6',
} as const;

/**
 * Global endpoint map for one family and protocol. One per protocol because nft
 * derives a protocol dependency from the map's data type (`tcp dport`): a single
 * map would make nft add `meta l4proto tcp` to every rule that uses it.
 */
export function endpointMap(family: 4 | 6, proto: 'tcp' | 'udp' | 'sctp'): string {
  return `ep${family}_${proto}`;
}

/** Shared random-choice chain for services with K endpoints. */
export function lbChain(k: number): string {
  return `lb_${k}`;
}

/** Affinity set for endpoint position i (one set per position, not per service: linear). */
export function affinitySet(family: 4 | 6, i: number): string {
  return `aff${family}_${i}`;
}

/** Per-service-port chain name: `<kind>_<hash8>_<readable>` (≤ 64 chars). */
export function serviceChain(kind: 'rr' | 'aff', id: string): string {
  const hash = createHash('sha256').update(id).digest('hex').slice(0, 8);
  const readable = id.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '').slice(0, 48);
  return `${kind}_${hash}_${readable}`;
}

/** True for names this data plane creates per service (for stale-chain cleanup). */
export function isServiceChain(name: string): boolean {
  return /^(rr|aff)_[0-9a-f]{8}_/.test(name) || /^lb_\d+$/.test(name);
}
