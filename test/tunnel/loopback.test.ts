/**
 * The tunnel end to end on loopback, in one process: a relay and two agents.
 * Loopback addresses are never direct-dial candidates, so A reaches B through the
 * relay: this covers the relayed path, rendezvous lookups, authorisation, the
 * local-endpoint check, TCP half-close and UDP framing.
 *
 * IP plan: everything on 127.0.0.1; backends on free ports.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import dgram from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRegistry } from '../../src/metrics/registry.js';
import { parseConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/util/log.js';
import { TunnelService } from '../../src/tunnel/service.js';
import { startRelayServer, type RelayServerHandle } from '../../src/tunnel/relay-server.js';
import { TunnelRefusedError } from '../../src/tunnel/errors.js';
import { TunnelIngress } from '../../src/tunnel/ingress.js';
import type { Snapshot } from '../../src/catalog/types.js';
import { endpoint, freePort, service, snapshot } from './helpers.js';

const logger = silentLogger();

describe('tunnel on loopback (relayed)', () => {
  let dir: string;
  let relay: RelayServerHandle;
  let a: TunnelService;
  let b: TunnelService;
  let echo: net.Server;
  let udpEcho: dgram.Socket;
  let echoPort: number;
  let snap: Snapshot;
  let relayAddr: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ew-tunnel-'));
    echo = net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => undefined); s.pipe(s); });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoPort = (echo.address() as net.AddressInfo).port;
    udpEcho = dgram.createSocket('udp4');
    udpEcho.on('message', (m, ri) => udpEcho.send(Buffer.concat([Buffer.from('b:'), m]), ri.port, ri.address));
    await new Promise<void>((r) => udpEcho.bind(echoPort, '127.0.0.1', r));

    const relayPort = await freePort();
    relayAddr = `127.0.0.1:${relayPort}`;
    relay = await startRelayServer(parseConfig({ stateDir: join(dir, 'relay'), tunnel: { listenPort: relayPort, dataPort: await freePort(), listenAddresses: ['127.0.0.1'] } }, 'relay.yaml', { nodeName: 'relay' }), logger, createRegistry({ defaultMetrics: false }));
    snap = snapshot([
      service('default', 'echo', 80, [endpoint('127.0.0.1', 'b', echoPort)]),
      service('default', 'echo-udp', 53, [endpoint('127.0.0.1', 'b', echoPort, 'UDP')], 'UDP'),
      service('default', 'elsewhere', 81, [endpoint('127.0.0.2', 'a', echoPort)]),
    ], [
      { name: 'a', addresses: [], ready: true },
      { name: 'b', addresses: [], ready: true },
    ]);
    const agent = async (name: string): Promise<TunnelService> => {
      const config = parseConfig({
        stateDir: join(dir, name),
        tunnel: { listenPort: await freePort(), dataPort: await freePort(), listenAddresses: ['127.0.0.1'], relayNodes: [{ nodeName: 'relay', advertiseAddress: [`127.0.0.1:${relayPort}`] }], udpIdleTimeoutMs: 500, stateFile: false },
      }, `${name}.yaml`, { nodeName: name });
      const s = new TunnelService({ config, logger, registry: createRegistry({ defaultMetrics: false }), snapshot: () => snap });
      await s.start();
      return s;
    };
    a = await agent('a');
    b = await agent('b');
    // Both registered on the rendezvous and holding a reservation.
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && !(a.relays!.reservedRelays().length === 1 && b.relays!.reservedRelays().length === 1 && (await a.directory!.resolve('b').then(() => true, () => false)))) {
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 30_000);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await relay?.stop();
    echo?.close();
    udpEcho?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('carries TCP bytes with half-close through the relay', async () => {
    const dup = await a.dialer!.dialStream({ nodeName: 'b', protocol: 'TCP', serviceKey: 'default/echo', servicePort: 80, ip: '127.0.0.1', port: echoPort });
    const payload = Buffer.alloc(3 * 1024 * 1024, 7);
    const got: Buffer[] = [];
    const done = new Promise<void>((resolve, reject) => { dup.on('data', (c: Buffer) => got.push(c)); dup.on('end', resolve); dup.on('error', reject); });
    dup.end(payload);
    await done;
    expect(Buffer.concat(got).equals(payload)).toBe(true);
    expect(a.peers().find((p) => p.nodeName === 'b')?.paths).toEqual(['relayed']);
  });

  it('ingress: a client that connects and half-closes at once (no data) gets a clean close', async () => {
    const port = await freePort();
    const ingress = new TunnelIngress({ dialer: a.dialer!, logger, routes: [{ listenHost: '127.0.0.1', listenPort: port, protocol: 'TCP', pick: () => ({ nodeName: 'b', protocol: 'TCP', serviceKey: 'default/echo', servicePort: 80, ip: '127.0.0.1', port: echoPort }) }] });
    await ingress.start();
    try {
      for (const payload of ['', 'hello']) {
        const got = await new Promise<string>((resolve, reject) => {
          let buf = '';
          const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => s.end(payload));
          const t = setTimeout(() => { s.destroy(); reject(new Error(`no close for payload "${payload}"`)); }, 5000);
          s.on('data', (d) => { buf += d.toString(); });
          s.on('close', () => { clearTimeout(t); resolve(buf); });
          s.on('error', reject);
        });
        expect(got).toBe(payload);
      }
    } finally {
      await ingress.stop();
    }
  });

  it('refuses a target that is not an endpoint on the far node, and counts it', async () => {
    const t = { nodeName: 'b', protocol: 'TCP' as const, serviceKey: 'default/elsewhere', servicePort: 81, ip: '127.0.0.2', port: echoPort };
    await expect(a.dialer!.dialStream(t)).rejects.toBeInstanceOf(TunnelRefusedError);
    await expect(a.dialer!.dialStream({ ...t, serviceKey: 'default/echo', servicePort: 80, ip: '127.0.0.1', port: 22 })).rejects.toThrow(/not-local/);
    const st = await b.state();
    expect(st.refusals['not-local']).toBe(2);
  });

  it('refuses a peer that is not a cluster node', async () => {
    // "rogue" knows node b (its catalog says so) but b's catalog has no node "rogue".
    const rogueSnap = snapshot(snap.services as never, [...snap.nodes, { name: 'rogue', addresses: [], ready: true }]);
    const config = parseConfig({
      stateDir: join(dir, 'rogue'),
      tunnel: { listenPort: await freePort(), dataPort: await freePort(), listenAddresses: ['127.0.0.1'], relayNodes: [{ nodeName: 'relay', advertiseAddress: [relayAddr] }], stateFile: false },
    }, 'rogue.yaml', { nodeName: 'rogue' });
    const rogue = new TunnelService({ config, logger, registry: createRegistry({ defaultMetrics: false }), snapshot: () => rogueSnap });
    await rogue.start();
    try {
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && rogue.relays!.status()[0]?.connected !== true) await new Promise((r) => setTimeout(r, 50));
      await expect(rogue.dialer!.dialStream({ nodeName: 'b', protocol: 'TCP', serviceKey: 'default/echo', servicePort: 80, ip: '127.0.0.1', port: echoPort })).rejects.toThrow(/unauthorised/);
      expect((await b.state()).refusals.unauthorised).toBe(1);
    } finally {
      await rogue.stop();
    }
  });

  it('keeps datagram boundaries over UDP and closes the stream after the idle timeout', async () => {
    const s = await a.dialer!.openDatagramSession({ nodeName: 'b', protocol: 'UDP', serviceKey: 'default/echo-udp', servicePort: 53, ip: '127.0.0.1', port: echoPort });
    const got: string[] = [];
    s.onMessage((d) => got.push(Buffer.from(d).toString()));
    const closed = new Promise<void>((r) => s.onClose(() => r()));
    for (let i = 0; i < 20; i++) s.send(Buffer.from(`m${i}`));
    const deadline = Date.now() + 5000;
    while (got.length < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(got.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `b:m${i}`).sort());
    await closed;
    const open = (await a.metrics.streamsOpen.get()).values.reduce((n, v) => n + v.value, 0);
    expect(open).toBe(0);
  });
});
