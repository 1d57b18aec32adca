/**
 * The receiving end of channel connections: an EWC1 record stream whose credential id names
 * the libp2p peer that got the key, carrying one flow — the `/edgeway/tunnel/1`
 * header, the same far-side rule as libp2p streams (TunnelServer.check: cluster
 * node, local endpoint, room), a status, then bytes with half-close (TCP) or
 * u16-framed datagrams (UDP). Never an open proxy.
 *
 * A warm connection waits here for its header; `idleMs` bounds how long.
 */
import net from 'node:net';
import dgram from 'node:dgram';
import type { Logger } from '../../util/log.js';
import type { RefusalReason, TunnelMetrics } from '../metrics.js';
import type { TunnelServer } from '../server.js';
import { decodeRequest, DatagramDecoder, encodeStatus, frameDatagram, MAX_HEADER_BYTES, Status, UDP_RECV_BUFFER_BYTES, type TunnelRequest } from '../protocol.js';
import { pump } from '../../proxy/pump.js';
import { readSocketPrefix } from './wire.js';
import { retire, type EwcSocket } from './ewc-codec.js';
import { tryHandOver, type AeadSource } from './handover.js';

export interface ChannelServerOptions {
  server: TunnelServer;
  metrics: TunnelMetrics;
  logger: Logger;
  /** A warm connection with no header after this long is closed (the client refreshes its pool first). */
  idleMs: number;
  connectTimeoutMs?: number;
  udpIdleTimeoutMs?: number;
  /** The addon's record pump for the bulk bytes of TCP flows (absent: the JS codec carries them). */
  aead?: AeadSource;
}

/** Datagrams a slow channel may hold before new ones are dropped (counted), like UDP. */
const UDP_MAX_BUFFERED = 512 * 1024;

export class ChannelServer {
  /** Connections waiting for their flow's header (a peer's warm pool here), by peer. */
  private readonly waiting = new Map<string, Set<EwcSocket>>();

  constructor(private readonly o: ChannelServerOptions) {}

  /** Peers with warm connections waiting here. */
  waitingPeers(): string[] {
    return [...this.waiting.keys()];
  }

  /** Close `peer`'s warm connections here with END (an idle peer); returns how many. Flows are left alone. */
  retireWaiting(peer: string): number {
    const set = this.waiting.get(peer);
    if (!set) return 0;
    this.waiting.delete(peer);
    for (const s of set) retire(s);
    return set.size;
  }

  /** Serve one authenticated channel connection from `peer`. Never throws. */
  serve(sock: EwcSocket, peer: string): void {
    sock.on('error', () => undefined);
    void this.serveInner(sock, peer).catch((err: unknown) => {
      this.o.logger.debug({ peer, err: String(err) }, 'channel flow failed');
      sock.destroy();
    });
  }

  private async serveInner(sock: EwcSocket, peer: string): Promise<void> {
    let req: TunnelRequest;
    let set = this.waiting.get(peer);
    if (!set) this.waiting.set(peer, (set = new Set()));
    set.add(sock);
    try {
      req = await readSocketPrefix(sock, (b) => {
        const r = decodeRequest(b);
        return r ? { value: r.request, used: r.used } : undefined;
      }, { maxBytes: MAX_HEADER_BYTES, timeoutMs: this.o.idleMs });
    } catch (err) {
      // A warm connection closed by its owner (END) is the normal end of an unused one: END back.
      if (sock.destroyed) return;
      if (sock.readableEnded) { retire(sock); return; }
      this.refuse(sock, 'bad-request', Status.badRequest, (err as Error).message, 'unknown');
      return;
    } finally {
      set.delete(sock);
      if (set.size === 0 && this.waiting.get(peer) === set) this.waiting.delete(peer);
    }
    const refusal = await this.o.server.check(peer, req);
    if (refusal) { this.refuse(sock, refusal.reason, refusal.code, refusal.detail, req.proto); return; }
    const done = this.o.server.enter(req.proto, peer);
    if (req.proto === 'tcp') this.serveTcp(sock, req, done);
    else this.serveUdp(sock, req, done);
  }

  private refuse(sock: EwcSocket, reason: RefusalReason, code: number, detail: string, proto: string): void {
    this.o.metrics.refusals.inc({ reason });
    this.o.metrics.streams.inc({ direction: 'in', proto, result: reason });
    sock.end(encodeStatus(code, detail));
    // The dialer closes on a refusal; bounded in any case.
    setTimeout(() => sock.destroy(), 5000).unref();
  }

  private serveTcp(sock: EwcSocket, req: TunnelRequest, done: (result: string) => void): void {
    const m = this.o.metrics;
    const backend = net.connect({ host: req.ip, port: req.port, allowHalfOpen: true, noDelay: true });
    // Paused before 'connect': Node must not read a byte the record pump should carry (PITFALLS.md).
    backend.pause();
    const timer = setTimeout(() => backend.destroy(new Error('connect timeout')), this.o.connectTimeoutMs ?? 5000);
    const onEarlyClose = (): void => { clearTimeout(timer); backend.destroy(); done('aborted'); };
    sock.once('close', onEarlyClose);
    backend.once('error', (err) => {
      if (backend.connecting || !backend.remoteAddress) {
        clearTimeout(timer);
        sock.off('close', onEarlyClose);
        this.o.metrics.refusals.inc({ reason: 'connect-failed' });
        done('connect-failed');
        sock.end(encodeStatus(Status.connectFailed, err.message));
        setTimeout(() => sock.destroy(), 5000).unref();
      }
    });
    backend.once('connect', () => {
      clearTimeout(timer);
      sock.off('close', onEarlyClose);
      if (sock.destroyed) { backend.destroy(); done('aborted'); return; }
      const fwd = this.o.aead?.();
      if (!fwd) { sock.write(encodeStatus(Status.ok)); this.pumpJs(backend, sock, done); return; }
      // The status record goes out first; the record pump continues the sequence after it.
      sock.write(encodeStatus(Status.ok), (err) => {
        if (err) { backend.destroy(); sock.destroy(); done('error'); return; }
        const native = tryHandOver(backend, sock, fwd);
        m.channelHandovers.inc({ side: 'server', result: native ? 'native' : 'declined' });
        if (!native) { this.pumpJs(backend, sock, done); return; }
        native.then((r) => {
          m.bytes.inc({ direction: 'tx' }, r.bytesIn);
          m.bytes.inc({ direction: 'rx' }, r.bytesOut);
          done('ok');
        }, (e: unknown) => {
          this.o.logger.debug({ err: String(e) }, 'channel flow (native pump) failed');
          done('error');
        });
      });
    });
  }

  private pumpJs(backend: net.Socket, sock: EwcSocket, done: (result: string) => void): void {
    const m = this.o.metrics;
    if (!sock.destroyed) {
      backend.resume();
      pump(backend, sock, {
        toEndpoint: (n) => m.bytes.inc({ direction: 'tx' }, n),
        toClient: (n) => m.bytes.inc({ direction: 'rx' }, n),
        done: (err) => done(err ? 'error' : 'ok'),
      });
      return;
    }
    backend.destroy();
    done('aborted');
  }

  private serveUdp(sock: EwcSocket, req: TunnelRequest, done: (result: string) => void): void {
    const m = this.o.metrics;
    const udp = dgram.createSocket({ type: net.isIPv6(req.ip) ? 'udp6' : 'udp4', recvBufferSize: UDP_RECV_BUFFER_BYTES });
    const decoder = new DatagramDecoder();
    const idleMs = this.o.udpIdleTimeoutMs ?? 60_000;
    let idle: NodeJS.Timeout | undefined;
    let closed = false;
    const finish = (result: string): void => {
      if (closed) return;
      closed = true;
      clearTimeout(idle);
      try { udp.close(); } catch { /* closed */ }
      sock.end();
      setTimeout(() => sock.destroy(), 5000).unref();
      done(result);
    };
    const touch = (): void => {
      clearTimeout(idle);
      idle = setTimeout(() => finish('idle'), idleMs);
    };
    sock.once('end', () => finish('ok'));
    sock.once('close', () => finish('closed'));
    udp.on('error', (err) => { this.o.logger.debug({ err: String(err) }, 'udp backend socket error'); finish('error'); });
    udp.on('message', (msg) => {
      touch();
      if (sock.writableLength > UDP_MAX_BUFFERED) { m.udpDropped.inc({ reason: 'backpressure' }); return; }
      m.bytes.inc({ direction: 'tx' }, msg.length);
      sock.write(frameDatagram(msg));
    });
    udp.connect(req.port, req.ip, () => {
      if (closed) return;
      sock.write(encodeStatus(Status.ok));
      sock.on('data', (c: Buffer) => {
        touch();
        for (const d of decoder.push(c)) { m.bytes.inc({ direction: 'rx' }, d.length); udp.send(d); }
      });
      sock.resume();
      touch();
    });
  }
}
