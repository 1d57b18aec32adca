/**
 * Through the real tunnel (libp2p relay + two tunnel peers, in one process;
 * loopback is never a direct-dial candidate, so the path is relayed):
 * - a gateway route whose backend lives on another node: the plan classes the
 *   endpoint `remote` and requests go through the tunnel;
 * - SOCKS5 on the agent: CONNECT to `<nodeName>:<port>` reaches the far node's own
 *   port; no credentials, wrong ones, IP targets, unknown nodes and ports not
 *   allowed (near side, and far side on its own) are refused and counted.
 *
 * IP plan: loopback only; gateway node "gw", backend node "far", relay "relay".
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry } from '../../src/metrics/registry.js';
import { parseConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/util/log.js';
import { TunnelService } from '../../src/tunnel/service.js';
import { startRelayServer, type RelayServerHandle } from '../../src/tunnel/relay-server.js';
import type { Snapshot } from '../../src/catalog/types.js';
import type { IngressObject } from '../../src/catalog/ingress.js';
import { memoPlanFor } from '../../src/plan/memo.js';
import { EdgeGateway } from '../../src/gateway/gateway.js';
import { prng } from '../helpers/prng.js';
import { endpoint, freePort, service, snapshot } from '../tunnel/helpers.js';
import { writeFile } from 'node:fs/promises';
import { Socks5Server } from '../../src/socks5/server.js';
import type { Registry } from 'prom-client';

/** A SOCKS5 CONNECT: resolves with the socket after a success reply, or the reply code / auth failure. */
function socks(port: number, o: { methods?: number[]; user?: string; pass?: string; host?: string; ipv4?: string; dport: number }): Promise<{ sock?: net.Socket; reply?: number; auth?: number; method?: number }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf: Buffer = Buffer.alloc(0);
    let stage = 0;
    const t = setTimeout(() => { s.destroy(); reject(new Error(`socks timeout at stage ${stage}`)); }, 15_000);
    const done = (v: { sock?: net.Socket; reply?: number; auth?: number; method?: number }): void => { clearTimeout(t); s.removeAllListeners('data'); resolve(v); };
    s.on('error', (e) => { clearTimeout(t); reject(e); });
    s.on('close', () => done({}));
    s.once('connect', () => s.write(Buffer.from([5, (o.methods ?? [2]).length, ...(o.methods ?? [2])])));
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (stage === 0 && buf.length >= 2) {
        const m = buf[1]!; buf = buf.subarray(2); stage = 1;
        if (m !== 2) return done({ method: m });
        const u = Buffer.from(o.user ?? ''); const p = Buffer.from(o.pass ?? '');
        s.write(Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([p.length]), p]));
      }
      if (stage === 1 && buf.length >= 2) {
        const a = buf[1]!; buf = buf.subarray(2); stage = 2;
        if (a !== 0) return done({ auth: a });
        const pb = Buffer.alloc(2); pb.writeUInt16BE(o.dport);
        const addr = o.ipv4 ? Buffer.from([1, ...o.ipv4.split('.').map(Number)]) : Buffer.concat([Buffer.from([3, Buffer.byteLength(o.host ?? '')]), Buffer.from(o.host ?? '')]);
        s.write(Buffer.concat([Buffer.from([5, 1, 0]), addr, pb]));
      }
      if (stage === 2 && buf.length >= 10) {
        const rep = buf[1]!; stage = 3;
        if (rep !== 0) return done({ reply: rep });
        const rest = buf.subarray(10);
        if (rest.length) s.unshift(rest);
        done({ sock: s, reply: 0 });
      }
    });
  });
}

async function counter(reg: Registry, name: string, label: string): Promise<number> {
  const m = (await reg.getSingleMetric(name)?.get())?.values ?? [];
  return m.filter((v) => Object.values(v.labels).includes(label)).reduce((n, v) => n + v.value, 0);
}

const logger = silentLogger();

describe('gateway backend on another node through the tunnel', () => {
  let dir: string;
  let relay: RelayServerHandle;
  let gwPeer: TunnelService;
  let farPeer: TunnelService;
  let backend: http.Server;
  let gateway: EdgeGateway;
  let port = 0;
  let snap: Snapshot;
  let sshLike: net.Server;
  let sshPort = 0;
  let closedPort = 0;
  let socksServer: Socks5Server;
  let socksPort = 0;
  const socksRegistry = createRegistry({ defaultMetrics: false });
  const farRegistry = createRegistry({ defaultMetrics: false });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ew-gw-tunnel-'));
    backend = http.createServer((req, res) => {
      const h = createHash('sha256');
      req.on('data', (d: Buffer) => h.update(d));
      req.on('end', () => res.end(JSON.stringify({ node: 'far', url: req.url, sha: h.digest('hex') })));
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    const bport = (backend.address() as net.AddressInfo).port;
    const relayPort = await freePort();
    relay = await startRelayServer(parseConfig({ stateDir: join(dir, 'relay'), tunnel: { listenPort: relayPort, dataPort: await freePort(), listenAddresses: ['127.0.0.1'] } }, 'relay.yaml', { nodeName: 'relay' }), logger, createRegistry({ defaultMetrics: false }));
    port = await freePort();
    const ingress: IngressObject[] = [
      { kind: 'Gateway', api: 'istio', namespace: 'default', name: 'edge', selector: {}, servers: [{ port, protocol: 'HTTP', hosts: ['*'] }] },
      { kind: 'Route', api: 'istio', namespace: 'default', name: 'far', hosts: ['*'], gateways: ['default/edge'], http: [{ matches: [], destinations: [{ host: 'far-web', weight: 1 }] }], tls: [], tcp: [] },
    ];
    snap = { ...snapshot([service('default', 'far-web', 80, [endpoint('127.0.0.1', 'far', bport)])], [
      { name: 'gw', addresses: [], ready: true },
      { name: 'far', addresses: [], ready: true },
    ]), ingress };
    // The far node's "sshd": an echo server on its loopback; its SOCKS5 policy allows that port only.
    sshLike = net.createServer({ allowHalfOpen: true }, (c) => { c.on('error', () => undefined); c.pipe(c); });
    await new Promise<void>((r) => sshLike.listen(0, '127.0.0.1', r));
    sshPort = (sshLike.address() as net.AddressInfo).port;
    closedPort = await freePort();
    const pwFile = join(dir, 'pw');
    await writeFile(pwFile, 's3cret\n');
    const peer = async (name: string): Promise<TunnelService> => {
      const config = parseConfig({
        stateDir: join(dir, name),
        tunnel: { listenPort: await freePort(), dataPort: await freePort(), listenAddresses: ['127.0.0.1'], relayNodes: [{ nodeName: 'relay', advertiseAddress: [`127.0.0.1:${relayPort}`] }], stateFile: false },
        socks5: name === 'far' ? { enabled: true, users: [{ name: 'ops', passwordFile: pwFile }], allowPorts: [sshPort] } : { enabled: false },
      }, `${name}.yaml`, { nodeName: name });
      const s = new TunnelService({ config, logger, registry: name === 'far' ? farRegistry : createRegistry({ defaultMetrics: false }), snapshot: () => snap });
      await s.start();
      return s;
    };
    gwPeer = await peer('gw');
    farPeer = await peer('far');
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && !(gwPeer.relays!.reservedRelays().length === 1 && farPeer.relays!.reservedRelays().length === 1 && (await gwPeer.directory!.resolve('far').then(() => true, () => false)))) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const config = parseConfig({ stateDir: join(dir, 'gw'), gateway: { addresses: ['127.0.0.1/32'], addressPollMs: 60_000 } }, 'gw.yaml', { nodeName: 'gw' });
    gateway = new EdgeGateway({ config, logger, registry: createRegistry({ defaultMetrics: false }), planFor: memoPlanFor(config, 'nftables'), remoteDialer: () => gwPeer.dialer });
    await gateway.apply(snap);
    // The near agent allows closedPort too: the far agent must refuse it on its own.
    socksServer = new Socks5Server({
      nodeName: 'gw', users: new Map([['ops', 's3cret']]), allowPorts: [sshPort, closedPort], snapshot: () => snap, dialer: () => gwPeer.dialer, registry: socksRegistry, logger,
    });
    socksPort = (await socksServer.listen('127.0.0.1', 0)).port;
  }, 60_000);

  afterAll(async () => {
    await socksServer?.close();
    sshLike?.close();
    await gateway?.stop(0);
    await gwPeer?.stop();
    await farPeer?.stop();
    await relay?.stop();
    backend?.closeAllConnections();
    backend?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('plans the endpoint as remote', () => {
    const plan = memoPlanFor(parseConfig({}, 'x.yaml', { nodeName: 'gw' }), 'nftables')(snap);
    expect(plan.servicePorts[0]!.endpoints[0]!.class).toBe('remote');
  });

  it('carries requests (seeded random bodies, sha256 checked) to the far node, several over one keep-alive connection', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 5; i++) {
        const r = prng(100 + i);
        const body = Buffer.from(Array.from({ length: 50_000 + i * 1000 }, () => Math.floor(r() * 256)));
        const got = await new Promise<{ status: number; json: { node: string; url: string; sha: string } }>((resolve, reject) => {
          const req = http.request({ host: '127.0.0.1', port, path: `/r${i}`, method: 'POST', agent, headers: { host: 'any.test', 'content-length': body.length } }, (res) => {
            let t = '';
            res.on('data', (d: Buffer) => { t += d.toString(); });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(t) as { node: string; url: string; sha: string } }));
          });
          req.on('error', reject);
          req.end(body);
        });
        expect(got.status).toBe(200);
        expect(got.json).toEqual({ node: 'far', url: `/r${i}`, sha: createHash('sha256').update(body).digest('hex') });
      }
    } finally { agent.destroy(); }
  }, 60_000);

  it('SOCKS5: CONNECT to <nodeName>:<port> reaches that node through the tunnel, bytes intact', async () => {
    const r = await socks(socksPort, { user: 'ops', pass: 's3cret', host: 'far', dport: sshPort });
    expect(r.reply).toBe(0);
    const rand = prng(5);
    const data = Buffer.from(Array.from({ length: 300_000 }, () => Math.floor(rand() * 256)));
    const echoed = await new Promise<Buffer>((resolve, reject) => {
      const got: Buffer[] = [];
      r.sock!.on('data', (d: Buffer) => got.push(d));
      r.sock!.on('end', () => resolve(Buffer.concat(got)));
      r.sock!.on('error', reject);
      r.sock!.end(data);
    });
    expect(createHash('sha256').update(echoed).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    expect(await counter(socksRegistry, 'edgeway_socks5_connections_total', 'ok')).toBe(1);
  }, 30_000);

  it.each([
    { name: 'no username/password method offered', o: { methods: [0], host: 'far' }, expect: { method: 0xff }, reason: 'no_auth_method' },
    { name: 'wrong password', o: { user: 'ops', pass: 'nope', host: 'far' }, expect: { auth: 1 }, reason: 'auth_failed' },
    { name: 'unknown user', o: { user: 'root', pass: 's3cret', host: 'far' }, expect: { auth: 1 }, reason: 'auth_failed' },
    { name: 'an IP target (not a node name)', o: { user: 'ops', pass: 's3cret', ipv4: '127.0.0.1' }, expect: { reply: 8 }, reason: 'address_type' },
    { name: 'an unknown node', o: { user: 'ops', pass: 's3cret', host: 'example.com' }, expect: { reply: 4 }, reason: 'unknown_node' },
    { name: 'a port not allowed here', o: { user: 'ops', pass: 's3cret', host: 'far', port: 80 }, expect: { reply: 2 }, reason: 'port_not_allowed' },
  ])('SOCKS5 refuses $name, counted', async ({ o, expect: want, reason }) => {
    const before = await counter(socksRegistry, 'edgeway_socks5_refusals_total', reason);
    const r = await socks(socksPort, { ...o, dport: (o as { port?: number }).port ?? sshPort });
    expect(r).toMatchObject(want);
    expect(r.sock).toBeUndefined();
    expect(await counter(socksRegistry, 'edgeway_socks5_refusals_total', reason)).toBe(before + 1);
  }, 30_000);

  it('SOCKS5: the far agent refuses a port its own policy does not allow', async () => {
    const before = await counter(farRegistry, 'edgeway_tunnel_refusals_total', 'not-local');
    const r = await socks(socksPort, { user: 'ops', pass: 's3cret', host: 'far', dport: closedPort });
    expect(r.reply).toBe(5);
    expect(await counter(farRegistry, 'edgeway_tunnel_refusals_total', 'not-local')).toBe(before + 1);
  }, 30_000);
});
