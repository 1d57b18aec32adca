/**
 * One punch attempt's dialling: a SYN from the data port to each candidate at once,
 * repeated until the deadline. Through two endpoint-independent NATs the first SYNs
 * die at the far NAT (or draw a RST from it) until the far side's own SYN has opened
 * its mapping; the kernel's SYN retransmission or our retry after a refusal then
 * meets the hole. The first connected socket wins; the rest are closed.
 */
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PunchSockets } from './sockets.js';

/** Pause after a refused/unreachable SYN before the next one (bounds the loop: ≤ 10/s per candidate). */
const RETRY_PAUSE_MS = 100;

export interface DialOptions {
  sockets: PunchSockets;
  localHost: string;
  localPort: number;
  candidates: readonly string[];
  remotePort: number;
  timeoutMs: number;
  signal?: AbortSignal;
}

/** A connected socket, or undefined when no candidate answered before the deadline. */
export async function dialCandidates(o: DialOptions): Promise<{ socket: Socket; host: string } | undefined> {
  const stop = new AbortController();
  const onAbort = (): void => stop.abort(o.signal?.reason);
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const deadline = Date.now() + o.timeoutMs;
  let winner: { socket: Socket; host: string } | undefined;
  const one = async (host: string): Promise<void> => {
    while (!stop.signal.aborted) {
      const left = deadline - Date.now();
      if (left <= 0) return;
      try {
        const socket = await o.sockets.connectFrom({
          localHost: o.localHost, localPort: o.localPort, remoteHost: host, remotePort: o.remotePort, timeoutMs: left, signal: stop.signal,
        });
        if (winner || stop.signal.aborted) socket.destroy();
        else {
          winner = { socket, host };
          stop.abort();
        }
        return;
      } catch {
        // ECONNREFUSED (the far NAT answered with a RST), EHOSTUNREACH, a bind
        // race with a lingering socket: try again until the deadline.
        await sleep(RETRY_PAUSE_MS, undefined, { signal: stop.signal }).catch(() => undefined);
      }
    }
  };
  try {
    await Promise.all(o.candidates.map(one));
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
  }
  if (winner && o.signal?.aborted) {
    winner.socket.destroy();
    return undefined;
  }
  return winner;
}
