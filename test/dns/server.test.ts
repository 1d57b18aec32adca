/**
 * The DNS server over real sockets on 127.0.0.1 (port 0), with raw queries and
 * with `dig`: UDP, TCP (pipelined), truncation → TCP, EDNS0, hostile input.
 * IP plan: see fixtures.ts (cluster names only; nothing leaves loopback).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import dnsPacket from 'dns-packet';
import { DnsServer } from '../../src/dns/server.js';
import { DnsMetrics } from '../../src/dns/metrics.js';
import { Zone } from '../../src/dns/zone.js';
import { silentLogger } from '../../src/util/log.js';
import { CATALOG, ep, query, snapshot, svc, UDP_MODES } from './fixtures.js';
import { udpExchange } from './upstream.js';

const pexec = promisify(execFile);
const ZOPTS = { domain: 'cluster.local', ttl: 30, negativeTtl: 5 };
const BIG = Array.from({ length: 60 }, (_, i) => ep(`10.244.9.${i + 1}`));
const SNAP = snapshot([...CATALOG.services, svc('default', 'big', { headless: true, endpoints: BIG })]);

async function dig(port: number, ...args: string[]): Promise<string> {
  const r = await pexec('dig', ['@127.0.0.1', '-p', String(port), '+time=2', '+tries=1', ...args], { timeout: 10_000 });
  return r.stdout;
}

/** Send framed queries over one TCP connection and collect `count` answers. */
function tcpExchange(port: number, msgs: Buffer[], count = msgs.length, timeoutMs = 3000): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    const out: Buffer[] = [];
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => { s.destroy(); reject(new Error(`tcp timeout after ${out.length} answers`)); }, timeoutMs);
    s.on('connect', () => s.write(Buffer.concat(msgs.map((m) => { const l = Buffer.alloc(2); l.writeUInt16BE(m.length); return Buffer.concat([l, m]); }))));
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length >= count) { clearTimeout(t); s.destroy(); resolve(out); }
    });
    s.on('close', () => { clearTimeout(t); resolve(out); });
    s.on('error', () => undefined);
  });
}

describe.each(UDP_MODES)('dns server, UDP $udp', ({ batch }) => {
  let server: DnsServer;
  let port: number;
  const metrics = new DnsMetrics();

  beforeAll(async () => {
    server = new DnsServer({ listen: ['127.0.0.1:0'], zone: Zone.build(SNAP, ZOPTS), logger: silentLogger(), metrics, maxTcpConnections: 4, batch });
    await server.start();
    port = server.addresses()[0]!.port;
  });
  afterAll(async () => { await server?.stop(); });

  it('binds UDP and TCP on the same port', () => {
    const a = server.addresses();
    expect(a.map((x) => `${x.proto} ${x.address}`).sort()).toEqual(['tcp 127.0.0.1', 'udp 127.0.0.1']);
    expect(new Set(a.map((x) => x.port)).size).toBe(1);
  });

  it('answers over UDP, echoing ID and question case', async () => {
    const r = dnsPacket.decode(await udpExchange(port, query('WEB.default.svc.Cluster.Local', 'A', { id: 31337 })));
    expect(r.id).toBe(31337);
    expect(r.questions?.[0]?.name).toBe('WEB.default.svc.Cluster.Local');
    expect(r.answers?.map((a) => (a as { data: string }).data)).toEqual(['10.96.0.10']);
    expect(r.flag_aa).toBe(true);
  });

  it('patches reused prebuilt answers per query: ID, case, RD, EDNS, DO', () => {
    const variants = [
      { q: query('web.default.svc.cluster.local', 'A', { id: 1 }), name: 'web.default.svc.cluster.local', rd: true, opt: false },
      { q: query('WEB.DEFAULT.svc.cluster.local', 'A', { id: 2, rd: false }), name: 'WEB.DEFAULT.svc.cluster.local', rd: false, opt: false },
      { q: query('Web.Default.Svc.Cluster.Local', 'A', { id: 3, edns: 1232 }), name: 'Web.Default.Svc.Cluster.Local', rd: true, opt: true },
      { q: query('web.default.svc.cluster.local', 'A', { id: 4 }), name: 'web.default.svc.cluster.local', rd: true, opt: false },
    ];
    for (let round = 0; round < 2; round++) {
      for (const v of variants) {
        const out = server.handle(v.q, false);
        if (!(out instanceof Buffer)) throw new Error('expected a synchronous answer');
        const p = dnsPacket.decode(Buffer.from(out));
        expect({ id: p.id, name: p.questions?.[0]?.name, rd: p.flag_rd, opt: (p.additionals ?? []).some((a) => a.type === 'OPT'), data: (p.answers?.[0] as { data: string }).data })
          .toEqual({ id: v.q.readUInt16BE(0), name: v.name, rd: v.rd, opt: v.opt, data: '10.96.0.10' });
      }
    }
  });

  it('answers pipelined queries over one TCP connection', async () => {
    const answers = await tcpExchange(port, [query('web.default.svc.cluster.local', 'A', { id: 1 }), query('db-0.db.default.svc.cluster.local', 'A', { id: 2 }), query('nope.default.svc.cluster.local', 'A', { id: 3 })]);
    const byId = new Map(answers.map((b) => { const p = dnsPacket.decode(b); return [p.id, p]; }));
    expect((byId.get(1)?.answers?.[0] as { data: string }).data).toBe('10.96.0.10');
    expect((byId.get(2)?.answers?.[0] as { data: string }).data).toBe('10.244.2.1');
    expect((byId.get(3) as { rcode?: string }).rcode).toBe('NXDOMAIN');
  });

  it('dig over UDP', async () => {
    expect((await dig(port, '+short', 'web.default.svc.cluster.local')).trim()).toBe('10.96.0.10');
    expect((await dig(port, '+short', 'AAAA', 'web.default.svc.cluster.local')).trim()).toBe('fd00:96::10');
    expect((await dig(port, '+short', 'SRV', '_http._tcp.web.default.svc.cluster.local.')).trim()).toBe('0 100 80 web.default.svc.cluster.local.');
    expect((await dig(port, '+short', '-x', '10.96.0.10')).trim()).toBe('web.default.svc.cluster.local.');
    const nx = await dig(port, 'nope.default.svc.cluster.local');
    expect(nx).toContain('status: NXDOMAIN');
    expect(nx).toMatch(/AUTHORITY SECTION:\ncluster\.local\.\s+5\s+IN\s+SOA/);
  });

  it('dig over TCP', async () => {
    const out = await dig(port, '+tcp', 'db.default.svc.cluster.local');
    expect(out).toContain('status: NOERROR');
    expect(out.match(/\sIN\s+A\s+10\.244\.2\.\d/g)).toHaveLength(3);
  });

  it('truncates for a client without EDNS0, and dig retries over TCP', async () => {
    const raw = dnsPacket.decode(await udpExchange(port, query('big.default.svc.cluster.local', 'A')));
    expect(raw.flag_tc).toBe(true);
    expect(raw.answers).toHaveLength(0);
    const out = await dig(port, '+noedns', 'big.default.svc.cluster.local');
    expect(out).toContain('Truncated, retrying in TCP mode');
    expect(out.match(/\sIN\s+A\s+10\.244\.9\.\d+/g)).toHaveLength(60);
  });

  it('honours the EDNS0 UDP size and answers with an OPT record', async () => {
    const r = dnsPacket.decode(await udpExchange(port, query('big.default.svc.cluster.local', 'A', { edns: 4096 })));
    expect(r.flag_tc).toBe(false);
    expect(r.answers).toHaveLength(60);
    const opt = r.additionals?.find((a) => a.type === 'OPT') as { udpPayloadSize: number } | undefined;
    expect(opt?.udpPayloadSize).toBe(1232);
    const small = dnsPacket.decode(await udpExchange(port, query('big.default.svc.cluster.local', 'A', { edns: 600 })));
    expect(small.flag_tc).toBe(true);
    const d = await dig(port, '+bufsize=4096', 'big.default.svc.cluster.local');
    expect(d).not.toContain('Truncated');
    expect(d).toMatch(/EDNS: version: 0, flags:; udp: 1232/);
  });

  it.each([
    { name: 'two questions → FORMERR', mutate: (b: Buffer) => { b.writeUInt16BE(2, 4); return b; }, rcode: 'FORMERR' },
    { name: 'label running past the end → FORMERR', mutate: (b: Buffer) => b.subarray(0, 20), rcode: 'FORMERR' },
    { name: 'opcode STATUS → NOTIMP', mutate: (b: Buffer) => { b.writeUInt16BE(0x1000, 2); return b; }, rcode: 'NOTIMP' },
    { name: 'class CH → REFUSED', mutate: (b: Buffer) => { b.writeUInt16BE(3, b.length - 2); return b; }, rcode: 'REFUSED' },
  ])('$name', async ({ mutate, rcode }) => {
    const r = await udpExchange(port, mutate(Buffer.from(query('web.default.svc.cluster.local', 'A', { id: 99 }))));
    expect(r.readUInt16BE(0)).toBe(99);
    expect(r.readUInt16BE(2) & 0x8000).toBe(0x8000);
    expect(['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'][r.readUInt16BE(2) & 0xf]).toBe(rcode);
  });

  it('answers BADVERS to an EDNS version it does not speak', async () => {
    const q = dnsPacket.encode({
      type: 'query', id: 5, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: 'web.default.svc.cluster.local', type: 'A' }],
      additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 1, flags: 0, flag_do: false, options: [] }],
    });
    const r = dnsPacket.decode(await udpExchange(port, q));
    const opt = r.additionals?.find((a) => a.type === 'OPT') as { extendedRcode: number } | undefined;
    // BADVERS = 16: low 4 bits in the header (0), high 8 bits in the OPT record (1).
    expect(opt?.extendedRcode).toBe(1);
    expect(r.answers).toHaveLength(0);
    const d = await dig(port, '+edns=1', 'web.default.svc.cluster.local');
    expect(d).toContain('BADVERS');
  });

  it('drops short packets and responses, counting them', async () => {
    const before = metrics.snapshot().drops;
    const s = (await import('node:dgram')).createSocket('udp4');
    const resp = Buffer.from(query('web.default.svc.cluster.local', 'A'));
    resp.writeUInt16BE(0x8000, 2);
    await new Promise<void>((r) => s.send(Buffer.from([1, 2, 3]), port, '127.0.0.1', () => r()));
    await new Promise<void>((r) => s.send(resp, port, '127.0.0.1', () => r()));
    s.close();
    // Still answering, and both drops were counted.
    const ok = dnsPacket.decode(await udpExchange(port, query('web.default.svc.cluster.local', 'A')));
    expect(ok.answers).toHaveLength(1);
    const after = metrics.snapshot().drops;
    expect((after.short ?? 0) - (before.short ?? 0)).toBe(1);
    expect((after.response ?? 0) - (before.response ?? 0)).toBe(1);
  });

  it('answers SERVFAIL for outside names when there is no upstream', async () => {
    const r = dnsPacket.decode(await udpExchange(port, query('example.com', 'A')));
    expect((r as { rcode?: string }).rcode).toBe('SERVFAIL');
  });

  it('limits TCP connections and closes connections with bad framing', async () => {
    const held = await Promise.all(Array.from({ length: 4 }, () => new Promise<import('node:net').Socket>((res) => { const s = connect(port, '127.0.0.1', () => res(s)); s.on('error', () => undefined); })));
    await new Promise((r) => setTimeout(r, 50));
    expect(server.tcpConnections).toBe(4);
    const refused = await tcpExchange(port, [query('web.default.svc.cluster.local', 'A')]);
    expect(refused).toHaveLength(0);
    for (const s of held) s.destroy();
    await new Promise((r) => setTimeout(r, 50));
    // A frame claiming 5 bytes: closed without an answer.
    expect(await tcpExchange(port, [Buffer.from([1, 2, 3, 4, 5])])).toHaveLength(0);
    expect(await tcpExchange(port, [query('web.default.svc.cluster.local', 'A')])).toHaveLength(1);
  });

  it('swaps the zone atomically on a new snapshot', async () => {
    server.setZone(Zone.build(snapshot([svc('default', 'web', { clusterIPs: ['10.96.0.99'] })]), ZOPTS));
    try {
      expect((await dig(port, '+short', 'web.default.svc.cluster.local')).trim()).toBe('10.96.0.99');
      expect(await dig(port, 'db.default.svc.cluster.local')).toContain('NXDOMAIN');
    } finally {
      server.setZone(Zone.build(SNAP, ZOPTS));
    }
  });
});
