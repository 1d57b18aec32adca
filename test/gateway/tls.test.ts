/**
 * TLS through the gateway process: HTTPS (SIMPLE) with a certificate made here,
 * SNI choosing between two certificates, MUTUAL accepted and refused, minimum
 * protocol version, h2 via ALPN, Secret rotation picked up without a restart, TLS
 * passthrough routed by SNI (the backend's own certificate reaches the client),
 * and a TCP route; byte paths carry seeded random data checked by sha256.
 *
 * IP plan: loopback only (gateway and backends on 127.0.0.1, ports from the kernel).
 */
import { createHash, X509Certificate } from 'node:crypto';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prng } from '../helpers/prng.js';
import { GatewayLab, freePort, httpBackend, listen, makeCert, serviceObjects, tlsSecret } from './harness.js';

const lab = new GatewayLab();
const ports = { https: 0, pass: 0, tcp: 0 };
type Cert = Awaited<ReturnType<typeof makeCert>>;
let certA: Cert, certA2: Cert, certB: Cert, clientCa: Cert, client: Cert, stranger: Cert, passCert: Cert;
let objects: object[] = [];

function randomBytes(seed: number, n: number): Buffer {
  const r = prng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Echo server (plain TCP or TLS) used behind the TCP route and the passthrough route. */
function echo(server: net.Server): net.Server {
  server.on(server instanceof tls.Server ? 'secureConnection' : 'connection', (s: net.Socket) => { s.on('error', () => undefined); s.pipe(s); });
  return server;
}

/** Send `data`, half-close, collect everything echoed back. */
function roundTrip(sock: net.Socket, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    sock.on('data', (d: Buffer) => got.push(d));
    sock.on('end', () => resolve(Buffer.concat(got)));
    sock.on('error', reject);
    sock.end(data);
  });
}

function handshake(opts: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', ...opts }, () => resolve(s));
    s.once('error', reject);
    s.once('close', () => reject(new Error('closed during handshake')));
  });
}

/** An HTTPS request: resolves with status and body, rejects on any TLS refusal. */
function httpsGet(opts: https.RequestOptions): Promise<{ status: number; body: string; cert: X509Certificate }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', path: '/', agent: false, ...opts }, (res) => {
      let body = '';
      const cert = (res.socket as tls.TLSSocket).getPeerX509Certificate()!;
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, cert }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

function catalog(aCert: Cert): object[] {
  return [...objects, tlsSecret('a-cert', 'istio-system', aCert)];
}

beforeAll(async () => {
  const d = lab.dir;
  [certA, certA2, certB, clientCa, stranger, passCert] = await Promise.all([
    makeCert(d, 'a', 'a.test', ['a.test']), makeCert(d, 'a2', 'a.test rotated', ['a.test']), makeCert(d, 'b', 'b.test', ['b.test']),
    makeCert(d, 'clientca', 'client ca', []), makeCert(d, 'stranger', 'stranger', []), makeCert(d, 'pass', 'one.pass.test', ['one.pass.test']),
  ]);
  client = await makeCert(d, 'client', 'client-1', [], clientCa);
  ports.https = await freePort();
  ports.pass = await freePort();
  ports.tcp = await freePort();
  const h = await httpBackend('h');
  const tcpEcho = await listen('tcp-echo', echo(net.createServer({ allowHalfOpen: true })));
  const tlsEcho = await listen('tls-echo', echo(tls.createServer({ cert: passCert.cert, key: passCert.key, allowHalfOpen: true })));
  for (const b of [h, tcpEcho, tlsEcho]) lab.closers.push(() => new Promise<void>((r) => { b.server.close(() => r()); (b.server as { closeAllConnections?: () => void }).closeAllConnections?.(); }));
  objects = [
    ...serviceObjects('web', 'default', [h]),
    ...serviceObjects('echo', 'default', [tcpEcho], { port: 7000, portName: 'tcp' }),
    ...serviceObjects('tls-echo', 'default', [tlsEcho], { port: 443, portName: 'tls' }),
    tlsSecret('b-cert', 'istio-system', certB, clientCa.cert),
    { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'secure', namespace: 'istio-system' }, spec: {
      selector: { istio: 'ingressgateway' }, servers: [
        { port: { number: ports.https, protocol: 'HTTPS' }, hosts: ['a.test'], tls: { mode: 'SIMPLE', credentialName: 'a-cert', minProtocolVersion: 'TLSV1_3' } },
        { port: { number: ports.https, protocol: 'HTTPS' }, hosts: ['b.test'], tls: { mode: 'MUTUAL', credentialName: 'b-cert' } },
        { port: { number: ports.pass, protocol: 'TLS' }, hosts: ['*.pass.test'], tls: { mode: 'PASSTHROUGH' } },
        { port: { number: ports.tcp, protocol: 'TCP' }, hosts: ['*'] },
      ],
    } },
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'https', namespace: 'default' }, spec: {
      hosts: ['a.test', 'b.test'], gateways: ['istio-system/secure'], http: [{ route: [{ destination: { host: 'web' } }] }],
    } },
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'pass', namespace: 'default' }, spec: {
      hosts: ['*.pass.test'], gateways: ['istio-system/secure'], tls: [{ match: [{ sniHosts: ['one.pass.test'] }], route: [{ destination: { host: 'tls-echo' } }] }],
    } },
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'tcp', namespace: 'default' }, spec: {
      hosts: ['*'], gateways: ['istio-system/secure'], tcp: [{ match: [{ port: ports.tcp }], route: [{ destination: { host: 'echo', port: { number: 7000 } } }] }],
    } },
  ];
  lab.closers.push(() => { lab.gateway?.kill(); });
  await lab.start(catalog(certA));
}, 60_000);

afterAll(async () => {
  expect(await lab.stop()).toBe(0);
}, 30_000);

const fp = (pem: string): string => new X509Certificate(pem).fingerprint256;

describe('gateway TLS', () => {
  it('terminates HTTPS with the certificate from the Secret and forwards as https', async () => {
    const r = await httpsGet({ port: ports.https, servername: 'a.test', headers: { host: 'a.test' }, ca: certA.cert });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ backend: 'h', headers: { 'x-forwarded-proto': 'https' } });
    expect(r.cert.fingerprint256).toBe(fp(certA.cert));
  });

  it('chooses the certificate by SNI', async () => {
    const a = await handshake({ port: ports.https, servername: 'a.test', ca: certA.cert });
    const b = await handshake({ port: ports.https, servername: 'b.test', ca: certB.cert, cert: client.cert, key: client.key });
    expect(a.getPeerX509Certificate()!.fingerprint256).toBe(fp(certA.cert));
    expect(b.getPeerX509Certificate()!.fingerprint256).toBe(fp(certB.cert));
    a.destroy();
    b.destroy();
  });

  it('MUTUAL: a client certificate from ca.crt is accepted', async () => {
    const r = await httpsGet({ port: ports.https, servername: 'b.test', headers: { host: 'b.test' }, ca: certB.cert, cert: client.cert, key: client.key });
    expect(r.status).toBe(200);
  });

  it.each([
    { name: 'no client certificate', extra: {} },
    { name: 'a certificate from another CA', extra: { cert: 'stranger' } },
  ])('MUTUAL refuses $name', async ({ extra }) => {
    const id = 'cert' in extra ? { cert: stranger.cert, key: stranger.key } : {};
    await expect(httpsGet({ port: ports.https, servername: 'b.test', headers: { host: 'b.test' }, ca: certB.cert, ...id })).rejects.toThrow();
    const lines = await lab.metric('edgeway_gateway_tls_handshake_failures_total');
    expect(lines.some((l) => Number(l.split(' ').pop()) > 0)).toBe(true);
  });

  it('honours minProtocolVersion', async () => {
    await expect(handshake({ port: ports.https, servername: 'a.test', ca: certA.cert, maxVersion: 'TLSv1.2' })).rejects.toThrow();
  });

  it('speaks h2 via ALPN', async () => {
    const s = http2.connect(`https://127.0.0.1:${ports.https}`, { servername: 'a.test', ca: certA.cert });
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const q = s.request({ ':path': '/h2', ':authority': 'a.test' });
        let text = '';
        q.on('data', (d: Buffer) => { text += d.toString(); });
        q.on('end', () => resolve(text));
        q.on('error', reject);
        q.end();
      });
      expect(JSON.parse(body)).toMatchObject({ backend: 'h', url: '/h2' });
      expect((s.socket as tls.TLSSocket).alpnProtocol).toBe('h2');
    } finally { s.close(); }
  });

  it('passes TLS through by SNI (the backend terminates) with bytes intact', async () => {
    const s = await handshake({ port: ports.pass, servername: 'one.pass.test', ca: passCert.cert });
    expect(s.getPeerX509Certificate()!.fingerprint256).toBe(fp(passCert.cert));
    const data = randomBytes(41, 512 * 1024);
    expect(sha(await roundTrip(s, data))).toBe(sha(data));
  });

  it('refuses passthrough to an SNI without a route', async () => {
    await expect(handshake({ port: ports.pass, servername: 'two.pass.test', rejectUnauthorized: false })).rejects.toThrow();
  });

  it('forwards a TCP route with bytes intact', async () => {
    const s = net.connect({ port: ports.tcp, host: '127.0.0.1', allowHalfOpen: true });
    const data = randomBytes(42, 2 * 1024 * 1024);
    expect(sha(await roundTrip(s, data))).toBe(sha(data));
  });

  it('picks up a rotated Secret without a restart', async () => {
    const pid = lab.gateway!.child.pid;
    const from = lab.gateway!.logs.length;
    lab.writeCatalog(catalog(certA2));
    await lab.waitLog((l) => l.msg === 'certificate reloaded from its changed Secret', 15_000, from);
    const r = await httpsGet({ port: ports.https, servername: 'a.test', headers: { host: 'a.test' }, ca: certA2.cert });
    expect(r.status).toBe(200);
    expect(r.cert.fingerprint256).toBe(fp(certA2.cert));
    expect(lab.gateway!.child.pid).toBe(pid);
    expect(lab.gateway!.child.exitCode).toBeNull();
  });
});
