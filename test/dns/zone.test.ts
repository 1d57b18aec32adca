/**
 * The cluster zone, table-driven: each case is a question and the expected answer
 * written as zone-file records. IP plan: see fixtures.ts.
 */
import { describe, expect, it } from 'vitest';
import dnsPacket from 'dns-packet';
import { Zone, reverseName } from '../../src/dns/zone.js';
import { parseQuery, respond, PLAIN_UDP_SIZE } from '../../src/dns/wire.js';
import { CATALOG, format, query, snapshot, svc } from './fixtures.js';

const zone = Zone.build(CATALOG, { domain: 'cluster.local', ttl: 30, negativeTtl: 5 });
const SOA = 'cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 7 7200 1800 86400 5';

interface Case {
  name: string;
  q: string;
  type: string;
  rcode?: string;
  answer?: string[];
  authority?: string[];
  additional?: string[];
  /** The zone does not own the name: the server forwards it. */
  forward?: true;
}

const cases: Case[] = [
  { name: 'A of a cluster IP', q: 'web.default.svc.cluster.local.', type: 'A', answer: ['web.default.svc.cluster.local. 30 IN A 10.96.0.10'] },
  { name: 'AAAA of a dual-stack service', q: 'web.default.svc.cluster.local.', type: 'AAAA', answer: ['web.default.svc.cluster.local. 30 IN AAAA fd00:96::10'] },
  { name: 'no trailing dot is the same name', q: 'web.default.svc.cluster.local', type: 'A', answer: ['web.default.svc.cluster.local. 30 IN A 10.96.0.10'] },
  { name: 'case-insensitive, question echoed as asked', q: 'WeB.DeFault.SVC.Cluster.LOCAL', type: 'A', answer: ['web.default.svc.cluster.local. 30 IN A 10.96.0.10'] },
  {
    name: 'headless: ready endpoint IPs only', q: 'db.default.svc.cluster.local.', type: 'A',
    answer: ['db.default.svc.cluster.local. 30 IN A 10.244.2.1', 'db.default.svc.cluster.local. 30 IN A 10.244.2.2', 'db.default.svc.cluster.local. 30 IN A 10.244.2.3'],
  },
  { name: 'headless IPv6 endpoint', q: 'db.default.svc.cluster.local.', type: 'AAAA', answer: ['db.default.svc.cluster.local. 30 IN AAAA fd00:244::7'] },
  { name: 'endpoint hostname', q: 'db-0.db.default.svc.cluster.local.', type: 'A', answer: ['db-0.db.default.svc.cluster.local. 30 IN A 10.244.2.1'] },
  { name: 'endpoint without hostname: dashed IP', q: '10-244-2-3.db.default.svc.cluster.local.', type: 'A', answer: ['10-244-2-3.db.default.svc.cluster.local. 30 IN A 10.244.2.3'] },
  { name: 'IPv6 endpoint dashed name', q: 'fd00-244--7.db.default.svc.cluster.local.', type: 'AAAA', answer: ['fd00-244--7.db.default.svc.cluster.local. 30 IN AAAA fd00:244::7'] },
  { name: 'not-ready endpoint has no name', q: '10-244-2-4.db.default.svc.cluster.local.', type: 'A', rcode: 'NXDOMAIN', authority: [SOA] },
  {
    name: 'SRV of a ClusterIP service with additionals', q: '_http._tcp.web.default.svc.cluster.local.', type: 'SRV',
    answer: ['_http._tcp.web.default.svc.cluster.local. 30 IN SRV 0 100 80 web.default.svc.cluster.local.'],
    additional: ['web.default.svc.cluster.local. 30 IN A 10.96.0.10', 'web.default.svc.cluster.local. 30 IN AAAA fd00:96::10'],
  },
  {
    name: 'multi-port SRV: second port', q: '_grpc._tcp.web.default.svc.cluster.local.', type: 'SRV',
    answer: ['_grpc._tcp.web.default.svc.cluster.local. 30 IN SRV 0 100 9000 web.default.svc.cluster.local.'],
    additional: ['web.default.svc.cluster.local. 30 IN A 10.96.0.10', 'web.default.svc.cluster.local. 30 IN AAAA fd00:96::10'],
  },
  {
    name: 'headless SRV: one per ready endpoint, endpoint ports', q: '_pg._tcp.db.default.svc.cluster.local.', type: 'SRV',
    answer: [
      '_pg._tcp.db.default.svc.cluster.local. 30 IN SRV 0 100 5432 db-0.db.default.svc.cluster.local.',
      '_pg._tcp.db.default.svc.cluster.local. 30 IN SRV 0 100 5432 db-1.db.default.svc.cluster.local.',
      '_pg._tcp.db.default.svc.cluster.local. 30 IN SRV 0 100 5432 fd00-244--7.db.default.svc.cluster.local.',
      '_pg._tcp.db.default.svc.cluster.local. 30 IN SRV 0 100 5433 10-244-2-3.db.default.svc.cluster.local.',
    ],
    additional: [
      '10-244-2-3.db.default.svc.cluster.local. 30 IN A 10.244.2.3',
      'db-0.db.default.svc.cluster.local. 30 IN A 10.244.2.1',
      'db-1.db.default.svc.cluster.local. 30 IN A 10.244.2.2',
      'fd00-244--7.db.default.svc.cluster.local. 30 IN AAAA fd00:244::7',
    ],
  },
  { name: 'SRV with the wrong protocol', q: '_pg._udp.db.default.svc.cluster.local.', type: 'SRV', rcode: 'NXDOMAIN', authority: [SOA] },
  { name: 'PTR of a cluster IP', q: '10.0.96.10.in-addr.arpa.', type: 'PTR', answer: ['10.0.96.10.in-addr.arpa. 30 IN PTR web.default.svc.cluster.local.'] },
  {
    name: 'PTR of an IPv6 cluster IP', q: `${reverseName('fd00:96::10')}.`, type: 'PTR',
    answer: [`${reverseName('fd00:96::10')}. 30 IN PTR web.default.svc.cluster.local.`],
  },
  { name: 'PTR of an endpoint with hostname', q: '1.2.244.10.in-addr.arpa.', type: 'PTR', answer: ['1.2.244.10.in-addr.arpa. 30 IN PTR db-0.db.default.svc.cluster.local.'] },
  { name: 'PTR of an endpoint of a ClusterIP service', q: '5.1.244.10.in-addr.arpa.', type: 'PTR', answer: ['5.1.244.10.in-addr.arpa. 30 IN PTR 10-244-1-5.web.default.svc.cluster.local.'] },
  { name: 'PTR of an unknown IP is forwarded', q: '8.8.8.8.in-addr.arpa.', type: 'PTR', forward: true },
  { name: 'ExternalName: CNAME', q: 'ext.prod.svc.cluster.local.', type: 'CNAME', answer: ['ext.prod.svc.cluster.local. 30 IN CNAME example.com.'] },
  { name: 'ExternalName: A gives the CNAME (target chased upstream)', q: 'ext.prod.svc.cluster.local.', type: 'A', answer: ['ext.prod.svc.cluster.local. 30 IN CNAME example.com.'] },
  {
    name: 'ExternalName to an in-zone name: chain resolved', q: 'alias.prod.svc.cluster.local.', type: 'A',
    answer: ['alias.prod.svc.cluster.local. 30 IN CNAME web.default.svc.cluster.local.', 'web.default.svc.cluster.local. 30 IN A 10.96.0.10'],
  },
  { name: 'NXDOMAIN with SOA', q: 'nope.default.svc.cluster.local.', type: 'A', rcode: 'NXDOMAIN', authority: [SOA] },
  { name: 'NXDOMAIN for an unknown namespace', q: 'web.nons.svc.cluster.local.', type: 'A', rcode: 'NXDOMAIN', authority: [SOA] },
  { name: 'NODATA: name exists, type does not', q: 'web.default.svc.cluster.local.', type: 'TXT', authority: [SOA] },
  { name: 'NODATA: IPv4-only service asked AAAA', q: 'plain.prod.svc.cluster.local.', type: 'AAAA', authority: [SOA] },
  { name: 'NODATA: empty non-terminal (namespace)', q: 'default.svc.cluster.local.', type: 'A', authority: [SOA] },
  { name: 'unnamed port has no SRV', q: '_tcp.plain.prod.svc.cluster.local.', type: 'SRV', rcode: 'NXDOMAIN', authority: [SOA] },
  { name: 'SOA at the apex', q: 'cluster.local.', type: 'SOA', answer: [SOA] },
  { name: 'dns-version TXT', q: 'dns-version.cluster.local.', type: 'TXT', answer: ['dns-version.cluster.local. 30 IN TXT "1.1.0"'] },
  { name: 'search-path style svc.ns. is not in the zone', q: 'web.default.', type: 'A', forward: true },
  { name: 'outside names are forwarded', q: 'example.com.', type: 'A', forward: true },
  { name: 'a suffix that is not label-aligned is not ours', q: 'xcluster.local.', type: 'A', forward: true },
  {
    name: 'ANY returns every record of the name', q: 'web.default.svc.cluster.local.', type: 'ANY',
    answer: ['web.default.svc.cluster.local. 30 IN A 10.96.0.10', 'web.default.svc.cluster.local. 30 IN AAAA fd00:96::10'],
  },
];

function check(zone: Zone, c: Case): void {
  const buf = query(c.q, c.type, { id: 777 });
  const parsed = parseQuery(buf);
  if (!parsed.ok) throw new Error(`query did not parse: ${JSON.stringify(parsed)}`);
  const r = zone.lookup(parsed.query.key, parsed.query.qtype);
  if (c.forward) {
    expect(r.kind).toBe('forward');
    return;
  }
  expect(r.kind).toBe('answer');
  if (r.kind !== 'answer') return;
  const out = dnsPacket.decode(respond(buf, parsed.query.questionEnd, r.rcode, true, r.body, parsed.query.edns, 65535));
  expect(out.id).toBe(777);
  const f = format(out);
  expect(f).toEqual({
    rcode: c.rcode ?? 'NOERROR',
    flags: ['aa', 'rd', 'ra'],
    question: `${c.q.replace(/\.$/, '')} ${c.type}`,
    answer: [...(c.answer ?? [])].sort(),
    authority: [...(c.authority ?? [])].sort(),
    additional: [...(c.additional ?? [])].sort(),
  });
}

describe('cluster zone', () => {
  it.each(cases)('$name', (c) => check(zone, c));

  // Records are materialised per service on first use: every case must also hold
  // as the very first question a fresh index gets.
  it.each(cases)('fresh index: $name', (c) => check(Zone.build(CATALOG, { domain: 'cluster.local', ttl: 30, negativeTtl: 5 }), c));

  it('truncates over the UDP limit to header + question with TC', () => {
    const many = Array.from({ length: 60 }, (_, i) => `10.244.9.${i + 1}`);
    const big = Zone.build(snapshot([svc('default', 'big', { headless: true, endpoints: many.map((ip) => ({ ip, family: 4, ready: true, serving: true, terminating: false, zoneHints: [], ports: [] })) })]), { domain: 'cluster.local', ttl: 30, negativeTtl: 5 });
    const buf = query('big.default.svc.cluster.local', 'A');
    const p = parseQuery(buf);
    if (!p.ok) throw new Error('parse');
    const r = big.lookup(p.query.key, p.query.qtype);
    if (r.kind !== 'answer') throw new Error('forward');
    const small = dnsPacket.decode(respond(buf, p.query.questionEnd, r.rcode, true, r.body, undefined, PLAIN_UDP_SIZE));
    expect(small.flag_tc).toBe(true);
    expect(small.answers).toHaveLength(0);
    expect(small.questions?.[0]?.name).toBe('big.default.svc.cluster.local');
    const full = dnsPacket.decode(respond(buf, p.query.questionEnd, r.rcode, true, r.body, undefined, 65535));
    expect(full.answers).toHaveLength(60);
  });

  it('serves a custom cluster domain and ignores the default one', () => {
    const z = Zone.build(CATALOG, { domain: 'edge.example', ttl: 10, negativeTtl: 3 });
    const p = parseQuery(query('web.default.svc.edge.example', 'A'));
    if (!p.ok) throw new Error('parse');
    expect(z.lookup(p.query.key, p.query.qtype).kind).toBe('answer');
    const p2 = parseQuery(query('web.default.svc.cluster.local', 'A'));
    if (!p2.ok) throw new Error('parse');
    expect(z.lookup(p2.query.key, p2.query.qtype).kind).toBe('forward');
  });
});
