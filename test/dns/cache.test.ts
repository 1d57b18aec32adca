/**
 * The answer cache on its own: bounded size with second-chance eviction, TTL
 * countdown in served copies, expiry on an injected clock.
 */
import { describe, expect, it } from 'vitest';
import dnsPacket from 'dns-packet';
import { analyzeResponse, AnswerCache } from '../../src/dns/cache.js';
import { nameKey } from '../../src/dns/wire.js';

function questionOf(name: string): Buffer {
  const k = nameKey(name);
  const q = Buffer.alloc(k.length + 4);
  q.write(k, 0, 'latin1');
  q.writeUInt16BE(1, k.length);
  q.writeUInt16BE(1, k.length + 2);
  return q;
}

function answer(name: string, ttl: number): ReturnType<typeof analyzeResponse> {
  return analyzeResponse(dnsPacket.encode({ type: 'response', id: 1, flags: 0x8180, questions: [{ name, type: 'A' }], answers: [{ name, type: 'A', ttl, data: '192.0.2.1' }] }), questionOf(name));
}

describe('answer cache', () => {
  it('stays within its bound and keeps entries that were hit', () => {
    const clock = { t: 0, now(): number { return this.t; } };
    const c = new AnswerCache(3, clock);
    for (const n of ['a', 'b', 'c']) c.set(n, answer(`${n}.example`, 60)!);
    expect(c.get('a')).toBeDefined(); // a gets a second chance
    c.set('d', answer('d.example', 60)!);
    expect(c.size).toBe(3);
    expect(c.get('b')).toBeUndefined(); // oldest unused went first
    expect(c.get('a')).toBeDefined();
    for (let i = 0; i < 100; i++) c.set(`x${i}`, answer(`x${i}.example`, 60)!);
    expect(c.size).toBe(3);
  });

  it('counts TTLs down per second and expires', () => {
    const clock = { t: 0, now(): number { return this.t; } };
    const c = new AnswerCache(10, clock);
    c.set('k', answer('k.example', 10)!);
    const ttl = (): number | undefined => {
      const hit = c.get('k');
      if (!hit) return undefined;
      // The body is compressed against the question: decode it behind header + question.
      const header = Buffer.from([0, 1, 0x81, 0x80, 0, 1, 0, hit.servedBody.an, 0, 0, 0, 0]);
      return (dnsPacket.decode(Buffer.concat([header, questionOf('k.example'), hit.servedBody.bytes])).answers?.[0] as { ttl: number }).ttl;
    };
    expect(ttl()).toBe(10);
    clock.t = 3_500;
    expect(ttl()).toBe(7);
    clock.t = 9_999;
    expect(ttl()).toBe(1);
    clock.t = 10_000;
    expect(ttl()).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it('does not cache what it must not: zero TTL, negative without SOA, a zero-size cache', () => {
    const clock = { t: 0, now(): number { return this.t; } };
    const c = new AnswerCache(10, clock);
    c.set('z', answer('z.example', 0)!);
    expect(c.get('z')).toBeUndefined();
    const nx = analyzeResponse(dnsPacket.encode({ type: 'response', id: 1, flags: 0x8183, questions: [{ name: 'n.example', type: 'A' }] }), questionOf('n.example'))!;
    expect(nx.negative).toBe(true);
    expect(nx.cacheTtl).toBe(0);
    const none = new AnswerCache(0, clock);
    none.set('a', answer('a.example', 60)!);
    expect(none.size).toBe(0);
  });
});
