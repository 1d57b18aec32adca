/**
 * The UDP path: per-client sessions. A session (client ip:port → one endpoint) owns
 * one connected UDP socket to the endpoint (or a tunnel datagram session for remote
 * endpoints); replies are sent from the listening socket that received the
 * client's datagram, so their source is the address the kernel redirected to and
 * conntrack maps it back to the service address.
 *
 * Hot path: received buffers are forwarded as they are (no copy, no per-packet
 * closure or string key: sessions sit in a map by address, then by port). Idle
 * sessions are closed by one periodic sweep, not a timer per packet.
 */
import dgram from 'node:dgram';
import type { Logger } from '../util/log.js';
import type { PlannedEndpoint } from '../plan/types.js';
import type { DatagramSession } from './remote-dialer.js';
import { ProxyError } from './errors.js';
import { clientIpOf, type DialSettings, type ServiceRuntime } from './service.js';
import { failureOf, type FlowGate } from './tcp.js';

export interface UdpSettings extends DialSettings {
  /** A session with no datagram either way for this long is closed. */
  readonly sessionIdleMs: number;
  /** Datagrams held per session while its endpoint socket is being set up. */
  readonly pendingMax?: number;
}

interface Upstream {
  send(buf: Buffer): void;
  close(): void;
}

interface Session {
  last: number;
  up?: Upstream;
  pending: Buffer[] | undefined;
  closed: boolean;
  release?: () => void;
}

/** Where the listening sockets bind: the wildcard, plus loopback (OUTPUT-chain REDIRECT targets 127.0.0.1/::1). */
const BINDS: readonly { type: 'udp4' | 'udp6'; address: string }[] = [
  { type: 'udp4', address: '0.0.0.0' },
  { type: 'udp4', address: '127.0.0.1' },
  { type: 'udp6', address: '::' },
  { type: 'udp6', address: '::1' },
];

export class UdpListener {
  private readonly sockets: dgram.Socket[] = [];
  private readonly sessions = new Map<string, Map<number, Session>>();
  private count = 0;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    readonly port: number,
    private readonly rt: () => ServiceRuntime,
    private readonly settings: UdpSettings,
    private readonly gate: FlowGate,
    private readonly log: Logger,
  ) {}

  /** Bind every address of BINDS that exists on this host; fails only when no IPv4 wildcard could bind. */
  async listen(): Promise<void> {
    for (const b of BINDS) {
      const s = dgram.createSocket({ type: b.type, reuseAddr: true, ...(b.type === 'udp6' ? { ipv6Only: true } : {}) });
      try {
        await new Promise<void>((resolve, reject) => {
          s.once('error', reject);
          s.bind(this.port, b.address, () => { s.off('error', reject); resolve(); });
        });
      } catch (err) {
        s.close();
        if (b.address === '0.0.0.0') { this.close(); throw new ProxyError('ERR_PROXY_LISTEN', `udp bind ${b.address}:${this.port}: ${(err as Error).message}`, { cause: err }); }
        continue; // no IPv6 (or no ::1) here: fine
      }
      s.on('error', (err) => this.log.warn({ port: this.port, err: err.message }, 'udp listener error'));
      s.on('message', (msg, rinfo) => this.onMessage(s, msg, rinfo));
      this.sockets.push(s);
    }
    const every = Math.max(50, Math.min(5_000, this.settings.sessionIdleMs / 2));
    this.sweeper = setInterval(() => this.sweep(Date.now()), every);
    this.sweeper.unref();
  }

  get sessionCount(): number {
    return this.count;
  }

  get socketCount(): number {
    return this.sockets.length;
  }

  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    for (const s of this.sockets.splice(0)) s.close();
    for (const byPort of this.sessions.values()) for (const s of byPort.values()) this.end(s);
    this.sessions.clear();
  }

  /** Close sessions idle since before `now - sessionIdleMs`. */
  sweep(now: number): void {
    const limit = now - this.settings.sessionIdleMs;
    for (const [addr, byPort] of this.sessions) {
      for (const [port, s] of byPort) {
        if (s.last < limit) { this.end(s); byPort.delete(port); }
      }
      if (byPort.size === 0) this.sessions.delete(addr);
    }
  }

  private end(s: Session): void {
    if (s.closed) return;
    s.closed = true;
    s.pending = undefined;
    s.up?.close();
    s.release?.();
    this.count--;
    this.gate.close();
    this.rt().metrics.activeFlows.dec();
  }

  private forget(addr: string, port: number, s: Session): void {
    this.end(s);
    const byPort = this.sessions.get(addr);
    if (byPort?.get(port) === s) byPort.delete(port);
    if (byPort?.size === 0) this.sessions.delete(addr);
  }

  private onMessage(ls: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const m = this.rt().metrics;
    let byPort = this.sessions.get(rinfo.address);
    let s = byPort?.get(rinfo.port);
    if (!s) {
      if (!this.gate.tryOpen()) { m.drop('udp_session_limit'); return; }
      s = { last: Date.now(), pending: [], closed: false };
      if (!byPort) { byPort = new Map(); this.sessions.set(rinfo.address, byPort); }
      byPort.set(rinfo.port, s);
      this.count++;
      m.activeFlows.inc();
      this.open(ls, s, rinfo.address, rinfo.port);
    } else s.last = Date.now();
    m.toEndpoint += msg.length;
    if (s.up) s.up.send(msg);
    else if (s.pending && s.pending.length < (this.settings.pendingMax ?? 16)) s.pending.push(msg);
  }

  private open(ls: dgram.Socket, s: Session, addr: string, port: number): void {
    const rt = this.rt();
    const m = rt.metrics;
    const reply = (buf: Buffer | Uint8Array): void => {
      if (s.closed) return;
      s.last = Date.now();
      m.toClient += buf.length;
      ls.send(buf, port, addr);
    };
    rt.dial(rt.input(clientIpOf(addr)), this.settings, (ep, signal) => openUpstream(ep, rt, this.settings, signal, reply, () => this.forget(addr, port, s))).then(
      (d) => {
        m.result('ok');
        s.release = d.release;
        if (s.closed) { d.conn.close(); d.release(); return; }
        s.up = d.conn;
        for (const b of s.pending ?? []) d.conn.send(b);
        s.pending = undefined;
      },
      (err: unknown) => {
        const f = failureOf(err);
        m.result(f.result);
        m.drop(f.drop);
        if (this.log.isLevelEnabled('debug')) this.log.debug({ service: rt.sp.id, err: String(err) }, 'udp session failed');
        this.forget(addr, port, s);
      },
    );
  }
}

/** A connected UDP socket to a local/routable endpoint, or a tunnel datagram session. */
async function openUpstream(
  ep: PlannedEndpoint, rt: ServiceRuntime, settings: UdpSettings, signal: AbortSignal,
  onReply: (b: Buffer | Uint8Array) => void, onGone: () => void,
): Promise<Upstream> {
  if (ep.class === 'remote') {
    if (!settings.remoteDialer) throw new ProxyError('ERR_PROXY_NO_REMOTE_DIALER', `endpoint ${ep.ip} is on node ${ep.nodeName ?? '?'} in another LAN and no tunnel is running`);
    const ds: DatagramSession = await settings.remoteDialer.openDatagramSession(
      { nodeName: ep.nodeName ?? '', protocol: 'UDP', serviceKey: rt.sp.serviceKey, servicePort: rt.sp.port, ip: ep.ip, port: ep.port }, signal);
    ds.onMessage(onReply);
    ds.onClose(onGone);
    return { send: (b) => ds.send(b), close: () => ds.close() };
  }
  const u = dgram.createSocket(ep.family === 6 ? 'udp6' : 'udp4');
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => { u.close(); reject(new ProxyError('ERR_PROXY_CONNECT_TIMEOUT', `udp connect ${ep.ip}:${ep.port} timed out`)); };
    signal.addEventListener('abort', onAbort, { once: true });
    u.once('error', (e) => { signal.removeEventListener('abort', onAbort); u.close(); reject(e); });
    u.connect(ep.port, ep.ip, () => { signal.removeEventListener('abort', onAbort); u.removeAllListeners('error'); resolve(); });
  });
  let closed = false;
  u.on('message', onReply);
  // ICMP port unreachable arrives as ECONNREFUSED on a connected socket: the session
  // ends and the client's next datagram opens a new one (on another endpoint).
  u.on('error', () => onGone());
  return {
    send: (b) => { if (!closed) u.send(b); },
    close: () => { if (!closed) { closed = true; u.close(); } },
  };
}
