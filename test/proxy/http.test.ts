// The HTTP-aware path on loopback: in-process HTTP backends that answer with their
// identity (and speak a minimal WebSocket echo), the proxy in front of them.
import { describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { Duplex } from 'node:stream';
import type { RemoteDialer } from '../../src/proxy/remote-dialer.js';
import { Registry } from 'prom-client';
import { UserspaceProxy } from '../../src/proxy/proxy.js';
import { ConsistentHashBalancer } from '../../src/proxy/balancer.js';
import { forwardHeaders, readCookie } from '../../src/proxy/http.js';
import { silentLogger } from '../../src/util/log.js';
import { ep, freePort, servicePort, useHttpBackends } from './util.js';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Backend `id`: GET → body = id; Upgrade: websocket → echo one text frame per message. */
function backend(id: string): Promise<{ srv: http.Server; port: number }> {
  const srv = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end(JSON.stringify({ id, xUser: req.headers['x-user'] ?? null, conn: req.headers.connection ?? null })));
  });
  srv.on('upgrade', (req: http.IncomingMessage, sock: net.Socket) => {
    const accept = createHash('sha1').update(String(req.headers['sec-websocket-key']) + WS_GUID).digest('base64');
    sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nX-Backend: ${id}\r\n\r\n`);
    let buf = Buffer.alloc(0);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      // Client frames: FIN+text, masked, payload < 126 bytes (enough for the test).
      while (buf.length >= 6) {
        const len = buf[1]! & 0x7f;
        if (buf.length < 6 + len) break;
        const mask = buf.subarray(2, 6);
        const payload = Buffer.from(buf.subarray(6, 6 + len).map((b, i) => b ^ mask[i % 4]!));
        buf = buf.subarray(6 + len);
        sock.write(Buffer.concat([Buffer.from([0x81, payload.length]), payload]));
      }
    });
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve({ srv, port: (srv.address() as net.AddressInfo).port })));
}

const fx = useHttpBackends(backend);
const httpProxy = fx.httpProxy;

function get(port: number, agent: http.Agent, headers: Record<string, string> = {}): Promise<{ body: { id: string; xUser: string | null; conn: string | null }; headers: http.IncomingHttpHeaders; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent, headers }, (res) => {
      let b = '';
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve({ body: JSON.parse(b) as { id: string; xUser: string | null; conn: string | null }, headers: res.headers, reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.setTimeout(5_000, () => req.destroy(new Error('timeout')));
  });
}

describe('HTTP-aware path', () => {
  it('keep-alive: header hashing across two keys on one client connection', async () => {
    const port = await httpProxy({ kind: 'consistentHash', key: { type: 'header', name: 'X-User' } });
    // Find two keys the ring puts on different endpoints (endpoint ports are random).
    const ring = new ConsistentHashBalancer({});
    ring.setEndpoints(fx.list.map((b) => `127.0.0.1:${b.port}`));
    const where = (k: string): string => ['a', 'b', 'c'][ring.pick({ clientIp: '', hashKey: k })!]!;
    const k1 = 'alice';
    let k2 = 'bob';
    for (let i = 0; where(k2) === where(k1); i++) k2 = `bob${i}`;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      let reused = 0;
      for (let i = 0; i < 20; i++) {
        const key = i % 2 ? k2 : k1;
        const r = await get(port, agent, { 'x-user': key });
        expect(r.body.id).toBe(where(key));
        expect(r.body.xUser).toBe(key);
        // The proxy keeps its own upstream pools: hop-by-hop headers are not passed through.
        expect(r.body.conn).not.toBe('close');
        if (r.reused) reused++;
      }
      expect(reused).toBe(19);
    } finally {
      agent.destroy();
    }
  });

  it('cookie hashing: the cookie is set when absent, then sticks', async () => {
    const port = await httpProxy({ kind: 'consistentHash', key: { type: 'cookie', name: 'ewsid', path: '/', ttlSeconds: 600 } });
    const agent = new http.Agent({ keepAlive: true });
    try {
      const seen = new Set<string>();
      for (let c = 0; c < 12; c++) {
        const first = await get(port, agent);
        const setCookie = first.headers['set-cookie']?.[0] ?? '';
        expect(setCookie).toMatch(/^ewsid=[0-9a-f]{16}; Path=\/; Max-Age=600; HttpOnly$/);
        const cookie = setCookie.split(';')[0]!;
        for (let i = 0; i < 4; i++) {
          const r = await get(port, agent, { cookie: `other=1; ${cookie}` });
          expect(r.body.id).toBe(first.body.id);
          expect(r.headers['set-cookie']).toBeUndefined();
        }
        seen.add(first.body.id);
      }
      expect(seen.size).toBeGreaterThanOrEqual(2);
    } finally {
      agent.destroy();
    }
  });

  it('WebSocket upgrade passthrough: echo through the proxy', async () => {
    const port = await httpProxy({ kind: 'consistentHash', key: { type: 'header', name: 'x-user' } });
    const key = randomBytes(16).toString('base64');
    const s = net.connect({ host: '127.0.0.1', port });
    try {
      const text = await new Promise<string>((resolve, reject) => {
        let buf = Buffer.alloc(0);
        let upgraded = false;
        const messages: string[] = [];
        s.on('error', reject);
        s.on('connect', () => s.write(`GET /ws HTTP/1.1\r\nHost: svc\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nX-User: zed\r\n\r\n`));
        const sendFrame = (msg: string): void => {
          const mask = randomBytes(4);
          const p = Buffer.from(msg).map((b, i) => b ^ mask[i % 4]!);
          s.write(Buffer.concat([Buffer.from([0x81, 0x80 | p.length]), mask, p]));
        };
        s.on('data', (d) => {
          buf = Buffer.concat([buf, d]);
          if (!upgraded) {
            const end = buf.indexOf('\r\n\r\n');
            if (end < 0) return;
            const head = buf.subarray(0, end).toString();
            expect(head).toMatch(/^HTTP\/1\.1 101/);
            expect(head).toContain(`Sec-WebSocket-Accept: ${createHash('sha1').update(key + WS_GUID).digest('base64')}`);
            buf = buf.subarray(end + 4);
            upgraded = true;
            sendFrame('hello');
            sendFrame('world');
          }
          while (buf.length >= 2 && buf.length >= 2 + buf[1]!) {
            messages.push(buf.subarray(2, 2 + buf[1]!).toString());
            buf = buf.subarray(2 + buf[1]!);
          }
          if (messages.length === 2) resolve(messages.join(' '));
        });
        setTimeout(() => reject(new Error('ws timeout')), 5_000);
      });
      expect(text).toBe('hello world');
    } finally {
      s.destroy();
    }
  });

  it('remote endpoint: tunnel streams (no socket methods) are pooled and reused', async () => {
    // Stands in for the tunnel: each stream is a plain Duplex over a fresh loopback
    // connection to backend "b", so it has none of net.Socket's setKeepAlive/unref.
    let dialed = 0;
    const tunnel: RemoteDialer = {
      dialStream: () => new Promise<Duplex>((resolve, reject) => {
        dialed++;
        const s = net.connect(fx.list[1]!.port, '127.0.0.1', () => resolve(Duplex.from({ readable: s, writable: s })));
        s.once('error', reject);
      }),
      openDatagramSession: () => Promise.reject(new Error('unused')),
    };
    const proxy = new UserspaceProxy({ logger: silentLogger(), registry: new Registry(), listenHost: '127.0.0.1', remoteDialer: tunnel });
    fx.proxies.push(proxy);
    const port = await freePort();
    await proxy.apply([servicePort({ userspacePort: port, policy: { kind: 'consistentHash', key: { type: 'header', name: 'X-User' } }, endpoints: [ep('10.244.9.9', 80, { class: 'remote', nodeName: 'far' })] })]);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 3; i++) expect((await get(port, agent, { 'x-user': `u${i}` })).body.id).toBe('b');
    } finally {
      agent.destroy();
    }
    // Sequential requests reuse the one pooled tunnel stream.
    expect(dialed).toBe(1);
  });

  it('helpers: hop-by-hop headers dropped, cookies read', () => {
    expect(forwardHeaders(['Host', 'x', 'Connection', 'keep-alive, X-Private', 'X-Private', '1', 'Keep-Alive', 'timeout=5', 'Accept', '*/*'])).toEqual(['Host', 'x', 'Accept', '*/*']);
    expect(readCookie('a=1; ewsid=abc ;b=2', 'ewsid')).toBe('abc');
    expect(readCookie('a=1', 'ewsid')).toBeUndefined();
    expect(readCookie(undefined, 'ewsid')).toBeUndefined();
  });
});
