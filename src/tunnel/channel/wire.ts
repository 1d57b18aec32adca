/**
 * Small wire helpers of the data channel (pure apart from the socket/stream they
 * are handed): reading a prefix (tunnel header, status, relay ack) from a Node
 * socket, and one-shot JSON messages on a libp2p control stream.
 */
import type { Duplex } from 'node:stream';
import type { Stream } from '@libp2p/interface';
import { readPrefix, closeQuietly } from '../stream-io.js';
import { ProtocolError } from '../errors.js';

/** Control protocol between two agents: credentials and relay pairing requests. */
export const CHANNEL_PROTOCOL = '/edgeway/channel/1.0.0';
/** Control protocol between an agent and a relay: register pairing tokens. */
export const RELAY_PAIR_PROTOCOL = '/edgeway/relay-pair/1.0.0';
/** Bytes of a relay pairing token (random, agreed over libp2p, single use). */
export const TOKEN_BYTES = 16;
/** The relay's one-byte answer once both ends of a token arrived: start the EWC1 handshake now. */
export const PAIRED = 0x01;
/** Control messages are small JSON documents. */
const MAX_CONTROL_BYTES = 16 * 1024;

/**
 * Read a prefix from a socket: feed bytes to `decode` until it returns a value;
 * the bytes after it are put back (`unshift`), so the socket reads as if the
 * prefix had been its own message. Reads in paused mode ('readable'): once the
 * listener is gone the socket is neither paused nor flowing, so the next 'data'
 * listener (a pump, the proxy) starts it and nothing is emitted into the void.
 */
export function readSocketPrefix<T>(
  sock: Duplex,
  decode: (buf: Buffer) => { value: T; used: number } | undefined,
  opts: { maxBytes: number; timeoutMs: number },
): Promise<T> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    let settled = false;
    const done = (err: Error | undefined, v?: T): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.off('readable', onReadable);
      sock.off('end', onEnd);
      sock.off('close', onEnd);
      sock.off('error', onError);
      if (err) reject(err);
      else resolve(v as T);
    };
    const onReadable = (): void => {
      let c: Buffer | null;
      while (!settled && (c = sock.read() as Buffer | null) !== null) {
        buf = buf.length === 0 ? c : Buffer.concat([buf, c]);
        let r: { value: T; used: number } | undefined;
        try {
          r = decode(buf);
        } catch (err) {
          done(err as Error);
          return;
        }
        if (r) {
          if (buf.length > r.used) sock.unshift(buf.subarray(r.used));
          done(undefined, r.value);
        } else if (buf.length > opts.maxBytes) done(new ProtocolError(`prefix over ${opts.maxBytes} bytes`));
      }
    };
    const onEnd = (): void => done(new ProtocolError('connection ended before the prefix'));
    const onError = (err: Error): void => done(err);
    const timer = setTimeout(() => done(new ProtocolError(`no prefix within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    sock.on('readable', onReadable);
    sock.once('end', onEnd);
    sock.once('close', onEnd);
    sock.once('error', onError);
  });
}

function frameJson(msg: unknown): Uint8Array {
  const body = Buffer.from(JSON.stringify(msg));
  if (body.length > MAX_CONTROL_BYTES) throw new ProtocolError('control message too large');
  const out = Buffer.alloc(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

function decodeJson(b: Uint8Array): { value: unknown; used: number } | undefined {
  if (b.length < 4) return undefined;
  const n = Buffer.from(b.buffer, b.byteOffset, b.byteLength).readUInt32BE(0);
  if (n > MAX_CONTROL_BYTES) throw new ProtocolError(`control message of ${n} bytes`);
  if (b.length < 4 + n) return undefined;
  try {
    return { value: JSON.parse(Buffer.from(b.buffer, b.byteOffset + 4, n).toString('utf8')) as unknown, used: 4 + n };
  } catch {
    throw new ProtocolError('control message is not JSON');
  }
}

/** Send one JSON message on a control stream. */
export function sendJson(stream: Stream, msg: unknown): void {
  stream.send(frameJson(msg));
}

/** Read one JSON message from a control stream. */
export async function readJson(stream: Stream, timeoutMs: number, signal?: AbortSignal): Promise<unknown> {
  const { value } = await readPrefix(stream, decodeJson, { maxBytes: MAX_CONTROL_BYTES + 4, timeoutMs, ...(signal ? { signal } : {}) });
  return value;
}

/** Request/response on a fresh control stream; the stream is closed afterwards. */
export async function requestJson(stream: Stream, msg: unknown, timeoutMs: number, signal?: AbortSignal): Promise<unknown> {
  try {
    sendJson(stream, msg);
    return await readJson(stream, timeoutMs, signal);
  } finally {
    closeQuietly(stream);
  }
}

/** A field of an untrusted JSON object, checked. */
export function field<T extends 'string' | 'number' | 'boolean'>(o: unknown, key: string, type: T): T extends 'string' ? string : T extends 'number' ? number : boolean {
  const v = o && typeof o === 'object' ? (o as Record<string, unknown>)[key] : undefined;
  if (typeof v !== type) throw new ProtocolError(`control message: ${key} is not a ${type}`);
  return v as T extends 'string' ? string : T extends 'number' ? number : boolean;
}

/** A list of hex tokens from an untrusted JSON object, checked. */
export function tokensField(o: unknown, max: number): string[] {
  const v = o && typeof o === 'object' ? (o as Record<string, unknown>).tokens : undefined;
  if (!Array.isArray(v) || v.length === 0 || v.length > max) throw new ProtocolError(`control message: tokens must be 1..${max} entries`);
  for (const t of v) if (typeof t !== 'string' || !/^[0-9a-f]+$/.test(t) || t.length !== TOKEN_BYTES * 2) throw new ProtocolError('control message: bad token');
  return v as string[];
}
