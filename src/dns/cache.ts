/**
 * Answer cache for forwarded names: positive and negative (RFC 2308), TTLs honoured
 * and counted down in served copies, bounded size with CLOCK (second-chance)
 * eviction. Entries keep the upstream's wire body (everything after the question)
 * so a hit is one buffer copy plus a few TTL writes.
 */
import { RCODE, skipName, TYPE, type Body } from './wire.js';

/** Milliseconds; injectable so tests can move time. */
export interface Clock {
  now(): number;
}
export const systemClock: Clock = { now: () => performance.now() };

/** Upper bounds on what we keep, whatever upstream says. */
export const MAX_TTL = 86_400;
export const MAX_NEGATIVE_TTL = 3_600;

export interface CacheEntry {
  readonly rcode: number;
  /** Body with the TTLs as received. */
  readonly body: Body;
  /** Byte offsets of each record's TTL inside body.bytes, and the TTL received. */
  readonly ttlOffsets: readonly number[];
  readonly ttls: readonly number[];
  readonly storedAt: number;
  readonly expiresAt: number;
  readonly negative: boolean;
  /** The body served for `servedElapsed` seconds after storing (reused within that second). */
  servedElapsed: number;
  servedBody: Body;
  /** Hit since the eviction hand last passed (CLOCK). */
  used: boolean;
}

export interface AnalyzedResponse {
  readonly rcode: number;
  readonly truncated: boolean;
  /** Body after the question (upstream OPT removed) and its TTL positions. */
  readonly body: Body;
  readonly ttlOffsets: number[];
  readonly ttls: number[];
  /** Seconds this answer may be cached; 0 = not cacheable. */
  readonly cacheTtl: number;
  readonly negative: boolean;
}

/**
 * Check that `buf` answers our question (`questionWire` = name + type + class as we
 * sent it, compared case-insensitively) and locate its records. Undefined when the
 * response is malformed or for another question (then it is ignored).
 */
export function analyzeResponse(buf: Buffer, questionWire: Buffer): AnalyzedResponse | undefined {
  if (buf.length < 12 + questionWire.length) return undefined;
  const flags = buf.readUInt16BE(2);
  if (!(flags & 0x8000) || buf.readUInt16BE(4) !== 1) return undefined;
  const qEnd = 12 + questionWire.length;
  if (buf.toString('latin1', 12, qEnd).toLowerCase() !== questionWire.toString('latin1').toLowerCase()) return undefined;
  const counts = [buf.readUInt16BE(6), buf.readUInt16BE(8), buf.readUInt16BE(10)] as const;
  const rcode = flags & 0xf;
  const truncated = (flags & 0x0200) !== 0;
  const ttlOffsets: number[] = [];
  const ttls: number[] = [];
  let off = qEnd;
  let optStart = -1;
  let optEnd = -1;
  let minTtl = Infinity;
  let soaNegTtl = -1;
  const total = counts[0] + counts[1] + counts[2];
  for (let i = 0; i < total; i++) {
    const start = off;
    off = skipName(buf, off);
    if (off < 0 || off + 10 > buf.length) return undefined;
    const type = buf.readUInt16BE(off);
    const ttl = buf.readUInt32BE(off + 4);
    const rdlen = buf.readUInt16BE(off + 8);
    const end = off + 10 + rdlen;
    if (end > buf.length) return undefined;
    if (type === TYPE.OPT) {
      if (i < counts[0] + counts[1] || optStart >= 0) return undefined;
      optStart = start;
      optEnd = end;
    } else {
      ttlOffsets.push(off + 4 - qEnd);
      ttls.push(ttl);
      if (i < counts[0]) minTtl = Math.min(minTtl, ttl);
      if (type === TYPE.SOA && i >= counts[0] && i < counts[0] + counts[1] && rdlen >= 20) {
        soaNegTtl = Math.min(ttl, buf.readUInt32BE(end - 4));
      }
    }
    off = end;
  }
  if (off !== buf.length && !truncated) return undefined;
  let bytes: Buffer;
  if (optStart < 0) {
    bytes = Buffer.from(buf.subarray(qEnd, off));
  } else if (optEnd === off) {
    // The usual case: OPT last. Cut it off; nothing points into it.
    bytes = Buffer.from(buf.subarray(qEnd, optStart));
  } else {
    // OPT in the middle: cutting it would shift compression targets; don't cache.
    return undefined;
  }
  const negative = rcode === RCODE.NXDOMAIN || (rcode === RCODE.NOERROR && counts[0] === 0);
  let cacheTtl = 0;
  if (rcode === RCODE.NOERROR || rcode === RCODE.NXDOMAIN) {
    // RFC 2308: a negative answer is cacheable only with an SOA, for min(SOA TTL, MINIMUM).
    cacheTtl = negative ? (soaNegTtl >= 0 ? Math.min(soaNegTtl, MAX_NEGATIVE_TTL) : 0) : Math.min(minTtl, MAX_TTL);
  }
  if (truncated) cacheTtl = 0;
  return {
    rcode, truncated, negative, cacheTtl, ttlOffsets, ttls,
    body: { an: counts[0], ns: counts[1], ar: counts[2] - (optStart >= 0 ? 1 : 0), bytes },
  };
}

export class AnswerCache {
  private readonly map = new Map<string, CacheEntry>();

  constructor(private readonly maxEntries: number, private readonly clock: Clock) {}

  get size(): number {
    return this.map.size;
  }

  /**
   * The entry, its `servedBody` with TTLs counted down; undefined when absent or
   * expired. The entry itself, not a wrapper: a hit allocates nothing (the hot path
   * of a cached external name).
   */
  get(key: string): CacheEntry | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    const now = this.clock.now();
    if (now >= e.expiresAt) {
      this.map.delete(key);
      return undefined;
    }
    // Recency as a CLOCK bit (second chance at eviction) instead of moving the entry
    // on every hit: a hit stays a lookup, with no Map delete + insert.
    e.used = true;
    const elapsed = Math.floor((now - e.storedAt) / 1000);
    if (elapsed !== e.servedElapsed) {
      // TTLs count down once per second; within a second every hit shares one copy.
      const bytes = Buffer.from(e.body.bytes);
      for (let i = 0; i < e.ttlOffsets.length; i++) bytes.writeUInt32BE(Math.max(0, e.ttls[i]! - elapsed), e.ttlOffsets[i]!);
      e.servedElapsed = elapsed;
      e.servedBody = { an: e.body.an, ns: e.body.ns, ar: e.body.ar, bytes };
    }
    return e;
  }

  set(key: string, r: AnalyzedResponse): void {
    if (this.maxEntries <= 0 || r.cacheTtl <= 0) return;
    const now = this.clock.now();
    this.map.delete(key);
    // Evict the oldest entry not used since it was last passed over; used ones go to
    // the back once. Ends: each pass clears a bit, so at most size + 1 steps.
    while (this.map.size >= this.maxEntries) {
      const [oldest, entry] = this.map.entries().next().value as [string, CacheEntry];
      this.map.delete(oldest);
      if (entry.used && now < entry.expiresAt) {
        entry.used = false;
        this.map.set(oldest, entry);
      }
    }
    this.map.set(key, {
      rcode: r.rcode, body: r.body, ttlOffsets: r.ttlOffsets, ttls: r.ttls, negative: r.negative,
      storedAt: now, expiresAt: now + r.cacheTtl * 1000, servedElapsed: 0, servedBody: r.body, used: false,
    });
  }

  clear(): void {
    this.map.clear();
  }
}
