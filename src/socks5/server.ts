/**
 * SOCKS5 (RFC 1928) on the agent, for ssh to edge nodes by name: CONNECT to
 * `<nodeName>:<port>` reaches that node through the tunnel (node-access.ts on the
 * far side). Username/password (RFC 1929) is required; only domain-name targets that
 * are catalog node names, only ports in `allowPorts`; everything else is refused
 * with the matching SOCKS reply and counted — never an open proxy. The handshake is
 * bounded in size (the protocol's own length bytes) and in time.
 */
import net from 'node:net';
import { timingSafeEqual, createHash } from 'node:crypto';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Duplex } from 'node:stream';
import type { Snapshot } from '../catalog/types.js';
import type { Logger } from '../util/log.js';
import type { RemoteDialer } from '../proxy/remote-dialer.js';
import { pump } from '../proxy/pump.js';
import { connectTcp } from '../proxy/service.js';
import { NODE_ACCESS_KEY } from '../tunnel/node-access.js';

export type Socks5Refusal = 'no_auth_method' | 'auth_failed' | 'bad_request' | 'command' | 'address_type' | 'unknown_node' | 'port_not_allowed' | 'connect_failed' | 'timeout';

export interface Socks5Options {
  readonly nodeName: string;
  /** name → password. */
  readonly users: ReadonlyMap<string, string>;
  readonly allowPorts: readonly number[];
  readonly snapshot: () => Snapshot;
  readonly dialer: () => RemoteDialer | undefined;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly handshakeTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
}

const REPLY = { ok: 0, failure: 1, notAllowed: 2, hostUnreachable: 4, refused: 5, command: 7, addressType: 8 } as const;

/** Constant-time string comparison (hashes first so lengths leak nothing). */
function same(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

/** Reads exact byte counts from a paused socket during the handshake. */
class Reader {
  private buf: Buffer = Buffer.alloc(0);
  private want: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  constructor(private readonly s: net.Socket) {
    s.on('data', (d: Buffer) => { this.buf = Buffer.concat([this.buf, d]); this.pump(); });
    s.on('end', () => this.want?.reject(new Error('client closed')));
  }
  read(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => { this.want = { n, resolve, reject }; this.pump(); });
  }
  /** Stop reading; bytes already buffered beyond the handshake are returned. */
  detach(): Buffer {
    this.s.removeAllListeners('data');
    this.s.removeAllListeners('end');
    this.s.pause();
    return this.buf;
  }
  private pump(): void {
    if (!this.want || this.buf.length < this.want.n) return;
    const w = this.want;
    this.want = undefined;
    const out = this.buf.subarray(0, w.n);
    this.buf = this.buf.subarray(w.n);
    w.resolve(out);
  }
}

export class Socks5Server {
  private readonly server: net.Server;
  private readonly refusals: Counter<'reason'>;
  private readonly connections: Counter<'result'>;
  private readonly active: Gauge;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly o: Socks5Options) {
    const registers = [o.registry];
    this.refusals = new Counter({ name: 'edgeway_socks5_refusals_total', help: 'SOCKS5 requests refused, by reason', labelNames: ['reason'], registers });
    this.connections = new Counter({ name: 'edgeway_socks5_connections_total', help: 'SOCKS5 CONNECTs to nodes, by result', labelNames: ['result'], registers });
    this.active = new Gauge({ name: 'edgeway_socks5_active_connections', help: 'SOCKS5 client connections open now', registers });
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => this.serve(s));
  }

  async listen(host: string, port: number): Promise<net.AddressInfo> {
    await new Promise<void>((resolve, reject) => { this.server.once('error', reject); this.server.listen({ host, port }, () => { this.server.off('error', reject); resolve(); }); });
    return this.server.address() as net.AddressInfo;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private refuse(s: net.Socket, reason: Socks5Refusal, reply?: Buffer): void {
    this.refusals.inc({ reason });
    if (reply && !s.destroyed) s.end(reply);
    else s.destroy();
  }

  private serve(s: net.Socket): void {
    this.sockets.add(s);
    this.active.inc();
    s.once('close', () => { this.sockets.delete(s); this.active.dec(); });
    s.on('error', () => undefined);
    const timer = setTimeout(() => this.refuse(s, 'timeout'), this.o.handshakeTimeoutMs ?? 10_000);
    const r = new Reader(s);
    s.resume();
    this.handshake(s, r).then(() => clearTimeout(timer), () => { clearTimeout(timer); if (!s.destroyed) this.refuse(s, 'bad_request'); });
  }

  private async handshake(s: net.Socket, r: Reader): Promise<void> {
    const [ver, n] = await r.read(2);
    if (ver !== 5) return this.refuse(s, 'bad_request');
    const methods = await r.read(n!);
    // 0x02 username/password only: no anonymous access, ever.
    if (!methods.includes(2)) return this.refuse(s, 'no_auth_method', Buffer.from([5, 0xff]));
    s.write(Buffer.from([5, 2]));
    const [aver, ulen] = await r.read(2);
    if (aver !== 1) return this.refuse(s, 'bad_request');
    const user = (await r.read(ulen!)).toString('utf8');
    const plen = (await r.read(1))[0]!;
    const pass = (await r.read(plen)).toString('utf8');
    const expected = this.o.users.get(user);
    // Compared even for unknown users so timing does not tell which names exist.
    const okPass = same(pass, expected ?? '\0no such user');
    if (expected === undefined || !okPass) return this.refuse(s, 'auth_failed', Buffer.from([1, 1]));
    s.write(Buffer.from([1, 0]));
    const [v, cmd, , atyp] = await r.read(4);
    const reply = (code: number): Buffer => Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
    if (v !== 5) return this.refuse(s, 'bad_request');
    if (cmd !== 1) return this.refuse(s, 'command', reply(REPLY.command));
    // Targets are node names (ATYP 3): IP literals would make this a general proxy.
    if (atyp !== 3) return this.refuse(s, 'address_type', reply(REPLY.addressType));
    const hlen = (await r.read(1))[0]!;
    const node = (await r.read(hlen)).toString('utf8').toLowerCase();
    const port = (await r.read(2)).readUInt16BE(0);
    if (!this.o.snapshot().nodes.some((x) => x.name === node)) return this.refuse(s, 'unknown_node', reply(REPLY.hostUnreachable));
    if (!this.o.allowPorts.includes(port)) return this.refuse(s, 'port_not_allowed', reply(REPLY.notAllowed));
    const early = r.detach();
    let conn: Duplex;
    try {
      conn = await this.open(node, port);
    } catch (err) {
      this.o.logger.debug({ node, port, err: (err as Error).message }, 'socks5 connect failed');
      this.connections.inc({ result: 'connect_failed' });
      return this.refuse(s, 'connect_failed', reply(REPLY.refused));
    }
    this.connections.inc({ result: 'ok' });
    s.write(reply(REPLY.ok));
    if (early.length) conn.write(early);
    pump(s, conn, { toEndpoint: () => undefined, toClient: () => undefined, done: () => undefined });
  }

  /** Own node: loopback directly; another node: through the tunnel, where that agent checks it again. */
  private open(node: string, port: number): Promise<Duplex> {
    const ac = AbortSignal.timeout(this.o.connectTimeoutMs ?? 5_000);
    if (node === this.o.nodeName) return connectTcp('127.0.0.1', port, ac);
    const d = this.o.dialer();
    if (!d) return Promise.reject(new Error('tunnel not running'));
    return d.dialStream({ nodeName: node, protocol: 'TCP', serviceKey: NODE_ACCESS_KEY, servicePort: port, ip: '127.0.0.1', port }, ac);
  }
}
