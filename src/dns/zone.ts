/**
 * The cluster zone: a prebuilt index from a catalog snapshot. Pure.
 *
 * Built once per snapshot (the server swaps the whole object, so a query sees one
 * snapshot or the next, never a mix) and never scans the catalog per query. The
 * build indexes only service names, namespaces and reverse names; a service's
 * records are materialised on the first question about it, and wire bodies are
 * encoded on first use per (name, type) — all memoised inside this snapshot's
 * index. So a swap of 10k services stays cheap (no 100k record objects built per
 * endpoint change) and the hot path is a map lookup plus a buffer copy.
 *
 * Names served (Kubernetes DNS spec):
 * - `<svc>.<ns>.svc.<domain>`        A/AAAA cluster IPs; headless: ready endpoint IPs;
 *                                    ExternalName: CNAME
 * - `<host>.<svc>.<ns>.svc.<domain>` A/AAAA of a ready endpoint (host = its hostname,
 *                                    or its IP with dashes)
 * - `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV for named ports (headless: one per
 *                                    ready endpoint), targets' addresses as additionals
 * - PTR for cluster and endpoint IPs (in-addr.arpa, ip6.arpa)
 * - `<domain>` SOA, `dns-version.<domain>` TXT
 * Under `<domain>`: unknown → NXDOMAIN, known name without that type → NODATA, both
 * with the SOA in authority (its TTL is the negative TTL). Anything else → forward.
 */
import dnsPacket from 'dns-packet';
import type { Answer, OptAnswer } from 'dns-packet';
import type { Service, Snapshot } from '../catalog/types.js';
import { isIP } from 'node:net';
import { expandIpv6, normalizeIp } from '../catalog/ip.js';
import { keyName, keyUnder, nameKey, RCODE, TYPE, type Body } from './wire.js';

export interface ZoneOptions {
  /** Cluster domain, e.g. cluster.local. */
  readonly domain: string;
  /** TTL of positive answers (s). */
  readonly ttl: number;
  /** TTL of the SOA, i.e. of negative answers (RFC 2308) (s). */
  readonly negativeTtl: number;
}

/** A record as the zone holds it (dns-packet's shape; names without trailing dot). */
export type ZoneRecord = Exclude<Answer, OptAnswer>;

export type ZoneResult =
  | { readonly kind: 'forward' }
  | {
    readonly kind: 'answer';
    readonly rcode: number;
    readonly body: Body;
    /**
     * Set when the answer is a CNAME to a name outside the zone (ExternalName) and
     * the query asked for another type: the server resolves `target` upstream and
     * appends what it gets.
     */
    readonly chase?: { readonly target: string; readonly records: readonly ZoneRecord[] };
  };

const FORWARD: ZoneResult = { kind: 'forward' };

interface NameNode {
  readonly name: string;
  readonly records: ZoneRecord[];
  /** Memoised results per qtype (created on first lookup: most names are never asked). */
  memo: Map<number, ZoneResult> | undefined;
}

const TYPE_BY_NAME: Record<string, number> = { A: TYPE.A, AAAA: TYPE.AAAA, CNAME: TYPE.CNAME, SOA: TYPE.SOA, PTR: TYPE.PTR, TXT: TYPE.TXT, SRV: TYPE.SRV, NS: TYPE.NS };

/** Dashed form of an IP used as a host label: 10.0.0.1 → 10-0-0-1, fd00::1 → fd00--1. */
export function dashedIp(ip: string): string {
  return ip.replace(/[.:]/g, '-');
}

/** Reverse-lookup name of an IP (no trailing dot), or undefined when unparsable. */
export function reverseName(ip: string): string | undefined {
  const n = normalizeIp(ip);
  if (!n) return undefined;
  if (!n.includes(':')) return `${n.split('.').reverse().join('.')}.in-addr.arpa`;
  const groups = expandIpv6(n)!;
  const nibbles = groups.flatMap((g) => g.toString(16).padStart(4, '0').split(''));
  return `${nibbles.reverse().join('.')}.ip6.arpa`;
}

const IN_ADDR = '\x07in-addr\x04arpa\x00';
const IP6 = '\x03ip6\x04arpa\x00';

/** Wire key of an IP's reverse name, built directly (the build does this per endpoint). */
export function reverseKey(ip: string): string | undefined {
  const family = isIP(ip);
  if (family === 4) {
    const o = ip.split('.');
    let k = '';
    for (let i = 3; i >= 0; i--) { const x = String(Number(o[i])); k += String.fromCharCode(x.length) + x; }
    return k + IN_ADDR;
  }
  if (family !== 6) return undefined;
  const groups = expandIpv6(ip);
  if (!groups) return undefined;
  let k = '';
  for (let g = 7; g >= 0; g--) for (let n = 0; n < 4; n++) k += '\x01' + ((groups[g]! >> (n * 4)) & 0xf).toString(16);
  return k + IP6;
}

export class Zone {
  private readonly names = new Map<string, NameNode>();
  private readonly domainKey: string;
  private readonly soa: ZoneRecord;
  private readonly negativeBody: Body;
  private nxdomain: ZoneResult;
  private nodata: ZoneResult;
  /** Number of records, for logs and metrics. */
  size = 0;
  /** Records added so far (duplicates dropped). */
  private readonly seen = new Set<string>();
  /** Service base name key → service, and the services already materialised. */
  private readonly services = new Map<string, Service>();
  private readonly materialised = new Set<string>();
  /** Reverse name key → PTR targets. */
  private readonly ptrs = new Map<string, string[]>();
  /** Empty non-terminals known before materialisation: `svc.<domain>`, `<ns>.svc.<domain>`. */
  private readonly ents = new Set<string>();
  private readonly domainLabels: number;

  private constructor(readonly opts: ZoneOptions, serial: number) {
    const d = opts.domain.replace(/\.$/, '').toLowerCase();
    this.domainKey = nameKey(d);
    this.domainLabels = d.split('.').length;
    this.soa = {
      name: d, type: 'SOA', ttl: opts.negativeTtl,
      data: { mname: `ns.dns.${d}`, rname: `hostmaster.${d}`, serial: serial >>> 0, refresh: 7200, retry: 1800, expire: 86400, minimum: opts.negativeTtl },
    };
    this.negativeBody = encodeBody([], [this.soa], []);
    this.nxdomain = { kind: 'answer', rcode: RCODE.NXDOMAIN, body: this.negativeBody };
    this.nodata = { kind: 'answer', rcode: RCODE.NOERROR, body: this.negativeBody };
  }

  /** The zone for a snapshot: unsynced before the first one (revision 0), else built. */
  static of(snapshot: Snapshot, opts: ZoneOptions): Zone {
    return snapshot.revision === 0 ? Zone.unsynced(opts) : Zone.build(snapshot, opts);
  }

  /** Build the index for a snapshot. Pure; O(records). */
  static build(snapshot: Snapshot, opts: ZoneOptions): Zone {
    const z = new Zone(opts, snapshot.revision);
    const d = z.soa.name;
    z.add(z.soa);
    z.add({ name: `dns-version.${d}`, type: 'TXT', ttl: opts.ttl, data: '1.1.0' });
    z.ents.add(nameKey(`svc.${d}`));
    for (const svc of snapshot.services) {
      const nsKey = nameKey(`${svc.namespace}.svc.${d}`);
      z.ents.add(nsKey);
      z.services.set(String.fromCharCode(svc.name.length) + svc.name.toLowerCase() + nsKey, svc);
      if (svc.type === 'ExternalName') continue;
      const base = `${svc.name}.${svc.namespace}.svc.${d}`;
      for (const ip of svc.clusterIPs) z.addPtr(ip, base);
      for (const e of svc.endpoints) if (e.ready) z.addPtr(e.ip, `${e.hostname || dashedIp(e.ip)}.${base}`);
    }
    return z;
  }

  private addPtr(ip: string, target: string): void {
    const key = reverseKey(ip);
    if (!key) return;
    const list = this.ptrs.get(key);
    if (!list) this.ptrs.set(key, [target]);
    else if (!list.includes(target)) list.push(target);
  }

  /** The node of `key`, materialising its service or PTR on first use. */
  private node(key: string): NameNode | undefined {
    const n = this.names.get(key);
    if (n) return n;
    const ptr = this.ptrs.get(key);
    if (ptr) {
      const name = keyName(key).slice(0, -1);
      for (const target of ptr) this.add({ name, type: 'PTR', ttl: this.opts.ttl, data: target });
      return this.names.get(key);
    }
    if (!keyUnder(key, this.domainKey)) return undefined;
    // <...>.<svc>.<ns>.svc.<domain>: find the label offsets, take the last 3 + domain.
    const offs: number[] = [];
    for (let i = 0; i < key.length && key.charCodeAt(i) !== 0; i += 1 + key.charCodeAt(i)) offs.push(i);
    const baseIdx = offs.length - this.domainLabels - 3;
    if (baseIdx < 0) return undefined;
    const baseKey = key.slice(offs[baseIdx]);
    if (this.materialised.has(baseKey)) return undefined;
    const svc = this.services.get(baseKey);
    if (!svc) return undefined;
    this.materialised.add(baseKey);
    this.addService(svc, this.soa.name);
    return this.names.get(key);
  }

  private addService(svc: Service, d: string): void {
    const ttl = this.opts.ttl;
    const base = `${svc.name}.${svc.namespace}.svc.${d}`;
    this.ensure(base);
    if (svc.type === 'ExternalName') {
      if (svc.externalName) this.add({ name: base, type: 'CNAME', ttl, data: svc.externalName.replace(/\.$/, '') });
      return;
    }
    const ready = svc.endpoints.filter((e) => e.ready);
    const hostOf = (ip: string, hostname: string | undefined): string => `${hostname || dashedIp(ip)}.${base}`;
    // Service name → cluster IPs, or endpoint IPs when headless.
    const addrs = svc.headless ? ready.map((e) => e.ip) : svc.clusterIPs;
    for (const ip of addrs) this.add({ name: base, type: ip.includes(':') ? 'AAAA' : 'A', ttl, data: ip });
    // Per-endpoint names (their PTRs are indexed at build time).
    for (const e of ready) this.add({ name: hostOf(e.ip, e.hostname), type: e.family === 6 ? 'AAAA' : 'A', ttl, data: e.ip });
    // SRV for named ports.
    for (const p of svc.ports) {
      if (!p.name) continue;
      const owner = `_${p.name}._${p.protocol.toLowerCase()}.${base}`;
      if (!svc.headless) {
        this.add({ name: owner, type: 'SRV', ttl, data: { priority: 0, weight: 100, port: p.port, target: base } });
        continue;
      }
      this.ensure(owner);
      for (const e of ready) {
        const ep = e.ports.find((x) => x.name === p.name && x.protocol === p.protocol);
        const port = ep?.port ?? (typeof p.targetPort === 'number' ? p.targetPort : p.port);
        this.add({ name: owner, type: 'SRV', ttl, data: { priority: 0, weight: 100, port, target: hostOf(e.ip, e.hostname) } });
      }
    }
  }

  /** Create a name (and its ancestors inside the zone: empty non-terminals answer NODATA). */
  private ensure(name: string): NameNode {
    const key = nameKey(name);
    let node = this.names.get(key);
    if (node) return node;
    node = { name, records: [], memo: undefined };
    this.names.set(key, node);
    const dot = name.indexOf('.');
    if (dot > 0 && key !== this.domainKey && keyUnder(key, this.domainKey)) this.ensure(name.slice(dot + 1));
    return node;
  }

  private add(rr: ZoneRecord): void {
    const node = this.ensure(rr.name);
    // Duplicates (an IP in two slices, two services sharing an endpoint) are dropped; a
    // set keeps this linear for headless services with thousands of endpoints.
    const id = `${rr.name} ${rr.type} ${typeof rr.data === 'string' ? rr.data : JSON.stringify(rr.data)}`;
    if (this.seen.has(id)) return;
    this.seen.add(id);
    node.records.push(rr);
    this.size++;
  }

  /**
   * A zone for before the first snapshot: names under the domain get SERVFAIL (the
   * client retries) instead of an NXDOMAIN it would cache.
   */
  static unsynced(opts: ZoneOptions): Zone {
    const z = new Zone(opts, 0);
    z.nxdomain = z.nodata = { kind: 'answer', rcode: RCODE.SERVFAIL, body: { an: 0, ns: 0, ar: 0, bytes: Buffer.alloc(0) } };
    return z;
  }

  /** Answer a question; `key` is the lower-cased wire name (see wire.ts). */
  lookup(key: string, qtype: number): ZoneResult {
    const node = this.node(key); // (node() tries the built names first)
    if (!node) return keyUnder(key, this.domainKey) ? (this.ents.has(key) ? this.nodata : this.nxdomain) : FORWARD;
    let r = node.memo?.get(qtype);
    if (!r) {
      r = this.resolve(node, qtype);
      (node.memo ??= new Map()).set(qtype, r);
    }
    return r;
  }

  private resolve(node: NameNode, qtype: number): ZoneResult {
    const matching = qtype === TYPE.ANY ? node.records : node.records.filter((r) => TYPE_BY_NAME[r.type] === qtype);
    if (matching.length > 0) {
      return { kind: 'answer', rcode: RCODE.NOERROR, body: encodeBody(matching, [], this.additionals(matching)) };
    }
    const cname = node.records.find((r) => r.type === 'CNAME');
    if (cname) {
      const target = cname.data as string;
      const inZone = this.node(nameKey(target));
      if (inZone) {
        const chained = inZone.records.filter((r) => TYPE_BY_NAME[r.type] === qtype);
        return { kind: 'answer', rcode: RCODE.NOERROR, body: encodeBody([cname, ...chained], chained.length ? [] : [this.soa], []) };
      }
      return { kind: 'answer', rcode: RCODE.NOERROR, body: encodeBody([cname], [], []), chase: { target, records: [cname] } };
    }
    return this.nodata;
  }

  /** Addresses of SRV targets inside the zone (saves the client a round trip). */
  private additionals(records: readonly ZoneRecord[]): ZoneRecord[] {
    const out: ZoneRecord[] = [];
    for (const r of records) {
      if (r.type !== 'SRV') continue;
      const t = this.node(nameKey(r.data.target));
      if (t) out.push(...t.records.filter((x) => x.type === 'A' || x.type === 'AAAA'));
    }
    return out;
  }

  /** Every record (materialises everything: inspection and tests only). */
  records(): ZoneRecord[] {
    for (const k of this.services.keys()) this.node(k);
    for (const k of this.ptrs.keys()) this.node(k);
    return [...this.names.values()].flatMap((n) => n.records);
  }
}

/** Encode records (uncompressed) into a body that follows any question. */
export function encodeBody(answers: readonly ZoneRecord[], authorities: readonly ZoneRecord[], additionals: readonly ZoneRecord[]): Body {
  // No question: everything after the 12-byte header is the body.
  const wire = dnsPacket.encode({ answers: [...answers], authorities: [...authorities], additionals: [...additionals] });
  return { an: answers.length, ns: authorities.length, ar: additionals.length, bytes: Buffer.from(wire.subarray(12)) };
}
