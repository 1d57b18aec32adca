/**
 * Forwarding against local upstreams this test runs (127.0.0.1, port 0): cache
 * hits, TTL countdown and expiry on an injected clock, negative caching (RFC 2308),
 * failover, SERVFAIL, in-flight de-duplication, TCP retry on truncation, and
 * ExternalName chasing. Upstream names live under example. (never resolved for real).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import dnsPacket from 'dns-packet';
import type { Answer } from 'dns-packet';
import { createSocket } from 'node:dgram';
import { DnsServer } from '../../src/dns/server.js';
import { DnsMetrics } from '../../src/dns/metrics.js';
import { Forwarder } from '../../src/dns/forwarder.js';
import { Zone } from '../../src/dns/zone.js';
import { silentLogger } from '../../src/util/log.js';
import { CATALOG, query, UDP_MODES } from './fixtures.js';
import { startUpstream, udpExchange, type TestUpstream } from './upstream.js';

const A = (name: string, ip: string, ttl = 120): Answer => ({ name, type: 'A', ttl, data: ip });
const many = Array.from({ length: 80 }, (_, i) => A('many.example', `192.0.2.${i + 1}`));

class FakeClock {
  t = 1_000_000;
  now(): number { return this.t; }
  advance(s: number): void { this.t += s * 1000; }
}

interface Rig { server: DnsServer; port: number; clock: FakeClock; metrics: DnsMetrics; close(): Promise<void> }

// Generous timeouts: CI boxes are busy; only the failover cases rely on an upstream timing out.
/** The UDP path the current suite runs on (set per describe.each block). */
let udpMode: (typeof UDP_MODES)[number]['batch'];

async function rig(upstreams: { host: string; port: number }[], timeoutMs = 2000): Promise<Rig> {
  const clock = new FakeClock();
  const metrics = new DnsMetrics();
  const forwarder = new Forwarder({ upstreams, timeoutMs, cacheSize: 100, clock, metrics });
  const server = new DnsServer({ listen: ['127.0.0.1:0'], zone: Zone.build(CATALOG, { domain: 'cluster.local', ttl: 30, negativeTtl: 5 }), forwarder, logger: silentLogger(), metrics, batch: udpMode });
  await server.start();
  return { server, port: server.addresses()[0]!.port, clock, metrics, close: () => server.stop() };
}

async function ask(port: number, name: string, type = 'A', edns?: number): Promise<ReturnType<typeof dnsPacket.decode> & { rcode?: string }> {
  return dnsPacket.decode(await udpExchange(port, query(name, type, edns !== undefined ? { edns } : {}), 5000));
}

const ttlsOf = (p: ReturnType<typeof dnsPacket.decode>): number[] => (p.answers ?? []).map((a) => (a as { ttl: number }).ttl);

describe.each(UDP_MODES)('forwarding, UDP $udp', ({ batch }) => {
  beforeAll(() => { udpMode = batch; });
  let up: TestUpstream;
  let up2: TestUpstream;
  let r: Rig;

  beforeAll(async () => {
    up = await startUpstream({ 'www.example': [A('www.example', '192.0.2.10')], 'many.example': many, 'example.com': [A('example.com', '192.0.2.80', 60)] });
    up2 = await startUpstream({ 'www.example': [A('www.example', '192.0.2.20')] });
  });
  afterAll(async () => { await up?.close(); await up2?.close(); });
  afterEach(async () => {
    await r?.close();
    up.log.length = 0; up2.log.length = 0; up.behaviour = {}; up2.behaviour = {};
  });

  it('caches a positive answer, counts its TTL down, and expires it', async () => {
    r = await rig([up]);
    const first = await ask(r.port, 'WWW.example');
    expect(first.answers?.map((a) => (a as { data: string }).data)).toEqual(['192.0.2.10']);
    expect(first.questions?.[0]?.name).toBe('WWW.example');
    expect(ttlsOf(first)).toEqual([120]);
    r.clock.advance(50);
    const hit = await ask(r.port, 'www.example');
    expect(ttlsOf(hit)).toEqual([70]);
    expect(up.log).toEqual(['www.example A udp']);
    expect(r.metrics.snapshot().cacheHits).toBe(1);
    r.clock.advance(71);
    const again = await ask(r.port, 'www.example');
    expect(ttlsOf(again)).toEqual([120]);
    expect(up.log).toHaveLength(2);
  });

  it('caches A and AAAA of one name apart (A/IN is keyed by the bare wire name), both counting down', async () => {
    up.records.set('dual.example', [A('dual.example', '192.0.2.40', 100), { name: 'dual.example', type: 'AAAA', ttl: 200, data: '2001:db8::40' }]);
    r = await rig([up]);
    const data = (p: Awaited<ReturnType<typeof ask>>): string[] => (p.answers ?? []).map((a) => `${a.type} ${(a as { data: string }).data}`);
    expect(data(await ask(r.port, 'dual.example', 'AAAA'))).toEqual(['AAAA 2001:db8::40']);
    expect(data(await ask(r.port, 'Dual.Example', 'A'))).toEqual(['A 192.0.2.40']);
    r.clock.advance(10);
    const a = await ask(r.port, 'dual.example', 'A');
    const aaaa = await ask(r.port, 'dual.example', 'AAAA');
    expect([data(a), ttlsOf(a), data(aaaa), ttlsOf(aaaa)]).toEqual([['A 192.0.2.40'], [90], ['AAAA 2001:db8::40'], [190]]);
    expect(up.log).toEqual(['dual.example AAAA udp', 'dual.example A udp']);
    expect(r.metrics.snapshot().cacheHits).toBe(2);
  });

  it('caches NXDOMAIN for min(SOA TTL, SOA MINIMUM) and not without an SOA', async () => {
    r = await rig([up]);
    const nx = await ask(r.port, 'missing.example');
    expect(nx.rcode).toBe('NXDOMAIN');
    r.clock.advance(59);
    expect((await ask(r.port, 'missing.example')).rcode).toBe('NXDOMAIN');
    expect(up.log).toHaveLength(1);
    r.clock.advance(2);
    await ask(r.port, 'missing.example');
    expect(up.log).toHaveLength(2);
    up.nxSoa = undefined;
    try {
      await ask(r.port, 'other.example');
      await ask(r.port, 'other.example');
      expect(up.log.filter((l) => l.startsWith('other.example'))).toHaveLength(2);
    } finally {
      up.nxSoa = { ttl: 300, minimum: 60 };
    }
  });

  it('caches NODATA (NOERROR, no answer, SOA) as negative', async () => {
    r = await rig([up]);
    const nd = await ask(r.port, 'www.example', 'AAAA');
    expect(nd.rcode).toBe('NOERROR');
    expect(nd.answers).toHaveLength(0);
    expect(nd.authorities?.[0]?.type).toBe('SOA');
    await ask(r.port, 'www.example', 'AAAA');
    expect(up.log).toEqual(['www.example AAAA udp']);
  });

  it('fails over from a silent upstream, then answers SERVFAIL when all fail', async () => {
    r = await rig([up, up2], 500);
    up.behaviour = { silent: true };
    const t0 = Date.now();
    const a = await ask(r.port, 'www.example');
    expect(a.answers?.map((x) => (x as { data: string }).data)).toEqual(['192.0.2.20']);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(490);
    expect(up.log).toEqual(['www.example A udp']);
    up2.behaviour = { servfail: true };
    const f = await ask(r.port, 'fresh.example');
    expect(f.rcode).toBe('SERVFAIL');
    expect(up2.log).toContain('fresh.example A udp');
    // SERVFAIL is not cached: the next query tries again.
    up.behaviour = {};
    up.records.set('fresh.example', [A('fresh.example', '192.0.2.30')]);
    expect((await ask(r.port, 'fresh.example')).rcode).toBe('NOERROR');
  });

  it('answers SERVFAIL when the only upstream is down (closed port)', async () => {
    const dead = createSocket('udp4');
    await new Promise<void>((res) => dead.bind(0, '127.0.0.1', () => res()));
    const deadPort = dead.address().port;
    dead.close();
    r = await rig([{ host: '127.0.0.1', port: deadPort }], 200);
    expect((await ask(r.port, 'www.example')).rcode).toBe('SERVFAIL');
  });

  it('shares one upstream exchange among concurrent identical questions', async () => {
    r = await rig([up], 2000);
    up.behaviour = { delayMs: 150 };
    const all = await Promise.all(Array.from({ length: 20 }, () => ask(r.port, 'www.example')));
    expect(all.every((p) => p.rcode === 'NOERROR' && p.answers?.length === 1)).toBe(true);
    expect(up.log).toEqual(['www.example A udp']);
    expect(r.metrics.snapshot().dedups).toBe(19);
  });

  it('retries over TCP when the upstream truncates, then truncates to a plain client itself', async () => {
    r = await rig([up]);
    up.behaviour = { truncateOver: 5 };
    const big = await ask(r.port, 'many.example', 'A', 4096);
    expect(big.flag_tc).toBe(false);
    expect(big.answers).toHaveLength(80);
    expect(up.log).toEqual(['many.example A udp', 'many.example A tcp']);
    const plain = await ask(r.port, 'many.example', 'A');
    expect(plain.flag_tc).toBe(true);
    expect(up.log).toHaveLength(2);
  });

  it('stops cleanly while a forwarded question is in flight', async () => {
    r = await rig([up], 2000);
    up.behaviour = { delayMs: 150 };
    const s = createSocket('udp4');
    await new Promise<void>((res) => s.send(query('late.example', 'A'), r.port, '127.0.0.1', () => res()));
    await new Promise((res) => setTimeout(res, 30));
    await r.close();
    // The upstream answers after the server closed: nothing may throw (vitest fails on unhandled errors).
    await new Promise((res) => setTimeout(res, 300));
    s.close();
    expect(up.log).toEqual(['late.example A udp']);
  });

  it('chases an ExternalName CNAME upstream', async () => {
    r = await rig([up]);
    const p = await ask(r.port, 'ext.prod.svc.cluster.local', 'A');
    expect(p.answers?.map((a) => `${a.name} ${a.type} ${(a as { data: string }).data}`)).toEqual([
      'ext.prod.svc.cluster.local CNAME example.com',
      'example.com A 192.0.2.80',
    ]);
  });
});
