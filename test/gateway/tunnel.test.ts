/**
 * A gateway route whose backend lives on another node, in another LAN: the plan
 * classes the endpoint `remote` and the request goes through the real tunnel
 * (libp2p relay + two tunnel peers, in one process). Loopback addresses are never
 * direct-dial candidates, so the path is relayed. The far peer only serves
 * endpoints its own catalog places on itself.
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
    relay = await startRelayServer(parseConfig({ stateDir: join(dir, 'relay'), tunnel: { listenPort: relayPort, listenAddresses: ['127.0.0.1'] } }, 'relay.yaml', { nodeName: 'relay' }), logger, createRegistry({ defaultMetrics: false }));
    port = await freePort();
    const ingress: IngressObject[] = [
      { kind: 'Gateway', api: 'istio', namespace: 'default', name: 'edge', selector: {}, servers: [{ port, protocol: 'HTTP', hosts: ['*'] }] },
      { kind: 'Route', api: 'istio', namespace: 'default', name: 'far', hosts: ['*'], gateways: ['default/edge'], http: [{ matches: [], destinations: [{ host: 'far-web', weight: 1 }] }], tls: [], tcp: [] },
    ];
    snap = { ...snapshot([service('default', 'far-web', 80, [endpoint('127.0.0.1', 'far', bport)])], [
      { name: 'gw', addresses: [], ready: true },
      { name: 'far', addresses: [], ready: true },
    ]), ingress };
    const peer = async (name: string): Promise<TunnelService> => {
      const config = parseConfig({
        stateDir: join(dir, name),
        tunnel: { listenPort: await freePort(), listenAddresses: ['127.0.0.1'], relayNodes: [{ nodeName: 'relay', advertiseAddress: [`127.0.0.1:${relayPort}`] }], stateFile: false },
      }, `${name}.yaml`, { nodeName: name });
      const s = new TunnelService({ config, logger, registry: createRegistry({ defaultMetrics: false }), snapshot: () => snap });
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
  }, 60_000);

  afterAll(async () => {
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
});
