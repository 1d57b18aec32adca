// The HTTP path's one-pass head scan and its byte path: request and response bodies
// (Content-Length, chunked, pipelined, keep-alive) keep every byte (seeded random data,
// sha256 both ways); ambiguous framing is refused with 400; the hash key of a header
// sent twice combines as Node's `req.headers` does (the gateway's reading).
// Also the per-flow shortcuts of the TCP path: one shutdown listener per proxy, and
// the peer address read only by policies that use it.
// IP plan: everything on 127.0.0.1 (backends and proxy on ports picked at run time).
import { describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { Registry } from 'prom-client';
import { ConsistentHashBalancer } from '../../src/proxy/balancer.js';
import { scanRequestHead } from '../../src/proxy/http.js';
import { onShutdown } from '../../src/proxy/tcp.js';
import { ServiceRuntime } from '../../src/proxy/service.js';
import { ProxyMetrics } from '../../src/proxy/metrics.js';
import type { PlannedPolicy } from '../../src/plan/types.js';
import { prng, seededBytes } from '../helpers/prng.js';
import { ep, servicePort, useHttpBackends } from './util.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * Backend `id`: answers every request with a body of `x-resp-len` seeded bytes
 * (seed `x-resp-seed`), chunked when `x-resp-chunked` is set, and the sha256 and
 * length of the request body it received in headers.
 */
function backend(id: string): Promise<{ srv: http.Server; port: number }> {
  const srv = http.createServer((req, res) => {
    const h = createHash('sha256');
    let n = 0;
    req.on('data', (d: Buffer) => { h.update(d); n += d.length; });
    req.on('end', () => {
      const body = seededBytes(Number(req.headers['x-resp-seed'] ?? 0), Number(req.headers['x-resp-len'] ?? 0));
      const head: Record<string, string> = { 'x-backend': id, 'x-req-sha': h.digest('hex'), 'x-req-len': String(n), 'x-key': String(req.headers['x-user'] ?? '') };
      if (req.headers['x-resp-chunked']) {
        res.writeHead(200, head);
        // Several writes: several chunks on the wire.
        for (let o = 0; o < body.length; o += 7919) res.write(body.subarray(o, o + 7919));
        res.end();
      } else {
        res.writeHead(200, { ...head, 'content-length': String(body.length) });
        res.end(body);
      }
    });
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve({ srv, port: (srv.address() as net.AddressInfo).port })));
}

const fx = useHttpBackends(backend);
const httpProxy = fx.httpProxy;

interface Reply { status: number; headers: http.IncomingHttpHeaders; body: Buffer }

function request(port: number, agent: http.Agent, headers: Record<string, string>, body: Buffer | undefined, chunked: boolean): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: body ? 'POST' : 'GET', path: '/', agent, headers: { ...headers, ...(body && !chunked ? { 'content-length': String(body.length) } : {}) } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    if (body && chunked) {
      // Uneven writes: the proxy sees (and forwards) a chunked body in several pieces.
      for (let o = 0; o < body.length; o += 5003) req.write(body.subarray(o, o + 5003));
    } else if (body) req.write(body);
    req.end();
  });
}

/** Raw bytes to the proxy; resolves with everything read until the proxy closes (or `ms`). */
function raw(port: number, bytes: string | Buffer, ms = 3_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(bytes));
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('error', reject);
    const t = setTimeout(() => s.destroy(), ms);
    s.on('close', () => { clearTimeout(t); resolve(Buffer.concat(parts).toString('latin1')); });
  });
}

describe('scanRequestHead', () => {
  it.each([
    { name: 'nothing to strip: the raw list itself', raw: ['Host', 'x', 'Accept', '*/*'], hash: undefined, headers: ['Host', 'x', 'Accept', '*/*'], replayable: true, values: undefined },
    { name: 'Content-Length 0 is replayable', raw: ['Host', 'x', 'Content-Length', '0'], hash: undefined, headers: ['Host', 'x', 'Content-Length', '0'], replayable: true, values: undefined },
    { name: 'a body is not replayable', raw: ['Host', 'x', 'Content-Length', '12'], hash: undefined, headers: ['Host', 'x', 'Content-Length', '12'], replayable: false, values: undefined },
    { name: 'chunked: not replayable, Transfer-Encoding is hop-by-hop', raw: ['Host', 'x', 'Transfer-Encoding', 'chunked'], hash: undefined, headers: ['Host', 'x'], replayable: false, values: undefined },
    { name: 'Connection and the headers it names are stripped', raw: ['Connection', 'keep-alive, X-Private', 'X-Private', '1', 'keep-alive', 'timeout=5', 'Accept', '*/*'], hash: undefined, headers: ['Accept', '*/*'], replayable: true, values: undefined },
    { name: 'hash header values in order, any case', raw: ['X-User', 'u1', 'Host', 'x', 'x-user', 'u2'], hash: 'x-user', headers: ['X-User', 'u1', 'Host', 'x', 'x-user', 'u2'], replayable: true, values: ['u1', 'u2'] },
    { name: 'absent hash header', raw: ['Host', 'x'], hash: 'x-user', headers: ['Host', 'x'], replayable: true, values: undefined },
  ])('$name', ({ raw: r, hash, headers, replayable, values }) => {
    const h = scanRequestHead(r, hash);
    expect(h.headers).toEqual(headers);
    expect(h.replayable).toBe(replayable);
    expect(h.hashValues).toEqual(values);
  });
});

describe('HTTP path byte integrity', () => {
  it('keep-alive: request and response bodies (Content-Length and chunked, random sizes) arrive intact', async () => {
    const port = await httpProxy({ kind: 'consistentHash', key: { type: 'header', name: 'X-User' } });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
    const r = prng(1601);
    try {
      for (let i = 0; i < 24; i++) {
        const reqLen = i % 4 === 0 ? 0 : Math.floor(r() * 300_000);
        const respLen = Math.floor(r() * 300_000);
        const body = reqLen ? seededBytes(5000 + i, reqLen) : undefined;
        const chunkedReq = i % 3 === 1;
        const chunkedResp = i % 2 === 0;
        const res = await request(port, agent, { 'x-user': `u${i % 5}`, 'x-resp-seed': String(9000 + i), 'x-resp-len': String(respLen), ...(chunkedResp ? { 'x-resp-chunked': '1' } : {}) }, body, chunkedReq);
        expect(res.status).toBe(200);
        expect(res.headers['x-req-len']).toBe(String(reqLen));
        expect(res.headers['x-req-sha']).toBe(sha(body ?? Buffer.alloc(0)));
        expect(res.body.length).toBe(respLen);
        expect(sha(res.body)).toBe(sha(seededBytes(9000 + i, respLen)));
      }
    } finally {
      agent.destroy();
    }
  });

  it('pipelined requests on one connection are answered in order, bodies intact', async () => {
    const port = await httpProxy({ kind: 'consistentHash', key: { type: 'header', name: 'X-User' } });
    const b1 = seededBytes(77, 4096);
    const b2 = seededBytes(78, 1000);
    const chunk = (b: Buffer): string => `${b.length.toString(16)}\r\n${b.toString('latin1')}\r\n`;
    const wire = `POST /1 HTTP/1.1\r\nHost: svc\r\nX-User: p1\r\nX-Resp-Len: 10\r\nX-Resp-Seed: 1\r\nContent-Length: ${b1.length}\r\n\r\n${b1.toString('latin1')}` +
      `POST /2 HTTP/1.1\r\nHost: svc\r\nX-User: p2\r\nX-Resp-Len: 20\r\nX-Resp-Seed: 2\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(b2.subarray(0, 300))}${chunk(b2.subarray(300))}0\r\n\r\n` +
      'GET /3 HTTP/1.1\r\nHost: svc\r\nX-User: p3\r\nX-Resp-Len: 30\r\nX-Resp-Seed: 3\r\nConnection: close\r\n\r\n';
    const out = await raw(port, Buffer.from(wire, 'latin1'));
    const shas = [...out.matchAll(/x-req-sha: ([0-9a-f]{64})/gi)].map((m) => m[1]);
    expect(shas).toEqual([sha(b1), sha(b2), sha(Buffer.alloc(0))]);
    expect([...out.matchAll(/x-key: (\w+)/gi)].map((m) => m[1])).toEqual(['p1', 'p2', 'p3']);
  });

  it.each([
    { name: 'Content-Length and Transfer-Encoding together', head: 'POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' },
    { name: 'two different Content-Length values', head: 'POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!' },
    { name: 'Transfer-Encoding not ending in chunked', head: 'POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n' },
  ])('ambiguous framing is refused with 400 and nothing reaches an endpoint: $name', async ({ head }) => {
    const port = await httpProxy({ kind: 'consistentHash', key: { type: 'header', name: 'X-User' } });
    const out = await raw(port, head);
    expect(out).toMatch(/^HTTP\/1\.1 400 /);
    expect(out).not.toMatch(/x-backend/i);
  });

  it('a hash header sent twice is one key, as the gateway reads it ("v1, v2")', async () => {
    const port = await httpProxy({ kind: 'consistentHash', key: { type: 'header', name: 'X-User' } });
    const ring = new ConsistentHashBalancer({});
    ring.setEndpoints(fx.list.map((b) => `127.0.0.1:${b.port}`));
    const ids = ['a', 'b', 'c'];
    // Find a pair whose combined key lands elsewhere than its first value alone.
    let v2 = 'y0';
    for (let i = 0; ids[ring.pick({ clientIp: '', hashKey: `x, ${v2}` })!] === ids[ring.pick({ clientIp: '', hashKey: 'x' })!]; i++) v2 = `y${i}`;
    const out = await raw(port, `GET / HTTP/1.1\r\nHost: svc\r\nX-User: x\r\nX-User: ${v2}\r\nConnection: close\r\n\r\n`);
    expect(out).toContain(`x-backend: ${ids[ring.pick({ clientIp: '', hashKey: `x, ${v2}` })!]}`);
  });
});

describe('per-flow shortcuts', () => {
  it('onShutdown: one listener per signal; each registered flow ends once, unregistered ones never', async () => {
    const ac = new AbortController();
    const ended: string[] = [];
    const offA = onShutdown({ shutdown: ac.signal }, () => ended.push('a'));
    onShutdown({ shutdown: ac.signal }, () => ended.push('b'));
    const same = (): void => { ended.push('c'); };
    onShutdown({ shutdown: ac.signal }, same);
    const offC2 = onShutdown({ shutdown: ac.signal }, same);
    offA();
    offC2();
    ac.abort();
    expect(ended.sort()).toEqual(['b', 'c']);
    // Registered after the abort: ended at once (next microtask).
    onShutdown({ shutdown: ac.signal }, () => ended.push('late'));
    await Promise.resolve();
    expect(ended).toContain('late');
    ac.abort();
    expect(ended.filter((e) => e === 'b')).toHaveLength(1);
  });

  it.each([
    { policy: { kind: 'random' } as PlannedPolicy, reads: false },
    { policy: { kind: 'leastRequest' } as PlannedPolicy, reads: false },
    { policy: { kind: 'consistentHash', key: { type: 'header', name: 'x' } } as PlannedPolicy, reads: false },
    { policy: { kind: 'clientIp', timeoutSeconds: 10 } as PlannedPolicy, reads: true },
    { policy: { kind: 'consistentHash', key: { type: 'sourceIp' } } as PlannedPolicy, reads: true },
  ])('peer address read only when the policy uses it: $policy.kind', ({ policy, reads }) => {
    const rt = new ServiceRuntime(servicePort({ userspacePort: 1, policy, endpoints: [ep('127.0.0.1', 1)] }), new ProxyMetrics(new Registry(), true));
    let asked = 0;
    const peer = { get remoteAddress() { asked++; return '::ffff:10.1.2.3'; } };
    const input = rt.inputFor(peer, 'k');
    expect(asked).toBe(reads ? 1 : 0);
    expect(input.clientIp).toBe(reads ? '10.1.2.3' : '');
  });
});
