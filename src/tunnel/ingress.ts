/**
 * A minimal, generic tunnel ingress: one TCP or UDP listener per route, each
 * accepted flow handed to the dialer towards a remote endpoint the route picks.
 * The userspace proxy owns the real ingress (load balancing, affinity, plan
 * ports); this one serves the tunnel's own e2e tests and benchmarks, and any
 * setup without the proxy.
 */
import net from 'node:net';
import dgram from 'node:dgram';
import type { Protocol, Snapshot } from '../catalog/types.js';
import type { DatagramSession, RemoteTarget } from '../proxy/remote-dialer.js';
import type { Logger } from '../util/log.js';
import type { TunnelDialer } from './dialer.js';
import { UDP_RECV_BUFFER_BYTES } from './protocol.js';

export interface IngressRoute {
  readonly listenHost?: string;
  readonly listenPort: number;
  readonly protocol: 'TCP' | 'UDP';
  /** The remote endpoint for a new flow (undefined = none: the flow is refused). */
  pick(): RemoteTarget | undefined;
}

/** Endpoints of a service port that live on other nodes, as tunnel targets (pure). */
export function remoteTargets(snap: Snapshot, ownNode: string, serviceKey: string, servicePort: number, protocol: Protocol): RemoteTarget[] {
  const svc = snap.services.find((s) => s.key === serviceKey);
  const sp = svc?.ports.find((p) => p.port === servicePort && p.protocol === protocol);
  if (!svc || !sp) return [];
  const out: RemoteTarget[] = [];
  for (const e of svc.endpoints) {
    if (!e.nodeName || e.nodeName === ownNode || !(e.ready || e.serving)) continue;
    const port = e.ports.find((p) => p.name === sp.name && p.protocol === protocol)?.port ?? (typeof sp.targetPort === 'number' ? sp.targetPort : undefined);
    if (port === undefined) continue;
    out.push({ nodeName: e.nodeName, protocol, serviceKey, servicePort, ip: e.ip, port });
  }
  return out;
}

export interface TunnelIngressOptions {
  dialer: TunnelDialer;
  routes: readonly IngressRoute[];
  logger: Logger;
  udpIdleTimeoutMs?: number;
}

export class TunnelIngress {
  private readonly closers: (() => Promise<void>)[] = [];
  /** Datagrams dropped by the UDP ingress, by reason (the flows' sessions are gone or not open yet). */
  readonly udpDrops = { pendingFull: 0, noTarget: 0, sessionFailed: 0 };
  constructor(private readonly o: TunnelIngressOptions) {}

  async start(): Promise<void> {
    for (const r of this.o.routes) {
      if (r.protocol === 'TCP') await this.startTcp(r);
      else await this.startUdp(r);
    }
  }

  async stop(): Promise<void> {
    for (const c of this.closers.splice(0)) await c().catch(() => undefined);
  }

  private async startTcp(r: IngressRoute): Promise<void> {
    const sockets = new Set<net.Socket>();
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => {
      sockets.add(sock);
      sock.once('close', () => sockets.delete(sock));
      sock.on('error', () => undefined);
      const target = r.pick();
      if (!target) { sock.resetAndDestroy(); return; }
      this.o.dialer.bridge(sock, target).catch((err: unknown) => {
        this.o.logger.debug({ target: `${target.nodeName}/${target.ip}:${target.port}`, err: String(err) }, 'tunnel flow failed');
        if (!sock.destroyed) sock.resetAndDestroy();
      });
    });
    server.on('error', (err) => this.o.logger.error({ port: r.listenPort, err: String(err) }, 'ingress listener error'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: r.listenPort, host: r.listenHost ?? '0.0.0.0' }, () => { server.off('error', reject); resolve(); });
    });
    this.closers.push(() => new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }));
  }

  private async startUdp(r: IngressRoute): Promise<void> {
    // A large receive buffer: bursts from many clients while the agent is busy
    // otherwise overflow the 208 KiB default in the kernel (RcvbufErrors).
    const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: UDP_RECV_BUFFER_BYTES });
    const sessions = new Map<string, { session?: DatagramSession; pending: Buffer[]; idle?: NodeJS.Timeout; closed: boolean }>();
    const idleMs = this.o.udpIdleTimeoutMs ?? 60_000;
    const end = (key: string): void => {
      const s = sessions.get(key);
      if (!s) return;
      sessions.delete(key);
      s.closed = true;
      clearTimeout(s.idle);
      s.session?.close();
    };
    sock.on('message', (msg, rinfo) => {
      const key = `${rinfo.address}:${rinfo.port}`;
      let s = sessions.get(key);
      if (!s) {
        const target = r.pick();
        if (!target) { this.udpDrops.noTarget++; return; }
        const entry: { session?: DatagramSession; pending: Buffer[]; idle?: NodeJS.Timeout; closed: boolean } = { pending: [msg], closed: false };
        s = entry;
        sessions.set(key, entry);
        this.o.dialer.openDatagramSession(target).then((session) => {
          if (entry.closed) { session.close(); return; }
          entry.session = session;
          session.onMessage((d) => {
            clearTimeout(entry.idle);
            entry.idle = setTimeout(() => end(key), idleMs);
            sock.send(d, rinfo.port, rinfo.address);
          });
          session.onClose(() => { if (sessions.get(key) === entry) { sessions.delete(key); clearTimeout(entry.idle); entry.closed = true; } });
          for (const d of entry.pending.splice(0)) session.send(d);
        }, (err: unknown) => {
          this.o.logger.debug({ err: String(err) }, 'udp tunnel session failed');
          this.udpDrops.sessionFailed += entry.pending.length;
          end(key);
        });
      } else if (s.session) s.session.send(msg);
      else if (s.pending.length < 64) s.pending.push(msg);
      else this.udpDrops.pendingFull++;
      clearTimeout(s.idle);
      s.idle = setTimeout(() => end(key), idleMs);
    });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(r.listenPort, r.listenHost ?? '0.0.0.0', () => { sock.off('error', reject); resolve(); });
    });
    sock.on('error', (err) => this.o.logger.warn({ err: String(err) }, 'udp ingress error'));
    this.closers.push(async () => {
      for (const k of [...sessions.keys()]) end(k);
      await new Promise<void>((resolve) => sock.close(() => resolve()));
    });
  }
}
