/**
 * One punch attempt's dialling: a SYN from the data port to each candidate at once,
 * repeated until the deadline. Through two endpoint-independent NATs that drop
 * unsolicited SYNs, our first SYN dies at the peer's NAT but opens our own NAT's
 * mapping; the peer's SYN then passes it and lands either on our connecting socket
 * (a simultaneous open) or, when ours is not out yet, on the data listener, which
 * hands it to the puncher (`accepted`). The kernel retransmits our SYN, which then
 * meets the mapping the peer's SYN opened. The first connected socket wins; the
 * rest are closed.
 *
 * A NAT that answers unsolicited SYNs with a RST (a Linux router without a
 * firewall) keeps a conntrack entry for our address that makes it map the peer's
 * own SYN to another port: the punch fails there (counted), the path stays relayed.
 */
import type { Socket } from 'node:net';
import { constants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PunchSockets } from './sockets.js';

/** Pause after a refused/unreachable SYN before the next one (bounds the loop: ≤ 10/s per candidate). */
const RETRY_PAUSE_MS = 100;
const { errno } = constants;

export interface Connected {
  socket: Socket;
  host: string;
}

export interface DialOptions {
  sockets: PunchSockets;
  localHost: string;
  localPort: number;
  candidates: readonly string[];
  remotePort: number;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Resolves with a socket the data listener accepted from the peer. */
  accepted?: Promise<Connected>;
  /** Each failed SYN (debug logging: which errno the NATs produced). */
  onError?: (host: string, err: Error) => void;
}

/** A connected socket, or undefined when nothing connected before the deadline. */
export async function dialCandidates(o: DialOptions): Promise<Connected | undefined> {
  const stop = new AbortController();
  const onAbort = (): void => stop.abort(o.signal?.reason);
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const deadline = Date.now() + o.timeoutMs;
  let winner: Connected | undefined;
  let finished = false;
  const offer = (c: Connected): void => {
    if (winner || finished || stop.signal.aborted) c.socket.destroy();
    else {
      winner = c;
      stop.abort();
    }
  };
  o.accepted?.then(offer, () => undefined);
  const one = async (host: string): Promise<void> => {
    while (!stop.signal.aborted) {
      const left = deadline - Date.now();
      if (left <= 0) return;
      try {
        offer({ host, socket: await o.sockets.connectFrom({
          localHost: o.localHost, localPort: o.localPort, remoteHost: host, remotePort: o.remotePort, timeoutMs: left, signal: stop.signal,
        }) });
        return;
      } catch (err) {
        if (!stop.signal.aborted) o.onError?.(host, err as Error);
        // Out of fds: no retry can get a socket until flows close (the soak saw 140
        // failed binds a second per punch); this candidate is done.
        if (outOfFds(err)) return;
        // ECONNREFUSED (a NAT or the peer answered with a RST), EHOSTUNREACH,
        // EADDRNOTAVAIL (the peer's SYN reached our listener first and the tuple is
        // taken: `accepted` delivers that socket): try again until the deadline.
        await sleep(RETRY_PAUSE_MS, undefined, { signal: stop.signal }).catch(() => undefined);
      }
    }
  };
  try {
    await Promise.all(o.candidates.map(one));
  } finally {
    finished = true;
    o.signal?.removeEventListener('abort', onAbort);
  }
  if (winner && o.signal?.aborted) {
    winner.socket.destroy();
    return undefined;
  }
  return winner;
}

/** EMFILE/ENFILE: the addon's errors carry the number (`errno`), Node's the name (`code`). */
function outOfFds(err: unknown): boolean {
  const e = err as { code?: unknown; errno?: unknown };
  return e.errno === errno.EMFILE || e.errno === errno.ENFILE || e.code === 'EMFILE' || e.code === 'ENFILE';
}
