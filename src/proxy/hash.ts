/**
 * A consistent-hash ring of virtual nodes, in typed arrays (one sorted Uint32Array
 * of points and a parallel index array), so a 1,000-endpoint ring is ~800 KiB and a
 * lookup is one binary search.
 */

/** 32-bit FNV-1a over UTF-16 code units, finished with murmur3's fmix32 for avalanche. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Virtual nodes per endpoint: 100 (even spread) up to 100 endpoints, fewer beyond to bound memory. */
function vnodesFor(n: number): number {
  return Math.max(8, Math.min(100, Math.floor(10_000 / Math.max(1, n))));
}

export class HashRing {
  private readonly points: Uint32Array;
  private readonly owners: Uint32Array;

  constructor(keys: readonly string[]) {
    const v = vnodesFor(keys.length);
    const pairs: [number, number][] = [];
    keys.forEach((k, idx) => {
      for (let i = 0; i < v; i++) pairs.push([hash32(`${k}#${i}`), idx]);
    });
    pairs.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    this.points = Uint32Array.from(pairs, (p) => p[0]);
    this.owners = Uint32Array.from(pairs, (p) => p[1]);
  }

  get size(): number {
    return this.points.length;
  }

  /** Endpoint indexes met walking clockwise from the key's point, each once. */
  *walk(key: string): Generator<number> {
    const n = this.points.length;
    if (n === 0) return;
    const h = hash32(key);
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    const seen = new Set<number>();
    for (let i = 0; i < n; i++) {
      const o = this.owners[(lo + i) % n]!;
      if (seen.has(o)) continue;
      seen.add(o);
      yield o;
    }
  }
}
