/**
 * The gateway process over real loopback sockets: per-request HTTP/1.1 routing
 * (hosts, paths, methods, headers, order), keep-alive re-routing, weights, rewrites,
 * forwarding headers, retries to another endpoint, timeouts, WebSocket, bad
 * objects refused alone, exit 0 on SIGTERM.
 *
 * IP plan: everything on loopback. Gateway on 127.0.0.1:<free port>; backends on
 * 127.0.0.1-127.0.0.4 port 0 (distinct IPs so one service can have several endpoints).
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prng } from '../helpers/prng.js';
import { GatewayLab, NODE, freePort, get, httpBackend, listen, serviceObjects, type Backend } from './harness.js';

const lab = new GatewayLab();
let port = 0;
let apiPort = 0;
let backends: Record<string, Backend> = {};

/** Minimal RFC 6455 framing for the echo test (client frames masked, server frames not). */
function frame(payload: Buffer, mask: Buffer | undefined): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x82, (mask ? 0x80 : 0) | len]) : len < 65536 ? Buffer.from([0x82, (mask ? 0x80 : 0) | 126, len >> 8, len & 255]) : (() => { const b = Buffer.alloc(10); b[0] = 0x82; b[1] = (mask ? 0x80 : 0) | 127; b.writeBigUInt64BE(BigInt(len), 2); return b; })();
  if (!mask) return Buffer.concat([head, payload]);
  const body = Buffer.from(payload.map((x, i) => x ^ mask[i % 4]!));
  return Buffer.concat([head, mask, body]);
}

/** Parse whole frames from `buf`; returns payloads and the rest. */
function unframe(buf: Buffer): { payloads: Buffer[]; rest: Buffer } {
  const payloads: Buffer[] = [];
  let p = 0;
  for (;;) {
    if (buf.length - p < 2) break;
    const masked = (buf[p + 1]! & 0x80) !== 0;
    let len = buf[p + 1]! & 0x7f;
    let h = 2;
    if (len === 126) { if (buf.length - p < 4) break; len = buf.readUInt16BE(p + 2); h = 4; }
    else if (len === 127) { if (buf.length - p < 10) break; len = Number(buf.readBigUInt64BE(p + 2)); h = 10; }
    const m = masked ? buf.subarray(p + h, p + h + 4) : undefined;
    if (masked) h += 4;
    if (buf.length - p < h + len) break;
    const data = Buffer.from(buf.subarray(p + h, p + h + len));
    if (m) for (let i = 0; i < data.length; i++) data[i]! ^= m[i % 4]!;
    payloads.push(data);
    p += h + len;
  }
  return { payloads, rest: buf.subarray(p) };
}

async function wsEchoBackend(): Promise<Backend> {
  const server = http.createServer((_q, r) => r.end());
  const upgraded = new Set<net.Socket>();
  // Upgraded sockets are not the HTTP server's any more: closed with it explicitly.
  server.on('close', () => { for (const s of upgraded) s.destroy(); });
  server.on('upgrade', (req: http.IncomingMessage, sock: net.Socket, head: Buffer) => {
    upgraded.add(sock);
    sock.once('close', () => upgraded.delete(sock));
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nX-Seen-Path: ${req.url}\r\n\r\n`);
    let buf = head;
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const { payloads, rest } = unframe(buf);
      buf = rest;
      for (const pl of payloads) sock.write(frame(pl, undefined));
    });
  });
  return listen('ws', server);
}

const gw = (name: string, hosts: string[], p: number): object => ({
  apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name, namespace: 'default' },
  spec: { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: p, name: 'http', protocol: 'HTTP' }, hosts }] },
});

beforeAll(async () => {
  port = await freePort();
  apiPort = await freePort();
  backends = {
    a: await httpBackend('a'),
    b: await httpBackend('b'),
    c1: await httpBackend('c1', undefined, '127.0.0.2'),
    c2: await httpBackend('c2', undefined, '127.0.0.3'),
    slow: await httpBackend('slow', (req, res) => { req.resume(); setTimeout(() => res.end('late'), 3000).unref(); }),
    ws: await wsEchoBackend(),
  };
  for (const b of Object.values(backends)) {
    lab.closers.push(() => new Promise<void>((r) => { b.server.close(() => r()); (b.server as http.Server).closeAllConnections(); b.server.emit('close'); }));
  }
  // A dead endpoint next to a live one: requests must still succeed (retry on another endpoint).
  const dead = { name: 'dead', host: '127.0.0.4', port: await freePort(), server: net.createServer() };
  lab.closers.push(() => { lab.gateway?.kill(); });
  await lab.start([
    ...serviceObjects('svc-a', 'default', [backends.a!]),
    ...serviceObjects('svc-b', 'default', [backends.b!]),
    ...serviceObjects('svc-c', 'default', [backends.c1!, backends.c2!, dead]),
    ...serviceObjects('svc-slow', 'default', [backends.slow!]),
    ...serviceObjects('svc-ws', 'default', [backends.ws!]),
    gw('edge', ['*.example.com', 'shop.test'], port),
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'www', namespace: 'default' }, spec: {
      hosts: ['www.example.com'], gateways: ['edge'], http: [
        { name: 'post-only', match: [{ uri: { prefix: '/submit' }, method: { exact: 'POST' } }], route: [{ destination: { host: 'svc-b' } }] },
        { name: 'canary', match: [{ headers: { 'x-canary': { exact: 'yes' } } }], route: [{ destination: { host: 'svc-b' } }] },
        { name: 'api', match: [{ uri: { prefix: '/api/' } }], rewrite: { uri: '/v2/', authority: 'api.internal' }, route: [{ destination: { host: 'svc-b' } }] },
        { name: 'items', match: [{ uri: { regex: '/items/[0-9]+' } }], route: [{ destination: { host: 'svc-b' } }] },
        { name: 'split', match: [{ uri: { prefix: '/split' } }], route: [{ destination: { host: 'svc-a' }, weight: 80 }, { destination: { host: 'svc-b' }, weight: 20 }] },
        { name: 'lb', match: [{ uri: { prefix: '/lb' } }], route: [{ destination: { host: 'svc-c' } }] },
        { name: 'slow', match: [{ uri: { prefix: '/slow' } }], timeout: '300ms', route: [{ destination: { host: 'svc-slow' } }] },
        { name: 'ws', match: [{ uri: { prefix: '/ws' } }], rewrite: { uri: '/echo' }, route: [{ destination: { host: 'svc-ws' } }] },
        { name: 'default', route: [{ destination: { host: 'svc-a' } }] },
      ],
    } },
    { apiVersion: 'networking.istio.io/v1beta1', kind: 'VirtualService', metadata: { name: 'shop', namespace: 'default' }, spec: {
      hosts: ['shop.test'], gateways: ['default/edge'], http: [{ route: [{ destination: { host: 'svc-b.default.svc.cluster.local', port: { number: 80 } } }] }],
    } },
    { apiVersion: 'networking.istio.io/v1alpha3', kind: 'VirtualService', metadata: { name: 'wild', namespace: 'default' }, spec: {
      hosts: ['*.example.com'], gateways: ['edge'], http: [{ route: [{ destination: { host: 'svc-b' } }] }],
    } },
    // Gateway API on its own port: class selection, sectionName, matches, weights, URLRewrite.
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'gw', namespace: 'default' }, spec: {
      gatewayClassName: 'edgeway', listeners: [{ name: 'web', port: apiPort, protocol: 'HTTP', hostname: '*.api.test' }],
    } },
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'store', namespace: 'default' }, spec: {
      parentRefs: [{ name: 'gw', sectionName: 'web' }], hostnames: ['shop.api.test'], rules: [
        { matches: [{ path: { type: 'PathPrefix', value: '/v2' }, headers: [{ name: 'x-env', value: 'beta' }] }],
          filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'beta.internal', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v1' } } }],
          backendRefs: [{ name: 'svc-b', port: 80 }] },
        { backendRefs: [{ name: 'svc-a', port: 80 }] },
      ],
    } },
    // Bad objects, each refused alone (the gateway keeps serving the rest).
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'no-gateways', namespace: 'default' }, spec: { hosts: ['www.example.com'], http: [{ route: [{ destination: { host: 'svc-a' } }] }] } },
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'other-host', namespace: 'default' }, spec: { hosts: ['nowhere.test'], gateways: ['edge'], http: [{ route: [{ destination: { host: 'svc-a' } }] }] } },
  ]);
}, 60_000);

afterAll(async () => {
  const code = await lab.stop();
  // The process must exit 0 on SIGTERM.
  expect(code).toBe(0);
}, 30_000);

describe('gateway HTTP/1.1 routing', () => {
  it.each([
    { name: 'exact host, default route', host: 'www.example.com', path: '/', backend: 'a' },
    { name: 'wildcard host', host: 'img.example.com', path: '/x', backend: 'b' },
    { name: 'second VirtualService host', host: 'shop.test', path: '/', backend: 'b' },
    { name: 'host with port', host: 'shop.test:8080', path: '/', backend: 'b' },
    { name: 'regex path', host: 'www.example.com', path: '/items/42', backend: 'b' },
    { name: 'regex is a whole match', host: 'www.example.com', path: '/items/42x', backend: 'a' },
    { name: 'method mismatch falls through', host: 'www.example.com', path: '/submit', backend: 'a' },
  ])('$name', async ({ host, path, backend }) => {
    const r = await get(port, path, { host });
    expect(r.status).toBe(200);
    expect(r.body.backend).toBe(backend);
  });

  it('method match', async () => {
    const r = await get(port, '/submit', { host: 'www.example.com' }, undefined, 'POST');
    expect(r.body.backend).toBe('b');
  });

  it('unknown host is 404', async () => {
    expect((await get(port, '/', { host: 'nowhere.test' })).status).toBe(404);
  });

  it('header match', async () => {
    expect((await get(port, '/', { host: 'www.example.com', 'x-canary': 'yes' })).body.backend).toBe('b');
    expect((await get(port, '/', { host: 'www.example.com', 'x-canary': 'no' })).body.backend).toBe('a');
  });

  it('re-routes each request of one keep-alive connection', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const r1 = await get(port, '/', { host: 'www.example.com' }, agent);
      const r2 = await get(port, '/items/7', { host: 'www.example.com' }, agent);
      const r3 = await get(port, '/', { host: 'shop.test' }, agent);
      expect([r1.body.backend, r2.body.backend, r3.body.backend]).toEqual(['a', 'b', 'b']);
      // Same client connection for all three.
      expect(r2.socket).toBe(r1.socket);
      expect(r3.socket).toBe(r1.socket);
    } finally { agent.destroy(); }
  });

  it('rewrites uri prefix and authority, sets X-Forwarded-For/-Proto', async () => {
    const r = await get(port, '/api/users?id=1', { host: 'www.example.com', 'x-forwarded-for': '192.0.2.7' });
    expect(r.body.backend).toBe('b');
    expect(r.body.url).toBe('/v2/users?id=1');
    expect(r.body.headers?.host).toBe('api.internal');
    expect(r.body.headers?.['x-forwarded-for']).toBe('192.0.2.7, 127.0.0.1');
    expect(r.body.headers?.['x-forwarded-proto']).toBe('http');
  });

  it('weights stay within bounds over 400 requests', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    const n = 400;
    let a = 0;
    try {
      for (let i = 0; i < n; i += 20) {
        const rs = await Promise.all(Array.from({ length: 20 }, () => get(port, '/split', { host: 'www.example.com' }, agent)));
        for (const r of rs) { expect(r.status).toBe(200); if (r.body.backend === 'a') a++; }
      }
    } finally { agent.destroy(); }
    // 80/20 split: binomial(400, 0.8) has sd 8; ±5 sd bounds never flake.
    expect(a).toBeGreaterThan(320 - 40);
    expect(a).toBeLessThan(320 + 40);
  }, 60_000);

  it('spreads over endpoints and retries a dead one on another endpoint', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const r = await get(port, '/lb', { host: 'www.example.com' });
      expect(r.status).toBe(200);
      seen.add(String(r.body.backend));
    }
    expect([...seen].sort()).toEqual(['c1', 'c2']);
    const retries = await lab.metric('edgeway_gateway_retries_total');
    expect(retries.some((l) => l.includes('route="default/www#lb"') && Number(l.split(' ').pop()) > 0)).toBe(true);
  });

  it('route timeout gives 504', async () => {
    expect((await get(port, '/slow', { host: 'www.example.com' })).status).toBe(504);
  });

  it('carries a WebSocket upgrade and echoes seeded random frames intact', async () => {
    const sock = net.connect(port, '127.0.0.1');
    await new Promise<void>((r, j) => { sock.once('connect', r); sock.once('error', j); });
    sock.write('GET /ws/chat HTTP/1.1\r\nHost: www.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    const rand = prng(14);
    const sent: Buffer[] = [];
    for (let i = 0; i < 20; i++) sent.push(Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 70_000) }, () => Math.floor(rand() * 256))));
    const got = await new Promise<{ head: string; payloads: Buffer[] }>((resolve, reject) => {
      let buf: Buffer = Buffer.alloc(0);
      let head = '';
      const payloads: Buffer[] = [];
      const t = setTimeout(() => reject(new Error(`ws timeout: head=${head} frames=${payloads.length}`)), 20_000);
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (!head) {
          const i = buf.indexOf('\r\n\r\n');
          if (i < 0) return;
          head = buf.subarray(0, i).toString();
          buf = buf.subarray(i + 4);
          for (const s of sent) sock.write(frame(s, Buffer.from([rand() * 256, rand() * 256, rand() * 256, rand() * 256].map(Math.floor))));
        }
        const u = unframe(buf);
        buf = u.rest;
        payloads.push(...u.payloads);
        if (payloads.length === sent.length) { clearTimeout(t); resolve({ head, payloads }); }
      });
    });
    sock.destroy();
    expect(got.head).toMatch(/^HTTP\/1.1 101/);
    expect(got.head).toContain('X-Seen-Path: /echo/chat');
    const digest = (bs: Buffer[]): string => createHash('sha256').update(Buffer.concat(bs)).digest('hex');
    expect(digest(got.payloads)).toBe(digest(sent));
  }, 30_000);

  it('serves Gateway API HTTPRoutes on the same model', async () => {
    const beta = await get(apiPort, '/v2/items?x=1', { host: 'shop.api.test', 'x-env': 'beta' });
    expect(beta.body).toMatchObject({ backend: 'b', url: '/v1/items?x=1' });
    expect(beta.body.headers?.host).toBe('beta.internal');
    expect((await get(apiPort, '/v2/items', { host: 'shop.api.test' })).body.backend).toBe('a');
    expect((await get(apiPort, '/', { host: 'other.api.test' })).status).toBe(404);
  });

  it('refuses bad objects one by one, with counted reasons', async () => {
    const logs = lab.gateway!.logs;
    expect(logs.some((l) => l.msg === 'object rejected' && l.object === 'default/no-gateways' && String(l.reason).includes('spec.gateways is empty'))).toBe(true);
    expect(logs.some((l) => l.msg === 'gateway object rejected' && l.object === 'default/other-host' && String(l.reason).includes('match no server host'))).toBe(true);
    expect((await lab.metric('edgeway_gateway_objects_rejected_total')).length).toBeGreaterThan(0);
    expect((await lab.metric('edgeway_catalog_objects_rejected_total')).some((l) => l.includes('kind="ingress"'))).toBe(true);
  });

  it('counts requests by gateway, route and code', async () => {
    const lines = await lab.metric('edgeway_gateway_requests_total');
    expect(lines.some((l) => l.includes('gateway="default/edge"') && l.includes('route="default/www#default"') && l.includes('code="200"'))).toBe(true);
    expect(lines.some((l) => l.includes('code="404"'))).toBe(true);
    expect((await lab.metric('edgeway_gateway_request_duration_seconds_bucket')).length).toBeGreaterThan(0);
    expect(NODE).toBe('gw-node');
  });
});
