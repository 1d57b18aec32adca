/**
 * TCP hole punching between two agents that share a (usually relayed) libp2p
 * connection: `/edgeway/punch/1.0.0` exchanges observed addresses and the data
 * port, times a simultaneous open DCUtR-style (plan.ts), and both sides connect
 * from their data port to the other's observed address at once (dial.ts). A punch
 * succeeds only when both sides hold a connected socket; the TLS role follows the
 * peer-id order. Without the native addon there is no punching (logged once;
 * `punch()` fails with reason `unavailable` and the caller stays relayed).
 *
 * Collisions: when both sides start a punch with each other at once, the punch of
 * the lower peer id goes on; the other side serves it and its own `punch()`
 * resolves with that socket.
 */
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Connection, PeerId, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import type { TunnelLibp2p } from '../node.js';
import { abortQuietly, closeQuietly } from '../stream-io.js';
import type { Logger } from '../../util/log.js';
import { loadNative } from '../../native/addon.js';
import { dialCandidates, type Connected } from './dial.js';
import { PunchError, type PunchFailure } from './errors.js';
import type { PunchMetrics } from './metrics.js';
import { ObservedAddresses } from './observed.js';
import { punchCandidates, punchRole, syncDelayMs } from './plan.js';
import { createPunchSockets, punchUnavailableReason, type PunchSockets } from './sockets.js';
import { encodePunch, PUNCH_PROTOCOL, PunchReader, type PunchMessage } from './wire.js';

export interface PunchResult {
  socket: Socket;
  /** TLS role on this socket (lower peer id = client). */
  role: 'client' | 'server';
  remote: { host: string; port: number };
}

export interface HolePuncherOptions {
  node: TunnelLibp2p;
  /** The data listener's port (made with PunchSockets.listen so punch sockets can share it). */
  dataPort: number;
  logger: Logger;
  metrics?: PunchMetrics;
  /** Defaults to the native addon's; `null` = none (tests of the fallback). */
  sockets?: PunchSockets | null;
  observed?: ObservedAddresses;
  /** Relay peer ids: their view of our address ranks first. */
  isRelay?: (peerId: string) => boolean;
  /** May this peer make us send SYNs? (default: any peer of the private network). */
  authorise?: (peerId: string) => boolean;
  /** A socket punched at a peer's request (not claimed by a colliding `punch()`). Destroyed when absent. */
  onInbound?: (peerId: string, result: PunchResult) => void;
  /** Local address the punch sockets bind (default: all, same family as the peer's). */
  localHost?: string;
  attempts?: number;
  attemptTimeoutMs?: number;

  /** Punches running at once, both directions (each holds worker threads while dialling). */
  maxConcurrent?: number;
}

export interface HolePuncher {
  readonly available: boolean;
  /** Why punching is off (no addon), else undefined. */
  readonly unavailableReason: string | undefined;
  readonly observed: ObservedAddresses;
  punch(peerId: PeerId | string, signal?: AbortSignal): Promise<PunchResult>;
  /**
   * Offer a socket the data listener accepted: true when it is the peer's side of
   * a punch in progress (the puncher owns it now), false otherwise. The data
   * listener calls this first for every connection.
   */
  claim(socket: Socket): boolean;
  /** The `/edgeway/punch/1.0.0` stream handler (registered by start()). */
  handle(stream: Stream, connection: Connection): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createHolePuncher(o: HolePuncherOptions): HolePuncher {
  const load = o.sockets === undefined ? loadNative() : undefined;
  const sockets = o.sockets === undefined ? createPunchSockets(load!) : (o.sockets ?? undefined);
  const unavailableReason = sockets ? undefined : (load ? punchUnavailableReason(load) : 'disabled');
  const observed = o.observed ?? new ObservedAddresses({ ...(o.isRelay ? { isRelay: o.isRelay } : {}) });
  const attempts = o.attempts ?? 3;
  const attemptTimeoutMs = o.attemptTimeoutMs ?? 4000;
  const replyTimeoutMs = attemptTimeoutMs + 5000;
  const maxConcurrent = o.maxConcurrent ?? 8;
  /** `ip:port` of a peer's data port while an attempt waits for it → hand-over. */
  const expecting = new Map<string, (c: Connected) => boolean>();
  const log = o.logger.child({ part: 'punch' });
  const self = o.node.peerId.toString();
  const outbound = new Set<string>();
  const inbound = new Map<string, Promise<PunchResult | undefined>>();
  /** Sockets from served punches that collided with our own punch(), waiting to be claimed. */
  const collided = new Map<string, PunchResult>();
  let stopping = new AbortController();

  const count = (side: 'outbound' | 'inbound', result: 'ok' | PunchFailure): void => o.metrics?.punches.inc({ side, result });
  const send = (stream: Stream, m: PunchMessage): void => { stream.send(encodePunch(m)); };
  const busy = (): boolean => outbound.size + inbound.size >= maxConcurrent;

  /** Sockets the data listener accepts from `hosts`:`port` until cancelled. */
  function expectAccept(hosts: readonly string[], port: number): { accepted: Promise<Connected>; cancel: () => void } {
    let resolve: (c: Connected) => void = () => undefined;
    const accepted = new Promise<Connected>((r) => { resolve = r; });
    let taken = false;
    // One socket per attempt: a second one from the same peer is not ours to keep.
    const hand = (c: Connected): boolean => { if (taken) return false; taken = true; resolve(c); return true; };
    const keys = hosts.map((h) => `${h}:${port}`);
    for (const k of keys) expecting.set(k, hand);
    return { accepted, cancel: () => { for (const k of keys) if (expecting.get(k) === hand) expecting.delete(k); } };
  }

  /** Dial the peer, report our outcome, read theirs: a socket only if both are connected. */
  async function attempt(stream: Stream, reader: PunchReader, n: number, peer: string, addrs: string[], port: number, signal: AbortSignal): Promise<PunchResult | undefined> {
    const { accepted, cancel } = expectAccept(addrs, port);
    let got: Connected | undefined;
    try {
      got = await dialCandidates({
        sockets: sockets!, localHost: o.localHost ?? '', localPort: o.dataPort, candidates: addrs, remotePort: port, timeoutMs: attemptTimeoutMs, signal, accepted,
        onError: (host, err) => log.debug({ peer, attempt: n, host, port, err: err.message }, 'punch SYN failed'),
      });
    } finally {
      cancel();
      // An accepted socket that lost the race is closed by dialCandidates; one that
      // arrived after it returned was never handed out.
      void accepted.then((c) => { if (c !== got) c.socket.destroy(); });
    }
    send(stream, { type: 'result', attempt: n, ok: got !== undefined });
    const r = await reader.next(replyTimeoutMs, signal).catch((err: unknown) => { got?.socket.destroy(); throw err; });
    if (r.type !== 'result' || r.attempt !== n) {
      got?.socket.destroy();
      throw new PunchError('protocol', `expected RESULT ${n}, got ${r.type}`);
    }
    if (got && r.ok) return { socket: got.socket, role: punchRole(self, peer), remote: { host: got.host, port } };
    got?.socket.destroy();
    log.debug({ peer, attempt: n, local: got !== undefined, remote: r.ok }, 'punch attempt failed');
    return undefined;
  }

  async function runOutbound(peer: string, signal: AbortSignal): Promise<PunchResult> {
    if (!sockets) throw new PunchError('unavailable', unavailableReason ?? 'no sockets');
    const conn = o.node.getConnections(peerIdFromString(peer)).find((c) => c.status === 'open');
    if (!conn) throw new PunchError('no-connection', `no connection to ${peer}`);
    const own = observed.list();
    if (own.length === 0) throw new PunchError('no-address', 'no observed address of ours yet');
    const stream = await conn.newStream(PUNCH_PROTOCOL, { runOnLimitedConnection: true, signal });
    const reader = new PunchReader(stream);
    try {
      for (let n = 1; n <= attempts; n++) {
        const t0 = Date.now();
        send(stream, { type: 'connect', addrs: own, port: o.dataPort });
        const m = await reader.next(replyTimeoutMs, signal);
        if (m.type === 'refuse') {
          if (m.reason === 'collision') return await claimCollided(peer, signal);
          throw new PunchError('refused', `peer refused: ${m.reason}`);
        }
        if (m.type !== 'connect') throw new PunchError('protocol', `expected CONNECT, got ${m.type}`);
        const rtt = Date.now() - t0;
        const theirs = punchCandidates(m.addrs);
        if (theirs.length === 0) throw new PunchError('no-address', 'the peer knows no observed address of its own');
        send(stream, { type: 'sync', attempt: n });
        await sleep(syncDelayMs(rtt), undefined, { signal });
        const r = await attempt(stream, reader, n, peer, theirs, m.port, signal);
        if (r) return r;
      }
      throw new PunchError('failed', `no direct socket after ${attempts} attempts`);
    } catch (err) {
      abortQuietly(stream, err);
      throw err;
    } finally {
      closeQuietly(stream);
    }
  }

  /** Our punch collided with the peer's and lost the tie-break: take the socket of the one we serve. */
  async function claimCollided(peer: string, signal: AbortSignal): Promise<PunchResult> {
    const serving = inbound.get(peer);
    if (serving) await Promise.race([serving, sleep(replyTimeoutMs * attempts, undefined, { signal })]);
    const r = collided.get(peer);
    collided.delete(peer);
    if (!r) throw new PunchError('failed', 'the colliding punch of the peer failed');
    return r;
  }

  async function serve(stream: Stream, peer: string, signal: AbortSignal): Promise<PunchResult | undefined> {
    const reader = new PunchReader(stream);
    let theirs: string[] = [];
    let port = 0;
    for (let i = 0; i < attempts * 2 + 1; i++) {
      const m = await reader.next(i === 0 ? replyTimeoutMs : replyTimeoutMs * 2, signal);
      if (m.type === 'connect') {
        theirs = punchCandidates(m.addrs);
        port = m.port;
        send(stream, { type: 'connect', addrs: observed.list(), port: o.dataPort });
      } else if (m.type === 'sync') {
        if (theirs.length === 0) throw new PunchError('no-address', 'SYNC before a usable CONNECT');
        const r = await attempt(stream, reader, m.attempt, peer, theirs, port, signal);
        if (r) return r;
      } else throw new PunchError('protocol', `unexpected ${m.type}`);
    }
    throw new PunchError('protocol', 'too many messages');
  }

  function refuse(stream: Stream, reason: string, result: PunchFailure): void {
    count('inbound', result);
    try { send(stream, { type: 'refuse', reason }); } catch { /* stream gone */ }
    closeQuietly(stream);
  }

  const puncher: HolePuncher = {
    available: sockets !== undefined,
    unavailableReason,
    observed,

    async punch(peerId, signal) {
      const peer = peerId.toString();
      if (outbound.has(peer) || inbound.has(peer) || busy()) {
        count('outbound', 'busy');
        throw new PunchError('busy', `a punch with ${peer} is running or too many are`);
      }
      outbound.add(peer);
      const sig = signal ? AbortSignal.any([signal, stopping.signal]) : stopping.signal;
      try {
        const r = await runOutbound(peer, sig);
        count('outbound', 'ok');
        log.info({ peer, remote: `${r.remote.host}:${r.remote.port}`, role: r.role }, 'hole punched');
        return r;
      } catch (err) {
        const e = err instanceof PunchError ? err : new PunchError(sig.aborted ? 'aborted' : 'failed', String(err), { cause: err });
        count('outbound', e.reason);
        log.debug({ peer, reason: e.reason, err: e.message }, 'hole punch failed');
        throw e;
      } finally {
        outbound.delete(peer);
        // A served punch nobody claimed (ours did not lose the tie-break after all).
        const left = collided.get(peer);
        if (left) { collided.delete(peer); deliver(peer, left); }
      }
    },

    claim(socket) {
      const host = socket.remoteAddress?.replace(/^::ffff:/, '');
      const hand = host ? expecting.get(`${host}:${socket.remotePort}`) : undefined;
      return hand !== undefined && hand({ socket, host: host! });
    },

    handle(stream, connection) {
      const peer = connection.remotePeer.toString();
      if (o.authorise && !o.authorise(peer)) return refuse(stream, 'unauthorised', 'refused');
      if (!sockets) return refuse(stream, 'unavailable', 'unavailable');
      if (outbound.has(peer) && self < peer) return refuse(stream, 'collision', 'busy');
      if (inbound.has(peer) || busy()) return refuse(stream, 'busy', 'busy');
      const run = serve(stream, peer, stopping.signal).then(
        (r) => {
          count('inbound', 'ok');
          log.info({ peer, remote: `${r!.remote.host}:${r!.remote.port}`, role: r!.role }, 'hole punched (peer asked)');
          if (outbound.has(peer)) collided.set(peer, r!);
          else deliver(peer, r!);
          return r;
        },
        (err: unknown) => {
          const reason = err instanceof PunchError ? err.reason : stopping.signal.aborted ? 'aborted' : 'failed';
          count('inbound', reason);
          log.debug({ peer, reason, err: String(err) }, 'served hole punch failed');
          abortQuietly(stream, err);
          return undefined;
        },
      ).finally(() => { inbound.delete(peer); closeQuietly(stream); });
      inbound.set(peer, run);
    },

    async start() {
      stopping = new AbortController();
      if (!o.observed) observed.attach(o.node);
      if (!sockets) log.warn({ reason: unavailableReason }, 'TCP hole punching unavailable: peers behind NAT stay relayed');
      await o.node.handle(PUNCH_PROTOCOL, (stream, connection) => puncher.handle(stream, connection), {
        runOnLimitedConnection: true, maxInboundStreams: 64, maxOutboundStreams: 64,
      });
    },

    async stop() {
      stopping.abort(new Error('stopping'));
      await o.node.unhandle(PUNCH_PROTOCOL).catch(() => undefined);
      if (!o.observed) observed.detach();
      await Promise.allSettled([...inbound.values()]);
      for (const r of collided.values()) r.socket.destroy();
      collided.clear();
    },
  };

  function deliver(peer: string, r: PunchResult): void {
    if (o.onInbound) o.onInbound(peer, r);
    else r.socket.destroy();
  }

  return puncher;
}
