/**
 * Load balancers behind one interface. Pure: no sockets, no timers; the clock and
 * the random source are injected so tests are deterministic.
 *
 * Endpoints are identified by a string key (`ip:port`, or `node/ip:port` for remote
 * ones) so that loads and affinities survive an endpoint-list update: a flow that
 * started on an endpoint releases it by key even after the list changed.
 *
 * Load = flows (TCP connections, UDP sessions, HTTP requests) currently open on the
 * endpoint, reported by the caller through `acquire`/`release`. Least-request and
 * bounded-load consistent hashing read it.
 */
import type { HashKey } from '../catalog/types.js';
import type { PlannedPolicy } from '../plan/types.js';
import { HashRing } from './hash.js';

export interface PickInput {
  /** Client IP without port: the source-IP hash and ClientIP affinity key. */
  readonly clientIp: string;
  /** Header or cookie value for L7 hash policies; undefined when the request has none. */
  readonly hashKey?: string;
  /** Endpoint keys already tried by this flow (retry after a failed connect). */
  readonly exclude?: ReadonlySet<string>;
}

export interface Balancer {
  /** Index into the current endpoint keys, or undefined when none is eligible. */
  pick(input: PickInput): number | undefined;
  /** Replace the endpoint list (stable order); loads and affinities of kept keys survive. */
  setEndpoints(keys: readonly string[]): void;
  acquire(key: string): void;
  release(key: string): void;
  /** Current load of an endpoint (for tests and metrics). */
  load(key: string): number;
}

export interface BalancerOptions {
  /** [0,1) uniform; default Math.random. */
  random?: () => number;
  /** Milliseconds clock; default Date.now. */
  now?: () => number;
  /** Bounded-load factor c of consistent hashing (Mirrokni et al.): no endpoint takes more than ceil(c·avg). Envoy/Istio default 1.25. */
  hashLoadFactor?: number;
  /** Cap of the ClientIP affinity table (oldest entries go first past it). */
  maxAffinityEntries?: number;
}

/** Shared bookkeeping: keys and their loads. */
abstract class BaseBalancer implements Balancer {
  protected keys: readonly string[] = [];
  protected readonly loads = new Map<string, number>();
  protected total = 0;
  protected readonly random: () => number;

  constructor(opts: BalancerOptions) {
    this.random = opts.random ?? Math.random;
  }

  abstract pick(input: PickInput): number | undefined;

  setEndpoints(keys: readonly string[]): void {
    this.keys = [...keys];
  }

  acquire(key: string): void {
    this.loads.set(key, (this.loads.get(key) ?? 0) + 1);
    this.total++;
  }

  release(key: string): void {
    const n = this.loads.get(key);
    if (n === undefined) return;
    if (n <= 1) this.loads.delete(key);
    else this.loads.set(key, n - 1);
    this.total--;
  }

  load(key: string): number {
    return this.loads.get(key) ?? 0;
  }

  /** Uniform choice among keys not in `exclude`. */
  protected pickRandom(exclude?: ReadonlySet<string>): number | undefined {
    const n = this.keys.length;
    if (n === 0) return undefined;
    const start = Math.floor(this.random() * n);
    if (!exclude || exclude.size === 0) return start;
    // Probe from a random start so exclusions do not skew toward one neighbour more
    // than a linear probe must; bounded by n.
    for (let i = 0; i < n; i++) {
      const j = (start + i) % n;
      if (!exclude.has(this.keys[j]!)) return j;
    }
    return undefined;
  }
}

export class RandomBalancer extends BaseBalancer {
  pick(input: PickInput): number | undefined {
    return this.pickRandom(input.exclude);
  }
}

export class RoundRobinBalancer extends BaseBalancer {
  private next = 0;
  pick(input: PickInput): number | undefined {
    const n = this.keys.length;
    for (let i = 0; i < n; i++) {
      const j = this.next++ % n;
      if (this.next >= 0x3fffffff) this.next = 0;
      if (!input.exclude?.has(this.keys[j]!)) return j;
    }
    return undefined;
  }
}

/**
 * Istio LEAST_REQUEST: the endpoint with the fewest open flows. Full scan for small
 * lists; power of two random choices (Envoy's default) past `fullScanMax`, which
 * keeps the pick O(1) and avoids herding on one momentarily idle endpoint.
 */
export class LeastRequestBalancer extends BaseBalancer {
  private static readonly fullScanMax = 8;
  private rr = 0;
  pick(input: PickInput): number | undefined {
    const n = this.keys.length;
    if (n === 0) return undefined;
    const ex = input.exclude;
    if (n <= LeastRequestBalancer.fullScanMax) {
      let best: number | undefined;
      let bestLoad = Infinity;
      // Start at a rotating offset so ties spread round robin instead of always index 0.
      const start = this.rr++ % n;
      for (let i = 0; i < n; i++) {
        const j = (start + i) % n;
        const k = this.keys[j]!;
        if (ex?.has(k)) continue;
        const l = this.load(k);
        if (l < bestLoad) { best = j; bestLoad = l; }
      }
      return best;
    }
    const a = this.pickRandom(ex);
    const b = this.pickRandom(ex);
    if (a === undefined || b === undefined) return a ?? b;
    return this.load(this.keys[b]!) < this.load(this.keys[a]!) ? b : a;
  }
}

/**
 * Consistent hashing with bounded loads: the key hashes onto a ring of virtual
 * nodes; walking clockwise, the first endpoint whose load is under
 * ceil(c · (total + 1) / n) takes the flow. With no key (missing header) the
 * choice is random, as Envoy does when no hash policy yields a hash.
 */
export class ConsistentHashBalancer extends BaseBalancer {
  private ring = new HashRing([]);
  private readonly factor: number;
  constructor(opts: BalancerOptions) {
    super(opts);
    this.factor = opts.hashLoadFactor ?? 1.25;
  }

  override setEndpoints(keys: readonly string[]): void {
    const same = keys.length === this.keys.length && keys.every((k, i) => k === this.keys[i]);
    super.setEndpoints(keys);
    if (!same) this.ring = new HashRing(this.keys);
  }

  pick(input: PickInput): number | undefined {
    if (this.keys.length === 0) return undefined;
    if (input.hashKey === undefined) return this.pickRandom(input.exclude);
    const ex = input.exclude;
    const eligible = this.keys.length - (ex ? this.keys.filter((k) => ex.has(k)).length : 0);
    if (eligible <= 0) return undefined;
    const cap = Math.ceil((this.factor * (this.total + 1)) / eligible);
    let fallback: number | undefined;
    for (const idx of this.ring.walk(input.hashKey)) {
      const k = this.keys[idx]!;
      if (ex?.has(k)) continue;
      fallback ??= idx;
      if (this.load(k) < cap) return idx;
    }
    return fallback;
  }
}

/**
 * Service `sessionAffinity: ClientIP`: a client IP sticks to the endpoint it got
 * first for `timeoutSeconds` after its last flow (kube-proxy's `recent` semantics:
 * every new flow refreshes the timer). New clients are spread at random. The table
 * is bounded; expired entries are dropped lazily and by a sweep every few picks.
 */
export class ClientIpAffinityBalancer extends BaseBalancer {
  private readonly table = new Map<string, { key: string; expires: number }>();
  private readonly now: () => number;
  private readonly max: number;
  private picks = 0;
  constructor(private readonly timeoutMs: number, opts: BalancerOptions) {
    super(opts);
    this.now = opts.now ?? Date.now;
    this.max = opts.maxAffinityEntries ?? 100_000;
  }

  pick(input: PickInput): number | undefined {
    const now = this.now();
    if (++this.picks % 1024 === 0) this.sweep(now);
    const hit = this.table.get(input.clientIp);
    if (hit && hit.expires > now && !input.exclude?.has(hit.key)) {
      const idx = this.keys.indexOf(hit.key);
      if (idx >= 0) {
        this.remember(input.clientIp, hit.key, now);
        return idx;
      }
    }
    const idx = this.pickRandom(input.exclude);
    if (idx !== undefined) this.remember(input.clientIp, this.keys[idx]!, now);
    else this.table.delete(input.clientIp);
    return idx;
  }

  /** Entries currently held (tests). */
  get affinityEntries(): number {
    return this.table.size;
  }

  private remember(ip: string, key: string, now: number): void {
    // delete + set keeps the Map in last-use order, so eviction takes the oldest.
    this.table.delete(ip);
    this.table.set(ip, { key, expires: now + this.timeoutMs });
    if (this.table.size > this.max) {
      const oldest = this.table.keys().next();
      if (!oldest.done) this.table.delete(oldest.value);
    }
  }

  private sweep(now: number): void {
    for (const [ip, e] of this.table) if (e.expires <= now) this.table.delete(ip);
  }
}

/** The balancer a planned policy asks for. */
export function createBalancer(policy: PlannedPolicy, opts: BalancerOptions = {}): Balancer {
  switch (policy.kind) {
    case 'random': return new RandomBalancer(opts);
    case 'roundRobin': return new RoundRobinBalancer(opts);
    case 'leastRequest': return new LeastRequestBalancer(opts);
    case 'clientIp': return new ClientIpAffinityBalancer(policy.timeoutSeconds * 1000, opts);
    case 'consistentHash': return new ConsistentHashBalancer(opts);
  }
}

/** True when the policy's key lives in HTTP requests (the HTTP-aware path is needed). */
export function needsHttp(policy: PlannedPolicy): policy is { kind: 'consistentHash'; key: Exclude<HashKey, { type: 'sourceIp' }> } {
  return policy.kind === 'consistentHash' && policy.key.type !== 'sourceIp';
}

/** Same policy (so a plan update may keep the balancer and its state). */
export function samePolicy(a: PlannedPolicy, b: PlannedPolicy): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
