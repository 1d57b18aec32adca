/**
 * DNS metrics. Per-query counting happens on the hot path, so it goes into plain
 * maps and numbers; prom-client reads them at scrape time (`collect`), instead of a
 * labelled `inc()` per query.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { rcodeName, typeLabel } from './wire.js';

export type DropReason = 'short' | 'response' | 'oversize' | 'tcp_limit' | 'tcp_frame' | 'internal' | 'udp_send';

/**
 * Plain counter values of one DnsMetrics (structured-cloneable): what a DNS worker
 * thread hands the main thread at scrape time (src/dns/workers.ts). Totals since
 * start, except `latency`: observations since the previous call.
 */
export interface DnsCounters {
  readonly queries: Float64Array;
  readonly drops: Record<string, number>;
  readonly cacheHits: number;
  readonly cacheMisses: number;
  readonly dedups: number;
  readonly cacheEntries: number;
  readonly tcpConnections: number;
  readonly latency: readonly (readonly [string, string, number])[];
}

/** Upstream latency observations a worker keeps between scrapes (the oldest go beyond it). */
const MAX_PENDING_LATENCY = 10_000;
export type AnswerSource = 'zone' | 'cache' | 'upstream' | 'error';

const SOURCES: readonly AnswerSource[] = ['zone', 'cache', 'upstream', 'error'];
const SOURCE_INDEX: Record<AnswerSource, number> = { zone: 0, cache: 1, upstream: 2, error: 3 };
/** Query types with their own label; index 0 is "other". */
const TYPES = [0, 1, 28, 33, 12, 5, 6, 2, 16, 15, 64, 65, 255];
const TYPE_INDEX = new Uint8Array(65536);
TYPES.forEach((t, i) => { if (i > 0) TYPE_INDEX[t] = i; });

export class DnsMetrics {
  /** Counts per (type index, source, rcode 0..31): one array increment per query. */
  private readonly queries = new Float64Array(TYPES.length * SOURCES.length * 32);
  private readonly drops = new Map<string, number>();
  cacheHits = 0;
  cacheMisses = 0;
  dedups = 0;
  private readonly latency: Histogram | undefined;
  /** Worker side: observations waiting for the next `counters()` (no registry in a worker). */
  private pendingLatency: [string, string, number][] | undefined;
  /** Main side with workers: the workers' totals, summed at each scrape. */
  private merged: { queries: Float64Array; drops: Map<string, number>; cacheHits: number; cacheMisses: number; dedups: number } | undefined;

  /**
   * `registry`: export to it. `pull`: awaited before each scrape — with DNS worker
   * threads it fetches their counters and calls `merge()`. Without a registry,
   * `keepLatency` keeps upstream latencies for `counters()` (a worker's metrics).
   */
  constructor(registry?: Registry, sizes: { cacheEntries?: () => number; tcpConnections?: () => number; pull?: () => Promise<void>; keepLatency?: boolean } = {}) {
    if (!registry) {
      if (sizes.keepLatency) this.pendingLatency = [];
      return;
    }
    // One pull per scrape: every collect() below awaits the same promise.
    let pulling: Promise<void> | undefined;
    const pull = sizes.pull ? async (): Promise<void> => {
      pulling ??= sizes.pull!().finally(() => { setImmediate(() => { pulling = undefined; }); });
      await pulling;
    } : async (): Promise<void> => undefined;
    // prom-client's collect() runs on each scrape and its `this` is the metric.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    new Counter({
      name: 'edgeway_dns_queries_total', help: 'DNS queries answered, by query type, rcode and where the answer came from',
      labelNames: ['qtype', 'rcode', 'source'], registers: [registry],
      async collect() {
        await pull();
        this.reset();
        for (const { qtype, rcode, source, count } of self.queryCounts()) this.inc({ qtype, rcode, source }, count);
      },
    });
    new Counter({
      name: 'edgeway_dns_dropped_packets_total', help: 'DNS packets dropped without an answer, by reason',
      labelNames: ['reason'], registers: [registry],
      async collect() { await pull(); this.reset(); for (const [reason, v] of self.merged?.drops ?? self.drops) this.inc({ reason }, v); },
    });
    new Counter({
      name: 'edgeway_dns_cache_lookups_total', help: 'Forwarding cache lookups by result', labelNames: ['result'], registers: [registry],
      async collect() {
        await pull();
        this.reset();
        this.inc({ result: 'hit' }, self.merged?.cacheHits ?? self.cacheHits);
        this.inc({ result: 'miss' }, self.merged?.cacheMisses ?? self.cacheMisses);
      },
    });
    new Counter({
      name: 'edgeway_dns_inflight_dedup_total', help: 'Forwarded questions that joined an identical question already in flight', registers: [registry],
      async collect() { await pull(); this.reset(); this.inc(self.merged?.dedups ?? self.dedups); },
    });
    if (sizes.cacheEntries) {
      const f = sizes.cacheEntries;
      new Gauge({ name: 'edgeway_dns_cache_entries', help: 'Entries in the forwarding cache', registers: [registry], async collect() { await pull(); this.set(f()); } });
    }
    if (sizes.tcpConnections) {
      const f = sizes.tcpConnections;
      new Gauge({ name: 'edgeway_dns_tcp_connections', help: 'Open DNS-over-TCP client connections', registers: [registry], async collect() { await pull(); this.set(f()); } });
    }
    this.latency = new Histogram({
      name: 'edgeway_dns_upstream_latency_seconds', help: 'Latency of upstream exchanges by upstream and outcome',
      labelNames: ['upstream', 'outcome'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
      // Workers' observations arrive with the pull.
      async collect() { await pull(); },
    });
  }

  query(qtype: number, rcode: number, source: AnswerSource): void {
    this.queries[(TYPE_INDEX[qtype]! * SOURCES.length + SOURCE_INDEX[source]) * 32 + (rcode & 31)]!++;
  }

  private queryCounts(): { qtype: string; rcode: string; source: string; count: number }[] {
    const out: { qtype: string; rcode: string; source: string; count: number }[] = [];
    const queries = this.merged?.queries ?? this.queries;
    for (let i = 0; i < queries.length; i++) {
      const count = queries[i]!;
      if (count === 0) continue;
      const rcode = i % 32;
      const source = SOURCES[Math.floor(i / 32) % SOURCES.length]!;
      const t = TYPES[Math.floor(i / 32 / SOURCES.length)]!;
      out.push({ qtype: t === 0 ? 'other' : typeLabel(t), rcode: rcodeName(rcode), source, count });
    }
    return out;
  }

  drop(reason: DropReason | 'formerr' | 'notimp' | 'badvers', count = 1): void {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + count);
  }

  dedup(): void {
    this.dedups++;
  }

  upstream(upstream: string, outcome: string, seconds: number): void {
    this.latency?.observe({ upstream, outcome }, seconds);
    const p = this.pendingLatency;
    if (p) {
      if (p.length >= MAX_PENDING_LATENCY) p.shift();
      p.push([upstream, outcome, seconds]);
    }
  }

  /** This instance's counters (a worker's, for the main thread); drains pending latencies. */
  counters(sizes: { cacheEntries: number; tcpConnections: number }): DnsCounters {
    const latency = this.pendingLatency ?? [];
    if (this.pendingLatency) this.pendingLatency = [];
    return {
      queries: this.queries.slice(), drops: Object.fromEntries(this.drops), cacheHits: this.cacheHits, cacheMisses: this.cacheMisses,
      dedups: this.dedups, cacheEntries: sizes.cacheEntries, tcpConnections: sizes.tcpConnections, latency,
    };
  }

  /**
   * Replace what this instance exports by the sum of the workers' counters (their
   * totals; latencies are observed once, as they arrive). Idempotent for totals.
   */
  merge(all: readonly DnsCounters[]): void {
    const queries = new Float64Array(this.queries.length);
    const drops = new Map<string, number>();
    let cacheHits = 0, cacheMisses = 0, dedups = 0;
    for (const c of all) {
      for (let i = 0; i < queries.length && i < c.queries.length; i++) queries[i]! += c.queries[i]!;
      for (const [k, v] of Object.entries(c.drops)) drops.set(k, (drops.get(k) ?? 0) + v);
      cacheHits += c.cacheHits;
      cacheMisses += c.cacheMisses;
      dedups += c.dedups;
      for (const [upstream, outcome, seconds] of c.latency) this.latency?.observe({ upstream, outcome }, seconds);
    }
    this.merged = { queries, drops, cacheHits, cacheMisses, dedups };
  }

  /** Totals, for tests and logs. */
  snapshot(): { queries: Record<string, number>; drops: Record<string, number>; cacheHits: number; cacheMisses: number; dedups: number } {
    const m = this.merged;
    return {
      queries: Object.fromEntries(this.queryCounts().map((c) => [`${c.qtype}|${c.rcode}|${c.source}`, c.count])),
      drops: Object.fromEntries(m?.drops ?? this.drops), cacheHits: m?.cacheHits ?? this.cacheHits, cacheMisses: m?.cacheMisses ?? this.cacheMisses, dedups: m?.dedups ?? this.dedups,
    };
  }
}
