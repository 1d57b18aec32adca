/**
 * The forwarding contract the proxy uses per connection: move bytes both ways
 * between an accepted client socket and a connected upstream socket until both
 * directions ended, propagating half-closes, then close both.
 *
 * Socket preconditions (accelerators take the file descriptors over, so Node must
 * never have started reading them):
 * - accept with `net.createServer({ pauseOnConnect: true, allowHalfOpen: true })`;
 * - create the upstream with `allowHalfOpen: true` and call `pause()` on it before
 *   `'connect'` (see `connectPaused`);
 * - do not read or write either socket until the promise settles.
 * Accelerators refuse (HandoverError) sockets Node has already read from.
 */
import net from 'node:net';

export type ForwarderKind = 'sockmap' | 'splice' | 'node';

export interface ForwardResult {
  /** 'aead': the EWC1 record pump (aead-forwarder.ts), plaintext counted. */
  readonly kind: ForwarderKind | 'aead';
  /** client → upstream */
  readonly bytesIn: number;
  /** upstream → client */
  readonly bytesOut: number;
}

export interface ForwardOptions {
  /** Abort: both sockets are destroyed and the promise rejects with ForwardCancelledError. */
  readonly signal?: AbortSignal;
}

export interface Forwarder {
  readonly kind: ForwarderKind;
  /**
   * Resolves when both directions ended cleanly (both sockets are destroyed then);
   * rejects with ForwardError (peer reset, …; both sockets destroyed, both peers
   * reset), with HandoverError when an accelerator could not take the sockets
   * (nothing moved, sockets untouched: try the next forwarder), or
   * ForwardCancelledError.
   *
   * An accelerator destroys both JS sockets as soon as it took them (the native pool
   * owns the connections, Node's fds are closed): their 'close' events fire at the
   * hand-over, not at the end of the flow, and properties such as remoteAddress must
   * be read before calling forward().
   */
  forward(client: net.Socket, upstream: net.Socket, opts?: ForwardOptions): Promise<ForwardResult>;
}

/** Connect an upstream socket that Node never reads from (ready for any forwarder). */
export function connectPaused(opts: net.TcpNetConnectOpts, signal?: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ ...opts, allowHalfOpen: true });
    // Must happen before 'connect': libuv starts reading on connect otherwise.
    sock.pause();
    const onAbort = (): void => { sock.destroy(); reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted')); };
    signal?.addEventListener('abort', onAbort, { once: true });
    sock.once('connect', () => { signal?.removeEventListener('abort', onAbort); sock.off('error', reject); resolve(sock); });
    sock.once('error', (err) => { signal?.removeEventListener('abort', onAbort); reject(err); });
  });
}

/** The file descriptor behind a net.Socket, or undefined (not a TCP fd socket). */
export function socketFd(sock: net.Socket): number | undefined {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** True when Node has already consumed this socket's FIN (an accelerator can't see it any more). */
export function readEnded(sock: net.Socket): boolean {
  const st = (sock as unknown as { _readableState?: { ended?: boolean } })._readableState;
  return sock.readableEnded || st?.ended === true;
}

/** Destroy a socket so that its peer sees a reset (best effort), e.g. after the other side reset. */
export function resetSocket(sock: net.Socket): void {
  if (sock.destroyed) return;
  if (typeof sock.resetAndDestroy === 'function') {
    try { sock.resetAndDestroy(); return; } catch { /* fall through */ }
  }
  sock.destroy();
}
