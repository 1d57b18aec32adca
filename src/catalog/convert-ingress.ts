/**
 * Conversion of the gateway's API objects into slim ingress records (ingress.ts).
 * Same contract as convert.ts: each object is validated alone and yields a record or
 * a reason; a bad object (a VirtualService without gateways, a bad regex) never
 * affects another. Cross-object checks (an unknown gateway, a host the gateway does
 * not serve) belong to the route model (src/gateway/model.ts).
 */
import type {
  GatewayServer, HeaderMatch, HttpRouteSpec, IngressGateway, IngressRoute, RequestMatch, RouteDestination, ServerProtocol,
  ServerTls, StringMatch, TcpRouteSpec, TlsRouteSpec, TlsSecret, TlsVersion,
} from './ingress.js';
import { arr, fail, meta, obj, str, type Converted, type Obj } from './convert.js';

const HOST = /^(\*|(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$/;
/** Regexes longer than this are refused (they run on every request). */
const MAX_REGEX = 1024;

type R<T> = Converted<T>;
const ok = <T>(value: T): R<T> => ({ ok: true, value });

/** A regex as written by Istio (RE2, whole-string match): compiled once here to reject bad ones. */
export function compileRegex(v: string): RegExp | undefined {
  if (v.length > MAX_REGEX) return undefined;
  try {
    return new RegExp(`^(?:${v})$`);
  } catch {
    return undefined;
  }
}

export function host(v: unknown, where: string): R<string> {
  const s = str(v)?.toLowerCase();
  if (s === undefined) return fail(`${where} is not a string`);
  // Istio allows `namespace/host` in Gateway servers; the namespace part restricts
  // which VirtualServices bind, which we do not model: the host is what counts.
  const h = s.includes('/') ? s.slice(s.indexOf('/') + 1) : s;
  if (!HOST.test(h)) return fail(`${where} "${s}" is not a host name or wildcard`);
  return ok(h);
}

export function hosts(v: unknown, where: string): R<string[]> {
  const out: string[] = [];
  for (const [i, h] of arr(v).entries()) {
    const c = host(h, `${where}[${i}]`);
    if (!c.ok) return c;
    if (!out.includes(c.value)) out.push(c.value);
  }
  return ok(out);
}

export function port(v: unknown, where: string): R<number> {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535 ? ok(v) : fail(`${where} ${JSON.stringify(v)} is out of range 1-65535`);
}

/** "10s", "1.5s", "250ms", "1m" → milliseconds; undefined when absent; null when malformed. */
export function durationMs(v: unknown): number | undefined | null {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') return null;
  let total = 0;
  let consumed = 0;
  for (const m of v.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    consumed += m[0].length;
    total += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  }
  return consumed === v.length && consumed > 0 ? Math.round(total) : null;
}

/** Istio StringMatch `{exact|prefix|regex}`. */
function istioString(v: unknown, where: string): R<StringMatch> {
  const o = obj(v);
  if (!o) return fail(`${where} is not an object`);
  for (const type of ['exact', 'prefix', 'regex'] as const) {
    const s = o[type];
    if (s === undefined) continue;
    if (typeof s !== 'string') return fail(`${where}.${type} is not a string`);
    if (type === 'regex' && !compileRegex(s)) return fail(`${where}.regex "${s}" is not a valid regular expression`);
    return ok({ type, value: s });
  }
  return fail(`${where} needs exact, prefix or regex`);
}

function istioDestinations(v: unknown, where: string): R<RouteDestination[]> {
  const list = arr(v);
  if (list.length === 0) return fail(`${where} is empty`);
  const out: RouteDestination[] = [];
  const anyWeight = list.some((d) => obj(d)?.weight !== undefined);
  for (const [i, rd] of list.entries()) {
    const d = obj(rd);
    const dest = obj(d?.destination);
    if (!d || !dest) return fail(`${where}[${i}].destination missing`);
    const h = str(dest.host)?.toLowerCase();
    if (!h || !HOST.test(h) || h.startsWith('*')) return fail(`${where}[${i}].destination.host "${String(dest.host)}" is not a service host`);
    // Istio: with one destination the weight is 100; with several, an unset weight is 0.
    const w = d.weight === undefined ? (anyWeight ? 0 : 1) : d.weight;
    if (typeof w !== 'number' || !Number.isInteger(w) || w < 0 || w > 100) return fail(`${where}[${i}].weight ${JSON.stringify(d.weight)} is out of range 0-100`);
    const rd2: RouteDestination = { host: h, weight: w };
    const pn = obj(dest.port)?.number;
    if (pn !== undefined) {
      const p = port(pn, `${where}[${i}].destination.port.number`);
      if (!p.ok) return p;
      Object.assign(rd2, { port: p.value });
    }
    out.push(rd2);
  }
  if (out.every((d) => d.weight === 0)) return fail(`${where}: every weight is 0`);
  return ok(out);
}

function istioHttpRoute(v: unknown, where: string): R<HttpRouteSpec> {
  const r = obj(v);
  if (!r) return fail(`${where} is not an object`);
  if (r.redirect !== undefined || r.directResponse !== undefined) return fail(`${where}: redirect and directResponse are not supported`);
  const matches: RequestMatch[] = [];
  for (const [i, rm] of arr(r.match).entries()) {
    const m = obj(rm);
    if (!m) return fail(`${where}.match[${i}] is not an object`);
    const rmatch: { uri?: StringMatch; method?: StringMatch; headers: HeaderMatch[] } = { headers: [] };
    for (const f of ['uri', 'method'] as const) {
      if (m[f] === undefined) continue;
      const s = istioString(m[f], `${where}.match[${i}].${f}`);
      if (!s.ok) return s;
      rmatch[f] = s.value;
    }
    for (const [name, hv] of Object.entries(obj(m.headers) ?? {})) {
      const s = istioString(hv, `${where}.match[${i}].headers.${name}`);
      if (!s.ok) return s;
      rmatch.headers.push({ name: name.toLowerCase(), match: s.value });
    }
    matches.push(rmatch);
  }
  const dests = istioDestinations(r.route, `${where}.route`);
  if (!dests.ok) return dests;
  const spec: HttpRouteSpec = { matches, destinations: dests.value };
  if (str(r.name)) Object.assign(spec, { name: str(r.name) });
  const rw = obj(r.rewrite);
  if (rw) {
    const rewrite: { uri?: string; authority?: string } = {};
    if (str(rw.uri) !== undefined) rewrite.uri = str(rw.uri)!;
    if (str(rw.authority)) rewrite.authority = str(rw.authority)!;
    Object.assign(spec, { rewrite });
  }
  const t = durationMs(r.timeout);
  if (t === null) return fail(`${where}.timeout "${String(r.timeout)}" is not a duration`);
  if (t !== undefined && t > 0) Object.assign(spec, { timeoutMs: t });
  const re = obj(r.retries);
  if (re) {
    const attempts = re.attempts ?? 0;
    if (typeof attempts !== 'number' || !Number.isInteger(attempts) || attempts < 0 || attempts > 10) return fail(`${where}.retries.attempts ${JSON.stringify(re.attempts)} is out of range 0-10`);
    const per = durationMs(re.perTryTimeout);
    if (per === null) return fail(`${where}.retries.perTryTimeout "${String(re.perTryTimeout)}" is not a duration`);
    Object.assign(spec, { retries: per ? { attempts, perTryTimeoutMs: per } : { attempts } });
  }
  return ok(spec);
}

/** networking.istio.io VirtualService (v1, v1beta1, v1alpha3 share the fields we read). */
export function convertVirtualService(o: unknown): R<IngressRoute> {
  const m = meta(o, true);
  if (!m.ok) return m;
  const spec = obj(obj(o)?.spec);
  if (!spec) return fail('spec missing');
  const h = hosts(spec.hosts, 'spec.hosts');
  if (!h.ok) return h;
  if (h.value.length === 0) return fail('spec.hosts is empty');
  const { namespace } = m.value;
  // `mesh` (sidecars) is not ours; a VirtualService bound to no gateway is refused, not fatal.
  const gateways = arr(spec.gateways).map(str).filter((g): g is string => !!g && g !== 'mesh').map((g) => (g.includes('/') ? g : `${namespace}/${g}`));
  if (gateways.length === 0) return fail('spec.gateways is empty: bound to no gateway (mesh-only VirtualServices are not served by the gateway)');
  const http: HttpRouteSpec[] = [];
  for (const [i, r] of arr(spec.http).entries()) {
    const c = istioHttpRoute(r, `spec.http[${i}]`);
    if (!c.ok) return c;
    http.push(c.value);
  }
  const tls: TlsRouteSpec[] = [];
  for (const [i, rr] of arr(spec.tls).entries()) {
    const r = obj(rr);
    const sni: string[] = [];
    let p: number | undefined;
    for (const [j, mm] of arr(r?.match).entries()) {
      const sh = hosts(obj(mm)?.sniHosts, `spec.tls[${i}].match[${j}].sniHosts`);
      if (!sh.ok) return sh;
      sni.push(...sh.value);
      if (obj(mm)?.port !== undefined) p = obj(mm)!.port as number;
    }
    if (sni.length === 0) return fail(`spec.tls[${i}].match needs sniHosts`);
    const d = istioDestinations(r?.route, `spec.tls[${i}].route`);
    if (!d.ok) return d;
    tls.push(p === undefined ? { sniHosts: sni, destinations: d.value } : { sniHosts: sni, port: p, destinations: d.value });
  }
  const tcp: TcpRouteSpec[] = [];
  for (const [i, rr] of arr(spec.tcp).entries()) {
    const r = obj(rr);
    const d = istioDestinations(r?.route, `spec.tcp[${i}].route`);
    if (!d.ok) return d;
    const p = arr(r?.match).map((mm) => obj(mm)?.port).find((x) => typeof x === 'number') as number | undefined;
    tcp.push(p === undefined ? { destinations: d.value } : { port: p, destinations: d.value });
  }
  if (http.length + tls.length + tcp.length === 0) return fail('spec has no http, tls or tcp route');
  return ok({ kind: 'Route', api: 'istio', namespace, name: m.value.name, hosts: h.value, gateways, http, tls, tcp });
}

const PROTOCOLS: readonly ServerProtocol[] = ['HTTP', 'HTTPS', 'HTTP2', 'GRPC', 'TCP', 'TLS'];
const VERSIONS: Record<string, TlsVersion | undefined> = { TLSV1_2: 'TLSv1.2', TLSV1_3: 'TLSv1.3', TLS_AUTO: undefined };

/** networking.istio.io Gateway. */
export function convertIstioGateway(o: unknown): R<IngressGateway> {
  const m = meta(o, true);
  if (!m.ok) return m;
  const spec = obj(obj(o)?.spec);
  if (!spec) return fail('spec missing');
  const selector: Record<string, string> = {};
  for (const [k, v] of Object.entries(obj(spec.selector) ?? {})) if (typeof v === 'string') selector[k] = v;
  const servers: GatewayServer[] = [];
  for (const [i, rs] of arr(spec.servers).entries()) {
    const s = obj(rs);
    const w = `spec.servers[${i}]`;
    const p = obj(s?.port);
    if (!s || !p) return fail(`${w}.port missing`);
    const pn = port(p.number, `${w}.port.number`);
    if (!pn.ok) return pn;
    const proto = str(p.protocol)?.toUpperCase() as ServerProtocol | undefined;
    if (!proto || !PROTOCOLS.includes(proto)) return fail(`${w}.port.protocol "${String(p.protocol)}" is not one of ${PROTOCOLS.join(', ')}`);
    const h = hosts(s.hosts, `${w}.hosts`);
    if (!h.ok) return h;
    if (h.value.length === 0) return fail(`${w}.hosts is empty`);
    const server: GatewayServer = { port: pn.value, protocol: proto, hosts: h.value, ...(str(p.name) ? { name: str(p.name) } : {}) };
    const tls = obj(s.tls);
    if (proto === 'HTTPS' || proto === 'TLS') {
      if (!tls) return fail(`${w}.tls is required for ${proto}`);
      const t = serverTls(tls, m.value.namespace, `${w}.tls`);
      if (!t.ok) return t;
      Object.assign(server, { tls: t.value });
    }
    servers.push(server);
  }
  if (servers.length === 0) return fail('spec.servers is empty');
  return ok({ kind: 'Gateway', api: 'istio', namespace: m.value.namespace, name: m.value.name, selector, servers });
}

function serverTls(tls: Obj, namespace: string, w: string): R<ServerTls> {
  const mode = (str(tls.mode) ?? 'SIMPLE').toUpperCase();
  if (mode !== 'SIMPLE' && mode !== 'MUTUAL' && mode !== 'PASSTHROUGH') return fail(`${w}.mode "${mode}" is not SIMPLE, MUTUAL or PASSTHROUGH`);
  const out: { mode: ServerTls['mode']; credential?: string; minVersion?: TlsVersion; maxVersion?: TlsVersion } = { mode };
  if (mode !== 'PASSTHROUGH') {
    const cred = str(tls.credentialName);
    // Certificates come only from Secrets, never from files on the gateway's disk.
    if (!cred) return fail(`${w}.credentialName is required for ${mode} (serverCertificate files are not supported)`);
    out.credential = cred.includes('/') ? cred : `${namespace}/${cred}`;
  }
  for (const [f, k] of [['minProtocolVersion', 'minVersion'], ['maxProtocolVersion', 'maxVersion']] as const) {
    const v = str(tls[f])?.toUpperCase();
    if (v === undefined) continue;
    if (!(v in VERSIONS)) return fail(`${w}.${f} "${v}" is not TLSV1_2, TLSV1_3 or TLS_AUTO`);
    if (VERSIONS[v]) out[k] = VERSIONS[v];
  }
  if (out.minVersion === 'TLSv1.3' && out.maxVersion === 'TLSv1.2') return fail(`${w}: minProtocolVersion is above maxProtocolVersion`);
  return ok(out);
}

/** kubernetes.io/tls Secret (data base64, or stringData in static files). `null` = another Secret type. */
export function convertTlsSecret(o: unknown): R<TlsSecret | null> {
  const m = meta(o, true);
  if (!m.ok) return m;
  const root = obj(o)!;
  const type = str(root.type);
  if (type !== 'kubernetes.io/tls' && type !== 'Opaque' && type !== undefined) return ok(null);
  const data = obj(root.data) ?? {};
  const sdata = obj(root.stringData) ?? {};
  const field = (k: string): string | undefined => {
    if (typeof sdata[k] === 'string') return sdata[k] as string;
    if (typeof data[k] === 'string') return Buffer.from(data[k] as string, 'base64').toString('utf8');
    return undefined;
  };
  const cert = field('tls.crt');
  const key = field('tls.key');
  const ca = field('ca.crt');
  // Istio's MUTUAL may keep ca.crt alone in `<credential>-cacert`.
  if (!cert || !key) {
    if (ca && m.value.name.endsWith('-cacert')) return ok({ kind: 'Secret', namespace: m.value.namespace, name: m.value.name, cert: '', key: '', ca });
    if (type !== 'kubernetes.io/tls') return ok(null);
    return fail('data needs tls.crt and tls.key');
  }
  if (!cert.includes('-----BEGIN') || !key.includes('-----BEGIN')) return fail('tls.crt or tls.key is not PEM');
  return ok({ kind: 'Secret', namespace: m.value.namespace, name: m.value.name, cert, key, ...(ca ? { ca } : {}) });
}
