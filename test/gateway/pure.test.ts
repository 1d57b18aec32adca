/**
 * The gateway's pure parts: host wildcards and lookup order, the per-request router
 * (matches, order, weights, rewrites), the ClientHello peek (a real ClientHello made
 * by Node's TLS client; every truncation and seeded random corruption answers
 * `more` or `bad`, never throws), and address selection for listeners.
 */
import net from 'node:net';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { HostTable, hostCovers, normalizeHost } from '../../src/gateway/hosts.js';
import { HttpRouter, compileRoute, pickDestination, rewritePath } from '../../src/gateway/router.js';
import { peekClientHello } from '../../src/gateway/client-hello.js';
import { selectAddresses } from '../../src/gateway/listeners.js';
import type { HttpRouteModel } from '../../src/gateway/types.js';
import { prng } from '../helpers/prng.js';

describe('hosts', () => {
  it.each([
    { p: '*', h: 'a.b', want: true },
    { p: '*.example.com', h: 'a.example.com', want: true },
    { p: '*.example.com', h: 'a.b.example.com', want: true },
    { p: '*.example.com', h: 'example.com', want: false },
    { p: '*.example.com', h: 'badexample.com', want: false },
    { p: '*.example.com', h: '*.a.example.com', want: true },
    { p: 'a.example.com', h: '*.example.com', want: false },
    { p: 'a.test', h: 'a.test', want: true },
  ])('$p covers $h: $want', ({ p, h, want }) => expect(hostCovers(p, h)).toBe(want));

  it('looks up exact, then the longest wildcard, then *', () => {
    const t = new HostTable<string>();
    for (const [p, v] of [['*', 'star'], ['*.com', 'com'], ['*.example.com', 'example'], ['www.example.com', 'www']] as const) t.add(p, v);
    expect(t.lookup('www.example.com')).toEqual(['www']);
    expect(t.lookup('img.example.com')).toEqual(['example']);
    expect(t.lookup('other.com')).toEqual(['com']);
    expect(t.lookup('host.org')).toEqual(['star']);
  });

  it.each([['Example.COM:8080', 'example.com'], ['a.test.', 'a.test'], ['[::1]:80', '[::1]'], [undefined, '']])('normalises %s', (raw, want) => {
    expect(normalizeHost(raw)).toBe(want);
  });
});

const route = (id: string, hosts: string[], matches: HttpRouteModel['matches'], extra: Partial<HttpRouteModel> = {}): HttpRouteModel => ({
  id, gateway: 'g', hosts, matches, destinations: [{ serviceKey: `ns/${id}`, port: 80, weight: 1 }], ...extra,
});

describe('router', () => {
  const router = new HttpRouter([
    route('post', ['a.test'], [{ uri: { type: 'prefix', value: '/api' }, method: { type: 'exact', value: 'POST' }, headers: [] }]),
    route('hdr', ['a.test'], [{ headers: [{ name: 'x-v', match: { type: 'regex', value: 'v[12]' } }] }]),
    route('exact', ['a.test'], [{ uri: { type: 'exact', value: '/x' }, headers: [] }, { uri: { type: 'prefix', value: '/y/' }, headers: [] }]),
    route('any', ['*.test'], []),
  ]);
  it.each([
    { name: 'method and prefix', req: { method: 'POST', url: '/api/1' }, want: 'post' },
    // The most specific host's routes decide; no fall-through to `*.test` (Envoy virtual hosts).
    { name: 'method mismatch is 404 on this host', req: { method: 'GET', url: '/api/1' }, want: undefined },
    { name: 'header regex', req: { headers: { 'x-v': 'v2' } }, want: 'hdr' },
    { name: 'header regex is whole', req: { headers: { 'x-v': 'v22' } }, want: undefined },
    { name: 'exact ignores the query', req: { url: '/x?q=1' }, want: 'exact' },
    { name: 'second match of a route', req: { url: '/y/z' }, want: 'exact' },
    { name: 'wildcard host', req: { host: 'b.test' }, want: 'any' },
    { name: 'no host', req: { host: 'b.org' }, want: undefined },
  ])('$name', ({ req, want }) => {
    const r = router.route({ host: 'a.test', url: '/', method: 'GET', headers: {}, ...req });
    expect(r?.route.model.id).toBe(want);
  });

  it('picks weighted destinations in proportion', () => {
    const c = compileRoute({ ...route('w', ['*'], []), destinations: [{ serviceKey: 'a', port: 1, weight: 75 }, { serviceKey: 'b', port: 1, weight: 25 }] });
    const rand = prng(3);
    let a = 0;
    for (let i = 0; i < 4000; i++) if (pickDestination(c, rand).serviceKey === 'a') a++;
    expect(a).toBeGreaterThan(2800);
    expect(a).toBeLessThan(3200);
    // With one destination excluded (failed), the other is taken.
    expect(pickDestination(c, rand, new Set([c.model.destinations[0]!])).serviceKey).toBe('b');
  });

  it.each([
    { url: '/api/users?x=1', uri: '/v2/', prefix: '/api/', full: false, want: '/v2/users?x=1' },
    { url: '/api', uri: '/', prefix: '/api', full: false, want: '/' },
    { url: '/api/a', uri: '/b', prefix: '/api', full: false, want: '/b/a' },
    { url: '/anything?q', uri: '/fixed', prefix: '/any', full: true, want: '/fixed?q' },
  ])('rewrites $url with $uri', ({ url, uri, prefix, full, want }) => {
    const m = { headers: [], prefix };
    expect(rewritePath(url, { uri, fullPath: full }, m)).toBe(want);
  });
});

/** A real ClientHello, captured from Node's TLS client. */
async function captureHello(servername: string, alpn: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer((s) => { s.once('data', (d: Buffer) => { resolve(d); s.destroy(); srv.close(); }); });
    srv.listen(0, '127.0.0.1', () => {
      const c = tls.connect({ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port, servername, ALPNProtocols: alpn, rejectUnauthorized: false });
      c.on('error', () => undefined);
    });
    srv.on('error', reject);
  });
}

describe('ClientHello peek', () => {
  it('reads SNI and ALPN from a real ClientHello', async () => {
    const hello = await captureHello('one.pass.test', ['h2', 'http/1.1']);
    expect(peekClientHello(hello)).toEqual({ status: 'ok', sni: 'one.pass.test', alpn: ['h2', 'http/1.1'] });
  });

  it('answers more or bad for every truncation and for seeded corruptions, never throws', async () => {
    const hello = await captureHello('x.test', ['h2']);
    for (let n = 0; n < hello.length; n++) expect(['more', 'bad']).toContain(peekClientHello(hello.subarray(0, n)).status);
    const rand = prng(99);
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.from(hello);
      for (let k = 0; k < 1 + Math.floor(rand() * 8); k++) b[5 + Math.floor(rand() * (b.length - 5))] = Math.floor(rand() * 256);
      expect(() => peekClientHello(b)).not.toThrow();
    }
    expect(peekClientHello(Buffer.from('GET / HTTP/1.1\r\n\r\n')).status).toBe('bad');
  });
});

describe('listener addresses', () => {
  const ifaces = {
    lo: [{ address: '127.0.0.1', family: 'IPv4', internal: true }, { address: '::1', family: 'IPv6', internal: true }],
    eth0: [{ address: '192.168.1.5', family: 'IPv4', internal: false }, { address: 'fe80::1', family: 'IPv6', internal: false }],
    eth1: [{ address: '10.9.0.7', family: 'IPv4', internal: false }, { address: 'fd00::7', family: 'IPv6', internal: false }],
  } as unknown as Parameters<typeof selectAddresses>[0];
  it.each([
    { wanted: [], want: ['10.9.0.7', '192.168.1.5', 'fd00::7'] },
    { wanted: ['eth1'], want: ['10.9.0.7', 'fd00::7'] },
    { wanted: ['192.168.0.0/16'], want: ['192.168.1.5'] },
    { wanted: ['127.0.0.1/32', 'eth0'], want: ['127.0.0.1', '192.168.1.5'] },
    { wanted: ['nosuch0'], want: [] },
  ])('$wanted → $want', ({ wanted, want }) => expect(selectAddresses(ifaces, wanted)).toEqual(want));
});
