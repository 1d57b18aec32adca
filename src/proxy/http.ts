/**
 * The HTTP/1.1-aware path, for service ports whose policy hashes on a header or a
 * cookie. Node's own parser (llhttp) reads requests off the accepted socket; each
 * request picks its endpoint from its own key, so one keep-alive client connection
 * may reach several endpoints, each over a pooled keep-alive upstream connection.
 * A missing hash cookie is generated and set on the response, as Istio's
 * `httpCookie` does. `Upgrade` requests (WebSocket) are forwarded as raw bytes
 * once the head is written. HTTPS is never parsed: such services are plain TCP.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../util/log.js';
import type { PlannedEndpoint, PlannedPolicy } from '../plan/types.js';
import { pump } from './pump.js';
import { endpointAgent } from './agent.js';
import { endpointKey, openStream, type ServiceRuntime } from './service.js';
import { admit, failureOf, onShutdown, type FlowGate, type TcpSettings } from './tcp.js';

/** Hop-by-hop headers (RFC 9110 §7.6.1) never forwarded. */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/**
 * Raw header list minus hop-by-hop ones and those the Connection header names;
 * `raw` itself when nothing is removed (read-only: copy before adding to it).
 */
export function forwardHeaders(raw: readonly string[]): string[] {
  return scanRequestHead(raw, undefined).headers;
}

/** What the proxy needs from a request head, read in one pass over the raw header list. */
export interface RequestHead {
  /** Headers to forward (hop-by-hop ones and those Connection names removed); may be the raw list itself. */
  readonly headers: string[];
  /** No body (no Transfer-Encoding, Content-Length absent or 0): safe to send again to another endpoint. */
  readonly replayable: boolean;
  /** Values of the header named by `hashHeader` (lower case), in order; undefined when absent. */
  readonly hashValues: string[] | undefined;
}

/**
 * One pass over `raw` (name, value, name, value…): the forwarded headers, whether
 * the request can be replayed, and the values of `hashHeader`. Node builds
 * `req.headers` lazily; reading the raw list instead spares that object per request.
 */
export function scanRequestHead(raw: readonly string[], hashHeader: string | undefined): RequestHead {
  let named: Set<string> | undefined;
  let replayable = true;
  let hashValues: string[] | undefined;
  let hop = false;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    if (k === 'connection') {
      named ??= new Set();
      for (const t of raw[i + 1]!.split(',')) named.add(t.trim().toLowerCase());
    } else if (k === 'transfer-encoding') replayable = false;
    else if (k === 'content-length' && raw[i + 1]!.trim() !== '0') replayable = false;
    if (k === hashHeader) (hashValues ??= []).push(raw[i + 1]!);
    if (HOP.has(k)) hop = true;
  }
  // Common case: nothing to strip, the raw list goes out as is.
  if (!hop && !named) return { headers: raw as string[], replayable, hashValues };
  const headers: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    if (HOP.has(k) || named?.has(k)) continue;
    headers.push(raw[i]!, raw[i + 1]!);
  }
  return { headers, replayable, hashValues };
}

/** Value of cookie `name` in a Cookie header, or undefined. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Hash key of a request under an L7 consistent-hash policy, and the Set-Cookie to
 * add when the hash cookie had to be made (Istio's `httpCookie`). Shared with the
 * gateway, whose DestinationRule policies apply the same way.
 */
export function requestHashKey(p: PlannedPolicy, headers: http.IncomingHttpHeaders): { hashKey?: string; setCookie?: string } {
  if (p.kind !== 'consistentHash') return {};
  const k = p.key;
  if (k.type === 'header') {
    const v = headers[k.name.toLowerCase()];
    return v === undefined ? {} : { hashKey: Array.isArray(v) ? v.join(',') : v };
  }
  if (k.type === 'cookie') {
    const v = readCookie(headers.cookie, k.name);
    if (v !== undefined) return { hashKey: v };
    const made = randomBytes(8).toString('hex');
    const attrs = [`${k.name}=${made}`, `Path=${k.path ?? '/'}`, ...(k.ttlSeconds ? [`Max-Age=${k.ttlSeconds}`] : []), 'HttpOnly'];
    return { hashKey: made, setCookie: attrs.join('; ') };
  }
  return {};
}

export class HttpPath {
  private readonly server: http.Server;
  /** Keep-alive pools per endpoint key; endpoints that leave the plan are dropped by `prune`. */
  private readonly agents = new Map<string, http.Agent>();

  constructor(private readonly rt: () => ServiceRuntime, private readonly settings: TcpSettings, private readonly log: Logger) {
    this.server = http.createServer({ noDelay: true });
    // Requests may stream for long; the flow idle timeout is what bounds a silent client.
    this.server.requestTimeout = 0;
    this.server.keepAliveTimeout = Math.max(5_000, settings.idleTimeoutMs > 0 ? Math.min(settings.idleTimeoutMs, 120_000) : 120_000);
    this.server.on('request', (req, res) => this.onRequest(req, res));
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket as Socket, head));
    this.server.on('clientError', (_err, socket: Duplex) => {
      this.rt().metrics.drop('http_parse');
      if (!socket.destroyed) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    });
  }

  /** Serve one accepted (paused) client connection. */
  accept(client: Socket, gate: FlowGate): void {
    const m = this.rt().metrics;
    if (!admit(gate, m, client)) return;
    if (this.settings.idleTimeoutMs > 0) client.setTimeout(this.settings.idleTimeoutMs, () => { m.drop('idle_timeout'); client.destroy(); });
    const untrack = onShutdown(this.settings, () => client.destroy());
    client.once('close', () => {
      untrack();
      gate.close();
      m.activeFlows.dec();
      m.toEndpoint += client.bytesRead;
      m.toClient += client.bytesWritten;
    });
    this.server.emit('connection', client);
    client.resume();
  }

  /** Drop pools of endpoints no longer planned. */
  prune(keys: ReadonlySet<string>): void {
    for (const [k, a] of this.agents) if (!keys.has(k)) { a.destroy(); this.agents.delete(k); }
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
    this.server.close();
  }

  private agentFor(rt: ServiceRuntime, ep: PlannedEndpoint, key: string): http.Agent {
    let a = this.agents.get(key);
    if (!a) {
      a = endpointAgent(ep, rt.sp, () => this.settings.remoteDialer, this.settings.connectTimeoutMs, 64);
      this.agents.set(key, a);
    }
    return a;
  }

  private keyOf(rt: ServiceRuntime, req: http.IncomingMessage): { hashKey?: string; setCookie?: string } {
    return requestHashKey(rt.sp.policy, req.headers);
  }

  /**
   * The hash key from the scanned head; a header seen more than once goes through
   * `req.headers` so that duplicates combine exactly as in the gateway.
   */
  private keyOfHead(rt: ServiceRuntime, req: http.IncomingMessage, head: RequestHead): { hashKey?: string; setCookie?: string } {
    const p = rt.sp.policy;
    if (p.kind !== 'consistentHash' || p.key.type === 'sourceIp') return {};
    const v = head.hashValues;
    if (v === undefined) return p.key.type === 'header' ? {} : requestHashKey(p, {});
    if (v.length > 1) return this.keyOf(rt, req);
    return p.key.type === 'header' ? { hashKey: v[0]! } : requestHashKey(p, { cookie: v[0]! });
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const rt = this.rt();
    const m = rt.metrics;
    const bal = rt.balancer;
    const p = rt.sp.policy;
    const hashHeader = p.kind === 'consistentHash' ? (p.key.type === 'header' ? p.key.name.toLowerCase() : p.key.type === 'cookie' ? 'cookie' : undefined) : undefined;
    const head = scanRequestHead(req.rawHeaders, hashHeader);
    const { hashKey, setCookie } = this.keyOfHead(rt, req, head);
    const input = rt.inputFor(req.socket, hashKey);
    // Without a body the request can be sent again to another endpoint when a connect fails.
    const { replayable, headers } = head;
    // Endpoints tried by this request; made on the first retry only.
    let tried: Set<string> | undefined;
    const attempt = (): void => {
      const idx = bal.pick(tried ? { ...input, exclude: tried } : input);
      const ep = idx === undefined ? undefined : rt.sp.endpoints[idx];
      if (!ep) {
        m.result(tried ? 'connect_failed' : 'no_endpoints');
        m.drop(tried ? 'connect_failed' : 'no_endpoints');
        if (!res.headersSent) { res.writeHead(503, { 'content-length': '0' }); res.end(); }
        return;
      }
      const key = endpointKey(ep);
      if (tried) m.retry();
      (tried ??= new Set()).add(key);
      bal.acquire(key);
      let released = false;
      const release = (): void => { if (!released) { released = true; bal.release(key); } };
      const up = http.request({
        host: ep.ip, port: ep.port, method: req.method, path: req.url, headers, agent: this.agentFor(rt, ep, key), setHost: false,
      });
      let connectTimer: NodeJS.Timeout | undefined;
      // Only a new upstream connection is timed and observed: a pooled one has no connect.
      up.once('socket', (s: Socket) => {
        if (!(s as { connecting?: boolean }).connecting) return;
        const t0 = performance.now();
        connectTimer = setTimeout(() => up.destroy(new Error('connect timeout')), this.settings.connectTimeoutMs);
        s.once('connect', () => { clearTimeout(connectTimer); m.connected((performance.now() - t0) / 1000); });
      });
      up.on('response', (ur) => {
        // forwardHeaders may hand back rawHeaders itself: never push into it.
        const kept = forwardHeaders(ur.rawHeaders);
        const out = setCookie ? [...kept, 'Set-Cookie', setCookie] : kept;
        res.writeHead(ur.statusCode ?? 502, ur.statusMessage, out);
        ur.pipe(res);
        ur.once('end', () => { release(); m.result('ok'); });
        ur.once('error', () => { release(); res.destroy(); });
      });
      up.on('error', (err) => {
        if (connectTimer) clearTimeout(connectTimer);
        release();
        // A failed connect, or a pooled connection the endpoint had closed: safe to resend without a body.
        if (!res.headersSent && replayable && tried!.size < this.settings.maxConnectAttempts) return attempt();
        const f = failureOf(err);
        m.result('http_error');
        m.drop(f.drop);
        if (this.log.isLevelEnabled('debug')) this.log.debug({ service: rt.sp.id, endpoint: key, err: err.message }, 'http upstream failed');
        if (!res.headersSent) { res.writeHead(502, { 'content-length': '0' }); res.end(); } else res.destroy();
      });
      res.once('close', () => { if (!res.writableFinished) { up.destroy(); release(); } });
      if (replayable) up.end();
      else req.pipe(up);
    };
    attempt();
  }

  /** WebSocket (or any Upgrade): pick by the request's key, write the head through, then raw bytes. */
  private onUpgrade(req: http.IncomingMessage, client: Socket, head: Buffer): void {
    const rt = this.rt();
    const m = rt.metrics;
    const { hashKey } = this.keyOf(rt, req);
    rt.dial(rt.inputFor(client, hashKey), this.settings, (ep, signal) => openStream(ep, rt.sp, this.settings.remoteDialer, signal)).then(
      (d) => {
        m.result('ok');
        let text = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
        for (let i = 0; i < req.rawHeaders.length; i += 2) text += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
        d.conn.write(text + '\r\n');
        if (head.length) d.conn.write(head);
        pump(client, d.conn, {
          toEndpoint: () => undefined, // counted from the socket totals at close
          toClient: () => undefined,
          done: () => d.release(),
        }, 0);
      },
      (err: unknown) => {
        const f = failureOf(err);
        m.result(f.result);
        m.drop(f.drop);
        client.end('HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      },
    );
  }
}
