/**
 * The data channel on loopback, in one process: a relay and two agents, PSK on and
 * off. Loopback addresses are never LAN candidates from the catalog, so the first
 * channel from A to B goes through the relay's blind data port; once A holds a
 * direct libp2p connection to B, the channel moves to B's data listener (LAN
 * path). Byte paths carry seeded random data checked by sha256.
 *
 * IP plan: everything on 127.0.0.1; ports are free ports.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import dgram from 'node:dgram';
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
import { TunnelRefusedError } from '../../src/tunnel/errors.js';
import { ewcClient } from '../../src/tunnel/channel/ewc-handshake.js';
import type { RemoteTarget } from '../../src/proxy/remote-dialer.js';
import type { Snapshot } from '../../src/catalog/types.js';
import { prng, seededBytes } from '../helpers/prng.js';
import { loadNative } from '../../src/native/addon.js';
import { endpoint, freePort, service, snapshot } from './helpers.js';

const logger = process.env.EW_DEBUG_LOG ? createLogger('debug') : silentLogger();

const seeded = seededBytes;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Write `payload`, half-close, collect everything until the far end closes. */
function roundTrip(d: Duplex, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    d.on('data', (c: Buffer) => got.push(c));
    d.on('end', () => resolve(Buffer.concat(got)));
    d.on('error', reject);
    d.end(payload);
  });
}

async function metric(reg: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = reg.getSingleMetric(name);
  if (!m) return 0;
  const { values } = await m.get();
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0);
}

async function until(pred: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

// The relay forwards with splice (native addon, when built) in one case and Node streams in the other.
describe.each([{ psk: true, relayForwarder: 'auto' }, { psk: false, relayForwarder: 'node' }] as const)('data channel on loopback (psk: $psk, relay forwarder: $relayForwarder)', ({ psk, relayForwarder }) => {
  let dir: string;
  let relay: RelayServerHandle;
  let relayReg: Registry;
  let a: TunnelService;
  const regs: Record<string, Registry> = {};
  let b: TunnelService;
  let bDataPort: number;
  let echo: net.Server;
  let udpEcho: dgram.Socket;
  let echoPort: number;
  let snap: Snapshot;
  const target = (): RemoteTarget => ({ nodeName: 'b', protocol: 'TCP', serviceKey: 'default/echo', servicePort: 80, ip: '127.0.0.1', port: echoPort });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ew-channel-'));
    const pskPath = join(dir, 'swarm.key');
    await writeFile(pskPath, `/key/swarm/psk/1.0.0/\n/base16/\n${randomBytes(32).toString('hex')}\n`);
    echo = net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => undefined); s.pipe(s); });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoPort = (echo.address() as net.AddressInfo).port;
    udpEcho = dgram.createSocket('udp4');
    udpEcho.on('message', (m, ri) => udpEcho.send(Buffer.concat([Buffer.from('b:'), m]), ri.port, ri.address));
    await new Promise<void>((r) => udpEcho.bind(echoPort, '127.0.0.1', r));
    const pskCfg = psk ? { psk: { path: pskPath } } : {};
    const relayPort = await freePort();
    relayReg = createRegistry({ defaultMetrics: false });
    relay = await startRelayServer(parseConfig({ stateDir: join(dir, 'relay'), accelerator: { mode: relayForwarder }, tunnel: { listenPort: relayPort, dataPort: await freePort(), listenAddresses: ['127.0.0.1'], ...pskCfg } }, 'relay.yaml', { nodeName: 'relay' }), logger, relayReg);
    snap = snapshot([
      service('default', 'echo', 80, [endpoint('127.0.0.1', 'b', echoPort)]),
      service('default', 'echo-udp', 53, [endpoint('127.0.0.1', 'b', echoPort, 'UDP')], 'UDP'),
    ], [{ name: 'a', addresses: [], ready: true }, { name: 'b', addresses: [], ready: true }]);
    const agent = async (name: string): Promise<TunnelService> => {
      const dataPort = await freePort();
      if (name === 'b') bDataPort = dataPort;
      const config = parseConfig({
        stateDir: join(dir, name),
        tunnel: { listenPort: await freePort(), dataPort, listenAddresses: ['127.0.0.1'], relayNodes: [{ nodeName: 'relay', advertiseAddress: [`127.0.0.1:${relayPort}`] }], udpIdleTimeoutMs: 500, stateFile: false, ...pskCfg },
      }, `${name}.yaml`, { nodeName: name });
      regs[name] = createRegistry({ defaultMetrics: false });
      const s = new TunnelService({ config, logger, registry: regs[name], snapshot: () => snap });
      await s.start();
      return s;
    };
    a = await agent('a');
    b = await agent('b');
    await until(async () => a.relays!.reservedRelays().length === 1 && b.relays!.reservedRelays().length === 1 && (await a.directory!.resolve('b').then(() => true, () => false)), 'reservations and rendezvous');
  }, 40_000);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await relay?.stop();
    echo?.close();
    udpEcho?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('relayed: seeded bytes both ways through the blind relay, intact (sha256)', async () => {
    // The first flow starts the channel (it may itself take libp2p if that is slow).
    const first = seeded(0, 1000);
    expect(sha(await roundTrip(await a.dialer!.dialStream(target()), first))).toBe(sha(first));
    await until(() => a.channel!.pathOf(b.node!.peerId.toString()) === 'relayed', 'the channel through the relay');
    const flowsBefore = await metric(regs.a!, 'edgeway_tunnel_channel_flows_total', { path: 'relayed' });
    const payload = seeded(1, 4 * 1024 * 1024);
    const d = await a.dialer!.dialStream(target());
    const back = await roundTrip(d, payload);
    expect(sha(back)).toBe(sha(payload));
    const st = await a.state();
    expect(st.channels.find((c) => c.nodeName === 'b')).toMatchObject({ path: 'relayed', via: 'relay' });
    expect(await metric(regs.a!, 'edgeway_tunnel_channel_flows_total', { path: 'relayed' })).toBe(flowsBefore + 1);
    // The relay forwarded ciphertext: at least the payload both ways, plus TLS overhead.
    // With the addon the relay splices in the kernel (CI builds it); Node streams otherwise.
    const kind = relayForwarder === 'auto' && loadNative().addon ? 'splice' : 'node';
    await until(async () => (await metric(relayReg, 'edgeway_relay_data_bytes_total', { path: kind })) > 2 * payload.length, `relay byte count (${kind}) after the pair closed`);
  }, 30_000);

  it('a burst of flows on the relayed path: every one intact, and the peer joins many tokens at once without a MaxListeners warning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => { warnings.push(`${w.name}: ${w.message}`); };
    process.on('warning', onWarning);
    try {
      // 40 flows at once empty the warm pool: its refill asks the relay and b for one token per connection.
      const payloads = Array.from({ length: 40 }, (_, i) => seeded(100 + i, 4096));
      const got = await Promise.all(payloads.map(async (p) => roundTrip(await a.dialer!.dialStream(target()), p)));
      got.forEach((g, i) => expect(sha(g)).toBe(sha(payloads[i]!)));
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => w.includes('MaxListeners'))).toEqual([]);
  }, 60_000);

  it('half-close in both orders: client FIN first, then backend FIN first', async () => {
    // Client first: the echo answers after our FIN.
    const d = await a.dialer!.dialStream(target());
    const payload = seeded(2, 300_000);
    expect(sha(await roundTrip(d, payload))).toBe(sha(payload));
    // Backend first: a server that greets, ends its half, and still reads ours.
    const got: Buffer[] = [];
    const greeter = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      s.end('hello-from-backend');
      s.on('data', (c: Buffer) => got.push(c));
      s.on('end', () => s.destroy());
    });
    await new Promise<void>((r) => greeter.listen(0, '127.0.0.1', r));
    const gport = (greeter.address() as net.AddressInfo).port;
    const prev = snap;
    snap = snapshot([...prev.services, service('default', 'greeter', 81, [endpoint('127.0.0.1', 'b', gport)])], [...prev.nodes]);
    try {
      const g = await a.dialer!.dialStream({ ...target(), serviceKey: 'default/greeter', servicePort: 81, port: gport });
      const greeting = await new Promise<string>((resolve, reject) => {
        let s = '';
        g.on('data', (c: Buffer) => { s += c.toString(); });
        g.on('end', () => resolve(s));
        g.on('error', reject);
      });
      expect(greeting).toBe('hello-from-backend');
      const late = seeded(3, 100_000);
      await new Promise<void>((resolve) => g.end(late, () => resolve()));
      await until(() => Buffer.concat(got).length === late.length, 'the backend to read our half after its FIN');
      expect(sha(Buffer.concat(got))).toBe(sha(late));
    } finally {
      snap = prev;
      greeter.close();
    }
  }, 30_000);

  it('UDP over the channel keeps datagram boundaries (seeded sizes 1..60000)', async () => {
    const s = await a.dialer!.openDatagramSession({ nodeName: 'b', protocol: 'UDP', serviceKey: 'default/echo-udp', servicePort: 53, ip: '127.0.0.1', port: echoPort });
    const r = prng(4);
    const sent = Array.from({ length: 30 }, (_, i) => seeded(100 + i, 1 + Math.floor(r() * 60_000)));
    const got: string[] = [];
    s.onMessage((d) => got.push(sha(Buffer.from(d))));
    const closed = new Promise<void>((res) => s.onClose(() => res()));
    // Paced: loopback UDP drops bursts of 60 kB datagrams at the receive buffer.
    for (const d of sent) { s.send(d); await new Promise((res) => setTimeout(res, 5)); }
    await until(() => got.length === sent.length, 'every datagram back');
    expect(got.sort()).toEqual(sent.map((d) => sha(Buffer.concat([Buffer.from('b:'), d]))).sort());
    expect(await metric(regs.a!, 'edgeway_tunnel_channel_flows_total', { path: 'relayed' })).toBeGreaterThanOrEqual(1);
    await closed;
  }, 30_000);

  it('a target that is not a local endpoint of b is refused over the channel, and counted', async () => {
    const before = (await b.state()).refusals['not-local'] ?? 0;
    const flowsBefore = await metric(regs.a!, 'edgeway_tunnel_channel_flows_total', { path: 'libp2p' });
    const truncatedBefore = await metric(regs.b!, 'edgeway_tunnel_channel_record_errors_total', { reason: 'truncated' });
    await expect(a.dialer!.dialStream({ ...target(), port: 22 })).rejects.toBeInstanceOf(TunnelRefusedError);
    await expect(a.dialer!.dialStream({ ...target(), ip: '127.0.0.2' })).rejects.toThrow(/not-local/);
    expect((await b.state()).refusals['not-local']).toBe(before + 2);
    // Refused on the channel itself, not after a fallback to libp2p.
    expect(await metric(regs.a!, 'edgeway_tunnel_channel_flows_total', { path: 'libp2p' })).toBe(flowsBefore);
    // The refused connections close in order (END both ways): b counts no truncated record stream.
    await new Promise((r) => setTimeout(r, 300));
    expect(await metric(regs.b!, 'edgeway_tunnel_channel_record_errors_total', { reason: 'truncated' })).toBe(truncatedBefore);
  });

  it('without the session key no channel opens: wrong identity, wrong key', async () => {
    const failedBefore = await metric(regs.b!, 'edgeway_tunnel_channel_handshakes_total', { side: 'server', result: 'failed' });
    for (const [identity, key] of [['00'.repeat(16), randomBytes(32)], [randomBytes(16).toString('hex'), randomBytes(32)]] as const) {
      const raw = net.connect({ host: '127.0.0.1', port: bDataPort, allowHalfOpen: true });
      await new Promise((r) => raw.once('connect', r));
      const err = await ewcClient(raw, { id: identity, key }, 5000).then((s) => { s.destroy(); return undefined; }, (e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
    }
    await until(async () => (await metric(regs.b!, 'edgeway_tunnel_channel_handshakes_total', { side: 'server', result: 'failed' })) >= failedBefore + 2, 'two failed handshakes counted');
    expect(await metric(regs.b!, 'edgeway_tunnel_channel_handshake_failures_total', { reason: 'unknown-id' })).toBeGreaterThanOrEqual(1);
  });

  it('a peer that is not a cluster node gets no channel key, and its flows are refused', async () => {
    const rogueSnap = snapshot(snap.services as never, [...snap.nodes, { name: 'rogue', addresses: [], ready: true }]);
    const relayAddr = (await a.state()).relays[0]!;
    expect(relayAddr.connected).toBe(true);
    const cfg = parseConfig({
      stateDir: join(dir, 'rogue'),
      tunnel: {
        listenPort: await freePort(), dataPort: await freePort(), listenAddresses: ['127.0.0.1'], stateFile: false,
        relayNodes: [{ nodeName: 'relay', advertiseAddress: [relay.node.getMultiaddrs()[0]!.toString()] }],
        ...(psk ? { psk: { path: join(dir, 'swarm.key') } } : {}),
      },
    }, 'rogue.yaml', { nodeName: 'rogue' });
    const reg = createRegistry({ defaultMetrics: false });
    const rogue = new TunnelService({ config: cfg, logger, registry: reg, snapshot: () => rogueSnap });
    await rogue.start();
    try {
      await until(() => rogue.relays!.status()[0]?.connected === true, 'rogue connected to the relay');
      const before = await metric(regs.b!, 'edgeway_tunnel_channel_handshakes_total', { path: 'control', result: 'unauthorised' });
      await expect(rogue.dialer!.dialStream(target())).rejects.toThrow(/unauthorised/);
      expect(await metric(regs.b!, 'edgeway_tunnel_channel_handshakes_total', { path: 'control', result: 'unauthorised' })).toBe(before + 1);
      expect((await rogue.state()).channels.find((c) => c.nodeName === 'b')?.path).toBeUndefined();
    } finally {
      await rogue.stop();
    }
  }, 30_000);

  it('LAN: with a direct connection to b, the channel moves to b\'s data listener', async () => {
    await a.node!.dial(b.node!.getMultiaddrs()[0]!);
    await until(() => a.channel!.pathOf(b.node!.peerId.toString()) === 'lan', 'the channel on the LAN path', 40_000);
    const payload = seeded(5, 2 * 1024 * 1024);
    const lanBefore = await metric(regs.a!, 'edgeway_tunnel_channel_flows_total', { path: 'lan' });
    expect(sha(await roundTrip(await a.dialer!.dialStream(target()), payload))).toBe(sha(payload));
    expect(await metric(regs.a!, 'edgeway_tunnel_channel_flows_total', { path: 'lan' })).toBe(lanBefore + 1);
    expect((await a.state()).peers.find((p) => p.nodeName === 'b')?.channel).toBe('lan');
  }, 60_000);

  // Last: it stops a. Found by bench/soak (b warned "bad record stream: truncated" each time a stopped).
  it('stopping an agent ends its warm channel connections with END: the peer counts no truncated record stream', async () => {
    await until(async () => ((await a.state()).channels.find((c) => c.nodeName === 'b')?.warm ?? 0) > 0, 'warm connections to b');
    const truncatedBefore = await metric(regs.b!, 'edgeway_tunnel_channel_record_errors_total', { reason: 'truncated' });
    await a.stop();
    await new Promise((r) => setTimeout(r, 500));
    expect(await metric(regs.b!, 'edgeway_tunnel_channel_record_errors_total', { reason: 'truncated' })).toBe(truncatedBefore);
  }, 30_000);
});
