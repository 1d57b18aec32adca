/**
 * The dialling end of one flow on a channel connection: the `/edgeway/tunnel/1`
 * header, the far agent's status, then the EWC1 record stream itself is the flow (a Node
 * Duplex with TCP backpressure and half-close) — or, for UDP, a datagram session
 * with the same u16 framing as the libp2p path.
 */
import { retire, type EwcSocket } from './ewc-codec.js';
import type { DatagramSession, RemoteTarget } from '../../proxy/remote-dialer.js';
import type { TunnelMetrics } from '../metrics.js';
import { DatagramDecoder, decodeStatus, encodeRequest, frameDatagram, MAX_DATAGRAM, Status, statusName, UDP_MAX_QUEUED_BYTES, type TunnelProto } from '../protocol.js';
import { TunnelRefusedError } from '../errors.js';
import { readSocketPrefix } from './wire.js';

/** Send the header and wait for the status; the socket is closed on any failure (orderly after a refusal). */
export async function startFlow(sock: EwcSocket, target: RemoteTarget, proto: TunnelProto, statusTimeoutMs: number): Promise<void> {
  try {
    sock.write(encodeRequest({ proto, nodeName: target.nodeName, serviceKey: target.serviceKey, servicePort: target.servicePort, ip: target.ip, port: target.port }));
    const st = await readSocketPrefix(sock, (b) => {
      const s = decodeStatus(b);
      return s ? { value: s, used: s.used } : undefined;
    }, { maxBytes: 1024, timeoutMs: statusTimeoutMs });
    if (st.code !== Status.ok) throw new TunnelRefusedError(statusName(st.code), st.reason);
  } catch (err) {
    // A refusal is an orderly answer (the far side ended its half after the status):
    // END back, so it is not counted there as a truncated record stream.
    if (err instanceof TunnelRefusedError) retire(sock);
    else sock.destroy();
    throw err;
  }
}

/** A UDP session over one channel connection: u16-framed datagrams; drops (counted) when the socket is backed up. */
export class ChannelDatagramSession implements DatagramSession {
  private readonly decoder = new DatagramDecoder();
  private readonly listeners: ((d: Uint8Array) => void)[] = [];
  private readonly closers: ((err?: Error) => void)[] = [];
  private backlog: Buffer[] = [];
  private closed = false;
  private error: Error | undefined;

  constructor(private readonly sock: EwcSocket, private readonly metrics: TunnelMetrics) {
    sock.on('data', (c: Buffer) => {
      for (const d of this.decoder.push(c)) {
        metrics.bytes.inc({ direction: 'rx' }, d.length);
        if (this.listeners.length === 0) this.backlog.push(d);
        else for (const l of this.listeners) l(d);
      }
    });
    sock.on('error', (err) => { this.error ??= err; });
    // The far side closes on idle: close ours too.
    sock.once('end', () => this.close());
    sock.once('close', () => this.finish());
    sock.resume();
  }

  send(datagram: Uint8Array): void {
    if (this.closed || this.sock.destroyed || this.sock.writableEnded) return;
    if (datagram.length > MAX_DATAGRAM) { this.metrics.udpDropped.inc({ reason: 'oversize' }); return; }
    if (this.sock.writableLength > UDP_MAX_QUEUED_BYTES) { this.metrics.udpDropped.inc({ reason: 'backpressure' }); return; }
    this.metrics.bytes.inc({ direction: 'tx' }, datagram.length);
    this.sock.write(frameDatagram(datagram));
  }

  onMessage(cb: (datagram: Uint8Array) => void): void {
    this.listeners.push(cb);
    const b = this.backlog;
    this.backlog = [];
    for (const d of b) cb(d);
  }

  onClose(cb: (err?: Error) => void): void {
    if (this.closed) { cb(this.error); return; }
    this.closers.push(cb);
  }

  close(): void {
    if (!this.sock.writableEnded) this.sock.end();
    // Bounded: if the far side never closes its half, destroy.
    setTimeout(() => this.sock.destroy(), 5000).unref();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.closers.splice(0)) c(this.error);
  }
}
