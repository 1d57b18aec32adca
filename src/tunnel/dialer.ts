/**
 * The sending end: reaches an endpoint on another node through one libp2p
 * connection per peer (many streams on it), and implements the proxy's
 * RemoteDialer seam.
 *
 * Path choice: an open direct connection if there is one; else a direct dial to
 * the node's known addresses (short timeout: on a LAN it answers in ms); else
 * through a relay, and then a background direct-dial upgrade with backoff.
 * DCUtR never tries private addresses (PITFALLS.md), so this upgrade is what moves
 * a relayed peer onto a direct path once one works; new streams then use it,
 * streams already on the relay keep running.
 */
import { setMaxListeners } from 'node:events';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pump } from '../proxy/pump.js';
import { ChannelDatagramSession } from './channel/flow.js';
import type { EwcSocket } from './channel/ewc-codec.js';
import type { Connection, PeerId, Stream } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { DatagramSession, RemoteDialer, RemoteTarget } from '../proxy/remote-dialer.js';
import type { Logger } from '../util/log.js';
import { Backoff, sleep } from '../util/backoff.js';
import { MAX_STREAMS_PER_CONNECTION, type TunnelLibp2p } from './node.js';
import type { PeerDirectory } from './peers.js';
import type { RelayManager } from './relays.js';
import type { TunnelMetrics } from './metrics.js';
import { chunksOf, DatagramDecoder, decodeStatus, encodeRequest, frameDatagram, MAX_DATAGRAM, Status, UDP_MAX_QUEUED_BYTES, statusName, TUNNEL_PROTOCOL, type TunnelProto } from './protocol.js';
import { abortQuietly, bridgeSocket, closeQuietly, DatagramWriter, readPrefix, StreamDuplex } from './stream-io.js';
import { DialFailedError, NotRunningError, TunnelRefusedError } from './errors.js';
import { isUsableRemote } from './addrs.js';
import { connectionPath } from './path.js';
import type { PeerActivity } from './peer-activity.js';

export { connectionPath };

/** Best open connection: direct first, then relayed. */
export function bestConnection(conns: readonly Connection[]): Connection | undefined {
  const open = conns.filter((c) => c.status === 'open');
  return open.find((c) => connectionPath(c) === 'direct') ?? open[0];
}

export interface TunnelDialerOptions {
  node: TunnelLibp2p;
  nodeName: string;
  directory: PeerDirectory;
  relays: RelayManager;
  metrics: TunnelMetrics;
  logger: Logger;
  /** Timeout of a direct dial before falling back to the relay. */
  directDialTimeoutMs?: number;
  /**
   * Budget of one shared peer dial, direct attempt and relays together: the
   * proxy's connect timeout (a flow that waits longer has given up anyway). The
   * direct attempt gets at most half of it, so a relay is always tried in time.
   */
  dialBudgetMs?: number;
  /** Time for the far agent to answer (it dials the backend in between). */
  statusTimeoutMs?: number;
  /** Open flows per peer (idle peer connections close on it): every flow holds its peer from setup to end. */
  activity?: PeerActivity;
  upgradeMinBackoffMs?: number;
  upgradeMaxBackoffMs?: number;
  onPathChange?: () => void;
}

/** The data channel as the dialer sees it (channel/manager.ts). */
export interface FlowChannel {
  open(target: RemoteTarget, proto: TunnelProto, peerId: string): Promise<EwcSocket | undefined>;
  pathOf(peerId: string): string | undefined;
}

export class TunnelDialer implements RemoteDialer {
  private readonly pending = new Map<string, Promise<Connection>>();
  private readonly upgrading = new Set<string>();
  private abort = new AbortController();
  private running = false;
  /** Flows go over this channel when it has a path to the peer, else over libp2p streams. */
  channel?: FlowChannel;

  constructor(private readonly o: TunnelDialerOptions) {}

  start(): void {
    this.abort = new AbortController();
    // Shared by every peer's upgrade loop (each sleeps on it): one listener per relayed peer.
    setMaxListeners(0, this.abort.signal);
    this.running = true;
    this.o.node.addEventListener('connection:open', this.onConnectionOpen);
  }

  stop(): void {
    this.running = false;
    this.abort.abort(new Error('stopping'));
    this.o.node.removeEventListener('connection:open', this.onConnectionOpen);
  }

  /** Inbound relayed connections are upgraded too (whichever side can dial wins). */
  private readonly onConnectionOpen = (evt: CustomEvent<Connection>): void => {
    const c = evt.detail;
    this.o.onPathChange?.();
    if (connectionPath(c) === 'relayed' && !this.o.relays.isRelay(c.remotePeer.toString())) this.scheduleUpgrade(c.remotePeer);
  };

  /**
   * A connection to the node's peer, reusing the open one (direct preferred). A
   * new dial is shared by every flow that needs the peer meanwhile, so it runs
   * under its own budget and the dialer's stop signal, never under one flow's
   * signal (one flow's timeout must not fail the others); each caller stops
   * waiting when its own `signal` aborts, and the dial goes on for the rest.
   */
  async connection(nodeName: string, signal?: AbortSignal): Promise<Connection> {
    if (!this.running) throw new NotRunningError();
    const { peerId } = await raceAbort(this.o.directory.resolve(nodeName), signal);
    const key = peerId.toString();
    const existing = bestConnection(this.o.node.getConnections(peerId));
    if (existing) {
      if (connectionPath(existing) === 'relayed') this.scheduleUpgrade(peerId);
      return existing;
    }
    let p = this.pending.get(key);
    if (!p) {
      p = this.dialNew(nodeName, peerId).finally(() => this.pending.delete(key));
      // A dial nobody waits for any more must not surface as an unhandled rejection.
      p.catch(() => undefined);
      this.pending.set(key, p);
    }
    return raceAbort(p, signal);
  }

  /** Timeouts of one shared dial: [direct attempt, each relay attempt, whole dial]. */
  dialTimeouts(): { directMs: number; totalMs: number } {
    const total = this.o.dialBudgetMs ?? 10_000;
    return { directMs: Math.min(this.o.directDialTimeoutMs ?? 1500, Math.floor(total / 2)), totalMs: total };
  }

  private async peerStoreAddrs(peerId: PeerId): Promise<Multiaddr[]> {
    try {
      const peer = await this.o.node.peerStore.get(peerId);
      return peer.addresses.map((a) => a.multiaddr).filter((m) => isUsableRemote(m));
    } catch {
      return [];
    }
  }

  private async dialNew(nodeName: string, peerId: PeerId): Promise<Connection> {
    const t0 = performance.now();
    const { directMs, totalMs } = this.dialTimeouts();
    const signal = anySignal(this.abort.signal, totalMs);
    const direct = this.o.directory.directAddrs(nodeName, peerId, await this.peerStoreAddrs(peerId));
    let lastErr: unknown;
    if (direct.length > 0) {
      try {
        const conn = await this.o.node.dial(direct, { signal: anySignal(signal, directMs) });
        this.o.metrics.dialSeconds.observe({ path: connectionPath(conn) }, (performance.now() - t0) / 1000);
        return conn;
      } catch (err) {
        lastErr = err;
        this.o.logger.debug({ node: nodeName, err: String(err) }, 'direct dial failed; trying the relays');
      }
    }
    const circuits = this.o.relays.circuitAddrs(peerId.toString());
    for (const ma of circuits) {
      try {
        if (signal.aborted) break;
        const conn = await this.o.node.dial(ma, { signal });
        this.o.metrics.dialSeconds.observe({ path: connectionPath(conn) }, (performance.now() - t0) / 1000);
        this.scheduleUpgrade(peerId, nodeName);
        return conn;
      } catch (err) {
        lastErr = err;
      }
    }
    this.o.directory.expire(nodeName, peerId.toString());
    throw new DialFailedError(nodeName, { cause: lastErr });
  }

  /** Retry a direct connection to a relayed peer with backoff until one works or the peer is gone. Idempotent. */
  scheduleUpgrade(peerId: PeerId, nodeName?: string): void {
    const key = peerId.toString();
    if (this.upgrading.has(key) || !this.running) return;
    this.upgrading.add(key);
    void this.upgradeLoop(peerId, nodeName).finally(() => this.upgrading.delete(key));
  }

  private async upgradeLoop(peerId: PeerId, nodeNameHint?: string): Promise<void> {
    const backoff = new Backoff(this.o.upgradeMinBackoffMs ?? 1000, this.o.upgradeMaxBackoffMs ?? 30_000);
    const signal = this.abort.signal;
    const log = this.o.logger.child({ peer: peerId.toString() });
    while (!signal.aborted) {
      const conns = this.o.node.getConnections(peerId).filter((c) => c.status === 'open');
      if (conns.length === 0) return;
      if (conns.some((c) => connectionPath(c) === 'direct')) { this.closeIdleRelayed(peerId); return; }
      const nodeName = nodeNameHint ?? (await this.o.directory.nodeNameOf(peerId.toString()).catch(() => undefined));
      const addrs = this.o.directory.directAddrs(nodeName, peerId, await this.peerStoreAddrs(peerId));
      if (addrs.length > 0) {
        this.o.metrics.holePunchAttempts.inc({ method: 'direct-dial' });
        try {
          const conn = await this.o.node.dial(addrs, { signal: anySignal(signal, this.dialTimeouts().directMs), force: true });
          if (connectionPath(conn) === 'direct') {
            this.o.metrics.holePunchSuccesses.inc({ method: 'direct-dial' });
            log.info({ node: nodeName, addr: conn.remoteAddr.toString() }, 'relayed peer upgraded to a direct connection');
            this.o.onPathChange?.();
            this.closeIdleRelayed(peerId);
            return;
          }
        } catch (err) {
          log.debug({ err: String(err) }, 'direct upgrade attempt failed');
        }
      }
      await sleep(backoff.next(), signal).catch(() => undefined);
    }
  }

  /** Relayed connections left without tunnel streams once a direct one exists are closed. */
  closeIdleRelayed(peerId: PeerId): void {
    const conns = this.o.node.getConnections(peerId);
    if (!conns.some((c) => c.status === 'open' && connectionPath(c) === 'direct')) return;
    for (const c of conns) {
      if (connectionPath(c) === 'relayed' && c.status === 'open' && !c.streams.some((s) => s.protocol === TUNNEL_PROTOCOL)) {
        c.close().catch(() => undefined);
      }
    }
  }

  /**
   * Open a tunnel stream to `target` and wait for the far agent's status. Resolves
   * with the stream (bytes after the status in `rest`); throws TunnelRefusedError
   * on a refusal. The stream is closed on every failure path.
   */
  async openStream(target: RemoteTarget, proto: TunnelProto, signal?: AbortSignal): Promise<{ stream: Stream; rest: Uint8Array | undefined }> {
    const conn = await this.connection(target.nodeName, signal);
    try {
      return await this.openStreamOn(conn, target, proto, signal);
    } catch (err) {
      // The peer closed this connection (idle there, or it died) just as the flow
      // took it. No byte of the flow went out yet (only its header), so one more
      // try on a fresh connection is safe.
      if (err instanceof TunnelRefusedError || signal?.aborted || conn.status === 'open') throw err;
      this.o.logger.debug({ node: target.nodeName, err: String(err) }, 'connection closed under a new flow; dialling again');
      return this.openStreamOn(await this.connection(target.nodeName, signal), target, proto, signal);
    }
  }

  private async openStreamOn(conn: Connection, target: RemoteTarget, proto: TunnelProto, signal?: AbortSignal): Promise<{ stream: Stream; rest: Uint8Array | undefined }> {
    const stream = await conn.newStream(TUNNEL_PROTOCOL, {
      runOnLimitedConnection: true,
      // Send the protocol name with the header (one round trip less per flow); a
      // peer without the protocol fails the read of the status instead.
      negotiateFully: false,
      maxOutboundStreams: MAX_STREAMS_PER_CONNECTION,
      ...(signal ? { signal } : {}),
    });
    try {
      stream.send(encodeRequest({ proto, nodeName: target.nodeName, serviceKey: target.serviceKey, servicePort: target.servicePort, ip: target.ip, port: target.port }));
      const { value, rest } = await readPrefix(stream, (b) => {
        const s = decodeStatus(b);
        return s ? { value: s, used: s.used } : undefined;
      }, { maxBytes: 1024, timeoutMs: this.o.statusTimeoutMs ?? 10_000, ...(signal ? { signal } : {}) });
      if (value.code !== Status.ok) {
        this.o.metrics.streams.inc({ direction: 'out', proto, result: statusName(value.code) });
        throw new TunnelRefusedError(statusName(value.code), value.reason);
      }
      return { stream, rest };
    } catch (err) {
      if (!(err instanceof TunnelRefusedError)) this.o.metrics.streams.inc({ direction: 'out', proto, result: 'error' });
      closeQuietly(stream);
      abortQuietly(stream, err);
      throw err;
    }
  }

  private track(proto: TunnelProto, stream: Stream, release: () => void): void {
    const m = this.o.metrics;
    m.streamsOpen.inc({ direction: 'out', proto });
    stream.addEventListener('close', (evt) => {
      release();
      m.streamsOpen.dec({ direction: 'out', proto });
      m.streams.inc({ direction: 'out', proto, result: evt.error ? 'error' : 'ok' });
    }, { once: true });
  }

  /**
   * Hold the target's peer from the flow's setup on (an idle close must not take
   * the connection a flow is being set up on); the carrier releases it at its end.
   */
  private async holdPeer(target: RemoteTarget): Promise<() => void> {
    const a = this.o.activity;
    if (!a) return () => undefined;
    const { peerId } = await this.o.directory.resolve(target.nodeName);
    return a.hold(peerId.toString());
  }

  /** Run a flow's setup under a hold of its peer; a failed setup releases it. */
  private async withHold<T>(target: RemoteTarget, setup: (release: () => void) => Promise<T>): Promise<T> {
    const release = await this.holdPeer(target);
    try {
      return await setup(release);
    } catch (err) {
      release();
      throw err;
    }
  }

  /** A started flow on the data channel, or undefined (no channel: use libp2p). Counted by carrier. */
  private async viaChannel(target: RemoteTarget, proto: TunnelProto, release: () => void, signal?: AbortSignal): Promise<EwcSocket | undefined> {
    const ch = this.channel;
    if (!ch || !this.running) return undefined;
    const { peerId } = await this.o.directory.resolve(target.nodeName);
    const id = peerId.toString();
    // The flow's connect timeout holds while it waits for the channel too (a flow
    // waiting for a pool refill at the fd limit hung past it; found by the soak): a
    // connection that arrives after the flow gave up is closed.
    const opening = ch.open(target, proto, id);
    let sock: EwcSocket | undefined;
    try {
      sock = await raceAbort(opening, signal);
    } catch (err) {
      void opening.then((s) => s?.destroy(), () => undefined);
      throw err;
    }
    if (sock) {
      const m = this.o.metrics;
      m.streamsOpen.inc({ direction: 'out', proto });
      onFlowEnd(sock, (failed) => {
        release();
        m.streamsOpen.dec({ direction: 'out', proto });
        m.streams.inc({ direction: 'out', proto, result: failed ? 'error' : 'ok' });
        // Wire bytes (EWC1 records included; a pumped flow's bulk is counted by the manager's hand-over).
        m.bytes.inc({ direction: 'tx' }, sock.bytesWritten);
        m.bytes.inc({ direction: 'rx' }, sock.bytesRead);
      });
    }
    if (sock && signal?.aborted) { sock.destroy(); throw signal.reason instanceof Error ? signal.reason : new Error('aborted'); }
    this.o.metrics.channelFlows.inc({ path: sock ? ch.pathOf(id) ?? 'unknown' : 'libp2p' });
    return sock;
  }

  /** RemoteDialer: a byte stream to a TCP endpoint on another node. */
  async dialStream(target: RemoteTarget, signal?: AbortSignal): Promise<Duplex> {
    return this.withHold(target, async (release) => {
      const ch = await this.viaChannel(target, 'tcp', release, signal);
      if (ch) return ch;
      const { stream, rest } = await this.openStream(target, 'tcp', signal);
      this.track('tcp', stream, release);
      const m = this.o.metrics;
      const dup = new StreamDuplex(stream, rest);
      dup.on('data', (c: Buffer) => m.bytes.inc({ direction: 'rx' }, c.length));
      return dup;
    });
  }

  /** Faster than dialStream for a socket: joins it to the stream without a Duplex in between. */
  async bridge(socket: Socket, target: RemoteTarget, signal?: AbortSignal): Promise<void> {
    await this.withHold(target, async (release) => {
      const ch = await this.viaChannel(target, 'tcp', release, signal);
      if (ch) {
        pump(socket, ch, { toEndpoint: () => undefined, toClient: () => undefined, done: () => undefined });
        // A client that sent FIN before we got here already emitted 'end' (Node does
        // so from its initial read even without a reader): carry it now.
        if (socket.readableEnded) ch.end();
        return;
      }
      const { stream, rest } = await this.openStream(target, 'tcp', signal);
      this.track('tcp', stream, release);
      const m = this.o.metrics;
      bridgeSocket(socket, stream, rest, { onBytes: (tx, rx) => { m.bytes.inc({ direction: 'tx' }, tx); m.bytes.inc({ direction: 'rx' }, rx); } });
    });
  }

  /** RemoteDialer: a datagram session to a UDP endpoint on another node (one stream per session). */
  async openDatagramSession(target: RemoteTarget, signal?: AbortSignal): Promise<DatagramSession> {
    return this.withHold(target, async (release) => {
      const ch = await this.viaChannel(target, 'udp', release, signal);
      if (ch) return new ChannelDatagramSession(ch, this.o.metrics);
      const { stream, rest } = await this.openStream(target, 'udp', signal);
      this.track('udp', stream, release);
      return new StreamDatagramSession(stream, rest, this.o.metrics);
    });
  }
}

/**
 * `end` once, when a channel flow is over: its connection closed — or, for a flow
 * handed to the addon's record pump (the codec closes at the hand-off while the
 * pump carries the bytes on), when the pump is done. The peer's hold and the open
 * stream gauge end there, so a pumped flow keeps its peer and is counted open.
 */
function onFlowEnd(sock: EwcSocket, end: (failed: boolean) => void): void {
  let pumped = false;
  const forward = sock.forwardNative;
  if (forward) {
    sock.forwardNative = (client, opts) => {
      const native = forward(client, opts);
      if (native) { pumped = true; native.then(() => end(false), () => end(true)); }
      return native;
    };
  }
  sock.once('close', (hadError: boolean) => { if (!pumped) end(hadError); });
}

/**
 * `p`, or a rejection as soon as `signal` aborts (p keeps running for others). A
 * rejection of `p` nobody waits for any more is handled here: unhandled, it killed
 * the agent (a peer lookup failing after its flow's connect timeout; found by the soak).
 */
export function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) {
    p.catch(() => undefined);
    return Promise.reject(abortReason(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
      (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e instanceof Error ? e : new Error(String(e))); },
    );
  });
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('aborted');
}

function anySignal(signal: AbortSignal | undefined, timeoutMs: number): AbortSignal {
  const t = AbortSignal.timeout(timeoutMs);
  const s = signal ? AbortSignal.any([signal, t]) : t;
  // One dial's signal: libp2p's dial queue, transports and upgrader each listen on it
  // (more than Node's leak warning threshold of 10 when several addresses are tried).
  setMaxListeners(0, s);
  return s;
}

/** Datagrams over one stream: u16-length framing; drops (counted) under backpressure, like UDP. */
export class StreamDatagramSession implements DatagramSession {
  private readonly decoder = new DatagramDecoder();
  private readonly listeners: ((d: Uint8Array) => void)[] = [];
  private readonly closers: ((err?: Error) => void)[] = [];
  private closed = false;
  private backlog: Buffer[] = [];
  private readonly writer: DatagramWriter;

  constructor(private readonly stream: Stream, rest: Uint8Array | undefined, private readonly metrics: TunnelMetrics) {
    this.writer = new DatagramWriter(stream, UDP_MAX_QUEUED_BYTES, () => metrics.udpDropped.inc({ reason: 'backpressure' }));
    if (rest) this.backlog = this.decoder.push(rest);
    stream.addEventListener('message', (evt) => {
      for (const c of chunksOf(evt.data)) {
        for (const d of this.decoder.push(c)) {
          metrics.bytes.inc({ direction: 'rx' }, d.length);
          if (this.listeners.length === 0) this.backlog.push(d);
          else for (const l of this.listeners) l(d);
        }
      }
    });
    // The far side closes on idle: close ours too so the stream is released.
    stream.addEventListener('end', () => this.close(), { once: true });
    stream.addEventListener('close', (evt) => this.finish(evt.error), { once: true });
  }

  send(datagram: Uint8Array): void {
    if (this.closed || this.stream.writeStatus !== 'writable') return;
    if (datagram.length > MAX_DATAGRAM) { this.metrics.udpDropped.inc({ reason: 'oversize' }); return; }
    this.metrics.bytes.inc({ direction: 'tx' }, datagram.length);
    this.writer.write(frameDatagram(datagram));
  }

  onMessage(cb: (datagram: Uint8Array) => void): void {
    this.listeners.push(cb);
    const b = this.backlog;
    this.backlog = [];
    for (const d of b) cb(d);
  }

  onClose(cb: (err?: Error) => void): void {
    if (this.closed && this.stream.status !== 'open') { cb(); return; }
    this.closers.push(cb);
  }

  close(): void {
    closeQuietly(this.stream);
    // Bounded: if the far side never closes its half, reset.
    setTimeout(() => abortQuietly(this.stream, new Error('udp session closed')), 5000).unref();
  }

  private finish(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.closers.splice(0)) c(err);
  }
}
