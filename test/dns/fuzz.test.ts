/**
 * Hostile input: ≥100k random and mutated packets (seeded, reproducible: set
 * DNS_FUZZ_SEED to replay, DNS_FUZZ_COUNT for a longer run), through the query
 * handler and over real UDP/TCP sockets. The server must never throw, every answer
 * must be a well-formed response to the packet it answers, and afterwards it must
 * still answer correctly. IP plan: loopback only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import dnsPacket from 'dns-packet';
import { DnsServer } from '../../src/dns/server.js';
import { DnsMetrics } from '../../src/dns/metrics.js';
import { Zone } from '../../src/dns/zone.js';
import { analyzeResponse } from '../../src/dns/cache.js';
import { silentLogger } from '../../src/util/log.js';
import { CATALOG, query } from './fixtures.js';
import { udpExchange } from './upstream.js';
import { prng } from '../helpers/prng.js';

const SEED = Number(process.env.DNS_FUZZ_SEED ?? 0x5eed);
const COUNT = Number(process.env.DNS_FUZZ_COUNT ?? 100_000);


const SEEDS = [
  query('web.default.svc.cluster.local', 'A'),
  query('db.default.svc.cluster.local', 'AAAA', { edns: 1232 }),
  query('_pg._tcp.db.default.svc.cluster.local', 'SRV', { edns: 4096 }),
  query('10.0.96.10.in-addr.arpa', 'PTR'),
  query('nope.default.svc.cluster.local', 'A', { edns: 512 }),
  query('example.com', 'MX'),
  query('cluster.local', 'SOA'),
  query('ext.prod.svc.cluster.local', 'ANY'),
];

export function mutate(rnd: () => number): Buffer {
  const r = rnd();
  const int = (n: number): number => Math.floor(rnd() * n);
  if (r < 0.15) {
    // Pure noise, sometimes with a plausible header.
    const b = Buffer.alloc(int(600));
    for (let i = 0; i < b.length; i++) b[i] = int(256);
    if (b.length >= 12 && rnd() < 0.5) { b.writeUInt16BE(0x0100, 2); b.writeUInt16BE(1, 4); }
    return b;
  }
  const b = Buffer.from(SEEDS[int(SEEDS.length)]!);
  const ops = 1 + int(4);
  let out = b;
  for (let k = 0; k < ops; k++) {
    const op = int(8);
    if (out.length === 0) break;
    switch (op) {
      case 0: { const i = int(out.length); out[i] = out[i]! ^ (1 << int(8)); break; } // bit flip
      case 1: out[int(out.length)] = int(256); break; // random byte
      case 2: out = out.subarray(0, int(out.length)); break; // truncate
      case 3: { const extra = Buffer.alloc(int(64)); for (let i = 0; i < extra.length; i++) extra[i] = int(256); out = Buffer.concat([out, extra]); break; }
      case 4: if (out.length >= 12) out.writeUInt16BE(int(65536), 4 + 2 * int(4)); break; // a count field
      case 5: if (out.length > 12) out[12 + int(Math.min(out.length - 12, 40))] = [0xc0, 0xff, 0x3f, 0x40, 0][int(5)]!; break; // label length / pointer
      case 6: if (out.length >= 4) out.writeUInt16BE(int(65536), 2); break; // flags (opcode, QR)
      default: { const i = int(out.length); out = Buffer.concat([out.subarray(0, i), out.subarray(int(out.length))]); } // splice
    }
  }
  return Buffer.from(out);
}

describe('fuzz', () => {
  let server: DnsServer;
  let port: number;
  const metrics = new DnsMetrics();

  beforeAll(async () => {
    server = new DnsServer({ listen: ['127.0.0.1:0'], zone: Zone.build(CATALOG, { domain: 'cluster.local', ttl: 30, negativeTtl: 5 }), logger: silentLogger(), metrics });
    await server.start();
    port = server.addresses()[0]!.port;
  });
  afterAll(async () => { await server?.stop(); });

  it(`survives ${COUNT} random and mutated packets through the handler (seed ${SEED})`, async () => {
    const rnd = prng(SEED);
    let answered = 0;
    let dropped = 0;
    for (let i = 0; i < COUNT; i++) {
      const pkt = mutate(rnd);
      const before = Buffer.from(pkt);
      let r = server.handle(pkt, rnd() < 0.2);
      if (r instanceof Promise) r = await r;
      // (plain checks in the loop: expect() per packet costs more than the handler)
      if (!pkt.equals(before)) throw new Error(`handler modified packet #${i} (seed ${SEED})`);
      if (r === undefined) { dropped++; continue; }
      answered++;
      // A response to this packet: QR set, same ID; and well-formed (decodable) for a sample.
      if (r.length < 12 || (r.readUInt16BE(2) & 0x8000) === 0 || r.readUInt16BE(0) !== pkt.readUInt16BE(0)) {
        throw new Error(`bad response to packet #${i} (seed ${SEED}): query ${pkt.toString('hex')} answer ${r.toString('hex')}`);
      }
      if (i % 10 === 0) {
        try { dnsPacket.decode(r); } catch (err) {
          throw new Error(`undecodable response to packet #${i} (seed ${SEED}): query ${pkt.toString('hex')} answer ${r.toString('hex')}: ${String(err)}`);
        }
      }
    }
    expect(answered + dropped).toBe(COUNT);
    expect(answered).toBeGreaterThan(COUNT / 4);
    expect(dropped).toBeGreaterThan(0);
    expect(metrics.snapshot().drops.internal ?? 0).toBe(0);
  });

  it('parses 50k mutated upstream answers without throwing (forwarder input)', () => {
    const rnd = prng(SEED + 2);
    const question = Buffer.from('\x03www\x07example\x00\x00\x01\x00\x01', 'latin1');
    const good = dnsPacket.encode({
      type: 'response', id: 1, flags: 0x8180, questions: [{ name: 'www.example', type: 'A' }],
      answers: [{ name: 'www.example', type: 'A', ttl: 60, data: '192.0.2.1' }, { name: 'www.example', type: 'A', ttl: 30, data: '192.0.2.2' }],
      authorities: [{ name: 'example', type: 'SOA', ttl: 60, data: { mname: 'ns.example', rname: 'h.example', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 5 } }],
      additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
    });
    const ok = analyzeResponse(good, question);
    expect(ok?.cacheTtl).toBe(30);
    expect(ok?.body.ar).toBe(0);
    let parsed = 0;
    for (let i = 0; i < 50_000; i++) {
      let b = Buffer.from(good);
      for (let k = 0, n = 1 + Math.floor(rnd() * 3); k < n; k++) {
        const op = Math.floor(rnd() * 3);
        if (op === 0) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
        else if (op === 1) b = b.subarray(0, Math.floor(rnd() * b.length));
        else b = Buffer.concat([b, Buffer.from([Math.floor(rnd() * 256)])]);
      }
      const r = analyzeResponse(b, question);
      if (r) {
        parsed++;
        // Whatever parsed must be internally consistent: TTL offsets inside the body.
        for (const o of r.ttlOffsets) if (o < 0 || o + 4 > r.body.bytes.length) throw new Error(`ttl offset ${o} outside body, input ${b.toString('hex')}`);
      }
    }
    expect(parsed).toBeGreaterThan(0);
  });

  it('survives mutated packets over real UDP and TCP sockets, then answers correctly', async () => {
    const rnd = prng(SEED + 1);
    const s = createSocket('udp4');
    s.on('message', () => undefined);
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    for (let i = 0; i < 20_000; i++) {
      const pkt = mutate(rnd);
      s.send(pkt, port, '127.0.0.1');
      if (i % 200 === 0) await new Promise((r) => setImmediate(r));
    }
    // Random byte streams on TCP connections.
    await Promise.all(Array.from({ length: 20 }, () => new Promise<void>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.on('error', () => undefined);
      c.on('connect', () => {
        const chunks = Array.from({ length: 1 + Math.floor(rnd() * 5) }, () => { const m = mutate(rnd); const l = Buffer.alloc(2); l.writeUInt16BE(rnd() < 0.8 ? m.length : Math.floor(rnd() * 65536)); return Buffer.concat([l, m]); });
        c.end(Buffer.concat(chunks));
      });
      c.on('close', () => resolve());
      setTimeout(() => { c.destroy(); resolve(); }, 1000);
    })));
    await new Promise((r) => setTimeout(r, 100));
    s.close();
    const ok = dnsPacket.decode(await udpExchange(port, query('web.default.svc.cluster.local', 'A')));
    expect(ok.answers?.map((a) => (a as { data: string }).data)).toEqual(['10.96.0.10']);
    const drops = metrics.snapshot().drops;
    expect(Object.values(drops).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    expect(drops.internal ?? 0).toBe(0);
  });
});
