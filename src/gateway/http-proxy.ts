/**
 * The per-request HTTP proxy of the gateway. Every request (HTTP/1.1 or HTTP/2,
 * plain or terminated TLS) is routed on its own: host, path, method and headers
 * pick a route, the route's weights pick a destination, the destination's balancer
 * (DestinationRule policy) picks an endpoint. So a keep-alive or multiplexed client
 * connection reaches whatever each request asks for.
 *
 * - Backends: HTTP/1.1 over pooled keep-alive connections, or HTTP/2 (gRPC, h2c)
 *   over one session per endpoint, trailers passed through.
 * - Retries: a failed connect or a reset before the response head is retried on
 *   another endpoint (up to `maxConnectAttempts`); a 503 is retried when the route
 *   has `retries.attempts`; only requests without a body are sent twice.
 * - Timeouts: the route's `timeout` gives 504; `perTryTimeout` bounds each attempt.
 * - `X-Forwarded-For` is appended to, `X-Forwarded-Proto` set; WebSocket upgrades
 *   are routed like requests and then carried as raw bytes.
 */
import http from 'node:http';
import type http2 from 'node:http2';
import type { Socket } from 'node:net';
import type { Logger } from '../util/log.js';
import { clientIpOf, openStream } from '../proxy/service.js';
import { pump } from '../proxy/pump.js';
import { requestHashKey } from '../proxy/http.js';
import type { GatewayMetrics } from './metrics.js';
import type { HttpRouter, Routed } from './router.js';
import { pickDestination, rewritePath } from './router.js';
import { normalizeHost } from './hosts.js';
import type { Backend, Upstreams } from './upstream.js';
import type { ResolvedDestination } from './types.js';

export type Req = http.IncomingMessage | http2.Http2ServerRequest;
export type Res = http.ServerResponse | http2.Http2ServerResponse;

export interface HttpListenerContext {
  readonly proto: 'http' | 'https';
  readonly router: () => HttpRouter;
}

/** Hop-by-hop (RFC 9110 §7.6.1) and HTTP/2-forbidden connection headers. */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'http2-settings']);

/** Request headers to send upstream (no hop-by-hop, no pseudo headers), plus forwarding headers. */
function upstreamHeaders(req: Req, proto: string, clientIp: string, authority: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const conn = req.headers.connection;
  const named = typeof conn === 'string' ? conn.toLowerCase().split(',').map((s) => s.trim()) : [];
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined || k.startsWith(':') || HOP.has(k) || named.includes(k)) continue;
    out[k] = v;
  }
  const xff = req.headers['x-forwarded-for'];
  out['x-forwarded-for'] = xff ? `${Array.isArray(xff) ? xff.join(', ') : xff}, ${clientIp}` : clientIp;
  out['x-forwarded-proto'] = proto;
  out.host = authority;
  return out;
}

function responseHeaders(h: http.IncomingHttpHeaders | http2.IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const conn = h.connection;
  const named = typeof conn === 'string' ? conn.toLowerCase().split(',').map((s) => s.trim()) : [];
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || k.startsWith(':') || HOP.has(k) || named.includes(k)) continue;
    out[k] = v as string | string[];
  }
  return out;
}

function authorityOf(req: Req): string {
  const a = req.headers[':authority'] ?? req.headers.host;
  return typeof a === 'string' ? a : '';
}

class AttemptError extends Error {
  constructor(message: string, readonly retriable: boolean, readonly status = 502) { super(message); }
}

export class GatewayHttpProxy {
  constructor(
    private readonly upstreams: Upstreams,
    private readonly metrics: GatewayMetrics,
    private readonly log: Logger,
    private readonly random: () => number = Math.random,
  ) {}

  handle(req: Req, res: Res, ctx: HttpListenerContext): void {
    const t0 = performance.now();
    const authority = authorityOf(req);
    const routed = ctx.router().route({ host: normalizeHost(authority), url: req.url ?? '/', method: req.method ?? 'GET', headers: req.headers });
    if (!routed) return this.reply(res, 404, '', '', t0);
    const route = routed.route.model;
    const clientIp = clientIpOf(req.socket?.remoteAddress);
    const path = rewritePath(req.url ?? '/', route.rewrite, routed.match);
    const headers = upstreamHeaders(req, ctx.proto, clientIp, route.rewrite?.authority ?? authority);
    if (req.headers.te === 'trailers') headers.te = 'trailers';
    const replayable = req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined && (req.httpVersionMajor < 2 || (req as http2.Http2ServerRequest).stream?.readableEnded !== false);
    let done = false;
    let cancel: (() => void) | undefined;
    const finish = (code: number): void => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      this.metrics.requests.inc({ gateway: route.gateway, route: route.id, code: String(code) });
      this.metrics.duration.observe({ gateway: route.gateway, route: route.id }, (performance.now() - t0) / 1000);
    };
    const timer = route.timeoutMs ? setTimeout(() => {
      cancel?.();
      if (!res.headersSent) { finish(504); this.send(res, 504); } else { finish(504); res.destroy(); }
    }, route.timeoutMs) : undefined;
    res.once('close', () => { if (!done) { cancel?.(); finish(499); } });

    const maxConnect = this.upstreams.dial.maxConnectAttempts;
    let status503Left = route.retries?.attempts ?? 0;
    const tried = new Set<string>();
    const failedDests = new Set<ResolvedDestination>();
    const attempt = (n: number): void => {
      if (done) return;
      const dest = pickDestination(routed.route, this.random, failedDests);
      const backend = this.upstreams.backend(dest);
      const picked = backend && this.pickEndpoint(backend, req, clientIp, tried);
      if (!backend || !picked) { failedDests.add(dest); finish(503); this.send(res, 503); return; }
      const { idx, key, hashCookie } = picked;
      const ep = backend.rt.sp.endpoints[idx]!;
      tried.add(key);
      backend.rt.balancer.acquire(key);
      let released = false;
      const release = (): void => { if (!released) { released = true; backend.rt.balancer.release(key); } };
      const perTry = route.retries?.perTryTimeoutMs;
      const onFail = (e: AttemptError): void => {
        release();
        if (done) return;
        const again = replayable && !res.headersSent && (e.retriable ? n + 1 < Math.max(maxConnect, 1 + (route.retries?.attempts ?? 0)) : e.status === 503 && status503Left-- > 0);
        if (again) { this.metrics.retries.inc({ route: route.id }); return attempt(n + 1); }
        if (this.log.isLevelEnabled('debug')) this.log.debug({ route: route.id, endpoint: key, err: e.message }, 'upstream failed');
        finish(e.status);
        if (!res.headersSent) this.send(res, e.status); else res.destroy();
      };
      const onResponse = (status: number, h: Record<string, string | string[]>, body: import('node:stream').Readable, trailers?: (cb: (t: http2.IncomingHttpHeaders) => void) => void): boolean => {
        if (status === 503 && replayable && status503Left > 0 && !done) return false;
        if (hashCookie) h['set-cookie'] = hashCookie;
        // A gRPC "trailers-only" response carries grpc-status in its headers; the
        // client reads it from trailers once a header block has been sent.
        if (h['grpc-status'] !== undefined) {
          const t: Record<string, string | string[]> = {};
          for (const k of ['grpc-status', 'grpc-message', 'grpc-status-details-bin']) if (h[k] !== undefined) { t[k] = h[k]!; delete h[k]; }
          (res as http.ServerResponse).addTrailers(t as http.OutgoingHttpHeaders);
        }
        res.writeHead(status, h as http.OutgoingHttpHeaders);
        trailers?.((t) => { (res as http.ServerResponse).addTrailers(responseHeaders(t) as http.OutgoingHttpHeaders); });
        body.pipe(res as unknown as NodeJS.WritableStream);
        body.on('end', () => { release(); finish(status); });
        body.on('error', () => { release(); finish(502); res.destroy(); });
        return true;
      };
      const opts = { path, method: req.method ?? 'GET', headers, perTry, replayable };
      cancel = backend.h2
        ? this.viaH2(backend, ep, opts, req, onResponse, onFail)
        : this.viaH1(backend, ep, opts, req, onResponse, onFail);
    };
    attempt(0);
  }

  private pickEndpoint(b: Backend, req: Req, clientIp: string, tried: ReadonlySet<string>): { idx: number; key: string; hashCookie?: string } | undefined {
    const { hashKey, setCookie } = requestHashKey(b.rt.sp.policy, req.headers as http.IncomingHttpHeaders);
    const input = b.rt.input(clientIp, hashKey);
    const idx = b.rt.balancer.pick(tried.size ? { ...input, exclude: tried } : input);
    if (idx === undefined) return undefined;
    const ep = b.rt.sp.endpoints[idx]!;
    const key = ep.family === 6 ? `[${ep.ip}]:${ep.port}` : `${ep.ip}:${ep.port}`;
    return setCookie ? { idx, key, hashCookie: setCookie } : { idx, key };
  }

  private viaH1(
    b: Backend, ep: Backend['rt']['sp']['endpoints'][number], o: { path: string; method: string; headers: Record<string, string | string[]>; perTry?: number; replayable: boolean },
    req: Req, onResponse: (s: number, h: Record<string, string | string[]>, body: http.IncomingMessage) => boolean, onFail: (e: AttemptError) => void,
  ): () => void {
    const up = http.request({ host: ep.ip, port: ep.port, method: o.method, path: o.path, headers: o.headers, agent: this.upstreams.agent(b.rt.sp, ep), setHost: false });
    let gotHead = false;
    const t = o.perTry ? setTimeout(() => up.destroy(new AttemptError('per-try timeout', true, 504)), o.perTry) : undefined;
    up.once('response', (ur) => {
      gotHead = true;
      if (t) clearTimeout(t);
      if (!onResponse(ur.statusCode ?? 502, responseHeaders(ur.headers), ur)) { ur.resume(); onFail(new AttemptError('503 from endpoint', false, 503)); }
    });
    up.on('error', (err) => {
      if (t) clearTimeout(t);
      if (gotHead) return;
      onFail(err instanceof AttemptError ? err : new AttemptError(err.message, true, 502));
    });
    if (o.replayable) up.end();
    else (req as NodeJS.ReadableStream).pipe(up);
    return () => up.destroy();
  }

  private viaH2(
    b: Backend, ep: Backend['rt']['sp']['endpoints'][number], o: { path: string; method: string; headers: Record<string, string | string[]>; perTry?: number; replayable: boolean },
    req: Req, onResponse: (s: number, h: Record<string, string | string[]>, body: http2.ClientHttp2Stream, trailers: (cb: (t: http2.IncomingHttpHeaders) => void) => void) => boolean, onFail: (e: AttemptError) => void,
  ): () => void {
    let stream: http2.ClientHttp2Stream | undefined;
    let cancelled = false;
    const { host, ...rest } = o.headers;
    this.upstreams.session(b.rt.sp, ep).then((sess) => {
      if (cancelled) return;
      stream = sess.request({ ':method': o.method, ':path': o.path, ':authority': (host as string) ?? '', ':scheme': 'http', ...rest }, { endStream: o.replayable });
      let gotHead = false;
      const t = o.perTry ? setTimeout(() => stream?.close(), o.perTry) : undefined;
      stream.once('response', (h) => {
        gotHead = true;
        if (t) clearTimeout(t);
        const st = stream!;
        if (!onResponse(Number(h[':status'] ?? 502), responseHeaders(h), st, (cb) => st.once('trailers', cb))) { st.close(); onFail(new AttemptError('503 from endpoint', false, 503)); }
      });
      stream.on('error', (err) => { if (t) clearTimeout(t); if (!gotHead) onFail(new AttemptError(err.message, true, 502)); });
      stream.once('close', () => { if (t) clearTimeout(t); if (!gotHead) onFail(new AttemptError('stream closed before the response', true, 502)); });
      if (!o.replayable) (req as NodeJS.ReadableStream).pipe(stream);
    }, (err: Error) => onFail(new AttemptError(err.message, true, 502)));
    return () => { cancelled = true; stream?.close(); };
  }

  /** WebSocket (any Upgrade) on HTTP/1.1: route, dial, write the head through, then raw bytes. */
  upgrade(req: http.IncomingMessage, client: Socket, head: Buffer, ctx: HttpListenerContext): void {
    const t0 = performance.now();
    const authority = authorityOf(req);
    const routed: Routed | undefined = ctx.router().route({ host: normalizeHost(authority), url: req.url ?? '/', method: req.method ?? 'GET', headers: req.headers });
    const refuse = (code: number, route = '', gateway = ''): void => {
      this.metrics.requests.inc({ gateway, route, code: String(code) });
      client.end(`HTTP/1.1 ${code} ${http.STATUS_CODES[code]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    if (!routed) return refuse(404);
    const route = routed.route.model;
    const backend = this.upstreams.backend(pickDestination(routed.route, this.random));
    if (!backend) return refuse(503, route.id, route.gateway);
    const clientIp = clientIpOf(client.remoteAddress);
    const headers = upstreamHeaders(req, ctx.proto, clientIp, route.rewrite?.authority ?? authority);
    const { hashKey } = requestHashKey(backend.rt.sp.policy, req.headers);
    const settings = this.upstreams.dial;
    backend.rt.dial(backend.rt.input(clientIp, hashKey), settings, (ep, signal) => openStream(ep, backend.rt.sp, settings.remoteDialer, signal)).then(
      (d) => {
        this.metrics.requests.inc({ gateway: route.gateway, route: route.id, code: '101' });
        this.metrics.duration.observe({ gateway: route.gateway, route: route.id }, (performance.now() - t0) / 1000);
        let text = `${req.method} ${rewritePath(req.url ?? '/', route.rewrite, routed.match)} HTTP/1.1\r\n`;
        for (const [k, v] of Object.entries(headers)) for (const x of Array.isArray(v) ? v : [v]) text += `${k}: ${x}\r\n`;
        text += `connection: Upgrade\r\nupgrade: ${String(req.headers.upgrade)}\r\n\r\n`;
        d.conn.write(text);
        if (head.length) d.conn.write(head);
        pump(client, d.conn, { toEndpoint: () => undefined, toClient: () => undefined, done: () => d.release() }, 0);
      },
      () => refuse(502, route.id, route.gateway),
    );
  }

  private reply(res: Res, code: number, gateway: string, route: string, t0: number): void {
    this.metrics.requests.inc({ gateway, route, code: String(code) });
    this.metrics.duration.observe({ gateway, route }, (performance.now() - t0) / 1000);
    this.send(res, code);
  }

  private send(res: Res, code: number): void {
    if (res.headersSent) return;
    res.writeHead(code, { 'content-length': '0' });
    res.end();
  }
}
