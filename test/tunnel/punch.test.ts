/**
 * Hole punching on loopback: the pure plan and wire, the addon's shared-port
 * sockets (listener and connectFrom on one port, real sockets on port 0, seeded
 * bytes with sha256), and the puncher's failure paths between two real libp2p
 * nodes (unavailable without the addon, refused, no connection, no address),
 * each counted. The successful punch through two NATs is in
 * test/e2e/holepunch.kernel.test.ts (it needs network namespaces).
 *
 * IP plan: 127.0.0.1 only; 192.0.2.1 (TEST-NET-1) appears as a claimed address
 * that is never dialled (the peer refuses before any SYN).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { Registry } from 'prom-client';
import { createTunnelNode, type TunnelLibp2p } from '../../src/tunnel/node.js';
import { loadNative, type NativeLoad } from '../../src/native/addon.js';
import { createHolePuncher, type HolePuncher } from '../../src/tunnel/punch/puncher.js';
import { createPunchMetrics, type PunchMetrics } from '../../src/tunnel/punch/metrics.js';
import { ObservedAddresses } from '../../src/tunnel/punch/observed.js';
import { punchCandidates, syncDelayMs, tcpMultiaddrIp } from '../../src/tunnel/punch/plan.js';
import { createPunchSockets, punchUnavailableReason } from '../../src/tunnel/punch/sockets.js';
import { decodePunchFrames, encodePunch, validatePunch, type PunchMessage } from '../../src/tunnel/punch/wire.js';
import { PunchError } from '../../src/tunnel/punch/errors.js';
import { silentLogger } from '../../src/util/log.js';
import { prng } from '../helpers/prng.js';
import { requirement } from '../helpers/skip.js';

describe('punch plan (pure)', () => {
  it.each([
    { name: 'keeps private and public IPv4, in order', in: ['10.200.1.2', '203.0.113.7'], out: ['10.200.1.2', '203.0.113.7'] },
    { name: 'drops loopback, unspecified, link-local, multicast', in: ['127.0.0.1', '0.0.0.0', '169.254.1.1', '224.0.0.1', '10.0.0.1'], out: ['10.0.0.1'] },
    { name: 'drops IPv6 loopback, link-local, mapped; keeps global', in: ['::1', 'fe80::1', '::ffff:10.0.0.1', '2001:db8::1'], out: ['2001:db8::1'] },
    { name: 'drops names and junk, dedupes', in: ['example.com', 42, '10.0.0.1', '10.0.0.1', '10.0.0.300'], out: ['10.0.0.1'] },
    { name: 'caps the list', in: ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5'], out: ['10.0.0.1', '10.0.0.2', '10.0.0.3'] },
  ])('candidates: $name', ({ in: input, out }) => {
    expect(punchCandidates(input)).toEqual(out);
  });

  it.each([
    { rtt: 0, delay: 0 }, { rtt: 31, delay: 16 }, { rtt: 5000, delay: 1000 }, { rtt: -1, delay: 0 }, { rtt: Number.NaN, delay: 0 },
  ])('sync delay for an RTT of $rtt ms is $delay ms', ({ rtt, delay }) => {
    expect(syncDelayMs(rtt)).toBe(delay);
  });

  it.each([
    { ma: '/ip4/10.200.1.2/tcp/4001', ip: '10.200.1.2' },
    { ma: '/ip6/2001:db8::1/tcp/4001/p2p/12D3KooWA', ip: '2001:db8::1' },
    { ma: '/ip4/10.200.1.2/udp/4001/quic-v1', ip: undefined },
    { ma: '/ip4/2001:db8::1/tcp/1', ip: undefined },
    { ma: '/dns4/example.com/tcp/1', ip: undefined },
  ])('observed address of $ma', ({ ma, ip }) => {
    expect(tcpMultiaddrIp(ma)).toBe(ip);
  });

  it('observed addresses: relay observations first, newest first, expired ones dropped', () => {
    const o = new ObservedAddresses({ ttlMs: 1000 });
    o.record('10.0.0.9', false, 0);
    o.record('10.200.1.2', true, 100);
    o.record('10.0.0.8', false, 200);
    expect(o.list(300)).toEqual(['10.200.1.2', '10.0.0.8', '10.0.0.9']);
    expect(o.list(1050)).toEqual(['10.200.1.2', '10.0.0.8']);
  });
});

describe('punch availability (what doctor and the agent log say)', () => {
  it.each([
    { name: 'no addon', load: { addonReason: 'disabled by EDGEWAY_NATIVE=off' }, reason: 'native addon absent (disabled by EDGEWAY_NATIVE=off)' },
    { name: 'an addon without connectFrom', load: { addon: { abi: 2 } }, reason: 'native addon predates connectFrom (rebuild it: scripts/build-native.sh)' },
  ])('$name: $reason', ({ load: l, reason }) => {
    expect(punchUnavailableReason(l as NativeLoad)).toBe(reason);
    expect(createPunchSockets(l as NativeLoad)).toBeUndefined();
  });
});

describe('punch wire (pure)', () => {
  it('round-trips every message, also split across chunks', () => {
    const msgs: PunchMessage[] = [
      { type: 'connect', addrs: ['10.200.1.2'], ports: [20007, 40001] },
      { type: 'sync', attempt: 1 },
      { type: 'result', attempt: 1, ok: [0, 1] },
      { type: 'refuse', reason: 'busy' },
    ];
    const bytes = Buffer.concat(msgs.map((m) => encodePunch(m)));
    const first = decodePunchFrames(bytes.subarray(0, 7));
    expect(first.messages).toEqual([]);
    expect(decodePunchFrames(bytes)).toEqual({ messages: msgs, used: bytes.length });
  });

  it.each([
    { name: 'unknown type', v: { type: 'hello' } },
    { name: 'port out of range', v: { type: 'connect', addrs: [], ports: [70000] } },
    { name: 'no ports', v: { type: 'connect', addrs: [], ports: [] } },
    { name: 'too many ports', v: { type: 'connect', addrs: [], ports: Array.from({ length: 17 }, (_, i) => 1000 + i) } },
    { name: 'result index out of range', v: { type: 'result', attempt: 1, ok: [16] } },
    { name: 'attempt not an integer', v: { type: 'sync', attempt: 1.5 } },
    { name: 'result without ok', v: { type: 'result', attempt: 1, ok: true } },
    { name: 'not an object', v: 'connect' },
  ])('rejects $name', ({ v }) => {
    expect(() => validatePunch(v)).toThrow(PunchError);
  });

  it('rejects an oversized frame and a frame that is not JSON', () => {
    const big = Buffer.alloc(2);
    big.writeUInt16BE(5000, 0);
    expect(() => decodePunchFrames(big)).toThrow(/5000 bytes/);
    const bad = Buffer.from([0, 3, 0x7b, 0x7b, 0x7b]);
    expect(() => decodePunchFrames(bad)).toThrow(/not JSON/);
  });
});

const load = loadNative();
const noSockets = requirement('punch sockets (native addon)', punchUnavailableReason(load));

describe.skipIf(!!noSockets)('shared-port sockets (native addon, loopback)', () => {
  const sockets = createPunchSockets(load)!;
  const servers: net.Server[] = [];
  const conns: net.Socket[] = [];
  afterEach(async () => {
    for (const c of conns.splice(0)) c.destroy();
    await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
  });
  const listener = async (onConn: (s: net.Socket) => void): Promise<number> => {
    const srv = new net.Server(onConn);
    servers.push(srv);
    await sockets.listen(srv, '127.0.0.1', 0);
    return (srv.address() as net.AddressInfo).port;
  };

  it('connects from the listener\'s own port and carries seeded bytes intact both ways', async () => {
    const rnd = prng(42);
    const data = Buffer.alloc(2 * 1024 * 1024 + 3);
    for (let i = 0; i < data.length; i++) data[i] = Math.floor(rnd() * 256);
    const farPort = await listener((s) => { conns.push(s); s.pipe(s); });
    const ourPort = await listener((s) => s.destroy());
    const sock = await sockets.connectFrom({ localHost: '127.0.0.1', localPort: ourPort, remoteHost: '127.0.0.1', remotePort: farPort, timeoutMs: 5000 });
    conns.push(sock);
    expect(sock.localPort).toBe(ourPort);
    expect(sock.remotePort).toBe(farPort);
    const h = createHash('sha256');
    let n = 0;
    const done = new Promise<void>((resolve) => sock.on('data', (d: Buffer) => { h.update(d); n += d.length; if (n >= data.length) resolve(); }));
    sock.write(data);
    await done;
    expect(n).toBe(data.length);
    expect(h.digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('a closed port rejects with ECONNREFUSED; a bad address throws', async () => {
    const port = await listener((s) => s.destroy());
    const closed = await listener((s) => s.destroy());
    await new Promise<void>((r) => servers.pop()!.close(() => r()));
    await expect(sockets.connectFrom({ localHost: '127.0.0.1', localPort: port, remoteHost: '127.0.0.1', remotePort: closed, timeoutMs: 2000 }))
      .rejects.toMatchObject({ code: 'ERR_NATIVE_ERRNO', errno: 111 });
    await expect(sockets.connectFrom({ localHost: '127.0.0.1', localPort: port, remoteHost: 'not-an-ip', remotePort: 1, timeoutMs: 2000 })).rejects.toThrow(/bad remote address/);
  });

  it('an aborted connect rejects at once', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(sockets.connectFrom({ localHost: '127.0.0.1', localPort: 0, remoteHost: '127.0.0.1', remotePort: 9, timeoutMs: 1000, signal: ac.signal })).rejects.toThrow();
  });
});

describe('puncher failure paths between two real libp2p nodes (loopback)', () => {
  const logger = silentLogger();
  let a: TunnelLibp2p;
  let b: TunnelLibp2p;
  const punchers: HolePuncher[] = [];
  let ma: PunchMetrics;
  let mb: PunchMetrics;
  let ra: Registry;
  let rb: Registry;
  const count = async (r: Registry, side: string, result: string): Promise<number> =>
    (await r.getSingleMetric('edgeway_tunnel_punch_total')!.get()).values.find((v) => v.labels.side === side && v.labels.result === result)?.value ?? 0;

  beforeAll(async () => {
    a = await createTunnelNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] });
    b = await createTunnelNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] });
    ra = new Registry();
    rb = new Registry();
    ma = createPunchMetrics(ra);
    mb = createPunchMetrics(rb);
    await a.dial(b.getMultiaddrs()[0]!);
    // The listener side sees the connection once its upgrade completes.
    for (let i = 0; i < 200 && b.getConnections(a.peerId).length === 0; i++) await new Promise((r) => setTimeout(r, 25));
  });
  afterAll(async () => {
    for (const p of punchers) await p.stop();
    await a.stop();
    await b.stop();
  });

  it('without the addon punching is unavailable, counted, and the peer is told so', async () => {
    const pa = createHolePuncher({ node: a, dataPort: 1, logger, metrics: ma, sockets: null });
    punchers.push(pa);
    await pa.start();
    expect(pa.available).toBe(false);
    await expect(pa.punch(b.peerId)).rejects.toMatchObject({ code: 'ERR_TUNNEL_PUNCH', reason: 'unavailable' });
    expect(await count(ra, 'outbound', 'unavailable')).toBe(1);
  });

  it.skipIf(!!noSockets)('a peer without the addon refuses; both sides count it', async () => {
    // a's side of the punchers above has no sockets: b (with sockets) asks a.
    const observed = new ObservedAddresses();
    observed.record('192.0.2.1', true);
    const pb = createHolePuncher({ node: b, dataPort: 2, logger, metrics: mb, observed });
    punchers.push(pb);
    await pb.start();
    await expect(pb.punch(a.peerId)).rejects.toMatchObject({ reason: 'refused' });
    expect(await count(rb, 'outbound', 'refused')).toBe(1);
    expect(await count(ra, 'inbound', 'unavailable')).toBe(1);
  });

  it.skipIf(!!noSockets)('no connection and no observed address fail before any SYN, counted', async () => {
    const stranger = await createTunnelNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] });
    try {
      const pn = createHolePuncher({ node: b, dataPort: 3, logger, metrics: mb, observed: new ObservedAddresses() });
      await expect(pn.punch(stranger.peerId)).rejects.toMatchObject({ reason: 'no-connection' });
      await expect(pn.punch(a.peerId)).rejects.toMatchObject({ reason: 'no-address' });
      expect(await count(rb, 'outbound', 'no-connection')).toBe(1);
      expect(await count(rb, 'outbound', 'no-address')).toBe(1);
    } finally {
      await stranger.stop();
    }
  });
});
