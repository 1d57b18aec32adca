// A reference EWC1 record codec written straight from the spec with node:crypto
// (AES-128-GCM), for tests and bench/aead-pump.mjs to talk to the native pump
// (native/src/aead-pump.cc). Deliberately independent of both the pump and the
// channel's codec (src/tunnel/channel/), so a shared misreading shows up as a
// mismatch between them and the vectors.
//   Record = u32 BE n | ciphertext | tag(16), n = ciphertext + 16, AAD = header;
//   nonce = iv with its last 8 bytes XORed with seq (u64 BE); n == 16 is END.
import { createCipheriv, createDecipheriv } from 'node:crypto';

export const MAX_PLAIN = 65536;
const TAG = 16;

/** @param {Buffer} iv @param {bigint} seq */
function nonce(iv, seq) {
  const n = Buffer.from(iv);
  const s = Buffer.alloc(8);
  s.writeBigUInt64BE(seq);
  for (let i = 0; i < 8; i++) n[4 + i] ^= s[i];
  return n;
}

export class Ewc1Error extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'Ewc1Error';
  }
}

export class Ewc1Sealer {
  /** @param {Buffer} key @param {Buffer} iv @param {number} [seq] */
  constructor(key, iv, seq = 0) {
    this.key = key;
    this.iv = iv;
    this.seq = BigInt(seq);
  }

  /** One record (plaintext ≤ 64 KiB; empty = END). @param {Buffer} plain */
  record(plain) {
    if (plain.length > MAX_PLAIN) throw new RangeError('record plaintext > 64 KiB');
    const header = Buffer.alloc(4);
    header.writeUInt32BE(plain.length + TAG);
    const c = createCipheriv('aes-128-gcm', this.key, nonce(this.iv, this.seq++));
    c.setAAD(header);
    const body = Buffer.concat([c.update(plain), c.final()]);
    return Buffer.concat([header, body, c.getAuthTag()]);
  }

  /** Records for `data`, `chunk` plaintext bytes each. @param {Buffer} data @param {number} [chunk] */
  records(data, chunk = MAX_PLAIN) {
    const out = [];
    for (let off = 0; off < data.length; off += chunk) out.push(this.record(data.subarray(off, off + chunk)));
    return out;
  }

  end() {
    return this.record(Buffer.alloc(0));
  }
}

export class Ewc1Opener {
  /** @param {Buffer} key @param {Buffer} iv @param {number} [seq] */
  constructor(key, iv, seq = 0) {
    this.key = key;
    this.iv = iv;
    this.seq = BigInt(seq);
    /** @type {Buffer} */
    this.pending = Buffer.alloc(0);
    this.ended = false;
  }

  /** Feed cipher bytes; returns the plaintexts of the records completed. Throws Ewc1Error. @param {Buffer} bytes */
  push(bytes) {
    this.pending = this.pending.length ? Buffer.concat([this.pending, bytes]) : bytes;
    /** @type {Buffer[]} */
    const out = [];
    while (this.pending.length > 0) {
      if (this.ended) throw new Ewc1Error('bytes after END');
      if (this.pending.length < 4) break;
      const n = this.pending.readUInt32BE(0);
      if (n < TAG || n > TAG + MAX_PLAIN) throw new Ewc1Error(`record length ${n} out of range`);
      if (this.pending.length < 4 + n) break;
      const d = createDecipheriv('aes-128-gcm', this.key, nonce(this.iv, this.seq++));
      d.setAAD(this.pending.subarray(0, 4));
      d.setAuthTag(this.pending.subarray(4 + n - TAG, 4 + n));
      let plain;
      try {
        plain = Buffer.concat([d.update(this.pending.subarray(4, 4 + n - TAG)), d.final()]);
      } catch {
        throw new Ewc1Error('record tag mismatch');
      }
      this.pending = this.pending.subarray(4 + n);
      if (n === TAG) this.ended = true;
      else out.push(plain);
    }
    return out;
  }

  /** The stream's EOF: throws unless END came first (truncation). */
  finish() {
    if (!this.ended || this.pending.length) throw new Ewc1Error('EOF without END');
  }
}
