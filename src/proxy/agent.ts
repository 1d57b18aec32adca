/**
 * Keep-alive upstream pools for the HTTP-aware paths (the proxy's HTTP path and the
 * gateway). One agent per endpoint; for a remote endpoint the agent's "sockets" are
 * tunnel streams.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { PlannedEndpoint, PlannedServicePort } from '../plan/types.js';
import type { RemoteDialer } from './remote-dialer.js';
import { openStream } from './service.js';

/**
 * A keep-alive agent for one endpoint. `noDelay`: the request head and the
 * response are small writes; with Nagle on, a write that follows an unacknowledged
 * one waits for the peer's delayed ACK (~40 ms on Linux).
 */
export function endpointAgent(ep: PlannedEndpoint, sp: PlannedServicePort, remote: () => RemoteDialer | undefined, connectTimeoutMs: number, maxFreeSockets: number): http.Agent {
  const a = new http.Agent({ keepAlive: true, maxFreeSockets, scheduling: 'lifo', noDelay: true } as http.AgentOptions);
  if (ep.class === 'remote') {
    (a as unknown as { createConnection: (o: unknown, cb: (err: Error | null, s?: Duplex) => void) => void }).createConnection = (_o, cb) => {
      openStream(ep, sp, remote(), AbortSignal.timeout(connectTimeoutMs)).then((s) => cb(null, socketLike(s)), (e: Error) => cb(e));
    };
  }
  return a;
}

/**
 * http.Agent treats pooled connections as sockets (setKeepAlive, unref, setTimeout
 * on every free one, from inside the response's end): a tunnel stream has none of
 * that, and the TypeError would be thrown outside any request. The calls become
 * no-ops (the tunnel keeps its own connection alive).
 */
export function socketLike(d: Duplex): Duplex {
  const o = d as unknown as Record<string, unknown>;
  for (const m of ['setKeepAlive', 'setNoDelay', 'setTimeout', 'ref', 'unref']) if (typeof o[m] !== 'function') o[m] = () => d;
  return d;
}
