/** mulberry32: a small, fast, seeded PRNG so randomised tests are reproducible. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` bytes from prng(seed): the same seed gives the same bytes (byte-path tests check them by sha256). */
export function seededBytes(seed: number, n: number): Buffer {
  const r = prng(seed);
  const b = Buffer.alloc(n + 3);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE((r() * 2 ** 32) >>> 0, i);
  return b.subarray(0, n);
}
