import { describe, expect, it } from 'vitest';
import {
  ClientIpAffinityBalancer, ConsistentHashBalancer, createBalancer, LeastRequestBalancer, RandomBalancer, RoundRobinBalancer,
} from '../../src/proxy/balancer.js';
import { HashRing } from '../../src/proxy/hash.js';
import { prng } from '../helpers/prng.js';

// Endpoint keys used throughout (test IP plan: 10.9.0.0/24 backends).
const EPS = ['10.9.0.1:80', '10.9.0.2:80', '10.9.0.3:80'];


function counts(pick: () => number | undefined, n: number): number[] {
  const c = EPS.map(() => 0);
  for (let i = 0; i < n; i++) {
    const j = pick();
    if (j === undefined) throw new Error('no pick');
    c[j]!++;
  }
  return c;
}

describe('random and round robin distribution', () => {
  it.each([
    { name: 'random (seeded)', b: () => new RandomBalancer({ random: prng(7) }), lo: 75, hi: 125 },
    { name: 'random (Math.random)', b: () => new RandomBalancer({}), lo: 60, hi: 140 },
    { name: 'round robin', b: () => new RoundRobinBalancer({}), lo: 100, hi: 100 },
  ])('$name spreads 300 picks over 3 endpoints', ({ b, lo, hi }) => {
    const bal = b();
    bal.setEndpoints(EPS);
    const c = counts(() => bal.pick({ clientIp: '10.1.0.1' }), 300);
    for (const x of c) { expect(x).toBeGreaterThanOrEqual(lo); expect(x).toBeLessThanOrEqual(hi); }
  });

  it('round robin skips excluded endpoints', () => {
    const bal = new RoundRobinBalancer({});
    bal.setEndpoints(EPS);
    const ex = new Set([EPS[1]!]);
    const picks = Array.from({ length: 6 }, () => bal.pick({ clientIp: 'x', exclude: ex }));
    expect(picks).not.toContain(1);
    expect(bal.pick({ clientIp: 'x', exclude: new Set(EPS) })).toBeUndefined();
  });

  it('no endpoints → undefined for every policy', () => {
    for (const kind of ['random', 'roundRobin', 'leastRequest'] as const) {
      expect(createBalancer({ kind }).pick({ clientIp: 'a' })).toBeUndefined();
    }
    expect(createBalancer({ kind: 'consistentHash', key: { type: 'sourceIp' } }).pick({ clientIp: 'a', hashKey: 'a' })).toBeUndefined();
  });
});

describe('least request', () => {
  it('prefers the idle endpoint', () => {
    const bal = new LeastRequestBalancer({});
    bal.setEndpoints(EPS);
    bal.acquire(EPS[0]!); bal.acquire(EPS[0]!); bal.acquire(EPS[2]!);
    for (let i = 0; i < 10; i++) expect(bal.pick({ clientIp: 'c' })).toBe(1);
  });

  it('spreads ties and follows releases', () => {
    const bal = new LeastRequestBalancer({});
    bal.setEndpoints(EPS);
    const seen = new Set<number>();
    for (let i = 0; i < 3; i++) { const j = bal.pick({ clientIp: 'c' })!; seen.add(j); bal.acquire(EPS[j]!); }
    expect(seen.size).toBe(3);
    bal.release(EPS[2]!);
    expect(bal.pick({ clientIp: 'c' })).toBe(2);
  });

  it('uses two random choices for large lists and still avoids a loaded endpoint', () => {
    const keys = Array.from({ length: 20 }, (_, i) => `10.9.1.${i}:80`);
    const bal = new LeastRequestBalancer({ random: prng(3) });
    bal.setEndpoints(keys);
    for (let i = 0; i < 100; i++) bal.acquire(keys[0]!);
    let hits = 0;
    for (let i = 0; i < 1000; i++) if (bal.pick({ clientIp: 'c' }) === 0) hits++;
    // Index 0 wins only when both choices land on it: ~1/400.
    expect(hits).toBeLessThan(15);
  });
});

describe('consistent hash with bounded loads', () => {
  it('the same key maps to the same endpoint (stickiness), keys spread', () => {
    const bal = new ConsistentHashBalancer({});
    bal.setEndpoints(EPS);
    const c = EPS.map(() => 0);
    for (let i = 0; i < 300; i++) {
      const key = `10.1.${i >> 8}.${i & 255}`;
      const j = bal.pick({ clientIp: key, hashKey: key })!;
      for (let r = 0; r < 3; r++) expect(bal.pick({ clientIp: key, hashKey: key })).toBe(j);
      c[j]!++;
    }
    for (const x of c) expect(x).toBeGreaterThan(50);
  });

  it('removing one endpoint remaps only its keys', () => {
    const bal = new ConsistentHashBalancer({});
    const keys = Array.from({ length: 10 }, (_, i) => `10.9.2.${i}:80`);
    bal.setEndpoints(keys);
    const before = new Map<string, string>();
    for (let i = 0; i < 500; i++) before.set(`k${i}`, keys[bal.pick({ clientIp: '', hashKey: `k${i}` })!]!);
    const fewer = keys.filter((k) => k !== keys[4]);
    bal.setEndpoints(fewer);
    let moved = 0;
    for (const [k, ep] of before) {
      const now = fewer[bal.pick({ clientIp: '', hashKey: k })!]!;
      if (ep !== keys[4] && now !== ep) moved++;
    }
    expect(moved).toBe(0);
  });

  it('respects the load bound: one hot key overflows to the next endpoints', () => {
    const bal = new ConsistentHashBalancer({ hashLoadFactor: 1.25 });
    bal.setEndpoints(EPS);
    const loads = [0, 0, 0];
    for (let i = 0; i < 60; i++) {
      const j = bal.pick({ clientIp: '', hashKey: 'hot' })!;
      bal.acquire(EPS[j]!);
      loads[j]!++;
      const total = i + 1;
      // Invariant of the algorithm: no endpoint above ceil(c·total/n).
      for (const l of loads) expect(l).toBeLessThanOrEqual(Math.ceil((1.25 * total) / 3));
    }
    expect(Math.min(...loads)).toBeGreaterThan(0);
  });

  it('missing key falls back to random; excluded endpoints are skipped', () => {
    const bal = new ConsistentHashBalancer({ random: prng(1) });
    bal.setEndpoints(EPS);
    const c = counts(() => bal.pick({ clientIp: '' }), 300);
    for (const x of c) expect(x).toBeGreaterThan(60);
    const j = bal.pick({ clientIp: '', hashKey: 'abc' })!;
    const k = bal.pick({ clientIp: '', hashKey: 'abc', exclude: new Set([EPS[j]!]) });
    expect(k).not.toBe(j);
    expect(k).toBeDefined();
  });

  it('ring walks visit every endpoint once', () => {
    const ring = new HashRing(EPS);
    expect([...ring.walk('x')].sort()).toEqual([0, 1, 2]);
    expect(ring.size).toBe(300);
  });
});

describe('ClientIP affinity', () => {
  it('sticks per client IP until the timeout, refreshed by each flow', () => {
    let now = 1_000_000;
    const bal = new ClientIpAffinityBalancer(10_000, { now: () => now, random: prng(11) });
    bal.setEndpoints(EPS);
    const first = new Map<string, number>();
    for (let c = 0; c < 30; c++) first.set(`10.1.0.${c}`, bal.pick({ clientIp: `10.1.0.${c}` })!);
    expect(new Set(first.values()).size).toBe(3);
    for (let step = 0; step < 5; step++) {
      now += 9_000; // under the timeout each time: refreshed, still sticky after 45 s
      for (const [ip, j] of first) expect(bal.pick({ clientIp: ip })).toBe(j);
    }
    now += 10_001;
    let changed = 0;
    for (const [ip, j] of first) if (bal.pick({ clientIp: ip }) !== j) changed++;
    expect(changed).toBeGreaterThan(5);
  });

  it('moves a client whose endpoint is excluded or gone, and bounds the table', () => {
    const bal = new ClientIpAffinityBalancer(60_000, { maxAffinityEntries: 10 });
    bal.setEndpoints(EPS);
    const j = bal.pick({ clientIp: 'a' })!;
    const k = bal.pick({ clientIp: 'a', exclude: new Set([EPS[j]!]) })!;
    expect(k).not.toBe(j);
    expect(bal.pick({ clientIp: 'a' })).toBe(k);
    bal.setEndpoints(EPS.filter((_, i) => i !== k));
    expect(bal.pick({ clientIp: 'a' })).toBeDefined();
    for (let i = 0; i < 50; i++) bal.pick({ clientIp: `c${i}` });
    expect(bal.affinityEntries).toBeLessThanOrEqual(10);
  });
});

describe('loads', () => {
  it('release of an unknown key is harmless and loads survive setEndpoints', () => {
    const bal = createBalancer({ kind: 'leastRequest' });
    bal.setEndpoints(EPS);
    bal.acquire(EPS[0]!);
    bal.setEndpoints([EPS[0]!, EPS[1]!]);
    expect(bal.load(EPS[0]!)).toBe(1);
    bal.release('nope');
    bal.release(EPS[0]!);
    bal.release(EPS[0]!);
    expect(bal.load(EPS[0]!)).toBe(0);
  });
});
