/**
 * DNS metrics. Per-query counting happens on the hot path, so it goes into plain
 * maps and numbers; prom-client reads them at scrape time (`collect`), instead of a
 * labelled `inc()` per query.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { rcodeName, typeLabel } from './wire.js';

export type DropReason = 'short' | 'response' | 'oversize' | 'tcp_limit' | 'tcp_frame' | 'internal';
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

  constructor(registry?: Registry, sizes: { cacheEntries?: () => number; tcpConnections?: () => number } = {}) {
    if (!registry) return;
    // prom-client's collect() runs on each scrape and its `this` is the metric.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    new Counter({
      name: 'edgeway_dns_queries_total', help: 'DNS queries answered, by query type, rcode and where the answer came from',
      labelNames: ['qtype', 'rcode', 'source'], registers: [registry],
      collect() {
        this.reset();
        for (const { qtype, rcode, source, count } of self.queryCounts()) this.inc({ qtype, rcode, source }, count);
      },
    });
    new Counter({
      name: 'edgeway_dns_dropped_packets_total', help: 'DNS packets dropped without an answer, by reason',
      labelNames: ['reason'], registers: [registry],
      collect() { this.reset(); for (const [reason, v] of self.drops) this.inc({ reason }, v); },
    });
    new Counter({
      name: 'edgeway_dns_cache_lookups_total', help: 'Forwarding cache lookups by result', labelNames: ['result'], registers: [registry],
      collect() { this.reset(); this.inc({ result: 'hit' }, self.cacheHits); this.inc({ result: 'miss' }, self.cacheMisses); },
    });
    new Counter({
      name: 'edgeway_dns_inflight_dedup_total', help: 'Forwarded questions that joined an identical question already in flight', registers: [registry],
      collect() { this.reset(); this.inc(self.dedups); },
    });
    if (sizes.cacheEntries) {
      const f = sizes.cacheEntries;
      new Gauge({ name: 'edgeway_dns_cache_entries', help: 'Entries in the forwarding cache', registers: [registry], collect() { this.set(f()); } });
    }
    if (sizes.tcpConnections) {
      const f = sizes.tcpConnections;
      new Gauge({ name: 'edgeway_dns_tcp_connections', help: 'Open DNS-over-TCP client connections', registers: [registry], collect() { this.set(f()); } });
    }
    this.latency = new Histogram({
      name: 'edgeway_dns_upstream_latency_seconds', help: 'Latency of upstream exchanges by upstream and outcome',
      labelNames: ['upstream', 'outcome'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    });
  }

  query(qtype: number, rcode: number, source: AnswerSource): void {
    this.queries[(TYPE_INDEX[qtype]! * SOURCES.length + SOURCE_INDEX[source]) * 32 + (rcode & 31)]!++;
  }

  private queryCounts(): { qtype: string; rcode: string; source: string; count: number }[] {
    const out: { qtype: string; rcode: string; source: string; count: number }[] = [];
    for (let i = 0; i < this.queries.length; i++) {
      const count = this.queries[i]!;
      if (count === 0) continue;
      const rcode = i % 32;
      const source = SOURCES[Math.floor(i / 32) % SOURCES.length]!;
      const t = TYPES[Math.floor(i / 32 / SOURCES.length)]!;
      out.push({ qtype: t === 0 ? 'other' : typeLabel(t), rcode: rcodeName(rcode), source, count });
    }
    return out;
  }

  drop(reason: DropReason | 'formerr' | 'notimp' | 'badvers'): void {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + 1);
  }

  dedup(): void {
    this.dedups++;
  }

  upstream(upstream: string, outcome: string, seconds: number): void {
    this.latency?.observe({ upstream, outcome }, seconds);
  }

  /** Totals, for tests and logs. */
  snapshot(): { queries: Record<string, number>; drops: Record<string, number>; cacheHits: number; cacheMisses: number; dedups: number } {
    return { queries: Object.fromEntries(this.queryCounts().map((c) => [`${c.qtype}|${c.rcode}|${c.source}`, c.count])), drops: Object.fromEntries(this.drops), cacheHits: this.cacheHits, cacheMisses: this.cacheMisses, dedups: this.dedups };
  }
}
