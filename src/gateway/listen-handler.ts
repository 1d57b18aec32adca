/**
 * What happens to one accepted client connection on one gateway port, by the
 * port's kind:
 * - `http`: HTTP/1.1 to Node's parser, or h2c (prior knowledge, told by the
 *   connection preface) to an HTTP/2 server; both end in the per-request proxy.
 * - `tls`: the ClientHello is read (not consumed) for SNI and ALPN; a PASSTHROUGH
 *   server forwards the untouched bytes to the SNI route's destination; SIMPLE and
 *   MUTUAL terminate with the cached context of the server the SNI picks, then HTTP
 *   (ALPN h2 or HTTP/1.1) or the port's TCP route.
 * - `tcp`: the port's TCP route, bytes as they are.
 * Never throws; every refusal is counted.
 */
import http from 'node:http';
import http2 from 'node:http2';
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import type { Logger } from '../util/log.js';
import { clientIpOf, openStream } from '../proxy/service.js';
import { pump } from '../proxy/pump.js';
import type { GatewayMetrics, TlsFailure } from './metrics.js';
import { MAX_HELLO_BYTES, peekClientHello } from './client-hello.js';
import { HostTable } from './hosts.js';
import { HttpRouter } from './router.js';
import type { GatewayHttpProxy, HttpListenerContext } from './http-proxy.js';
import type { ListenerModel, ResolvedDestination, SniRouteModel, TcpRouteModel, TlsServerModel } from './types.js';
import { SniTable, type TlsContexts } from './tls.js';
import type { Upstreams } from './upstream.js';

export interface HandlerDeps {
  readonly proxy: GatewayHttpProxy;
  readonly upstreams: Upstreams;
  readonly contexts: TlsContexts;
  readonly metrics: GatewayMetrics;
  readonly log: Logger;
  readonly idleTimeoutMs: number;
  readonly random?: () => number;
}

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n');
/** A client that has not sent its first bytes (ClientHello, h2 preface) by then is dropped. */
const FIRST_BYTES_TIMEOUT_MS = 10_000;

/** A socket with bytes already read from it put back in front, for consumers that read the handle directly (HTTP/2). */
function prepended(socket: Socket | tls.TLSSocket, head: Buffer): Duplex {
  const d = new Duplex({
    allowHalfOpen: true,
    read: () => { socket.resume(); },
    write: (c: Buffer, _e, cb) => { socket.write(c, cb); },
    final: (cb) => { socket.end(); cb(); },
    destroy: (err, cb) => { socket.destroy(); cb(err); },
  });
  Object.defineProperty(d, 'remoteAddress', { value: socket.remoteAddress });
  if (head.length) d.push(head);
  socket.on('data', (c: Buffer) => { if (!d.push(c)) socket.pause(); });
  socket.on('end', () => d.push(null));
  socket.on('error', (e) => d.destroy(e));
  socket.on('close', () => d.destroy());
  return d;
}

/** Read until `enough(buf)` says the head is complete (or give up); bytes are returned to the caller, nothing is lost. */
function readHead(socket: Socket, enough: (b: Buffer) => boolean, max: number, cb: (buf: Buffer | undefined) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  const t = setTimeout(() => finish(undefined), FIRST_BYTES_TIMEOUT_MS);
  const onData = (c: Buffer): void => {
    buf = buf.length ? Buffer.concat([buf, c]) : c;
    if (enough(buf) || buf.length >= max) finish(buf);
  };
  const onEnd = (): void => finish(undefined);
  function finish(b: Buffer | undefined): void {
    clearTimeout(t);
    socket.off('data', onData);
    socket.off('end', onEnd);
    socket.off('close', onEnd);
    if (b) socket.pause();
    cb(b);
  }
  socket.on('data', onData);
  socket.once('end', onEnd);
  socket.once('close', onEnd);
  socket.resume();
}

function weighted(dests: readonly ResolvedDestination[], random: () => number): ResolvedDestination {
  const total = dests.reduce((n, d) => n + d.weight, 0);
  let x = random() * total;
  for (const d of dests) { x -= d.weight; if (x < 0) return d; }
  return dests[dests.length - 1]!;
}

export class PortHandler {
  private readonly h1: http.Server;
  /** h2c and h2 over TLS: separate servers so each knows its scheme (HTTP/2 hides the socket behind a wrapper). */
  private readonly h2: http2.Http2Server;
  private readonly h2s: http2.Http2Server;
  private model!: ListenerModel;
  private router = new HttpRouter([]);
  private sni = new SniTable([]);
  private sniRoutes = new HostTable<SniRouteModel>();
  private ctxHttp!: HttpListenerContext;
  private ctxHttps!: HttpListenerContext;

  constructor(model: ListenerModel, private readonly deps: HandlerDeps) {
    this.update(model);
    this.h1 = http.createServer({ noDelay: true });
    this.h1.requestTimeout = 0;
    this.h1.keepAliveTimeout = deps.idleTimeoutMs > 0 ? Math.min(deps.idleTimeoutMs, 120_000) : 120_000;
    this.h1.on('request', (req, res) => deps.proxy.handle(req, res, (req.socket as { encrypted?: boolean }).encrypted ? this.ctxHttps : this.ctxHttp));
    this.h1.on('upgrade', (req: http.IncomingMessage, s: Duplex, head: Buffer) => deps.proxy.upgrade(req, s as Socket, head, (s as { encrypted?: boolean }).encrypted ? this.ctxHttps : this.ctxHttp));
    this.h1.on('clientError', (_e, s: Duplex) => { if (!s.destroyed) s.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n'); });
    this.h2 = http2.createServer();
    this.h2.on('request', (req, res) => deps.proxy.handle(req, res, this.ctxHttp));
    this.h2.on('sessionError', () => undefined);
    this.h2s = http2.createServer();
    this.h2s.on('request', (req, res) => deps.proxy.handle(req, res, this.ctxHttps));
    this.h2s.on('sessionError', () => undefined);
  }

  get kind(): ListenerModel['kind'] {
    return this.model.kind;
  }

  /** A new model for the same port (same kind): routes and TLS servers change for the next request/connection. */
  update(model: ListenerModel): void {
    this.model = model;
    const router = new HttpRouter(model.httpRoutes);
    this.router = router;
    this.ctxHttp = { proto: 'http', router: () => this.router };
    this.ctxHttps = { proto: 'https', router: () => this.router };
    this.sni = new SniTable(model.tlsServers);
    const t = new HostTable<SniRouteModel>();
    for (const r of model.sniRoutes) for (const h of r.sniHosts) t.add(h, r);
    this.sniRoutes = t;
  }

  accept(socket: Socket): void {
    const m = this.deps.metrics;
    const kind = this.model.kind;
    m.active.inc({ kind });
    socket.once('close', () => m.active.dec({ kind }));
    socket.on('error', () => undefined);
    if (this.deps.idleTimeoutMs > 0) socket.setTimeout(this.deps.idleTimeoutMs, () => socket.destroy());
    if (kind === 'tcp') return this.tcp(socket, this.model.tcpRoutes[0], Buffer.alloc(0));
    if (kind === 'http') {
      readHead(socket, (b) => b.length >= H2_PREFACE.length || !H2_PREFACE.subarray(0, b.length).equals(b), H2_PREFACE.length, (buf) => {
        if (!buf) return void socket.destroy();
        if (buf.length >= H2_PREFACE.length && buf.subarray(0, H2_PREFACE.length).equals(H2_PREFACE)) {
          this.h2.emit('connection', prepended(socket, buf));
        } else {
          socket.unshift(buf);
          this.h1.emit('connection', socket);
          socket.resume();
        }
      });
      return;
    }
    readHead(socket, (b) => peekClientHello(b).status !== 'more', MAX_HELLO_BYTES, (buf) => {
      if (!buf) return void socket.destroy();
      const hello = peekClientHello(buf);
      if (hello.status !== 'ok') return this.tlsFail(socket, 'bad_client_hello');
      const server = this.sni.lookup(hello.sni);
      if (!server) return this.tlsFail(socket, 'no_route');
      if (server.mode === 'PASSTHROUGH') {
        const route = hello.sni ? this.sniRoutes.lookup(hello.sni)?.[0] : undefined;
        if (!route) return this.tlsFail(socket, 'no_route');
        return this.tcp(socket, route, buf);
      }
      socket.unshift(buf);
      this.terminate(socket, server);
    });
  }

  private tlsFail(socket: Socket, reason: TlsFailure): void {
    this.deps.metrics.tlsFailures.inc({ reason });
    socket.destroy();
  }

  private terminate(socket: Socket, server: TlsServerModel): void {
    const ctx = this.deps.contexts.context(server);
    if (!ctx) return this.tlsFail(socket, 'no_certificate');
    const mutual = server.mode === 'MUTUAL';
    const httpish = server.terminateAs === 'http';
    const t = new tls.TLSSocket(socket, {
      isServer: true, secureContext: ctx, requestCert: mutual, rejectUnauthorized: mutual,
      ...(httpish ? { ALPNProtocols: ['h2', 'http/1.1'] } : {}),
    });
    let secured = false;
    t.on('error', (e: NodeJS.ErrnoException) => {
      if (secured) return;
      const msg = `${e.code ?? ''} ${e.message}`;
      this.deps.metrics.tlsFailures.inc({ reason: /VERSION|PROTOCOL/i.test(msg) ? 'protocol_version' : /CERT|certificate|PEER_DID_NOT_RETURN/i.test(msg) ? 'client_certificate' : 'handshake' });
    });
    t.once('secure', () => {
      // A TLSSocket made outside a tls.Server does not enforce rejectUnauthorized
      // itself: the client certificate is checked here against the server's ca.crt.
      if (mutual && !this.deps.contexts.clientVerified(server, t.getPeerX509Certificate())) return this.tlsFail(t as unknown as Socket, 'client_certificate');
      secured = true;
      if (!httpish) return this.tcp(t as unknown as Socket, this.model.tcpRoutes[0], Buffer.alloc(0));
      // HTTP/2 reads its socket's handle directly and would miss bytes the TLS layer
      // already decrypted (the client's preface): it gets a stream view instead.
      if (t.alpnProtocol === 'h2') this.h2s.emit('connection', prepended(t, Buffer.alloc(0)));
      else this.h1.emit('connection', t);
    });
  }

  /** Forward raw bytes (after `head`) to a route's destination. */
  private tcp(client: Socket, route: TcpRouteModel | SniRouteModel | undefined, head: Buffer): void {
    const m = this.deps.metrics;
    if (!route || route.destinations.length === 0) { m.tcp.inc({ gateway: '', route: '', result: 'no_route' }); client.destroy(); return; }
    const backend = this.deps.upstreams.backend(weighted(route.destinations, this.deps.random ?? Math.random));
    if (!backend) { m.tcp.inc({ gateway: route.gateway, route: route.id, result: 'no_endpoints' }); client.destroy(); return; }
    client.pause();
    const settings = this.deps.upstreams.dial;
    backend.rt.dial(backend.rt.input(clientIpOf(client.remoteAddress)), settings, (ep, signal) => openStream(ep, backend.rt.sp, settings.remoteDialer, signal)).then(
      (d) => {
        m.tcp.inc({ gateway: route.gateway, route: route.id, result: 'ok' });
        if (head.length) d.conn.write(head);
        pump(client, d.conn, { toEndpoint: () => undefined, toClient: () => undefined, done: () => d.release() }, 0);
      },
      (err: Error) => {
        m.tcp.inc({ gateway: route.gateway, route: route.id, result: 'connect_failed' });
        if (this.deps.log.isLevelEnabled('debug')) this.deps.log.debug({ route: route.id, err: err.message }, 'tcp route: connect failed');
        client.destroy();
      },
    );
  }

  /** Stop taking requests: idle keep-alive connections close now, busy ones after their response. */
  close(): void {
    this.h1.close();
    this.h1.closeIdleConnections();
    this.h2.close();
    this.h2s.close();
  }
}
