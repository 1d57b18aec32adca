/**
 * Forwarding of names outside the cluster zone: a cache in front, identical
 * questions in flight shared, upstreams tried in order with a per-upstream timeout
 * (failover on timeout, network error, SERVFAIL, REFUSED or a garbled answer), a
 * TCP retry when an upstream truncates, and "all failed" reported to the caller
 * (which answers SERVFAIL).
 *
 * Each upstream query uses a fresh UDP socket: a random source port per query next
 * to the random ID, so off-path spoofing must guess both (the cache makes a
 * poisoned answer live long, which is why this is not a shared socket).
 */
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { analyzeResponse, AnswerCache, systemClock, type AnalyzedResponse, type CacheEntry, type Clock } from './cache.js';
import { EDNS_UDP_SIZE, RCODE, TYPE, type Body } from './wire.js';
import type { DnsMetrics } from './metrics.js';

export interface Upstream {
  readonly host: string;
  readonly port: number;
}

export interface ForwarderOptions {
  readonly upstreams: readonly Upstream[];
  /** Per-upstream, per-attempt timeout (ms). */
  readonly timeoutMs: number;
  readonly cacheSize: number;
  readonly clock?: Clock;
  readonly metrics?: DnsMetrics;
}

export interface ForwardResult {
  readonly rcode: number;
  readonly body: Body;
  /** Served from the cache. */
  readonly cached: boolean;
}

/** Parse `host:port` / `[v6]:port`; port 53 when absent. */
export function parseHostPort(s: string, defaultPort = 53): Upstream {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ?? /^([^:]+)(?::(\d+))?$/.exec(s);
  if (m) return { host: m[1]!, port: m[2] ? Number(m[2]) : defaultPort };
  return { host: s, port: defaultPort }; // a bare IPv6 address
}

export class Forwarder {
  readonly cache: AnswerCache;
  private readonly inflight = new Map<string, Promise<ForwardResult | undefined>>();
  private readonly clock: Clock;

  constructor(private readonly opts: ForwarderOptions) {
    this.clock = opts.clock ?? systemClock;
    this.cache = new AnswerCache(opts.cacheSize, this.clock);
  }

  get upstreams(): readonly Upstream[] {
    return this.opts.upstreams;
  }

  /**
   * Cache key of a question (lower-cased wire name). An A/IN question — nearly all
   * of them — is keyed by the wire name itself: the zone lookup has just hashed
   * that very string, so the cache hit costs no new string (a concatenation is a
   * rope that V8 flattens and hashes on every lookup: measured ~20 % of a cached
   * answer's CPU). Other questions get a prefix that no wire name can start with
   * (a wire name starts with a label length < 64 or NUL), so the two never meet.
   */
  static key(nameKey: string, qtype: number, qclass: number): string {
    return qtype === 1 && qclass === 1 ? nameKey : `\u00ff${qtype}/${qclass}/${nameKey}`;
  }

  /**
   * Synchronous cache lookup (the hot path for repeated external names): the
   * entry itself — answer with `rcode` and `servedBody`.
   */
  cached(cacheKey: string): CacheEntry | undefined {
    return this.cache.get(cacheKey);
  }

  /**
   * Resolve a question upstream (after a cache miss). Undefined when every upstream
   * failed. Concurrent identical questions share one upstream exchange.
   */
  resolve(cacheKey: string, nameKey: string, qtype: number, qclass: number): Promise<ForwardResult | undefined> {
    const hit = this.cached(cacheKey);
    if (hit) return Promise.resolve({ rcode: hit.rcode, body: hit.servedBody, cached: true });
    let p = this.inflight.get(cacheKey);
    if (p) {
      this.opts.metrics?.dedup();
      return p;
    }
    p = this.exchangeAll(nameKey, qtype, qclass).then((r) => {
      if (!r) return undefined;
      this.cache.set(cacheKey, r);
      return { rcode: r.rcode, body: r.body, cached: false };
    }).finally(() => { this.inflight.delete(cacheKey); });
    this.inflight.set(cacheKey, p);
    return p;
  }

  private async exchangeAll(nameKey: string, qtype: number, qclass: number): Promise<AnalyzedResponse | undefined> {
    const question = Buffer.alloc(nameKey.length + 4);
    question.write(nameKey, 0, 'latin1');
    question.writeUInt16BE(qtype, nameKey.length);
    question.writeUInt16BE(qclass, nameKey.length + 2);
    for (const up of this.opts.upstreams) {
      const label = `${up.host}:${up.port}`;
      const t0 = performance.now();
      let outcome = 'ok';
      try {
        let r = await this.exchangeUdp(up, question);
        if (r?.truncated) r = await this.exchangeTcp(up, question);
        if (!r) { outcome = 'garbled'; continue; }
        if (r.rcode !== RCODE.NOERROR && r.rcode !== RCODE.NXDOMAIN) { outcome = `rcode${r.rcode}`; continue; }
        return r;
      } catch (err) {
        outcome = (err as Error).name === 'TimeoutError' ? 'timeout' : 'error';
      } finally {
        this.opts.metrics?.upstream(label, outcome, (performance.now() - t0) / 1000);
      }
    }
    return undefined;
  }

  private buildQuery(question: Buffer, id: number): Buffer {
    const q = Buffer.alloc(12 + question.length + 11);
    q.writeUInt16BE(id, 0);
    q.writeUInt16BE(0x0100, 2); // RD
    q.writeUInt16BE(1, 4);
    q.writeUInt16BE(1, 10);
    question.copy(q, 12);
    const o = 12 + question.length;
    q[o] = 0;
    q.writeUInt16BE(TYPE.OPT, o + 1);
    q.writeUInt16BE(EDNS_UDP_SIZE, o + 3);
    return q;
  }

  /** One UDP exchange; rejects on timeout or socket error; undefined on a garbled answer. */
  private exchangeUdp(up: Upstream, question: Buffer): Promise<AnalyzedResponse | undefined> {
    const id = randomBytes(2).readUInt16BE(0);
    const msg = this.buildQuery(question, id);
    return new Promise((resolve, reject) => {
      const sock = createSocket(isIP(up.host) === 6 ? 'udp6' : 'udp4');
      let done = false;
      const finish = (err: Error | undefined, r?: AnalyzedResponse): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        try { sock.close(); } catch { /* already closed */ }
        if (err) reject(err); else resolve(r);
      };
      const timer = setTimeout(() => finish(Object.assign(new Error(`upstream ${up.host}:${up.port} timed out`), { name: 'TimeoutError' })), this.opts.timeoutMs);
      sock.on('error', (err) => finish(err));
      sock.on('message', (buf, rinfo) => {
        // Ignore anything that is not from the upstream or not for our ID (spoofing, stray).
        if (rinfo.port !== up.port || buf.length < 12 || buf.readUInt16BE(0) !== id) return;
        const r = analyzeResponse(buf, question);
        if (r) finish(undefined, r);
      });
      sock.send(msg, up.port, up.host, (err) => { if (err) finish(err); });
    });
  }

  /** One TCP exchange (after a truncated UDP answer). */
  private exchangeTcp(up: Upstream, question: Buffer): Promise<AnalyzedResponse | undefined> {
    const id = randomBytes(2).readUInt16BE(0);
    const msg = this.buildQuery(question, id);
    return new Promise((resolve, reject) => {
      const sock = connect({ host: up.host, port: up.port });
      let buf = Buffer.alloc(0);
      let done = false;
      const finish = (err: Error | undefined, r?: AnalyzedResponse): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        if (err) reject(err); else resolve(r);
      };
      const timer = setTimeout(() => finish(Object.assign(new Error(`upstream ${up.host}:${up.port} timed out (tcp)`), { name: 'TimeoutError' })), this.opts.timeoutMs);
      sock.on('error', (err) => finish(err));
      sock.on('close', () => finish(new Error('upstream closed the connection')));
      sock.on('connect', () => {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(msg.length);
        sock.end(Buffer.concat([len, msg]));
      });
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length > 65537) return finish(new Error('oversized tcp answer'));
        if (buf.length < 2) return;
        const n = buf.readUInt16BE(0);
        if (buf.length < 2 + n) return;
        const ans = buf.subarray(2, 2 + n);
        if (ans.length < 12 || ans.readUInt16BE(0) !== id) return finish(undefined, undefined);
        finish(undefined, analyzeResponse(Buffer.from(ans), question));
      });
    });
  }
}
