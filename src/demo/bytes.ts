/**
 * Seeded pseudo-random bytes for the demo's bulk transfers: an AES-128-CTR
 * keystream keyed by the seed (fast enough not to be what the demo measures). The
 * backend streams it, the probe regenerates it and compares SHA-256, so a
 * corrupted, reordered or truncated transfer is reported, not counted as throughput.
 */
import { createCipheriv, createHash } from 'node:crypto';

const CHUNK = 256 * 1024;
const ZEROS = Buffer.alloc(CHUNK);

export function* seededChunks(total: number, seed: number): Generator<Buffer> {
  const key = createHash('sha256').update(`edgeway-demo-${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  for (let sent = 0; sent < total; ) {
    const n = Math.min(CHUNK, total - sent);
    sent += n;
    yield cipher.update(n === CHUNK ? ZEROS : ZEROS.subarray(0, n));
  }
}

export function seededSha256(total: number, seed: number): string {
  const h = createHash('sha256');
  for (const c of seededChunks(total, seed)) h.update(c);
  return h.digest('hex');
}
