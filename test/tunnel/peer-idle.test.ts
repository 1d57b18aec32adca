/**
 * Idle peer connections close (`tunnel.peerIdleMs`), with the real TunnelService:
 * a relay and two agents in one process on loopback; flows go from a to b. One
 * agent (the closer) closes idle peers after IDLE_MS, the other never does
 * (peerIdleMs 0), so everything the other drops is what the closer's close made
 * it see. Closer a: the near side closes (its channel pool, its connection);
 * closer b: the far side closes, and a's next flow must not be broken by it (no
 * warm connection b closed is handed out; a connection b closed is dialled anew).
 * Byte paths carry seeded random data checked by sha256.
 *
 * Per carrier: the data channel (with the addon's record pump carrying the held
 * flow on both sides when the addon is built; CI builds it) and libp2p streams
 * (channel off).
 *
 * IP plan: everything on 127.0.0.1; ports are free ports.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { Registry } from 'prom-client';
import { createRegistry } from '../../src/metrics/registry.js';
import { parseConfig } from '../../src/config/load.js';
import { createLogger, silentLogger } from '../../src/util/log.js';
import { TunnelService } from '../../src/tunnel/service.js';
import { startRelayServer, type RelayServerHandle } from '../../src/tunnel/relay-server.js';
import { EwcSocket } from '../../src/tunnel/channel/ewc-codec.js';
import { acceleratorsFromConfig } from '../../src/native/accelerator.js';
import type { RemoteTarget } from '../../src/proxy/remote-dialer.js';
import type { Snapshot } from '../../src/catalog/types.js';
import { seededBytes } from '../helpers/prng.js';
import { endpoint, freePort, LoopbackPairs, service, snapshot } from './helpers.js';

const logger = process.env.EW_DEBUG_LOG ? createLogger('debug') : silentLogger();
const IDLE_MS = 1500;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const { accelerators } = acceleratorsFromConfig(parseConfig({ accelerator: { mode: 'splice' } }, 'test.yaml', { nodeName: 'n' }).accelerator);
const pumpSkip = accelerators.aead() ? undefined : `record pump unavailable: ${accelerators.aeadReason ?? '?'}`;
if (pumpSkip && process.env.CI === 'true') throw new Error(`peer idle suite needs the record pump in CI: ${pumpSkip}`);
afterAll(() => accelerators.close());

/** Everything `d` delivers until its end. */
function collect(d: Duplex | net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    d.on('data', (c: Buffer) => got.push(c));
    d.on('end', () => resolve(Buffer.concat(got)));
    d.on('error', reject);
  });
}

async function counter(reg: Registry, name: string): Promise<number> {
  const m = reg.getSingleMetric(name);
  if (!m) return 0;
  return (await m.get()).values.reduce((n, v) => n + v.value, 0);
}

async function until(pred: () => boolean | Promise<boolean>, what: string | (() => string), ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}`);
}

describe.each([
  { carrier: 'channel', channel: true, closer: 'a' },
  { carrier: 'channel', channel: true, closer: 'b' },
  { carrier: 'libp2p', channel: false, closer: 'a' },
  { carrier: 'libp2p', channel: false, closer: 'b' },
] as const)('idle peer connections close ($carrier, closed by $closer)', ({ channel, closer }) => {
  const other = closer === 'a' ? 'b' : 'a';
  const closes = (who: string): Promise<number> => counter(regs[who]!, 'edgeway_tunnel_peer_idle_closes_total');
  let dir: string;
  let relay: RelayServerHandle;
  let a: TunnelService;
  let b: TunnelService;
  const regs: Record<string, Registry> = {};
  let echo: net.Server;
  let echoPort: number;
  let snap: Snapshot;
  const pairs = new LoopbackPairs();
  const target = (): RemoteTarget => ({ nodeName: 'b', protocol: 'TCP', serviceKey: 'default/echo', servicePort: 80, ip: '127.0.0.1', port: echoPort });
  const bId = (): string => b.node!.peerId.toString();
  const aId = (): string => a.node!.peerId.toString();
  /** Everything a holds for b, and b for a: libp2p connections, channels, warm connections. */
  const held = (): { aConns: number; bConns: number; aChannel: boolean; bChannel: boolean } => ({
    aConns: a.node!.getConnections().filter((c) => c.remotePeer.toString() === bId()).length,
    bConns: b.node!.getConnections().filter((c) => c.remotePeer.toString() === aId()).length,
    aChannel: a.channel?.peers().includes(bId()) ?? false,
    bChannel: b.channel?.peers().includes(aId()) ?? false,
  });
  const released = (): boolean => { const h = held(); return h.aConns === 0 && h.bConns === 0 && !h.aChannel && !h.bChannel; };
  const roundTrip = async (seed: number, size: number): Promise<void> => {
    const payload = seededBytes(seed, size);
    const d = await a.dialer!.dialStream(target());
    const back = collect(d);
    d.end(payload);
    expect(sha(await back)).toBe(sha(payload));
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ew-peer-idle-'));
    const pskPath = join(dir, 'swarm.key');
    await writeFile(pskPath, `/key/swarm/psk/1.0.0/\n/base16/\n${randomBytes(32).toString('hex')}\n`);
    echo = net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => undefined); s.pipe(s); });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoPort = (echo.address() as net.AddressInfo).port;
    const relayPort = await freePort();
    relay = await startRelayServer(parseConfig({ stateDir: join(dir, 'relay'), tunnel: { listenPort: relayPort, dataPort: await freePort(), listenAddresses: ['127.0.0.1'], psk: { path: pskPath } } }, 'relay.yaml', { nodeName: 'relay' }), logger, createRegistry({ defaultMetrics: false }));
    snap = snapshot([service('default', 'echo', 80, [endpoint('127.0.0.1', 'b', echoPort)])], [{ name: 'a', addresses: [], ready: true }, { name: 'b', addresses: [], ready: true }]);
    const agent = async (name: string, peerIdleMs: number): Promise<TunnelService> => {
      const config = parseConfig({
        stateDir: join(dir, name),
        tunnel: {
          listenPort: await freePort(), dataPort: await freePort(), listenAddresses: ['127.0.0.1'], peerIdleMs, stateFile: false,
          relayNodes: [{ nodeName: 'relay', advertiseAddress: [`127.0.0.1:${relayPort}`] }], psk: { path: pskPath }, channel: { enabled: channel },
        },
      }, `${name}.yaml`, { nodeName: name });
      regs[name] = createRegistry({ defaultMetrics: false });
      const s = new TunnelService({ config, logger, registry: regs[name], snapshot: () => snap, aead: () => accelerators.aead() });
      await s.start();
      return s;
    };
    a = await agent('a', closer === 'a' ? IDLE_MS : 0);
    b = await agent('b', closer === 'b' ? IDLE_MS : 0);
    await until(async () => a.relays!.reservedRelays().length === 1 && b.relays!.reservedRelays().length === 1 && (await a.directory!.resolve('b').then(() => true, () => false)), 'reservations and rendezvous');
  }, 40_000);

  afterAll(async () => {
    pairs.closeAll();
    await a?.stop();
    await b?.stop();
    await relay?.stop();
    echo?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('closes after idle: both sides let go (the other side sees it go), counted once, relays kept; a new flow dials again', async () => {
    await roundTrip(1, 256 * 1024);
    if (channel) await until(() => a.channel!.pathOf(bId()) !== undefined, 'the data channel up');
    expect(held().aConns).toBeGreaterThan(0);
    const before = await closes(closer);
    await until(released, () => `a and b holding nothing for each other: ${JSON.stringify(held())}`);
    expect(await closes(closer)).toBe(before + 1);
    // The other side never closes on its own (peerIdleMs 0): what it dropped, the closer's close made it drop.
    expect(await closes(other)).toBe(0);
    // Nothing dials back by itself.
    await sleep(IDLE_MS);
    expect(released()).toBe(true);
    for (const s of [a, b]) {
      const st = await s.state();
      expect(st.peers).toEqual([]);
      expect(st.streamsOpen).toEqual({ in: 0, out: 0 });
      expect(st.inboundFlows).toBe(0);
      expect(st.channels.every((c) => c.warm === 0)).toBe(true);
      // The relay is no idle peer: its connection and reservation stay.
      expect(s.relays!.reservedRelays()).toHaveLength(1);
    }
    // The next flow dials again (and, with the channel, sets it up again).
    await roundTrip(2, 256 * 1024);
    expect(held().aConns).toBeGreaterThan(0);
    if (channel) await until(() => a.channel!.pathOf(bId()) !== undefined, 'the data channel up again');
    await roundTrip(3, 64 * 1024);
    await until(released, () => `released again after the second idle period: ${JSON.stringify(held())}`);
    expect(await closes(closer)).toBe(before + 2);
  }, 60_000);

  it('a flow held open past peerIdleMs keeps the peer (bytes intact after), then it closes', async () => {
    // A first flow brings the carrier up (the first one of a channel may ride libp2p while it comes up).
    await roundTrip(4, 1024);
    if (channel) await until(() => a.channel!.pathOf(bId()) !== undefined, 'the data channel up');
    const before = await closes(closer);
    const payload = seededBytes(5, 2 * 1024 * 1024);
    const half = payload.length / 2;
    const d = await a.dialer!.dialStream(target());
    let app: Duplex = d;
    let back: Promise<Buffer>;
    if (channel && !pumpSkip) {
      // As the proxy's accelerated path does: the client socket goes to the record pump with the channel connection.
      expect(d).toBeInstanceOf(EwcSocket);
      const [client, plain] = await pairs.pair({ pauseOnConnect: true });
      const native = (d as EwcSocket).forwardNative!(plain, {});
      expect(native).toBeDefined();
      app = client;
      back = collect(client);
    } else {
      back = collect(d);
    }
    app.write(payload.subarray(0, half));
    await sleep(3 * IDLE_MS);
    expect(held().aConns).toBeGreaterThan(0);
    expect(await closes(closer)).toBe(before);
    // Counted open on both sides while it runs (a pumped flow too: its codec closed at the hand-off).
    expect((await a.state()).streamsOpen).toEqual({ in: 0, out: 1 });
    expect((await b.state()).streamsOpen).toEqual({ in: 1, out: 0 });
    app.end(payload.subarray(half));
    expect(sha(await back)).toBe(sha(payload));
    await until(released, () => `released after the held flow ended: ${JSON.stringify(held())}`);
    expect(await closes(closer)).toBe(before + 1);
    for (const s of [a, b]) expect((await s.state()).streamsOpen).toEqual({ in: 0, out: 0 });
  }, 60_000);
});
