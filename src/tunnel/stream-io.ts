/**
 * Moving bytes between libp2p v3 streams and Node sockets, with the v3 traps
 * handled (PITFALLS.md):
 * - backpressure waits for the `drain` *event* (never `onDrain()`, which resolves
 *   only once and then queues everything in memory);
 * - `pause()` is deferred with queueMicrotask, because a pause inside a `message`
 *   handler is undone when that message was delivered by `resume()`;
 * - the socket is ended on the stream's `end` (not `remoteCloseWrite`, which fires
 *   while bytes may still be buffered), and a clean `close` is not an end either:
 *   once both sides sent FIN the stream reports `close` while a paused stream
 *   still holds up to a window of unread bytes (downloads arrived truncated). The
 *   read side is done at `end`, which comes after the read buffer is delivered;
 *   a paused stream must still be resumable after `close` (`readOpen`);
 * - `close()` may reject with a non-Error: always caught;
 * - `send()` keeps the caller's bytes *by reference*: in the stream's write
 *   buffer until yamux's window lets them out, then (as views inside yamux frames)
 *   in the encrypted connection's write buffer while its socket is full; Noise
 *   copies them only when it encrypts. So whoever hands a buffer to send() gives
 *   up ownership of it (never reuses it; a reused read buffer is copied first).
 * - `drain` is dispatched to every stream of a connection (muxer drain) and on
 *   partial window updates: it does not mean *this* stream can take more. The
 *   stream's own state does: `writeBufferLength === 0` (`sentOut`). Write
 *   callbacks and resumes wait for that, so each flow buffers at most one chunk.
 */
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface';
import { chunksOf } from './protocol.js';
import { resetSide } from '../proxy/pump.js';

/** Every byte handed to `send()` has left this stream's write buffer (it may take more). */
export function sentOut(stream: Stream): boolean {
  return stream.writeBufferLength === 0;
}

/**
 * Call `cb` once every byte handed to `stream.send()` so far has left the stream
 * (`sentOut`), or with an error when the stream closes first. Returns a function
 * that cancels the wait. `drain` and `idle` are both watched: `idle` is emitted
 * when the write buffer empties, `drain` when sending may resume (checked, not
 * trusted: it fans out to every stream of the connection).
 */
export function whenSentOut(stream: Stream, cb: (err?: Error) => void): () => void {
  let done = false;
  // Deferred: 'idle' is dispatched from inside the stream's send loop, which is
  // still marked as sending; a close() started from the callback right then
  // would wait for an 'idle' that never comes again.
  const check = (): void => queueMicrotask(() => {
    if (done || !sentOut(stream)) return;
    done = true;
    cancel();
    cb();
  });
  const onClose = (evt: StreamCloseEvent): void => {
    if (done) return;
    done = true;
    cancel();
    cb(evt.error ?? new Error('stream closed before its bytes were sent'));
  };
  const cancel = (): void => {
    stream.removeEventListener('idle', check);
    stream.removeEventListener('drain', check);
    stream.removeEventListener('close', onClose);
  };
  stream.addEventListener('idle', check);
  stream.addEventListener('drain', check);
  stream.addEventListener('close', onClose);
  return cancel;
}

/** Close the write side; on failure abort. Never throws, never leaves a rejection unhandled. */
export function closeQuietly(stream: Stream): void {
  if (stream.status !== 'open') return;
  stream.close().catch((err: unknown) => abortQuietly(stream, err));
}

export function abortQuietly(stream: Stream, err?: unknown): void {
  if (stream.status === 'closed' || stream.status === 'aborted' || stream.status === 'reset') return;
  try {
    stream.abort(err instanceof Error ? err : new Error(String(err ?? 'aborted')));
  } catch { /* already gone */ }
}

/**
 * Read a prefix (header or status) from a stream: feeds every message to `decode`
 * until it returns a value. Bytes after the prefix are returned in `rest` (the
 * caller hands them on before attaching its own listener, in the same tick).
 */
export function readPrefix<T>(
  stream: Stream,
  decode: (buf: Uint8Array) => { value: T; used: number } | undefined,
  opts: { maxBytes: number; timeoutMs: number; signal?: AbortSignal },
): Promise<{ value: T; rest: Uint8Array | undefined }> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const done = (err: Error | undefined, v?: { value: T; rest: Uint8Array | undefined }): void => {
      clearTimeout(timer);
      stream.removeEventListener('message', onMessage);
      stream.removeEventListener('close', onClose);
      stream.removeEventListener('end', onEnd);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(v!);
    };
    const onMessage = (evt: StreamMessageEvent): void => {
      const parts: Buffer[] = [buf];
      for (const c of chunksOf(evt.data)) parts.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
      buf = Buffer.concat(parts);
      let r: { value: T; used: number } | undefined;
      try {
        r = decode(buf);
      } catch (err) {
        done(err as Error);
        return;
      }
      if (r) done(undefined, { value: r.value, rest: buf.length > r.used ? buf.subarray(r.used) : undefined });
      else if (buf.length > opts.maxBytes) done(new Error(`prefix over ${opts.maxBytes} bytes`));
    };
    const onClose = (evt: StreamCloseEvent): void => done(evt.error ?? new Error('stream closed before the prefix'));
    const onEnd = (): void => done(new Error('stream ended before the prefix'));
    const onAbort = (): void => done(opts.signal?.reason instanceof Error ? opts.signal.reason : new Error('aborted'));
    const timer = setTimeout(() => done(new Error(`no prefix within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    if (opts.signal?.aborted) { done(new Error('aborted')); return; }
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    stream.addEventListener('message', onMessage);
    stream.addEventListener('close', onClose);
    stream.addEventListener('end', onEnd);
    if (stream.readableEnded) onEnd();
  });
}

export interface BridgeHooks {
  /** Bytes moved: `tx` = socket → stream (to the peer), `rx` = stream → socket. */
  onBytes?(tx: number, rx: number): void;
  /** Called once when both sides are finished (or failed). */
  onDone?(err?: Error): void;
}

const FLUSH_BYTES = 1 << 20;

/**
 * Join a TCP socket and a tunnel stream until both directions finish. Half-close
 * is carried both ways. `initial` = bytes already read from the stream.
 */
export function bridgeSocket(socket: Socket, stream: Stream, initial: Uint8Array | undefined, hooks: BridgeHooks = {}): void {
  let tx = 0, rx = 0;
  let socketPausedByUs = false;
  let streamPauseWanted = false;
  let finished = false;
  let socketClosed = false;
  let streamClosed = stream.status === 'closed' || stream.status === 'aborted' || stream.status === 'reset';
  let firstError: Error | undefined;

  const flush = (): void => {
    if (tx + rx > 0) { hooks.onBytes?.(tx, rx); tx = 0; rx = 0; }
  };
  const maybeDone = (): void => {
    if (finished || !socketClosed || !streamClosed) return;
    finished = true;
    flush();
    stream.removeEventListener('message', onMessage);
    stream.removeEventListener('drain', onDrain);
    stream.removeEventListener('idle', onDrain);
    stream.removeEventListener('end', onEnd);
    stream.removeEventListener('close', onClose);
    hooks.onDone?.(firstError);
  };
  const fail = (err: Error): void => {
    firstError ??= err;
    abortQuietly(stream, err);
    resetSide(socket);
  };

  const writeToSocket = (c: Uint8Array): boolean => {
    rx += c.byteLength;
    if (rx + tx > FLUSH_BYTES) flush();
    return socket.write(c);
  };
  const onMessage = (evt: StreamMessageEvent): void => {
    let full = false;
    for (const c of chunksOf(evt.data)) if (!writeToSocket(c)) full = true;
    if (full && !streamPauseWanted) {
      streamPauseWanted = true;
      queueMicrotask(() => { if (streamPauseWanted) pauseStream(stream); });
    }
  };
  // `drain` fans out to every stream of the connection: resume the socket only
  // once this stream's own write buffer is empty (else memory grows per stream).
  const onDrain = (): void => {
    if (socketPausedByUs && sentOut(stream)) { socketPausedByUs = false; socket.resume(); }
  };
  const onEnd = (): void => {
    if (!socket.destroyed) socket.end();
  };
  const onClose = (evt: StreamCloseEvent): void => {
    streamClosed = true;
    // A failed stream resets the socket: a FIN would tell the client the answer was complete.
    if (evt.error) { firstError ??= evt.error; resetSide(socket); } else if (stream.readableEnded) onEnd();
    // else: unread bytes are still buffered in the stream; `end` follows them.
    maybeDone();
  };

  socket.on('data', (chunk: Buffer) => {
    if (stream.writeStatus !== 'writable') return;
    tx += chunk.length;
    try {
      // Node gives every 'data' event a buffer of its own: handing it over is safe.
      stream.send(chunk);
      if (!sentOut(stream)) { socketPausedByUs = true; socket.pause(); }
    } catch (err) {
      fail(err as Error);
    }
  });
  socket.on('drain', () => {
    if (streamPauseWanted) { streamPauseWanted = false; resumeStream(stream); }
  });
  socket.on('end', () => closeQuietly(stream));
  socket.on('error', (err) => { firstError ??= err; abortQuietly(stream, err); });
  socket.on('close', () => {
    socketClosed = true;
    // The remote still has bytes for a socket that is gone: reset the stream. When
    // both halves finished normally, let our close() flush instead of aborting it.
    if (!streamClosed && (!stream.readableEnded || socket.errored)) abortQuietly(stream, new Error('socket closed'));
    maybeDone();
  });

  stream.addEventListener('message', onMessage);
  stream.addEventListener('drain', onDrain);
  stream.addEventListener('idle', onDrain);
  stream.addEventListener('end', onEnd);
  stream.addEventListener('close', onClose);
  if (initial && initial.byteLength > 0) writeToSocket(initial);
  if (stream.readableEnded) onEnd();
  // A socket that sent FIN before any data may have emitted 'end' already (Node
  // emits it from the initial read(0) even with no 'data' listener): carry it now.
  if (socket.readableEnded) closeQuietly(stream);
  if (streamClosed) { if (stream.readableEnded) socket.end(); maybeDone(); }
}

/**
 * A tunnel stream as a Node Duplex (for the proxy's RemoteDialer contract).
 * Backpressure both ways; `end()` half-closes; destroy aborts the stream.
 */
export class StreamDuplex extends Duplex {
  private pauseWanted = false;
  private cancelWait: (() => void) | undefined;

  constructor(readonly stream: Stream, initial?: Uint8Array) {
    super({ allowHalfOpen: true });
    stream.addEventListener('message', this.onMessage);
    stream.addEventListener('end', this.onEnd);
    stream.addEventListener('close', this.onClose);
    if (initial && initial.byteLength > 0) this.push(Buffer.from(initial));
    if (stream.readableEnded) this.push(null);
  }

  private readonly onMessage = (evt: StreamMessageEvent): void => {
    let full = false;
    for (const c of chunksOf(evt.data)) if (!this.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength))) full = true;
    if (full && !this.pauseWanted) {
      this.pauseWanted = true;
      queueMicrotask(() => { if (this.pauseWanted) pauseStream(this.stream); });
    }
  };
  private readonly onEnd = (): void => { this.push(null); };
  private readonly onClose = (evt: StreamCloseEvent): void => {
    if (evt.error) this.destroy(evt.error);
    // A clean close with unread bytes buffered: `end` follows them (see top).
    else if (this.stream.readableEnded && !this.readableEnded) this.push(null);
  };

  override _read(): void {
    if (this.pauseWanted) {
      this.pauseWanted = false;
      resumeStream(this.stream);
    }
  }

  /**
   * Takes ownership of `chunk` (kept by reference below; see the top). The
   * callback fires once the stream's own write buffer is empty, never on a
   * `drain` meant for another stream: that is the flow's backpressure.
   */
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    try {
      this.stream.send(chunk);
    } catch (err) {
      cb(err as Error);
      return;
    }
    if (sentOut(this.stream)) { cb(); return; }
    this.cancelWait = whenSentOut(this.stream, (err) => { this.cancelWait = undefined; cb(err ?? null); });
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.stream.close().then(() => cb(), (err: unknown) => cb(err instanceof Error ? err : new Error(String(err))));
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.cancelWait?.();
    this.cancelWait = undefined;
    this.stream.removeEventListener('message', this.onMessage);
    this.stream.removeEventListener('end', this.onEnd);
    this.stream.removeEventListener('close', this.onClose);
    if (this.stream.status === 'open' || this.stream.status === 'closing') {
      if (err || !this.stream.readableEnded || this.stream.writeStatus === 'writable') abortQuietly(this.stream, err ?? new Error('destroyed'));
    }
    cb(err);
  }
}

/**
 * Writes framed datagrams to a stream, coalescing the ones queued in the same
 * event-loop turn into one `send` (one muxer frame, one encrypted write instead of
 * one per datagram: UDP bursts were CPU-bound on per-frame overhead). Drops (and
 * reports) a datagram when more than `maxQueuedBytes` wait to be sent: UDP
 * semantics, and memory bounded under a stalled peer.
 */
export class DatagramWriter {
  private queue: Uint8Array[] = [];
  private queued = 0;
  private scheduled = false;

  constructor(private readonly stream: Stream, private readonly maxQueuedBytes: number, private readonly onDrop: () => void) {}

  write(frame: Uint8Array): void {
    if (this.stream.writeStatus !== 'writable') return;
    if (this.queued + this.stream.writeBufferLength > this.maxQueuedBytes) { this.onDrop(); return; }
    this.queue.push(frame);
    this.queued += frame.length;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const q = this.queue;
    this.queue = [];
    this.queued = 0;
    if (q.length === 0 || this.stream.writeStatus !== 'writable') return;
    try {
      this.stream.send(q.length === 1 ? q[0]! : Buffer.concat(q));
    } catch (err) {
      abortQuietly(this.stream, err);
    }
  };
}

/**
 * pause()/resume() throw StreamStateError once the read side is closing or closed
 * (a remote close can land between the decision and a deferred call): then there
 * is nothing left to pause, so the call is skipped — never an uncaught exception.
 */
function readOpen(stream: Stream): boolean {
  // Not `stream.status`: a stream both sides closed cleanly is 'closed' while a
  // paused read side still holds bytes to deliver.
  const rs = (stream as unknown as { readStatus?: string }).readStatus;
  return stream.status !== 'aborted' && stream.status !== 'reset' && rs !== 'closing' && rs !== 'closed';
}

export function pauseStream(stream: Stream): void {
  if (!readOpen(stream)) return;
  try { stream.pause(); } catch { /* closed meanwhile: nothing to pause */ }
}

export function resumeStream(stream: Stream): void {
  if (!readOpen(stream)) return;
  try { stream.resume(); } catch { /* closed meanwhile: nothing to resume */ }
}
