/**
 * The receiving end of `/edgeway/tunnel/1.0.0`. For each inbound stream: check the
 * remote peer is a cluster node (or a relay), read the header, check the target
 * is an endpoint that this node's own catalog places on this node, then dial it
 * and join the bytes. Anything else is refused with a status and counted — this
 * is never an open proxy. Every stream is closed or aborted on every path.
 */
import net from 'node:net';
import dgram from 'node:dgram';
import type { Connection, Stream } from '@libp2p/interface';
import type { Snapshot } from '../catalog/types.js';
import { isLocalTarget } from '../plan/local-targets.js';
import type { Logger } from '../util/log.js';
import type { TunnelLibp2p } from './node.js';
import { MAX_STREAMS_PER_CONNECTION } from './node.js';
import { chunksOf, decodeRequest, DatagramDecoder, encodeStatus, frameDatagram, MAX_HEADER_BYTES, Status, UDP_MAX_QUEUED_BYTES, UDP_RECV_BUFFER_BYTES, TUNNEL_PROTOCOL, type TunnelRequest, type TunnelProto } from './protocol.js';
import { abortQuietly, bridgeSocket, closeQuietly, DatagramWriter, readPrefix } from './stream-io.js';
import type { RefusalReason, TunnelMetrics } from './metrics.js';
import type { PeerActivity } from './peer-activity.js';

/**
 * Is `req` an endpoint of `req.serviceKey` that the plan places on `nodeName`, on
 * the port the plan picks? Decided by the plan's own rule (plan/local-targets.ts),
 * so the dialing node's plan and this check cannot disagree. Pure.
 */
export function isLocalEndpoint(snap: Snapshot, nodeName: string, req: Pick<TunnelRequest, 'proto' | 'serviceKey' | 'servicePort' | 'ip' | 'port'>): boolean {
  return isLocalTarget(snap, nodeName, { serviceKey: req.serviceKey, servicePort: req.servicePort, protocol: req.proto === 'udp' ? 'UDP' : 'TCP', ip: req.ip, port: req.port });
}

export interface TunnelServerOptions {
  node: TunnelLibp2p;
  nodeName: string;
  snapshot: () => Snapshot;
  authorise: (peerId: string) => Promise<boolean>;
  metrics: TunnelMetrics;
  logger: Logger;
  connectTimeoutMs?: number;
  udpIdleTimeoutMs?: number;
  headerTimeoutMs?: number;
  /** Inbound flows at once; over it new streams get `unavailable`. */
  maxFlows?: number;
  /** SOCKS5 node access (node-access.ts): a request this accepts is served though it names no endpoint. */
  nodeAccess?: (req: TunnelRequest) => boolean;
  /** Open flows per peer (idle peer connections close on it). */
  activity?: PeerActivity;
}

/** Bytes from the dialer kept while the backend connects; past it the flow is refused (counted). */
export const MAX_EARLY_BYTES = 1024 * 1024;
/** One refusal log line per reason per this many ms; the counter has every case. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

export class TunnelServer {
  private flows = 0;
  private stopping = false;
  /** Per refusal reason: when it was last logged, and how many were not logged since. */
  private readonly refusalLog = new Map<string, { at: number; suppressed: number }>();
  constructor(private readonly o: TunnelServerOptions) {}

  /** Log a refusal at most once per reason per interval: a hostile peer cannot flood the log. */
  private logRefusal(reason: RefusalReason, fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    const e = this.refusalLog.get(reason);
    if (e && now - e.at < REFUSAL_LOG_INTERVAL_MS) { e.suppressed++; return; }
    this.refusalLog.set(reason, { at: now, suppressed: 0 });
    this.o.logger.warn({ ...fields, reason, ...(e?.suppressed ? { notLogged: e.suppressed } : {}) }, msg);
  }

  get openFlows(): number {
    return this.flows;
  }

  async start(): Promise<void> {
    this.stopping = false;
    await this.o.node.handle(TUNNEL_PROTOCOL, (stream: Stream, connection: Connection) => {
      this.serve(stream, connection).catch((err: unknown) => {
        this.o.logger.debug({ err: String(err) }, 'tunnel stream failed');
        abortQuietly(stream, err);
      });
    }, { runOnLimitedConnection: true, maxInboundStreams: MAX_STREAMS_PER_CONNECTION, maxOutboundStreams: MAX_STREAMS_PER_CONNECTION });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.o.node.unhandle(TUNNEL_PROTOCOL).catch(() => undefined);
  }

  /**
   * The far-side rule, shared by libp2p streams and the data channel: the peer is
   * a cluster node (or a relay), the target is an endpoint the local catalog puts
   * on this node, and there is room. Returns the refusal, or undefined to serve.
   */
  async check(peer: string, req: TunnelRequest): Promise<{ reason: RefusalReason; code: number; detail: string } | undefined> {
    if (!(await this.o.authorise(peer))) {
      this.logRefusal('unauthorised', { peer, target: `${req.ip}:${req.port}` }, 'tunnel request from a peer that is not a cluster node: refused');
      return { reason: 'unauthorised', code: Status.unauthorised, detail: 'peer is not a cluster node' };
    }
    if (req.nodeName !== this.o.nodeName || !(isLocalEndpoint(this.o.snapshot(), this.o.nodeName, req) || this.o.nodeAccess?.(req) === true)) {
      this.logRefusal('not-local', { peer, service: req.serviceKey, target: `${req.ip}:${req.port}`, node: req.nodeName }, 'tunnel request for a target that is not a local endpoint: refused');
      return { reason: 'not-local', code: Status.notLocal, detail: 'target is not an endpoint on this node' };
    }
    if (this.stopping || this.flows >= (this.o.maxFlows ?? 8192)) return { reason: 'unavailable', code: Status.unavailable, detail: 'agent busy or stopping' };
    return undefined;
  }

  /** Count an admitted inbound flow from `peer` (it keeps the peer from idling); the returned function ends it (once). */
  enter(proto: TunnelProto, peer: string): (result: string) => void {
    const m = this.o.metrics;
    const release = this.o.activity?.hold(peer);
    this.flows++;
    m.streamsOpen.inc({ direction: 'in', proto });
    let counted = false;
    return (result: string): void => {
      if (counted) return;
      counted = true;
      release?.();
      this.flows--;
      m.streamsOpen.dec({ direction: 'in', proto });
      m.streams.inc({ direction: 'in', proto, result });
    };
  }

  private refuse(stream: Stream, reason: RefusalReason, code: number, detail: string, proto = 'unknown'): void {
    this.o.metrics.refusals.inc({ reason });
    this.o.metrics.streams.inc({ direction: 'in', proto, result: reason });
    try {
      stream.send(encodeStatus(code, detail));
    } catch { /* stream gone */ }
    closeQuietly(stream);
    // The dialer closes its side on a refusal; make sure we never hold the stream.
    setTimeout(() => abortQuietly(stream, new Error('refused')), 5000).unref();
  }

  private async serve(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString();
    let header: { value: TunnelRequest; rest: Uint8Array | undefined };
    try {
      header = await readPrefix(stream, (b) => {
        const r = decodeRequest(b);
        return r ? { value: r.request, used: r.used } : undefined;
      }, { maxBytes: MAX_HEADER_BYTES, timeoutMs: this.o.headerTimeoutMs ?? 10_000 });
    } catch (err) {
      this.refuse(stream, 'bad-request', Status.badRequest, (err as Error).message);
      return;
    }
    const req = header.value;
    const refusal = await this.check(peer, req);
    if (refusal) {
      this.refuse(stream, refusal.reason, refusal.code, refusal.detail, req.proto);
      return;
    }
    const done = this.enter(req.proto, peer);
    if (req.proto === 'tcp') this.serveTcp(stream, req, header.rest, done);
    else this.serveUdp(stream, req, header.rest, done);
  }

  private serveTcp(stream: Stream, req: TunnelRequest, rest: Uint8Array | undefined, done: (result: string) => void): void {
    const sock = net.connect({ host: req.ip, port: req.port, allowHalfOpen: true, noDelay: true });
    // Bytes that arrive while the backend connects are kept, in order, after
    // `rest`, up to MAX_EARLY_BYTES (yamux's window keeps an honest peer far
    // below it); past the cap the flow is refused and counted.
    const early: Buffer[] = rest ? [Buffer.from(rest)] : [];
    let earlyBytes = rest?.byteLength ?? 0;
    const onEarly = (evt: { data: Uint8Array | Iterable<Uint8Array> }): void => {
      for (const c of chunksOf(evt.data)) { early.push(Buffer.from(c)); earlyBytes += c.byteLength; }
      if (earlyBytes <= MAX_EARLY_BYTES) return;
      clearTimeout(timer);
      stream.removeEventListener('message', onEarly);
      stream.removeEventListener('close', onEarlyClose);
      early.length = 0;
      sock.destroy();
      done('early-bytes-over-cap');
      this.logRefusal('early-bytes-over-cap', { target: `${req.ip}:${req.port}`, bytes: earlyBytes }, 'tunnel flow sent more than the cap before its backend connected: refused');
      this.o.metrics.refusals.inc({ reason: 'early-bytes-over-cap' });
      abortQuietly(stream, new Error(`over ${MAX_EARLY_BYTES} bytes before the backend connected`));
    };
    stream.addEventListener('message', onEarly);
    const timer = setTimeout(() => sock.destroy(new Error('connect timeout')), this.o.connectTimeoutMs ?? 5000);
    const onEarlyClose = (): void => {
      // Stream gone while we were still connecting.
      clearTimeout(timer);
      stream.removeEventListener('message', onEarly);
      sock.destroy();
      done('aborted');
    };
    stream.addEventListener('close', onEarlyClose, { once: true });
    sock.once('error', (err) => {
      if (sock.connecting || !sock.remoteAddress) {
        clearTimeout(timer);
        stream.removeEventListener('message', onEarly);
        stream.removeEventListener('close', onEarlyClose);
        done('connect-failed');
        this.o.metrics.refusals.inc({ reason: 'connect-failed' });
        try { stream.send(encodeStatus(Status.connectFailed, err.message)); } catch { /* gone */ }
        closeQuietly(stream);
        setTimeout(() => abortQuietly(stream, err), 5000).unref();
      }
    });
    sock.once('connect', () => {
      clearTimeout(timer);
      stream.removeEventListener('close', onEarlyClose);
      stream.removeEventListener('message', onEarly);
      if (stream.status !== 'open') { sock.destroy(); done('aborted'); return; }
      try {
        stream.send(encodeStatus(Status.ok));
      } catch (err) {
        sock.destroy();
        abortQuietly(stream, err);
        done('aborted');
        return;
      }
      bridgeSocket(sock, stream, early.length > 0 ? Buffer.concat(early) : undefined, {
        onBytes: (tx, rx) => { this.o.metrics.bytes.inc({ direction: 'tx' }, tx); this.o.metrics.bytes.inc({ direction: 'rx' }, rx); },
        onDone: (err) => done(err ? 'error' : 'ok'),
      });
    });
  }

  private serveUdp(stream: Stream, req: TunnelRequest, rest: Uint8Array | undefined, done: (result: string) => void): void {
    const m = this.o.metrics;
    const sock = dgram.createSocket({ type: net.isIPv6(req.ip) ? 'udp6' : 'udp4', recvBufferSize: UDP_RECV_BUFFER_BYTES });
    const decoder = new DatagramDecoder();
    const idleMs = this.o.udpIdleTimeoutMs ?? 60_000;
    let idle: NodeJS.Timeout | undefined;
    let closed = false;
    const finish = (result: string): void => {
      if (closed) return;
      closed = true;
      clearTimeout(idle);
      try { sock.close(); } catch { /* closed */ }
      stream.removeEventListener('message', onMessage);
      closeQuietly(stream);
      // Our side is closed; the dialer closes its side on `end`. Bounded in any case.
      setTimeout(() => abortQuietly(stream, new Error('udp session over')), 5000).unref();
      done(result);
    };
    const touch = (): void => {
      clearTimeout(idle);
      idle = setTimeout(() => finish('idle'), idleMs);
    };
    const toBackend = (dgs: Buffer[]): void => {
      for (const d of dgs) {
        m.bytes.inc({ direction: 'rx' }, d.length);
        sock.send(d);
      }
    };
    const onMessage = (evt: { data: Uint8Array | Iterable<Uint8Array> }): void => {
      touch();
      if (sock.remoteAddress === undefined) return;
      toBackend(decoder.push(evt.data));
    };
    let early: Buffer[] = rest ? decoder.push(rest) : [];
    const onEarly = (evt: { data: Uint8Array | Iterable<Uint8Array> }): void => { early = early.concat(decoder.push(evt.data)); };
    stream.addEventListener('message', onEarly);
    stream.addEventListener('end', () => finish('ok'), { once: true });
    stream.addEventListener('close', () => finish('closed'), { once: true });
    sock.on('error', (err) => {
      this.o.logger.debug({ err: String(err) }, 'udp backend socket error');
      finish('error');
    });
    const writer = new DatagramWriter(stream, UDP_MAX_QUEUED_BYTES, () => m.udpDropped.inc({ reason: 'backpressure' }));
    sock.on('message', (msg) => {
      touch();
      m.bytes.inc({ direction: 'tx' }, msg.length);
      writer.write(frameDatagram(msg));
    });
    sock.connect(req.port, req.ip, () => {
      if (closed) return;
      try {
        stream.send(encodeStatus(Status.ok));
      } catch {
        finish('aborted');
        return;
      }
      stream.removeEventListener('message', onEarly);
      stream.addEventListener('message', onMessage);
      toBackend(early);
      early = [];
      touch();
    });
  }
}
