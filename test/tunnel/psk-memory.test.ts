/**
 * The PSK's stream cipher (xsalsa20: one WASM memory shared by every instance, at
 * most 64 MB) under many connections — scripts/patch-deps.mjs patch 5. A relay
 * serving 100 nodes died of `WebAssembly.Memory.grow(): Maximum memory size
 * exceeded`: after one instance grew the memory, every other instance grew it again
 * by the whole used size. And @libp2p/pnet never gave an instance's slot back.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { generateKey } from '@libp2p/pnet';
import '../../src/tunnel/polyfill.js';
import { createTunnelNode, type TunnelLibp2p } from '../../src/tunnel/node.js';
import { seededBytes } from '../helpers/prng.js';

interface Cipher { update(input: Uint8Array, output?: Uint8Array): Uint8Array; finalize(): void }
type XSalsa20Ctor = ((nonce: Uint8Array, key: Uint8Array) => Cipher) & { prototype: Cipher };
const XSalsa20 = createRequire(import.meta.url)('xsalsa20') as XSalsa20Ctor;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('xsalsa20 shared memory (PSK cipher)', () => {
  it('a few hundred ciphers survive one growth of the memory, and every byte round-trips', () => {
    const pairs = Array.from({ length: 400 }, () => {
      const nonce = randomBytes(24);
      const key = randomBytes(32);
      return { enc: XSalsa20(nonce, key), dec: XSalsa20(nonce, key) };
    });
    const idle = XSalsa20(randomBytes(24), randomBytes(32));
    try {
      // One large update grows the shared memory (initially 640 KiB)…
      const big = seededBytes(5, 4 << 20);
      expect(sha(pairs[0]!.dec.update(pairs[0]!.enc.update(big)))).toBe(sha(big));
      // …then every other cipher updates: each must use the grown memory, not grow it again.
      for (const [i, p] of pairs.slice(1).entries()) {
        const data = seededBytes(100 + i, 1024 + ((i * 977) % 4096));
        const sealed = p.enc.update(data);
        expect(Buffer.compare(Buffer.from(sealed), Buffer.from(data))).not.toBe(0);
        expect(sha(p.dec.update(sealed))).toBe(sha(data));
      }
      // A cipher that never ran after the growth is finalized (connection closed) without a throw.
      expect(() => idle.finalize()).not.toThrow();
    } finally {
      for (const p of pairs) { p.enc.finalize(); p.dec.finalize(); }
    }
  });
});

describe('@libp2p/pnet connections give their ciphers back', () => {
  let a: TunnelLibp2p;
  let b: TunnelLibp2p;
  beforeAll(async () => {
    const psk = new Uint8Array(95);
    generateKey(psk);
    a = await createTunnelNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], psk });
    b = await createTunnelNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], psk });
  });
  afterAll(async () => { await a?.stop(); await b?.stop(); });

  it('finalizes both ciphers of both ends when a PSK connection closes', async () => {
    const spy = vi.spyOn(XSalsa20.prototype, 'finalize');
    try {
      for (let i = 0; i < 3; i++) {
        const conn = await a.dial(b.getMultiaddrs()[0]!);
        expect(conn.status).toBe('open');
        await a.hangUp(b.peerId);
        // b sees the close a moment later (bounded wait).
        for (let t = 0; t < 100 && spy.mock.calls.length < 4 * (i + 1); t++) await new Promise((r) => setTimeout(r, 20));
        expect(spy.mock.calls.length).toBe(4 * (i + 1));
      }
    } finally {
      spy.mockRestore();
    }
  });
});
