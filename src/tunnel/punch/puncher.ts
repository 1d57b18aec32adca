/**
 * TCP hole punching between two agents that share a (usually relayed) libp2p
 * connection: `/edgeway/punch/1.0.0` exchanges observed addresses and ports, times
 * a simultaneous open DCUtR-style (plan.ts), and both sides connect from their
 * port to the other's observed address at once (dial.ts). A punch succeeds only
 * when both sides hold a connected socket. One punch can make several sockets
 * (one per port pair: the answering side's data port plus short-lived extra
 * listeners), since a 4-tuple holds one TCP connection and the data channel uses
 * one per flow.
 *
 * Roles: the side that asked is the EWC1 client (it holds the data channel's
 * credentials and sends the flows), the other the EWC1 server. Without the native
 * addon there is no punching (logged once; `punch()` fails with reason
 * `unavailable` and the caller stays relayed).
 *
 * Requests from peers are served only when `authorise` says so (a punch makes us
 * send SYNs to addresses the peer names), one at a time per peer and at most
 * `maxConcurrent` in all. When both sides ask at once, the lower peer id's punch
 * goes on and the other is refused (`busy`).
 */
import type { Server, Socket } from 'node:net';
import { Server as NetServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { setMaxListeners } from 'node:events';
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
import { punchCandidates, syncDelayMs } from './plan.js';
import { createPunchSockets, punchUnavailableReason, type PunchSockets } from './sockets.js';
import { encodePunch, MAX_PUNCH_PORTS, PUNCH_PROTOCOL, PunchReader, type PunchMessage } from './wire.js';

export interface PunchResult {
  socket: Socket;
  /** EWC1 role on this socket: the side that asked is the client. */
  role: 'client' | 'server';
  remote: { host: string; port: number };
}

export interface HolePuncherOptions {
  node: TunnelLibp2p;
  /** The data listener's port (made with `listen()` so punch sockets can share it). */
  dataPort: number;
  logger: Logger;
  metrics?: PunchMetrics;
  /** Defaults to the native addon's; `null` = none (tests of the fallback). */
  sockets?: PunchSockets | null;
  observed?: ObservedAddresses;
  /** Relay peer ids: their view of our address ranks first. */
  isRelay?: (peerId: string) => boolean;
  /** May this peer make us send SYNs? (default: any peer of the private network). */
  authorise?: (peerId: string) => boolean | Promise<boolean>;
  /** Sockets punched at a peer's request (this side is the EWC1 server). Destroyed when absent. */
  onInbound?: (peerId: string, result: PunchResult) => void;
  /** Local address the punch sockets bind (default: all). */
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
  /** One punched socket to the peer (this side: EWC1 client). */
  punch(peerId: PeerId | string, signal?: AbortSignal): Promise<PunchResult>;
  /** Up to `count` punched sockets in one exchange (at least one, or it throws). */
  punchMany(peerId: PeerId | string, count: number, signal?: AbortSignal): Promise<PunchResult[]>;
  /** Resolves when no punch of ours with this peer is running. */
  settled(peerId: PeerId | string): Promise<void>;
  /** Start `server` on host:port sharing the port with punch sockets (SO_REUSEPORT). */
  listen(server: Server, host: string, port: number): Promise<void>;
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

interface Pair {
  local: number;
  remote: number;
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
  const log = o.logger.child({ part: 'punch' });
  const self = o.node.peerId.toString();
  const running = new Set<string>();
  const outbound = new Set<string>();
  const outboundRuns = new Map<string, Promise<void>>();
  /** `ip:port` of a peer's port while an attempt waits for it → hand-over. */
  const expecting = new Map<string, (c: Connected) => boolean>();
  // One stop signal shared by every punch in flight (each of its ports' dials
  // listens on it, and it is removed when the dial ends): many listeners at once
  // are expected, not a leak.
  const stopController = (): AbortController => { const c = new AbortController(); setMaxListeners(0, c.signal); return c; };
  let stopping = stopController();
  const served = new Set<Promise<unknown>>();

  const count = (side: 'outbound' | 'inbound', result: 'ok' | PunchFailure): void => o.metrics?.punches.inc({ side, result });
  const send = (stream: Stream, m: PunchMessage): void => { stream.send(encodePunch(m)); };

  /**
   * `n` ports: the data port first when `withDataPort`, then shared-port listeners on
   * ephemeral ports (closed by the caller). The asker uses fresh ports only, the
   * other side its data port first: a pair's 4-tuple is then always new, even when
   * an earlier punched connection between the same addresses is still open.
   */
  async function openPorts(n: number, withDataPort: boolean): Promise<{ ports: number[]; servers: Server[] }> {
    const servers: Server[] = [];
    try {
      for (let i = withDataPort ? 1 : 0; i < n; i++) {
        const srv = new NetServer((s) => { if (!puncher.claim(s)) s.destroy(); });
        await sockets!.listen(srv, o.localHost || '0.0.0.0', 0);
        servers.push(srv);
      }
    } catch (err) {
      // Fewer extra ports than asked: punch with what we have.
      log.debug({ err: String(err) }, 'extra punch port unavailable');
    }
    const ports = [...(withDataPort ? [o.dataPort] : []), ...servers.map((s) => (s.address() as { port: number }).port)];
    if (ports.length === 0) throw new PunchError('failed', 'no local port to punch from');
    return { ports, servers };
  }

  /** Sockets the data listener accepts from `hosts`:`port` until cancelled (one per pair). */
  function expectAccept(hosts: readonly string[], port: number): { accepted: Promise<Connected>; cancel: () => void } {
    let resolve: (c: Connected) => void = () => undefined;
    const accepted = new Promise<Connected>((r) => { resolve = r; });
    let taken = false;
    const hand = (c: Connected): boolean => { if (taken) return false; taken = true; resolve(c); return true; };
    const keys = hosts.map((h) => `${h}:${port}`);
    for (const k of keys) expecting.set(k, hand);
    return { accepted, cancel: () => { for (const k of keys) if (expecting.get(k) === hand) expecting.delete(k); } };
  }

  /** Dial every pair, report which connected, read the peer's report: the pairs both connected. */
  async function attempt(stream: Stream, reader: PunchReader, n: number, peer: string, addrs: string[], pairs: Pair[], role: PunchResult['role'], signal: AbortSignal): Promise<PunchResult[]> {
    const got = await Promise.all(pairs.map(async (p): Promise<Connected | undefined> => {
      const { accepted, cancel } = expectAccept(addrs, p.remote);
      let c: Connected | undefined;
      try {
        c = await dialCandidates({
          sockets: sockets!, localHost: o.localHost ?? '', localPort: p.local, candidates: addrs, remotePort: p.remote, timeoutMs: attemptTimeoutMs, signal, accepted,
          onError: (host, err) => log.debug({ peer, attempt: n, host, port: p.remote, err: err.message }, 'punch SYN failed'),
        });
      } finally {
        cancel();
        // One that arrived after the dial returned was never handed out.
        void accepted.then((a) => { if (a !== c) a.socket.destroy(); });
      }
      return c;
    }));
    const mine = got.flatMap((c, i) => (c ? [i] : []));
    const drop = (): void => { for (const c of got) c?.socket.destroy(); };
    try {
      send(stream, { type: 'result', attempt: n, ok: mine });
      const r = await reader.next(replyTimeoutMs, signal);
      if (r.type !== 'result' || r.attempt !== n) throw new PunchError('protocol', `expected RESULT ${n}, got ${r.type}`);
      const both = mine.filter((i) => r.ok.includes(i));
      const out = both.map((i) => ({ socket: got[i]!.socket, role, remote: { host: got[i]!.host, port: pairs[i]!.remote } }));
      for (const [i, c] of got.entries()) if (c && !both.includes(i)) c.socket.destroy();
      if (out.length === 0) log.debug({ peer, attempt: n, local: mine, remote: r.ok }, 'punch attempt failed');
      return out;
    } catch (err) {
      drop();
      throw err;
    }
  }

  async function runOutbound(peer: string, want: number, signal: AbortSignal): Promise<PunchResult[]> {
    if (!sockets) throw new PunchError('unavailable', unavailableReason ?? 'no sockets');
    const conn = o.node.getConnections(peerIdFromString(peer)).find((c) => c.status === 'open');
    if (!conn) throw new PunchError('no-connection', `no connection to ${peer}`);
    const own = observed.list();
    if (own.length === 0) throw new PunchError('no-address', 'no observed address of ours yet');
    const stream = await conn.newStream(PUNCH_PROTOCOL, { runOnLimitedConnection: true, signal });
    const reader = new PunchReader(stream);
    const { ports, servers } = await openPorts(Math.max(1, Math.min(want, MAX_PUNCH_PORTS)), false);
    try {
      for (let n = 1; n <= attempts; n++) {
        const t0 = Date.now();
        send(stream, { type: 'connect', addrs: own, ports });
        const m = await reader.next(replyTimeoutMs, signal);
        if (m.type === 'refuse') throw new PunchError(m.reason === 'busy' ? 'busy' : 'refused', `peer refused: ${m.reason}`);
        if (m.type !== 'connect') throw new PunchError('protocol', `expected CONNECT, got ${m.type}`);
        const rtt = Date.now() - t0;
        const theirs = punchCandidates(m.addrs);
        if (theirs.length === 0) throw new PunchError('no-address', 'the peer knows no observed address of its own');
        send(stream, { type: 'sync', attempt: n });
        await sleep(syncDelayMs(rtt), undefined, { signal });
        const pairs = m.ports.slice(0, ports.length).map((remote, i) => ({ local: ports[i]!, remote }));
        const r = await attempt(stream, reader, n, peer, theirs, pairs, 'client', signal);
        if (r.length > 0) return r;
      }
      throw new PunchError('failed', `no direct socket after ${attempts} attempts`);
    } catch (err) {
      abortQuietly(stream, err);
      throw err;
    } finally {
      closeQuietly(stream);
      for (const s of servers) s.close();
    }
  }

  async function serve(stream: Stream, peer: string, signal: AbortSignal): Promise<PunchResult[]> {
    const reader = new PunchReader(stream);
    let theirs: string[] = [];
    let pairs: Pair[] = [];
    let servers: Server[] = [];
    try {
      for (let i = 0; i < attempts * 2 + 1; i++) {
        const m = await reader.next(i === 0 ? replyTimeoutMs : replyTimeoutMs * 2, signal);
        if (m.type === 'connect') {
          theirs = punchCandidates(m.addrs);
          if (servers.length === 0) {
            const opened = await openPorts(m.ports.length, true);
            servers = opened.servers;
            pairs = opened.ports.map((local, j) => ({ local, remote: m.ports[j]! }));
          }
          send(stream, { type: 'connect', addrs: observed.list(), ports: pairs.map((p) => p.local) });
        } else if (m.type === 'sync') {
          if (theirs.length === 0) throw new PunchError('no-address', 'SYNC before a usable CONNECT');
          const r = await attempt(stream, reader, m.attempt, peer, theirs, pairs, 'server', signal);
          if (r.length > 0) return r;
        } else throw new PunchError('protocol', `unexpected ${m.type}`);
      }
      throw new PunchError('protocol', 'too many messages');
    } finally {
      for (const s of servers) s.close();
    }
  }

  function refuse(stream: Stream, reason: string, result: PunchFailure): void {
    count('inbound', result);
    try { send(stream, { type: 'refuse', reason }); } catch { /* stream gone */ }
    closeQuietly(stream);
  }

  async function handleInbound(stream: Stream, peer: string): Promise<void> {
    if (o.authorise && !(await o.authorise(peer))) return refuse(stream, 'unauthorised', 'refused');
    if (!sockets) return refuse(stream, 'unavailable', 'unavailable');
    // Both sides asked at once: the lower peer id's punch goes on.
    if ((outbound.has(peer) && self < peer) || (running.has(peer) && !outbound.has(peer)) || running.size >= maxConcurrent) return refuse(stream, 'busy', 'busy');
    running.add(peer);
    try {
      const results = await serve(stream, peer, stopping.signal);
      count('inbound', 'ok');
      log.info({ peer, sockets: results.length, remote: `${results[0]!.remote.host}:${results[0]!.remote.port}` }, 'hole punched (peer asked)');
      for (const r of results) {
        if (o.onInbound) o.onInbound(peer, r);
        else r.socket.destroy();
      }
    } catch (err) {
      const reason = err instanceof PunchError ? err.reason : stopping.signal.aborted ? 'aborted' : 'failed';
      count('inbound', reason);
      log.debug({ peer, reason, err: String(err) }, 'served hole punch failed');
      abortQuietly(stream, err);
    } finally {
      if (!outbound.has(peer)) running.delete(peer);
      closeQuietly(stream);
    }
  }

  const puncher: HolePuncher = {
    available: sockets !== undefined,
    unavailableReason,
    observed,

    async punch(peerId, signal) {
      return (await puncher.punchMany(peerId, 1, signal))[0]!;
    },

    async punchMany(peerId, want, signal) {
      const peer = peerId.toString();
      if (running.has(peer) || running.size >= maxConcurrent) {
        count('outbound', 'busy');
        throw new PunchError('busy', `a punch with ${peer} is running or too many are`);
      }
      running.add(peer);
      outbound.add(peer);
      const sig = signal ? AbortSignal.any([signal, stopping.signal]) : stopping.signal;
      setMaxListeners(0, sig); // one listener per port dialled at once
      const run = runOutbound(peer, want, sig);
      outboundRuns.set(peer, run.then(() => undefined, () => undefined));
      try {
        const r = await run;
        count('outbound', 'ok');
        log.info({ peer, sockets: r.length, remote: `${r[0]!.remote.host}:${r[0]!.remote.port}` }, 'hole punched');
        return r;
      } catch (err) {
        const e = err instanceof PunchError ? err : new PunchError(sig.aborted ? 'aborted' : 'failed', String(err), { cause: err });
        count('outbound', e.reason);
        log.debug({ peer, reason: e.reason, err: e.message }, 'hole punch failed');
        throw e;
      } finally {
        outbound.delete(peer);
        running.delete(peer);
        outboundRuns.delete(peer);
      }
    },

    async settled(peerId) {
      await outboundRuns.get(peerId.toString());
    },

    async listen(server, host, port) {
      if (!sockets) throw new PunchError('unavailable', unavailableReason ?? 'no sockets');
      await sockets.listen(server, host, port);
    },

    claim(socket) {
      const host = socket.remoteAddress?.replace(/^::ffff:/, '');
      const hand = host ? expecting.get(`${host}:${socket.remotePort}`) : undefined;
      return hand !== undefined && hand({ socket, host: host! });
    },

    handle(stream, connection) {
      const p = handleInbound(stream, connection.remotePeer.toString());
      served.add(p);
      void p.finally(() => served.delete(p));
    },

    async start() {
      stopping = stopController();
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
      await Promise.allSettled([...served]);
    },
  };

  return puncher;
}
