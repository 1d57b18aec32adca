/**
 * Bidirectional byte pump between a client socket and an endpoint stream, with
 * explicit backpressure (pause the reader when `write()` returns false, resume on
 * the writer's `drain`), half-close both ways (a FIN is forwarded as `end()` and the
 * other direction keeps flowing), and teardown that always releases both sides.
 *
 * Both sides must be created with `allowHalfOpen: true`: otherwise Node ends the
 * writable side as soon as the readable side ends and a half-close turns into a
 * reset (PITFALLS.md).
 */
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { ReadSink } from './fast-read.js';

export interface PumpHooks {
  /** Bytes moved client → endpoint / endpoint → client (called per chunk). */
  toEndpoint(n: number): void;
  toClient(n: number): void;
  /** Called once when both sides are closed. `err` is the first error seen, if any. */
  done(err: Error | undefined, reason: 'closed' | 'idle_timeout' | 'error'): void;
}

/**
 * Tear a side down so its peer sees the flow failed: a TCP socket is reset (RST).
 * A plain destroy() sends FIN when every received byte was read, and the client
 * then sees a clean end with the rest of the answer missing — e.g. when the far
 * agent died mid-flow (kill -9). Other streams are destroyed.
 */
export function resetSide(side: Duplex): void {
  if (side.destroyed) return;
  const reset = (side as Partial<Socket>).resetAndDestroy;
  if (typeof reset === 'function') {
    // Without a TCP handle Node throws, or destroys with an error: the side is going anyway.
    side.on('error', () => undefined);
    try { reset.call(side); return; } catch { /* not TCP: destroy below */ }
  }
  side.destroy();
}

/** One direction: src → dst. Returns nothing; listeners live as long as the streams. */
function forward(src: Duplex, dst: Duplex, count: (n: number) => void, sink?: ReadSink): void {
  src.on('end', () => dst.end());
  // A socket built with `onread` delivers through its sink (backpressure inside).
  if (sink) return sink.attach(dst, count);
  src.on('data', (chunk: Buffer) => {
    count(chunk.length);
    if (!dst.write(chunk)) src.pause();
  });
  // Only this pump pauses src, so every drain of dst may resume it.
  dst.on('drain', () => src.resume());
}

/**
 * Pump `client` ⇄ `endpoint` until both are closed. A side built with `onread`
 * (fast-read.ts) passes its ReadSink in `sinks`. `idleMs` > 0 closes both after
 * that long without a byte in either direction (the client socket sees every byte,
 * read or written, so one timer covers the flow). Bytes the endpoint sent before
 * the pump started (buffered in its stream) are delivered.
 */
export function pump(client: Socket, endpoint: Duplex, hooks: PumpHooks, idleMs = 0, sinks: { client?: ReadSink; endpoint?: ReadSink } = {}): void {
  let firstErr: Error | undefined;
  let reason: 'closed' | 'idle_timeout' | 'error' = 'closed';
  let open = 2;
  // Only on failure (error, reset, idle timeout): a clean close never gets here.
  const destroyBoth = (): void => {
    resetSide(client);
    resetSide(endpoint);
  };
  const onError = (e: Error): void => {
    firstErr ??= e;
    reason = 'error';
    destroyBoth();
  };
  const onClose = (side: Duplex) => (): void => {
    // A side that closes without both its directions done (reset, destroy) takes the
    // other down; a clean close (FIN both ways, all written) lets the other finish
    // flushing what it still holds.
    if (!(side.readableEnded && side.writableFinished)) destroyBoth();
    if (--open === 0) {
      client.setTimeout(0);
      hooks.done(firstErr, reason);
    }
  };
  client.on('error', onError);
  endpoint.on('error', onError);
  // A side that is already closed (client gone while the endpoint was dialled) will
  // not emit 'close' again: account for it now.
  for (const side of [client, endpoint]) {
    if (side.closed) queueMicrotask(onClose(side));
    else side.on('close', onClose(side));
  }
  if (idleMs > 0) {
    client.setTimeout(idleMs, () => {
      reason = 'idle_timeout';
      destroyBoth();
    });
  }
  forward(client, endpoint, hooks.toEndpoint, sinks.client);
  forward(endpoint, client, hooks.toClient, sinks.endpoint);
  client.resume();
  endpoint.resume();
}
