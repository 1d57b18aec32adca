/**
 * gRPC through the gateway with a real gRPC client and server (@grpc/grpc-js):
 * unary, bidirectional streaming, and status/trailers passed through; over h2c
 * (prior knowledge) on an HTTP port and over TLS (ALPN h2) on an HTTPS port. The
 * backend service port is named `grpc`, so the gateway speaks HTTP/2 to it.
 *
 * IP plan: loopback only.
 */
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prng } from '../helpers/prng.js';
import { GatewayLab, freePort, makeCert, serviceObjects, tlsSecret, type Backend } from './harness.js';

const raw = { serialize: (b: Buffer): Buffer => b, deserialize: (b: Buffer): Buffer => b };
const def = {
  Echo: { path: '/test.Echo/Echo', requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
  Chat: { path: '/test.Echo/Chat', requestStream: true, responseStream: true, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
  Fail: { path: '/test.Echo/Fail', requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
} satisfies grpc.ServiceDefinition;
const Client = grpc.makeGenericClientConstructor(def, 'Echo');
type EchoClient = grpc.Client & {
  Echo(req: Buffer, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r?: Buffer) => void): grpc.ClientUnaryCall;
  Fail(req: Buffer, cb: (e: grpc.ServiceError | null, r?: Buffer) => void): grpc.ClientUnaryCall;
  Chat(): grpc.ClientDuplexStream<Buffer, Buffer>;
};

const lab = new GatewayLab();
let httpPort = 0;
let httpsPort = 0;
let cert: Awaited<ReturnType<typeof makeCert>>;
let server: grpc.Server;

function unary(c: EchoClient, msg: Buffer): Promise<{ reply: Buffer; seenBy: string }> {
  return new Promise((resolve, reject) => {
    let seenBy = '';
    const call = c.Echo(msg, new grpc.Metadata(), (e, r) => (e ? reject(e) : resolve({ reply: r!, seenBy })));
    call.on('metadata', (md) => { seenBy = String(md.get('x-backend')[0] ?? ''); });
  });
}

async function chat(c: EchoClient, seed: number, n: number): Promise<{ sent: string; got: string; count: number }> {
  const r = prng(seed);
  const call = c.Chat();
  const sent = createHash('sha256');
  const got = createHash('sha256');
  let count = 0;
  const done = new Promise<void>((resolve, reject) => {
    call.on('data', (d: Buffer) => { got.update(d); count++; });
    call.on('end', resolve);
    call.on('error', reject);
  });
  for (let i = 0; i < n; i++) {
    const m = Buffer.from(Array.from({ length: 1 + Math.floor(r() * 20_000) }, () => Math.floor(r() * 256)));
    sent.update(m);
    call.write(m);
  }
  call.end();
  await done;
  return { sent: sent.digest('hex'), got: got.digest('hex'), count };
}

beforeAll(async () => {
  server = new grpc.Server();
  server.addService(def, {
    Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const md = new grpc.Metadata();
      md.set('x-backend', `grpc:${String(call.metadata.get('x-forwarded-proto')[0] ?? '')}`);
      call.sendMetadata(md);
      cb(null, Buffer.concat([Buffer.from('echo:'), call.request]));
    },
    Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => { call.on('data', (d: Buffer) => call.write(d)); call.on('end', () => call.end()); },
    Fail: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb({ code: grpc.status.FAILED_PRECONDITION, details: 'not today' }),
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  const backend: Backend = { name: 'grpc', host: '127.0.0.1', port, server: undefined as never };
  lab.closers.push(() => new Promise<void>((r) => server.tryShutdown(() => r())));
  lab.closers.push(() => { lab.gateway?.kill(); });
  cert = await makeCert(lab.dir, 'grpc', 'grpc.test', ['grpc.test']);
  httpPort = await freePort();
  httpsPort = await freePort();
  await lab.start([
    ...serviceObjects('echo', 'default', [backend], { port: 50051, portName: 'grpc' }),
    tlsSecret('grpc-cert', 'default', cert),
    { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'grpc', namespace: 'default' }, spec: {
      selector: { istio: 'ingressgateway' }, servers: [
        { port: { number: httpPort, protocol: 'GRPC' }, hosts: ['grpc.test'] },
        { port: { number: httpsPort, protocol: 'HTTPS' }, hosts: ['grpc.test'], tls: { mode: 'SIMPLE', credentialName: 'grpc-cert' } },
      ],
    } },
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'grpc', namespace: 'default' }, spec: {
      hosts: ['grpc.test'], gateways: ['grpc'], http: [{ match: [{ uri: { prefix: '/test.Echo/' } }], route: [{ destination: { host: 'echo', port: { number: 50051 } } }] }],
    } },
  ]);
}, 60_000);

afterAll(async () => {
  expect(await lab.stop()).toBe(0);
}, 30_000);

describe.each([
  { name: 'h2c', proto: 'http', make: (): EchoClient => new Client(`127.0.0.1:${httpPort}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'grpc.test' }) as unknown as EchoClient },
  {
    name: 'TLS (ALPN h2)',
    proto: 'https',
    make: (): EchoClient => new Client(`127.0.0.1:${httpsPort}`, grpc.credentials.createSsl(Buffer.from(cert.cert)), { 'grpc.ssl_target_name_override': 'grpc.test', 'grpc.default_authority': 'grpc.test' }) as unknown as EchoClient,
  },
])('gRPC through the gateway over $name', ({ make, proto }) => {
  it('unary', async () => {
    const c = make();
    try {
      const r = await unary(c, Buffer.from('hello'));
      expect(r.reply.toString()).toBe('echo:hello');
      // Metadata both ways: the gateway's X-Forwarded-Proto reached the backend, its reply metadata came back.
      expect(r.seenBy).toBe(`grpc:${proto}`);
    } finally { c.close(); }
  });

  it('bidirectional streaming with seeded random messages intact', async () => {
    const c = make();
    try {
      const r = await chat(c, 7, 200);
      expect(r.count).toBe(200);
      expect(r.got).toBe(r.sent);
    } finally { c.close(); }
  }, 30_000);

  it('status and details from the trailers', async () => {
    const c = make() as EchoClient;
    try {
      const err = await new Promise<grpc.ServiceError>((resolve) => c.Fail(Buffer.alloc(0), (e) => resolve(e!)));
      expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(err.details).toBe('not today');
    } finally { c.close(); }
  });
});
