/**
 * Shared fixtures for DNS tests: a catalog snapshot, query builders and a
 * zone-file-like formatter for decoded answers.
 *
 * IP plan: cluster IPs 10.96.0.0/16 and fd00:96::/64; endpoints 10.244.0.0/16 and
 * fd00:244::/64. Nothing here is ever routed: the tests talk to 127.0.0.1 only.
 */
import dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket } from 'dns-packet';
import type { Endpoint, Service, ServicePort, Snapshot } from '../../src/catalog/types.js';
import { SNAPSHOT_VERSION } from '../../src/catalog/types.js';
import { loadNative } from '../../src/native/addon.js';
import { batchAddon } from '../../src/dns/udp-batch.js';
import { requirement } from '../helpers/skip.js';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function ep(ip: string, extra: Partial<Endpoint> = {}): Endpoint {
  return {
    ip, family: ip.includes(':') ? 6 : 4, ready: true, serving: true, terminating: false, zoneHints: [], ports: [], ...extra,
  };
}

export function svc(ns: string, name: string, extra: Partial<Service>): Service {
  return {
    namespace: ns, name, key: `${ns}/${name}`, type: 'ClusterIP', clusterIPs: [], headless: false, ports: [],
    sessionAffinity: { kind: 'None' }, internalTrafficPolicy: 'Cluster', endpoints: [], ...extra,
  };
}

export function port(name: string, p: number, protocol: ServicePort['protocol'] = 'TCP', targetPort: number | string = p): ServicePort {
  return { name, protocol, port: p, targetPort };
}

export function snapshot(services: Service[], revision = 7): Snapshot {
  return { version: SNAPSHOT_VERSION, revision, builtAt: new Date(0).toISOString(), origin: 'live', services, nodes: [] };
}

/** The catalog most DNS tests serve. */
export const CATALOG: Snapshot = snapshot([
  svc('default', 'web', {
    clusterIPs: ['10.96.0.10', 'fd00:96::10'],
    ports: [port('http', 80), port('grpc', 9000)],
    endpoints: [ep('10.244.1.5', { ports: [{ name: 'http', protocol: 'TCP', port: 8080 }] }), ep('10.244.1.6', { ready: false, serving: false })],
  }),
  svc('default', 'db', {
    headless: true,
    ports: [port('pg', 5432)],
    endpoints: [
      ep('10.244.2.1', { hostname: 'db-0', ports: [{ name: 'pg', protocol: 'TCP', port: 5432 }] }),
      ep('10.244.2.2', { hostname: 'db-1', ports: [{ name: 'pg', protocol: 'TCP', port: 5432 }] }),
      ep('10.244.2.3', { ports: [{ name: 'pg', protocol: 'TCP', port: 5433 }] }),
      ep('10.244.2.4', { ready: false, serving: false }),
      ep('fd00:244::7', { ports: [{ name: 'pg', protocol: 'TCP', port: 5432 }] }),
    ],
  }),
  svc('prod', 'ext', { type: 'ExternalName', externalName: 'example.com' }),
  svc('prod', 'alias', { type: 'ExternalName', externalName: 'web.default.svc.cluster.local' }),
  svc('prod', 'plain', { clusterIPs: ['10.96.0.20'], ports: [port('', 80)] }),
]);

export interface QueryOpts {
  id?: number;
  edns?: number;
  rd?: boolean;
}

export function query(name: string, type: string, opts: QueryOpts = {}): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: opts.id ?? 4242,
    flags: opts.rd === false ? 0 : dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as 'A', class: 'IN' }],
    additionals: opts.edns !== undefined ? [{ name: '.', type: 'OPT', udpPayloadSize: opts.edns, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] : [],
  });
}

function fqdn(n: string): string {
  return n === '' || n === '.' ? '.' : `${n.replace(/\.$/, '')}.`;
}

/** One record in zone-file presentation: `name ttl IN TYPE rdata`. */
export function formatRecord(r: Answer): string {
  if (r.type === 'OPT') return `. OPT udp=${r.udpPayloadSize}`;
  const d = (r as { data: unknown }).data;
  let rdata: string;
  switch (r.type) {
    case 'A': case 'AAAA': rdata = String(d); break;
    case 'CNAME': case 'PTR': case 'NS': rdata = fqdn(String(d)); break;
    case 'SRV': { const s = d as { priority: number; weight: number; port: number; target: string }; rdata = `${s.priority} ${s.weight} ${s.port} ${fqdn(s.target)}`; break; }
    case 'SOA': { const s = d as { mname: string; rname: string; serial: number; refresh: number; retry: number; expire: number; minimum: number }; rdata = `${fqdn(s.mname)} ${fqdn(s.rname)} ${s.serial} ${s.refresh} ${s.retry} ${s.expire} ${s.minimum}`; break; }
    case 'TXT': rdata = (d as Buffer[]).map((b) => `"${b.toString()}"`).join(' '); break;
    default: rdata = JSON.stringify(d);
  }
  return `${fqdn(r.name)} ${r.ttl} IN ${r.type} ${rdata}`;
}

export interface Formatted {
  rcode: string;
  flags: string[];
  question: string;
  answer: string[];
  authority: string[];
  additional: string[];
}

export function format(p: DecodedPacket): Formatted {
  const flags: string[] = [];
  if (p.flag_aa) flags.push('aa');
  if (p.flag_tc) flags.push('tc');
  if (p.flag_rd) flags.push('rd');
  if (p.flag_ra) flags.push('ra');
  const q = p.questions?.[0];
  return {
    rcode: (p as { rcode?: string }).rcode ?? '',
    flags,
    question: q ? `${q.name} ${q.type}` : '',
    answer: (p.answers ?? []).map(formatRecord).sort(),
    authority: (p.authorities ?? []).map(formatRecord).sort(),
    additional: (p.additionals ?? []).filter((r) => r.type !== 'OPT').map(formatRecord).sort(),
  };
}

/**
 * The two UDP paths of the server: Node's dgram and batches through the native
 * addon (recvmmsg/sendmmsg). Suites over real sockets run on both; without the
 * addon the batched one is skipped with the reason (and fails in CI).
 */
const native = loadNative();
const batch = batchAddon(native.addon);
const batchSkip = batch ? undefined : requirement('batched UDP (native UdpBatch)', native.addonReason ?? 'the addon has no UdpBatch');
export const UDP_MODES: { udp: string; batch: ReturnType<typeof batchAddon> }[] = [
  { udp: 'dgram', batch: undefined },
  ...(batchSkip ? [] : [{ udp: 'batched', batch }]),
];

/**
 * Write an agent config serving the example catalog with only DNS on (static
 * source, no data plane, no tunnel) into `dir`; returns its path.
 */
export async function writeDnsAgentConfig(dir: string, dns: string, metricsListen = ''): Promise<string> {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const file = join(dir, 'agent.yaml');
  await writeFile(file, [
    'nodeName: edge-1',
    `stateDir: ${join(dir, 'state')}`,
    'sources:',
    '  kubernetes: { enabled: false }',
    `  static: { paths: [${join(root, 'examples/services.yaml')}] }`,
    'dataplane: { mode: none }',
    `dns: ${dns}`,
    'tunnel: { enabled: false }',
    `metrics: { listen: "${metricsListen}" }`,
    '',
  ].join('\n'));
  return file;
}
