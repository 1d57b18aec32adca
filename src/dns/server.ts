/**
 * The node-local DNS server: UDP and TCP listeners on the configured addresses,
 * answering from the cluster zone (swapped whole on each snapshot) and forwarding
 * the rest.
 *
 * Hot path (a cluster name, or a cached external name, over UDP): parse the header
 * and question in place, one map lookup, one buffer assembled from the query's own
 * question bytes and a prebuilt body, send. No promise, no object decoding.
 *
 * Hostile input: nothing a client sends can throw out of a handler. Packets that
 * are not queries are counted and dropped; queries whose header parses but whose
 * rest does not get FORMERR. TCP has a connection limit, a per-connection limit of
 * queries in flight (reading pauses beyond it), a query size limit and an idle
 * timeout.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, isIP, type Server, type Socket } from 'node:net';
import { lookup as dnsLookup } from 'node:dns';
import dnsPacket from 'dns-packet';
import type { Logger } from '../util/log.js';
import { DnsMetrics } from './metrics.js';
import { encodeBody, type Zone, type ZoneRecord } from './zone.js';
import { Forwarder, parseHostPort } from './forwarder.js';
import { CLASS_ANY, CLASS_IN, errorResponse, nameKey, parseQuery, RCODE, respond, udpLimit, type Body, type Query } from './wire.js';
import { DnsListenError } from './errors.js';
import { BatchedUdp, type BatchAddon } from './udp-batch.js';
import { namedErrno } from './reuse-port.js';

export interface DnsServerOptions {
  /** `host:port` addresses; port 0 picks a free port (tests). */
  readonly listen: readonly string[];
  readonly zone: Zone;
  /** Absent: names outside the zone get SERVFAIL. */
  readonly forwarder?: Forwarder;
  readonly logger: Logger;
  readonly metrics?: DnsMetrics;
  readonly maxTcpConnections?: number;
  /** Queries one TCP connection may have in flight before we stop reading it. */
  readonly maxTcpPipelined?: number;
  /** Largest query accepted (bytes); a query is small, so anything big is hostile. */
  readonly maxQuerySize?: number;
  readonly tcpIdleMs?: number;
  /** Serve TCP too (default true). DNS worker threads: only the first one does. */
  readonly tcp?: boolean;
  /**
   * Share each UDP port with other sockets (SO_REUSEPORT), one per DNS worker
   * thread: the kernel spreads queries across them. `openUdpFd` makes the socket
   * where dgram cannot (Node < 22.12, see src/dns/reuse-port.ts); without it dgram's
   * own `reusePort` option is used.
   */
  readonly reusePort?: { readonly openUdpFd?: (host: string, port: number) => Promise<number> };
  /** Serve UDP in batches through the native addon (udp-batch.ts) instead of dgram. */
  readonly batch?: { readonly addon: BatchAddon };
}

export interface BoundAddress {
  readonly proto: 'udp' | 'tcp';
  readonly address: string;
  readonly port: number;
}

const TCP_LIMIT = 65535;

/**
 * dgram resolves the destination of every send() through dns.lookup, which for an
 * IP literal still defers to the next tick. We only ever answer the IP a query came
 * from, so hand it back synchronously: measured here, a bare responder went from
 * ~45k to ~77k answers per CPU-second.
 */
function literalLookup(address: string, family: unknown, cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  const f = isIP(address);
  if (f) { cb(null, address, f); return; }
  dnsLookup(address, { family: family === 6 ? 6 : 4 }, (err, a, fam) => cb(err, a, fam));
}

export class DnsServer {
  private zone: Zone;
  readonly metrics: DnsMetrics;
  private readonly udp: (UdpSocket | BatchedUdp)[] = [];
  private readonly tcp: Server[] = [];
  private readonly conns = new Set<Socket>();
  private readonly log: Logger;
  private readonly maxConns: number;
  private readonly maxPipelined: number;
  private readonly maxQuery: number;
  private readonly idleMs: number;
  /** Prebuilt responses per body (see prebuilt()); weak, so old zones and cache entries go. */
  private wires = new WeakMap<Body, { qEnd: number; rcode: number; aa: boolean; plain: Buffer | undefined; edns: Buffer | undefined }>();

  constructor(private readonly opts: DnsServerOptions) {
    this.zone = opts.zone;
    this.metrics = opts.metrics ?? new DnsMetrics();
    this.log = opts.logger.child({ subsystem: 'dns' });
    this.maxConns = opts.maxTcpConnections ?? 256;
    this.maxPipelined = opts.maxTcpPipelined ?? 64;
    this.maxQuery = opts.maxQuerySize ?? 4096;
    this.idleMs = opts.tcpIdleMs ?? 10_000;
  }

  /** Replace the zone atomically (each query sees one snapshot or the next). */
  setZone(zone: Zone): void {
    this.zone = zone;
  }

  get tcpConnections(): number {
    return this.conns.size;
  }

  /** Bind every listen address (UDP and TCP). Rejects with DnsListenError, releasing what was bound. */
  async start(): Promise<void> {
    try {
      for (const addr of this.opts.listen) {
        const { host, port } = parseHostPort(addr);
        if (this.opts.tcp === false) { await this.bindUdp(host, port); continue; }
        // With port 0 (tests), TCP takes the port number UDP got; that port may be
        // busy for TCP, so try a few times.
        for (let attempt = 0; ; attempt++) {
          const sock = await this.bindUdp(host, port);
          try {
            await this.bindTcp(host, sock.address().port);
            break;
          } catch (err) {
            if (port !== 0 || attempt >= 20) throw err;
            this.udp.splice(this.udp.indexOf(sock), 1);
            await new Promise<void>((r) => sock.close(() => r()));
          }
        }
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  addresses(): BoundAddress[] {
    return [
      ...this.udp.map((s) => ({ proto: 'udp' as const, address: s.address().address, port: s.address().port })),
      ...this.tcp.map((s) => { const a = s.address() as { address: string; port: number }; return { proto: 'tcp' as const, address: a.address, port: a.port }; }),
    ];
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    await Promise.all(this.udp.splice(0).map((s) => new Promise<void>((r) => { try { s.close(() => r()); } catch { r(); } })));
    await Promise.all(this.tcp.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
  }

  private async bindUdp(host: string, port: number): Promise<UdpSocket | BatchedUdp> {
    const reuse = this.opts.reusePort;
    const batch = this.opts.batch;
    const fd = reuse?.openUdpFd ? await reuse.openUdpFd(host, port).catch((err: unknown) => { throw new DnsListenError(`udp ${host}:${port}`, err); }) : undefined;
    if (batch) {
      let own: number;
      try {
        own = fd ?? batch.addon.udpReusePort(host, port, reuse !== undefined);
      } catch (err) {
        throw new DnsListenError(`udp ${host}:${port}`, namedErrno(err));
      }
      const b = new BatchedUdp({
        addon: batch.addon, fd: own,
        answer: (m) => { if (m.length > this.maxQuery) { this.metrics.drop('oversize'); return undefined; } return this.handle(m, false); },
        oversize: () => this.metrics.drop('oversize'),
        sendFailed: (count) => this.metrics.drop('udp_send', count),
        onLateError: (err) => this.log.debug({ err: String(err) }, 'late udp answer not sent'),
      });
      this.udp.push(b);
      return b;
    }
    return new Promise((resolve, reject) => {
      // Larger socket buffers absorb bursts (many pods resolving at once); the
      // kernel caps them at net.core.{r,w}mem_max without an error. `reusePort` is
      // dgram's own option from Node 22.12 on (older versions ignore it; they get `fd`).
      const sock = createSocket({ type: isIP(host) === 6 ? 'udp6' : 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20, lookup: literalLookup, ...(reuse && fd === undefined ? { reusePort: true } : {}) });
      sock.once('error', (err) => reject(new DnsListenError(`udp ${host}:${port}`, err)));
      sock.bind(fd !== undefined ? { fd } : { address: host, port, exclusive: true }, () => {
        sock.removeAllListeners('error');
        sock.on('error', (err) => this.log.warn({ err: String(err) }, 'udp socket error'));
        sock.on('message', (msg, rinfo) => this.onUdp(sock, msg, rinfo.address, rinfo.port));
        this.udp.push(sock);
        resolve(sock);
      });
    });
  }

  private bindTcp(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const srv = createServer({ allowHalfOpen: false, noDelay: true }, (s) => this.onTcp(s));
      srv.once('error', (err) => reject(new DnsListenError(`tcp ${host}:${port}`, err)));
      srv.listen({ host, port, exclusive: true, backlog: 511 }, () => {
        srv.removeAllListeners('error');
        srv.on('error', (err) => this.log.warn({ err: String(err) }, 'tcp server error'));
        this.tcp.push(srv);
        resolve();
      });
    });
  }

  private onUdp(sock: UdpSocket, msg: Buffer, address: string, port: number): void {
    if (msg.length > this.maxQuery) { this.metrics.drop('oversize'); return; }
    const r = this.handle(msg, false);
    if (r === undefined) return;
    if (!(r instanceof Promise)) {
      sock.send(r, port, address);
      // Prebuilt answers are reused: if the kernel did not take this one at once (the
      // send was queued), it must not be patched for the next query.
      if (sock.getSendQueueCount() > 0) this.wires = new WeakMap();
      return;
    }
    // A forwarded answer may arrive after stop() closed the socket: send() would throw.
    r.then((out) => { if (out && this.udp.includes(sock)) sock.send(out, port, address); }).catch((err: unknown) => {
      this.log.debug({ err: String(err) }, 'late udp answer not sent');
    });
  }

  private onTcp(s: Socket): void {
    if (this.conns.size >= this.maxConns) {
      this.metrics.drop('tcp_limit');
      s.destroy();
      return;
    }
    this.conns.add(s);
    s.setTimeout(this.idleMs, () => s.destroy());
    let buf: Buffer = Buffer.alloc(0);
    let inflight = 0;
    let paused = false;
    const write = (out: Buffer): void => {
      if (s.destroyed) return;
      const len = Buffer.allocUnsafe(2);
      len.writeUInt16BE(out.length);
      // A client that does not read its answers stops being read (backpressure).
      if (!s.write(Buffer.concat([len, out])) && !paused) {
        s.pause();
        s.once('drain', () => { if (!paused) s.resume(); });
      }
    };
    const pump = (): void => {
      while (buf.length >= 2 && inflight < this.maxPipelined) {
        const n = buf.readUInt16BE(0);
        if (n > this.maxQuery || n < 12) {
          // A length we never accept: the framing cannot be trusted any more.
          this.metrics.drop(n < 12 ? 'short' : 'oversize');
          s.destroy();
          return;
        }
        if (buf.length < 2 + n) break;
        const msg = buf.subarray(2, 2 + n);
        buf = buf.subarray(2 + n);
        const r = this.handle(msg, true);
        if (r === undefined) continue;
        if (!(r instanceof Promise)) { write(r); continue; }
        inflight++;
        r.then((out) => { if (out) write(out); }, () => undefined).finally(() => {
          inflight--;
          if (paused && inflight < this.maxPipelined) { paused = false; s.resume(); pump(); }
        });
      }
      if (inflight >= this.maxPipelined && !paused) { paused = true; s.pause(); }
    };
    s.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      if (buf.length > 2 + this.maxQuery + this.maxPipelined * (2 + this.maxQuery)) { this.metrics.drop('tcp_frame'); s.destroy(); return; }
      pump();
    });
    s.on('error', () => undefined);
    s.on('close', () => { this.conns.delete(s); });
  }

  /**
   * Answer one message: a buffer now, a promise (forwarded), or undefined (dropped).
   * Never throws.
   */
  handle(msg: Buffer, tcp: boolean): Buffer | Promise<Buffer | undefined> | undefined {
    try {
      const parsed = parseQuery(msg);
      if (!parsed.ok) {
        if (parsed.drop !== undefined) { this.metrics.drop(parsed.drop); return undefined; }
        this.metrics.query(0, parsed.rcode, 'error');
        return errorResponse(msg, parsed.rcode, parsed.questionEnd, parsed.edns);
      }
      const q = parsed.query;
      const limit = tcp ? TCP_LIMIT : udpLimit(q.edns);
      if (q.qclass !== CLASS_IN && q.qclass !== CLASS_ANY) {
        this.metrics.query(q.qtype, RCODE.REFUSED, 'error');
        return respond(msg, q.questionEnd, RCODE.REFUSED, false, EMPTY, q.edns, limit);
      }
      const z = this.zone.lookup(q.key, q.qtype);
      if (z.kind === 'answer') {
        if (z.chase && this.opts.forwarder) return this.chase(msg, q, limit, z.chase.records, z.chase.target);
        this.metrics.query(q.qtype, z.rcode, 'zone');
        return this.prebuilt(msg, q, z.rcode, true, z.body, limit);
      }
      const fwd = this.opts.forwarder;
      if (!fwd || fwd.upstreams.length === 0) {
        this.metrics.query(q.qtype, RCODE.SERVFAIL, 'error');
        return respond(msg, q.questionEnd, RCODE.SERVFAIL, false, EMPTY, q.edns, limit);
      }
      const ck = Forwarder.key(q.key, q.qtype, q.qclass);
      const hit = fwd.cached(ck);
      if (hit) {
        this.metrics.cacheHits++;
        this.metrics.query(q.qtype, hit.rcode, 'cache');
        return this.prebuilt(msg, q, hit.rcode, false, hit.servedBody, limit);
      }
      this.metrics.cacheMisses++;
      // The query buffer may be reused by the caller (TCP framing): keep a copy.
      const copy = Buffer.from(msg.subarray(0, q.questionEnd));
      return fwd.resolve(ck, q.key, q.qtype, q.qclass).then(
        (r) => {
          const rcode = r ? r.rcode : RCODE.SERVFAIL;
          this.metrics.query(q.qtype, rcode, r ? (r.cached ? 'cache' : 'upstream') : 'error');
          return respond(copy, q.questionEnd, rcode, false, r ? r.body : EMPTY, q.edns, limit);
        },
        (err: unknown) => this.internal(copy, q, limit, err),
      );
    } catch (err) {
      this.metrics.drop('internal');
      this.log.error({ err: String(err) }, 'dns handler failed');
      return undefined;
    }
  }

  /**
   * The hot path: a complete response per (body, with/without EDNS), built once and
   * then patched per query — ID, flags, the question bytes as asked (same length,
   * case may differ), the DO bit. The returned buffer is only valid until the next
   * query; UDP sends it at once (see onUdp), TCP copies it into its frame.
   */
  private prebuilt(msg: Buffer, q: Query, rcode: number, aa: boolean, body: Body, limit: number): Buffer {
    let w = this.wires.get(body);
    // Shared bodies (NXDOMAIN) serve names of different lengths: rebuild on a mismatch.
    if (!w || w.qEnd !== q.questionEnd || w.rcode !== rcode || w.aa !== aa) {
      w = { qEnd: q.questionEnd, rcode, aa, plain: undefined, edns: undefined };
      this.wires.set(body, w);
    }
    let out = q.edns ? w.edns : w.plain;
    if (!out) {
      const built = respond(msg, q.questionEnd, rcode, aa, body, q.edns, TCP_LIMIT);
      out = Buffer.allocUnsafeSlow(built.length); // own memory: no pool slice per send
      built.copy(out);
      if (q.edns) w.edns = out; else w.plain = out;
    }
    if (out.length > limit) return respond(msg, q.questionEnd, rcode, aa, body, q.edns, limit);
    const qflags = msg.readUInt16BE(2);
    out[0] = msg[0]!;
    out[1] = msg[1]!;
    out.writeUInt16BE(0x8000 | (aa ? 0x0400 : 0) | (qflags & 0x0100) | 0x0080 | (qflags & 0x0010) | (rcode & 0xf), 2);
    msg.copy(out, 12, 12, q.questionEnd);
    if (q.edns) out.writeUInt16BE(q.edns.dnssecOk ? 0x8000 : 0, out.length - 4);
    return out;
  }

  private internal(msg: Buffer, q: Query, limit: number, err: unknown): Buffer {
    this.metrics.query(q.qtype, RCODE.SERVFAIL, 'error');
    this.log.error({ err: String(err) }, 'dns resolution failed');
    return respond(msg, q.questionEnd, RCODE.SERVFAIL, false, EMPTY, q.edns, limit);
  }

  /** ExternalName: our CNAME, then the target's records as upstream gives them. */
  private async chase(msg: Buffer, q: Query, limit: number, cname: readonly ZoneRecord[], target: string): Promise<Buffer> {
    const copy = Buffer.from(msg.subarray(0, q.questionEnd));
    const fwd = this.opts.forwarder!;
    const tkey = nameKey(target);
    try {
      const r = await fwd.resolve(Forwarder.key(tkey, q.qtype, q.qclass), tkey, q.qtype, q.qclass);
      let body: Body;
      let rcode: number = RCODE.NOERROR;
      if (!r) {
        body = encodeBody(cname, [], []);
        rcode = RCODE.SERVFAIL;
      } else {
        // Decode upstream's records in the frame they were compressed against (its question = target).
        const frame = Buffer.alloc(12 + tkey.length + 4);
        frame.writeUInt16BE(0x8000, 2);
        frame.writeUInt16BE(1, 4);
        frame.writeUInt16BE(r.body.an, 6);
        frame.write(tkey, 12, 'latin1');
        frame.writeUInt16BE(q.qtype, 12 + tkey.length);
        frame.writeUInt16BE(q.qclass, 14 + tkey.length);
        const p = dnsPacket.decode(Buffer.concat([frame, r.body.bytes]));
        const answers = (p.answers ?? []).filter((a): a is ZoneRecord => a.type !== 'OPT');
        body = encodeBody([...cname, ...answers], [], []);
        rcode = r.rcode === RCODE.NXDOMAIN ? RCODE.NXDOMAIN : RCODE.NOERROR;
      }
      this.metrics.query(q.qtype, rcode, 'upstream');
      return respond(copy, q.questionEnd, rcode, false, body, q.edns, limit);
    } catch (err) {
      return this.internal(copy, q, limit, err);
    }
  }
}

const EMPTY: Body = { an: 0, ns: 0, ar: 0, bytes: Buffer.alloc(0) };
