/**
 * EWC1 record layer (the data channel's framing after the handshake in
 * ewc-handshake.ts): AES-128-GCM records of up to 64 KiB plaintext, one key, IV
 * base and u64 sequence number per direction.
 *
 *   record = u32be n | ciphertext | tag     (n = ciphertext + 16-byte tag, AAD = the 4 header bytes)
 *   nonce  = iv base, last 8 bytes XOR seq (u64 big-endian); seq += 1 per record
 *   n = 16 (empty plaintext) = END, the sender's authenticated half-close
 *
 * The native pump (src/native/aead-forwarder.ts) produces and consumes the same
 * bytes; the known-answer vector in test/tunnel/ewc.test.ts pins them. An
 * unauthenticated byte is never delivered: a record is decrypted and verified
 * whole before any of it is pushed, and a TCP EOF without END (truncation) is an
 * error, not an end.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { Duplex } from 'node:stream';
import type net from 'node:net';
import type { ForwardOptions, ForwardResult } from '../../native/forwarder.js';
import { ChannelError } from './errors.js';

export const TAG_BYTES = 16;
export const HEADER_BYTES = 4;
/** Plaintext per record: large records keep per-record cost (cipher set-up, syscalls) low. */
export const MAX_RECORD_PLAINTEXT = 65536;
export const MAX_RECORD_N = TAG_BYTES + MAX_RECORD_PLAINTEXT;

/** Why a received record stream was rejected (metric label). */
export type RecordErrorReason = 'length' | 'tag' | 'truncated' | 'after-end';

/** One direction's keys: AES-128 key (16 B) and IV base (12 B). */
export interface DirectionKeys {
  readonly key: Buffer;
  readonly iv: Buffer;
}

/** The nonce of record `seq`: the IV base with its last 8 bytes XORed with seq (u64 BE). */
export function recordNonce(iv: Buffer, seq: number): Buffer {
  const n = Buffer.from(iv);
  const hi = Math.floor(seq / 2 ** 32);
  const lo = seq >>> 0;
  n.writeUInt32BE((n.readUInt32BE(4) ^ hi) >>> 0, 4);
  n.writeUInt32BE((n.readUInt32BE(8) ^ lo) >>> 0, 8);
  return n;
}

/**
 * Seal `parts` (total ≤ MAX_RECORD_PLAINTEXT, concatenated) as record `seq`:
 * returns [header, ciphertext pieces..., tag] ready for one corked write.
 */
export function sealRecord(k: DirectionKeys, seq: number, parts: readonly Buffer[]): Buffer[] {
  let len = 0;
  for (const p of parts) len += p.length;
  if (len > MAX_RECORD_PLAINTEXT) throw new RangeError(`record plaintext of ${len} bytes`);
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  header.writeUInt32BE(len + TAG_BYTES, 0);
  const c = createCipheriv('aes-128-gcm', k.key, recordNonce(k.iv, seq));
  c.setAAD(header);
  const out = [header];
  for (const p of parts) if (p.length > 0) out.push(c.update(p));
  const fin = c.final();
  if (fin.length > 0) out.push(fin);
  out.push(c.getAuthTag());
  return out;
}

/** Verify and decrypt one whole record (header included). Throws ChannelError('ERR_CHANNEL_RECORD') on a bad tag. */
export function openRecord(k: DirectionKeys, seq: number, record: Buffer): Buffer {
  const n = record.length - HEADER_BYTES;
  const d = createDecipheriv('aes-128-gcm', k.key, recordNonce(k.iv, seq));
  d.setAAD(record.subarray(0, HEADER_BYTES));
  d.setAuthTag(record.subarray(HEADER_BYTES + n - TAG_BYTES));
  const body = d.update(record.subarray(HEADER_BYTES, HEADER_BYTES + n - TAG_BYTES));
  try {
    d.final();
  } catch (err) {
    throw new RecordError('tag', `record ${seq}: authentication failed`, err);
  }
  return body;
}

/** A rejected record stream: `reason` is the metric label. */
export class RecordError extends ChannelError {
  constructor(readonly reason: RecordErrorReason, message: string, cause?: unknown) {
    super('ERR_CHANNEL_RECORD', message, cause === undefined ? undefined : { cause });
  }
}

/** Codec state handed to the native pump (field names as in src/native/aead-forwarder.ts). */
export interface EwcDetached {
  txKey: Buffer; txIv: Buffer; txSeq: number;
  rxKey: Buffer; rxIv: Buffer; rxSeq: number;
  /** Cipher bytes read from the raw socket but not decoded yet (a partial record or more). */
  rxInitial: Buffer;
  /** Plaintext decoded but not consumed by the reader yet: write it to the plain side first. */
  plain: Buffer[];
}

export interface EwcSocketOptions {
  tx: DirectionKeys;
  rx: DirectionKeys;
  /** Called once when the received stream is rejected (count it; the socket is destroyed). */
  onRecordError?(reason: RecordErrorReason): void;
}

/**
 * A Node Duplex over a connected raw TCP socket speaking EWC1 records. Writes are
 * sealed into records of up to 64 KiB (writes queued while the previous one is in
 * flight are coalesced by `_writev`); a write completes when the raw socket took
 * it (backpressure from TCP). Reads pause the raw socket while the reader is
 * behind. `end()` sends END then FIN; 'end' is emitted only after an
 * authenticated END. Made with allowHalfOpen: each direction closes on its own.
 */
export class EwcSocket extends Duplex {
  private txSeq = 0;
  private rxSeq = 0;
  private pending: Buffer = Buffer.alloc(0);
  private rxEnded = false;
  private txEnded = false;
  private rawPaused = false;
  private detached = false;
  /** Set by the channel when the addon's record pump is there (proxy/remote-dialer.ts NativeForwardable). */
  forwardNative?: (client: net.Socket, opts: ForwardOptions) => Promise<ForwardResult> | undefined;

  constructor(readonly raw: net.Socket, private readonly o: EwcSocketOptions) {
    super({ allowHalfOpen: true, writableHighWaterMark: MAX_RECORD_PLAINTEXT, readableHighWaterMark: MAX_RECORD_PLAINTEXT });
    // Between the handshake and its owner (a pool, a flow) a reset must not be an
    // uncaught 'error': owners add their own listener; record errors are counted by the hook.
    this.on('error', () => undefined);
    raw.on('data', this.onData);
    raw.on('end', this.onRawEnd);
    raw.on('error', this.onRawError);
    raw.on('close', this.onRawClose);
  }

  /** The peer's authenticated END arrived (its direction is over). */
  get remoteEnded(): boolean { return this.rxEnded; }

  /** Wire bytes (records included), as net.Socket reports them. */
  get bytesWritten(): number { return this.raw.bytesWritten; }
  get bytesRead(): number { return this.raw.bytesRead; }

  setNoDelay(v = true): this { this.raw.setNoDelay(v); return this; }

  private readonly onData = (chunk: Buffer): void => {
    if (this.destroyed || this.detached) return;
    if (this.rxEnded) { this.fail(new RecordError('after-end', 'bytes after END')); return; }
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    this.decode();
  };

  /** Decode every whole record in `pending`; stops at the first error. */
  private decode(): void {
    while (this.pending.length >= HEADER_BYTES && !this.destroyed) {
      const n = this.pending.readUInt32BE(0);
      if (n < TAG_BYTES || n > MAX_RECORD_N) { this.fail(new RecordError('length', `record length ${n} out of range`)); return; }
      if (this.pending.length < HEADER_BYTES + n) return;
      const rec = this.pending.subarray(0, HEADER_BYTES + n);
      this.pending = this.pending.subarray(HEADER_BYTES + n);
      let plain: Buffer;
      try {
        plain = openRecord(this.o.rx, this.rxSeq, rec);
      } catch (err) {
        this.fail(err as Error);
        return;
      }
      this.rxSeq++;
      if (n === TAG_BYTES) {
        this.rxEnded = true;
        if (this.pending.length > 0) { this.fail(new RecordError('after-end', 'bytes after END')); return; }
        this.push(null);
        return;
      }
      if (!this.push(plain) && !this.rawPaused) {
        this.rawPaused = true;
        this.raw.pause();
      }
    }
  }

  override _read(): void {
    if (this.rawPaused && !this.detached) {
      this.rawPaused = false;
      this.raw.resume();
    }
  }

  private readonly onRawEnd = (): void => {
    if (this.rxEnded || this.detached) return;
    // Closed before its first record (a warm connection whose peer went away): no
    // stream was cut and nothing was lost — a closed connection, not a bad record stream.
    if (this.rxSeq === 0 && this.pending.length === 0) { this.destroy(new ChannelError('ERR_CHANNEL_CLOSED', 'channel connection closed before its first record')); return; }
    this.fail(new RecordError('truncated', 'connection ended without END'));
  };

  private readonly onRawError = (err: Error): void => {
    if (!this.detached) this.destroy(err);
  };

  private readonly onRawClose = (): void => {
    if (this.detached || this.destroyed) return;
    // A clean close after END both ways: this Duplex ends by itself once read.
    if (this.rxEnded && this.txEnded) return;
    this.destroy(new ChannelError('ERR_CHANNEL_CLOSED', 'channel connection closed'));
  };

  private fail(err: Error): void {
    if (err instanceof RecordError) this.o.onRecordError?.(err.reason);
    this.destroy(err);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.send([chunk], cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.send(chunks.map((c) => c.chunk), cb);
  }

  /** Seal `bufs` into as few records as fit; cb once the raw socket accepted them (or drained). */
  private send(bufs: Buffer[], cb: (err?: Error | null) => void): void {
    if (this.raw.destroyed || this.raw.writableEnded) { cb(new ChannelError('ERR_CHANNEL_CLOSED', 'channel connection closed')); return; }
    const out: Buffer[] = [];
    let rec: Buffer[] = [];
    let room = MAX_RECORD_PLAINTEXT;
    const flush = (): void => {
      if (room === MAX_RECORD_PLAINTEXT) return; // empty: never an accidental END
      for (const b of sealRecord(this.o.tx, this.txSeq++, rec)) out.push(b);
      rec = [];
      room = MAX_RECORD_PLAINTEXT;
    };
    for (let b of bufs) {
      while (b.length > 0) {
        const take = Math.min(room, b.length);
        rec.push(take === b.length ? b : b.subarray(0, take));
        b = b.subarray(take);
        room -= take;
        if (room === 0) flush();
      }
    }
    flush();
    this.writeRaw(out, cb);
  }

  private writeRaw(out: Buffer[], cb: (err?: Error | null) => void): void {
    if (out.length === 0) { cb(); return; }
    // One writev for header, ciphertext and tag (no tiny segments).
    this.raw.cork();
    let ok = true;
    for (const b of out) ok = this.raw.write(b);
    this.raw.uncork();
    if (ok) { cb(); return; }
    const onDrain = (): void => { this.raw.off('close', onClose); cb(); };
    const onClose = (): void => { this.raw.off('drain', onDrain); cb(new ChannelError('ERR_CHANNEL_CLOSED', 'channel connection closed')); };
    this.raw.once('drain', onDrain);
    this.raw.once('close', onClose);
  }

  /** END, then FIN on TCP. */
  override _final(cb: (err?: Error | null) => void): void {
    if (this.raw.destroyed) { cb(new ChannelError('ERR_CHANNEL_CLOSED', 'channel connection closed')); return; }
    this.txEnded = true;
    for (const b of sealRecord(this.o.tx, this.txSeq++, [])) this.raw.write(b);
    this.raw.end(() => cb());
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.raw.off('data', this.onData);
    if (!this.detached) {
      // A clean finish lets TCP close by itself (the FIN both ways is under way);
      // anything else resets the connection.
      if (err || !(this.rxEnded && this.txEnded)) this.raw.destroy();
      else this.raw.resume();
    }
    cb(err);
  }

  /**
   * Stop reading the raw socket and hand over the codec state (native pump). The
   * raw socket is left open and no longer watched; this Duplex is destroyed
   * without touching it. Only between flows' records: nothing may be being
   * written (the caller waited for the header/status exchange).
   */
  detach(): EwcDetached {
    if (this.writableLength > 0) throw new ChannelError('ERR_CHANNEL_CLOSED', 'detach with writes in flight');
    this.detached = true;
    // Bytes Node reads from here on stay in the raw socket's buffer (handover.ts collects them).
    this.raw.pause();
    const plain: Buffer[] = [];
    for (let c = this.read() as Buffer | null; c !== null; c = this.read() as Buffer | null) plain.push(c);
    this.raw.off('data', this.onData);
    this.raw.off('end', this.onRawEnd);
    this.raw.off('error', this.onRawError);
    this.raw.off('close', this.onRawClose);
    const state: EwcDetached = {
      txKey: this.o.tx.key, txIv: this.o.tx.iv, txSeq: this.txSeq,
      rxKey: this.o.rx.key, rxIv: this.o.rx.iv, rxSeq: this.rxSeq,
      rxInitial: this.pending, plain,
    };
    this.pending = Buffer.alloc(0);
    this.destroy();
    return state;
  }
}

/**
 * Close a connection that carries no flow with END both ways, so the far side
 * sees an orderly close (a reset would count as a truncated record stream).
 * Bounded: destroyed after 5 s if the far END does not come.
 */
export function retire(sock: EwcSocket): void {
  if (sock.destroyed) return;
  sock.on('error', () => undefined);
  // Read to the far END: the Duplex closes itself once both directions ended.
  sock.resume();
  if (!sock.writableEnded) sock.end();
  setTimeout(() => sock.destroy(), 5000).unref();
}
