/**
 * The addon's shared-port sockets as Node objects: a data listener that punch
 * sockets can share its port with, and outgoing sockets bound to that port. Node's
 * `net` cannot bind before connect, so without the addon there is no hole punching
 * (the caller stays relayed and says why).
 */
import { closeSync } from 'node:fs';
import { Server, Socket } from 'node:net';
import type { NativeAddon, NativeLoad } from '../../native/addon.js';
import { PunchError } from './errors.js';

export interface ConnectFromOptions {
  localHost: string;
  localPort: number;
  remoteHost: string;
  remotePort: number;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface PunchSockets {
  /** Start `server` listening on host:port with SO_REUSEPORT (port 0 = any; read it from `server.address()`). */
  listen(server: Server, host: string, port: number, backlog?: number): Promise<void>;
  /** A connected socket from localHost:localPort; rejects with an Error carrying `errno`. */
  connectFrom(o: ConnectFromOptions): Promise<Socket>;
}

type Bound = Required<Pick<NativeAddon, 'listenReusePort' | 'connectFrom'>>;

/** Why punching cannot run in this process, or undefined when it can. */
export function punchUnavailableReason(load: NativeLoad): string | undefined {
  if (!load.addon) return `native addon absent (${load.addonReason ?? 'unknown'})`;
  if (typeof load.addon.connectFrom !== 'function' || typeof load.addon.listenReusePort !== 'function') {
    return 'native addon predates connectFrom (rebuild it: scripts/build-native.sh)';
  }
  return undefined;
}

/** The sockets, or undefined with the addon missing (see punchUnavailableReason). */
export function createPunchSockets(load: NativeLoad): PunchSockets | undefined {
  if (punchUnavailableReason(load) !== undefined) return undefined;
  const addon = load.addon as NativeAddon & Bound;
  return {
    listen(server, host, port, backlog = 511) {
      const fd = addon.listenReusePort(host, port, backlog);
      return new Promise((resolve, reject) => {
        const onError = (err: Error): void => { closeQuietly(fd); reject(err); };
        server.once('error', onError);
        server.listen({ fd }, () => { server.off('error', onError); resolve(); });
      });
    },
    async connectFrom(o) {
      o.signal?.throwIfAborted();
      const pending = addon.connectFrom(o.localHost, o.localPort, o.remoteHost, o.remotePort, o.timeoutMs);
      let fd: number;
      if (!o.signal) fd = await pending;
      else {
        const signal = o.signal;
        fd = await new Promise<number>((resolve, reject) => {
          const onAbort = (): void => {
            // The worker cannot be interrupted; its fd, when it comes, is closed here.
            pending.then(closeQuietly, () => undefined);
            reject(new PunchError('aborted', 'connect aborted', { cause: signal.reason }));
          };
          signal.addEventListener('abort', onAbort, { once: true });
          pending.then(
            (v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
            (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e as Error); },
          );
        });
      }
      return new Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
    },
  };
}

function closeQuietly(fd: number): void {
  try { closeSync(fd); } catch { /* already closed */ }
}
