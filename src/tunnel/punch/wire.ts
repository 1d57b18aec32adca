/**
 * `/edgeway/punch/1.0.0` messages: u16 length + JSON, at most 4 KiB each.
 *   initiator → CONNECT { addrs, ports }     responder → CONNECT { addrs, ports }
 *   initiator → SYNC { attempt }             (both dial; see plan.ts syncDelayMs)
 *   both      → RESULT { attempt, ok }       (`ok`: indexes of the connected pairs)
 * then SYNC again for the next attempt, or the stream closes. `ports[i]` of one side
 * pairs with `ports[i]` of the other (one TCP connection per pair: a 4-tuple holds
 * one connection); the answering side's `ports[0]` is its data port. A socket counts only when both sides
 * connected its pair. A responder that will not punch answers REFUSE { reason }.
 */
import type { Stream, StreamMessageEvent } from '@libp2p/interface';
import { chunksOf } from '../protocol.js';
import { PunchError } from './errors.js';

export const PUNCH_PROTOCOL = '/edgeway/punch/1.0.0';
const MAX_MESSAGE = 4096;
/** Port pairs per punch (sockets per CONNECT). */
export const MAX_PUNCH_PORTS = 16;

const isPort = (p: unknown): p is number => typeof p === 'number' && Number.isInteger(p) && p >= 1 && p <= 65535;

export type PunchMessage =
  | { type: 'connect'; addrs: string[]; ports: number[] }
  | { type: 'sync'; attempt: number }
  | { type: 'result'; attempt: number; ok: number[] }
  | { type: 'refuse'; reason: string };

export function encodePunch(msg: PunchMessage): Uint8Array {
  const body = Buffer.from(JSON.stringify(msg));
  if (body.length > MAX_MESSAGE) throw new PunchError('protocol', `message of ${body.length} bytes`);
  const out = Buffer.alloc(2 + body.length);
  out.writeUInt16BE(body.length, 0);
  body.copy(out, 2);
  return out;
}

/** A validated message, or a PunchError('protocol'). Unknown fields are dropped. */
export function validatePunch(v: unknown): PunchMessage {
  const o = (v && typeof v === 'object' ? v : {}) as Record<string, unknown>;
  const attempt = typeof o.attempt === 'number' && Number.isInteger(o.attempt) && o.attempt >= 1 && o.attempt <= 16 ? o.attempt : undefined;
  switch (o.type) {
    case 'connect':
      if (Array.isArray(o.addrs) && Array.isArray(o.ports) && o.ports.length >= 1 && o.ports.length <= MAX_PUNCH_PORTS && o.ports.every(isPort)) {
        return { type: 'connect', addrs: o.addrs.filter((a): a is string => typeof a === 'string' && a.length <= 64).slice(0, 16), ports: o.ports };
      }
      break;
    case 'sync':
      if (attempt !== undefined) return { type: 'sync', attempt };
      break;
    case 'result':
      if (attempt !== undefined && Array.isArray(o.ok) && o.ok.length <= MAX_PUNCH_PORTS
        && o.ok.every((i) => typeof i === 'number' && Number.isInteger(i) && i >= 0 && i < MAX_PUNCH_PORTS)) return { type: 'result', attempt, ok: o.ok };
      break;
    case 'refuse':
      return { type: 'refuse', reason: typeof o.reason === 'string' ? o.reason.slice(0, 64) : 'unknown' };
  }
  throw new PunchError('protocol', `bad message ${JSON.stringify(v)?.slice(0, 120)}`);
}

/** Split buffered bytes into complete frames; returns the messages and the bytes used. */
export function decodePunchFrames(buf: Buffer): { messages: PunchMessage[]; used: number } {
  const messages: PunchMessage[] = [];
  let off = 0;
  while (buf.length - off >= 2) {
    const len = buf.readUInt16BE(off);
    if (len > MAX_MESSAGE) throw new PunchError('protocol', `message of ${len} bytes`);
    if (buf.length - off < 2 + len) break;
    let parsed: unknown;
    try {
      parsed = JSON.parse(buf.subarray(off + 2, off + 2 + len).toString('utf8'));
    } catch (err) {
      throw new PunchError('protocol', 'message is not JSON', { cause: err });
    }
    messages.push(validatePunch(parsed));
    off += 2 + len;
  }
  return { messages, used: off };
}

/**
 * Reads messages off a stream in order. Messages are tiny and few per stream, so
 * there is no backpressure to manage; a malformed frame fails every waiter.
 */
export class PunchReader {
  private buf: Buffer = Buffer.alloc(0);
  private readonly queue: PunchMessage[] = [];
  private failure: Error | undefined;
  private waiter: (() => void) | undefined;

  constructor(stream: Stream) {
    const wake = (): void => { const w = this.waiter; this.waiter = undefined; w?.(); };
    stream.addEventListener('message', (evt: StreamMessageEvent) => {
      if (this.failure) return;
      const parts: Buffer[] = [this.buf];
      for (const c of chunksOf(evt.data)) parts.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
      this.buf = Buffer.concat(parts);
      try {
        const { messages, used } = decodePunchFrames(this.buf);
        this.buf = this.buf.subarray(used);
        this.queue.push(...messages);
      } catch (err) {
        this.failure = err as Error;
      }
      wake();
    });
    const ended = (): void => {
      this.failure ??= new PunchError('protocol', 'stream ended');
      wake();
    };
    stream.addEventListener('remoteCloseWrite', ended);
    stream.addEventListener('close', ended);
  }

  /** The next message; rejects on timeout, abort, stream end or a bad frame. */
  async next(timeoutMs: number, signal?: AbortSignal): Promise<PunchMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.queue.shift();
      if (m) return m;
      if (this.failure) throw this.failure;
      signal?.throwIfAborted();
      const left = deadline - Date.now();
      if (left <= 0) throw new PunchError('failed', 'signalling timed out');
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, left);
        const onAbort = (): void => done();
        signal?.addEventListener('abort', onAbort, { once: true });
        function done(): void { clearTimeout(t); signal?.removeEventListener('abort', onAbort); resolve(); }
        this.waiter = done;
      });
    }
  }
}
