import { describe, expect, it } from 'vitest';
import { DatagramDecoder, decodeRequest, decodeStatus, encodeRequest, encodeStatus, frameDatagram, Status, statusName } from '../../src/tunnel/protocol.js';
import { ProtocolError } from '../../src/tunnel/errors.js';
import { isLocalEndpoint } from '../../src/tunnel/server.js';
import { buildPlan } from '../../src/plan/build.js';
import { RendezvousServer } from '../../src/tunnel/rendezvous.js';
import { isUsableRemote, toMultiaddr } from '../../src/tunnel/addrs.js';
import { silentLogger } from '../../src/util/log.js';
import { endpoint, service, snapshot } from './helpers.js';

// IP plan: 10.244.x pod IPs, fd00:: for IPv6; nothing is dialled.

describe('tunnel header', () => {
  it.each([
    { name: 'ipv4 tcp', r: { proto: 'tcp' as const, nodeName: 'b1', serviceKey: 'default/web', servicePort: 80, ip: '10.244.1.5', port: 8080 } },
    { name: 'ipv6 udp', r: { proto: 'udp' as const, nodeName: 'edge-2', serviceKey: 'kube-system/dns', servicePort: 53, ip: 'fd00::a:1', port: 5353 } },
    { name: 'ipv6 full', r: { proto: 'tcp' as const, nodeName: 'n', serviceKey: 'a/b', servicePort: 1, ip: '2001:db8:1:2:3:4:5:6', port: 65535 } },
    { name: 'utf8 names', r: { proto: 'tcp' as const, nodeName: 'nöde', serviceKey: 'ns/svc', servicePort: 443, ip: '10.0.0.1', port: 443 } },
  ])('round-trips $name', ({ r }) => {
    const buf = encodeRequest(r);
    expect(decodeRequest(buf.subarray(0, buf.length - 1))).toBeUndefined();
    const extra = Buffer.concat([buf, Buffer.from('payload')]);
    const d = decodeRequest(extra)!;
    expect(d.used).toBe(buf.length);
    expect(d.request).toEqual({ ...r, version: 1 });
  });

  it.each([
    { name: 'bad version', mut: (b: Uint8Array) => { b[2] = 9; } },
    { name: 'bad proto', mut: (b: Uint8Array) => { b[3] = 7; } },
    { name: 'bad family', mut: (b: Uint8Array) => { b[8] = 5; } },
    { name: 'oversize length', mut: (b: Uint8Array) => { b[0] = 0xff; } },
  ])('rejects $name', ({ mut }) => {
    const b = encodeRequest({ proto: 'tcp', nodeName: 'b1', serviceKey: 'default/web', servicePort: 80, ip: '10.244.1.5', port: 8080 });
    mut(b);
    expect(() => decodeRequest(b)).toThrow(ProtocolError);
  });

  it('encodes status replies', () => {
    const s = encodeStatus(Status.notLocal, 'nope');
    expect(decodeStatus(s.subarray(0, 3))).toBeUndefined();
    expect(decodeStatus(s)).toEqual({ code: Status.notLocal, reason: 'nope', used: 6 });
    expect(statusName(Status.notLocal)).toBe('not-local');
    expect(statusName(99)).toBe('unknown');
  });

  it('keeps datagram boundaries across arbitrary chunking', () => {
    const dgs = [Buffer.alloc(0), Buffer.from('a'), Buffer.alloc(1400, 1), Buffer.alloc(65_507, 2)];
    const stream = Buffer.concat(dgs.map((d) => frameDatagram(d)));
    for (const step of [1, 3, 1000, stream.length]) {
      const dec = new DatagramDecoder();
      const out: Buffer[] = [];
      for (let i = 0; i < stream.length; i += step) out.push(...dec.push(stream.subarray(i, i + step)));
      expect(out.map((b) => b.length)).toEqual(dgs.map((d) => d.length));
      expect(dec.pending).toBe(0);
    }
    expect(() => frameDatagram(Buffer.alloc(70_000))).toThrow(ProtocolError);
  });
});

describe('isLocalEndpoint (never an open proxy)', () => {
  const snap = snapshot([
    service('default', 'web', 80, [endpoint('10.244.2.7', 'b1', 8080), endpoint('10.244.1.5', 'a1', 8080)], 'TCP', 8080),
    service('default', 'dns', 53, [endpoint('10.244.2.8', 'b1', 5353, 'UDP')], 'UDP', 5353),
  ], []);
  const base = { proto: 'tcp' as const, serviceKey: 'default/web', servicePort: 80, ip: '10.244.2.7', port: 8080 };
  it.each([
    { name: 'local endpoint', req: base, ok: true },
    { name: 'endpoint on another node', req: { ...base, ip: '10.244.1.5' }, ok: false },
    { name: 'loopback ssh of the node', req: { ...base, ip: '127.0.0.1', port: 22 }, ok: false },
    { name: 'right ip, other port', req: { ...base, port: 22 }, ok: false },
    { name: 'unknown service', req: { ...base, serviceKey: 'default/nope' }, ok: false },
    { name: 'wrong service port', req: { ...base, servicePort: 81 }, ok: false },
    { name: 'tcp to a udp service', req: { ...base, serviceKey: 'default/dns', servicePort: 53, ip: '10.244.2.8', port: 5353 }, ok: false },
    { name: 'udp local endpoint', req: { proto: 'udp' as const, serviceKey: 'default/dns', servicePort: 53, ip: '10.244.2.8', port: 5353 }, ok: true },
  ])('$name → $ok', ({ req, ok }) => {
    expect(isLocalEndpoint(snap, 'b1', req)).toBe(ok);
  });

  // Issue 13 item 9: the far side uses the plan's port rule. A single-port service
  // whose endpoint port name differs from the service port's (unnamed endpoint
  // port, or a named targetPort) is planned onto that port by the dialing node;
  // the far side must accept exactly what that plan sends, and nothing else.
  const unnamed = { ...endpoint('10.244.2.9', 'b1', 9000), ports: [{ name: '', protocol: 'TCP' as const, port: 9000 }] };
  const named = { ...endpoint('10.244.2.10', 'b1', 9001), ports: [{ name: 'metrics', protocol: 'TCP' as const, port: 9001 }] };
  const single = snapshot([
    service('default', 'unnamed', 80, [unnamed], 'TCP', 9000),
    service('default', 'by-name', 81, [named], 'TCP', 'http'),
  ], [{ name: 'a1', addresses: [], ready: true }, { name: 'b1', addresses: [], ready: true }]);
  it.each([
    { name: 'unnamed endpoint port under a named service port', serviceKey: 'default/unnamed', servicePort: 80 },
    { name: 'named targetPort, endpoint port of another name', serviceKey: 'default/by-name', servicePort: 81 },
  ])('single-port service, $name: accepts what a1\'s plan sends, refuses other ports', ({ serviceKey, servicePort }) => {
    const plan = buildPlan(single, { nodeName: 'a1', routableCIDRs: [], userspacePorts: '20100-20199', mode: 'nftables' });
    const sp = plan.servicePorts.find((p) => p.serviceKey === serviceKey)!;
    expect(sp.endpoints).toHaveLength(1);
    const ep = sp.endpoints[0]!;
    expect(ep.class).toBe('remote');
    const req = { proto: 'tcp' as const, serviceKey, servicePort, ip: ep.ip, port: ep.port };
    expect(isLocalEndpoint(single, 'b1', req)).toBe(true);
    expect(isLocalEndpoint(single, 'b1', { ...req, port: ep.port + 1 })).toBe(false);
    expect(isLocalEndpoint(single, 'a1', req)).toBe(false);
  });
});

describe('rendezvous registry', () => {
  it('binds a name to the newest registration, moves a peer that renames, and expires', () => {
    const r = new RendezvousServer({ ttlMs: 1000, maxRecords: 2, logger: silentLogger() });
    r.register('P1', 'a1', ['/ip4/10.1.0.2/tcp/20006'], 0);
    r.register('P2', 'b1', [], 0);
    expect(r.lookup({ nodeName: 'a1' }, 10).map((x) => x.peerId)).toEqual(['P1']);
    r.register('P3', 'a1', [], 20);
    expect(r.lookup({ nodeName: 'a1' }, 30).map((x) => x.peerId)).toEqual(['P3']);
    expect(r.lookup({ peerId: 'P1' }, 30)).toEqual([]);
    r.register('P2', 'b2', [], 40);
    expect(r.lookup({ nodeName: 'b1' }, 50)).toEqual([]);
    expect(() => r.register('P9', 'c1', [], 60)).toThrow(/full/);
    expect(r.lookup({ nodeName: 'a1' }, 2000)).toEqual([]);
  });

  it('does not let another peer take the name of a live node', () => {
    const r = new RendezvousServer({ ttlMs: 1000, maxRecords: 10, logger: silentLogger() });
    r.register('P1', 'b1', [], 0);
    expect(() => r.register('EVIL', 'b1', [], 10, (id) => id === 'P1')).toThrow(/held by another connected peer/);
    expect(r.lookup({ nodeName: 'b1' }, 20).map((x) => x.peerId)).toEqual(['P1']);
    // Once P1 is gone (or its record expired) a new identity may take the name.
    r.register('P1-new', 'b1', [], 30, () => false);
    expect(r.lookup({ nodeName: 'b1' }, 40).map((x) => x.peerId)).toEqual(['P1-new']);
  });
});

describe('addresses', () => {
  it.each([
    { in: '10.0.0.1', out: '/ip4/10.0.0.1/tcp/20006' },
    { in: '10.0.0.1:4001', out: '/ip4/10.0.0.1/tcp/4001' },
    { in: '[fd00::1]:4001', out: '/ip6/fd00::1/tcp/4001' },
    { in: 'fd00::1', out: '/ip6/fd00::1/tcp/20006' },
    { in: 'relay.example.com', out: '/dns/relay.example.com/tcp/20006' },
    { in: '/ip4/1.2.3.4/tcp/5', out: '/ip4/1.2.3.4/tcp/5' },
  ])('$in → $out', (c) => {
    expect(toMultiaddr(c.in, 20006).toString()).toBe(c.out);
  });
  it('never offers loopback or circuit addresses as direct candidates', () => {
    expect(isUsableRemote('/ip4/127.0.0.1/tcp/1')).toBe(false);
    expect(isUsableRemote('/ip4/10.0.0.1/tcp/1/p2p/X/p2p-circuit')).toBe(false);
    expect(isUsableRemote('/ip4/10.0.0.1/tcp/1')).toBe(true);
  });
});
