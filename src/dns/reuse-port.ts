/**
 * How DNS worker threads get UDP sockets that share one port (SO_REUSEPORT, the
 * kernel spreads queries across them): dgram's own `reusePort` option exists from
 * Node 22.12 (22.x) and 23.1 on; older versions ignore it silently (the second
 * bind fails with EADDRINUSE), so there the native addon makes the socket and
 * dgram adopts it (`bind({ fd })`). Neither: workers are not possible and the
 * server runs on the main thread as before.
 */
import { constants } from 'node:os';
import { loadNative } from '../native/addon.js';

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** The addon reports errno as a number: give the error its name (EADDRINUSE…) as dgram does. */
export function namedErrno(err: unknown): unknown {
  const e = err as Error & { errno?: number; code?: string };
  if (e && typeof e.errno === 'number') e.code = ERRNO_NAMES.get(e.errno) ?? e.code;
  return err;
}

export type ReusePort =
  | { readonly ok: true; readonly how: 'dgram' | 'addon'; readonly openUdpFd?: (host: string, port: number) => number }
  | { readonly ok: false; readonly reason: string };

/** True when this Node's dgram honours `reusePort` (22.12+ on 22.x, 23.1+). */
export function dgramReusePort(version: string = process.versions.node): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major >= 24 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

/** The way to share a UDP port on this process, or why there is none. */
export function reusePort(version: string = process.versions.node): ReusePort {
  if (dgramReusePort(version)) return { ok: true, how: 'dgram' };
  const load = loadNative();
  const addon = load.addon;
  if (addon?.udpReusePort) {
    const open = addon.udpReusePort.bind(addon);
    return {
      ok: true, how: 'addon',
      openUdpFd: (host, port) => {
        try {
          return open(host, port);
        } catch (err) {
          throw namedErrno(err);
        }
      },
    };
  }
  return { ok: false, reason: `Node ${version} has no dgram reusePort and ${addon ? 'the native addon predates udpReusePort' : `the native addon is absent (${load.addonReason ?? 'not built'})`}` };
}
