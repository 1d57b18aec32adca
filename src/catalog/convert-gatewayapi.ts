/**
 * Gateway API (gateway.networking.k8s.io/v1) `Gateway` and `HTTPRoute` → the same
 * slim ingress records as Istio's objects, so one route model serves both.
 */
import type { GatewayServer, HeaderMatch, HttpRouteSpec, IngressGateway, IngressRoute, RequestMatch, RouteDestination, StringMatch } from './ingress.js';
import { arr, fail, meta, obj, str, type Converted } from './convert.js';
import { compileRegex, durationMs, host, hosts, port } from './convert-ingress.js';

type R<T> = Converted<T>;
const ok = <T>(value: T): R<T> => ({ ok: true, value });

export function convertGatewayApiGateway(o: unknown): R<IngressGateway> {
  const m = meta(o, true);
  if (!m.ok) return m;
  const spec = obj(obj(o)?.spec);
  if (!spec) return fail('spec missing');
  const cls = str(spec.gatewayClassName);
  if (!cls) return fail('spec.gatewayClassName missing');
  const servers: GatewayServer[] = [];
  for (const [i, rl] of arr(spec.listeners).entries()) {
    const l = obj(rl);
    const w = `spec.listeners[${i}]`;
    if (!l) return fail(`${w} is not an object`);
    const name = str(l.name);
    if (!name) return fail(`${w}.name missing`);
    const p = port(l.port, `${w}.port`);
    if (!p.ok) return p;
    const proto = str(l.protocol);
    if (proto !== 'HTTP' && proto !== 'HTTPS' && proto !== 'TLS' && proto !== 'TCP') return fail(`${w}.protocol "${String(proto)}" is not HTTP, HTTPS, TLS or TCP`);
    let h = '*';
    if (l.hostname !== undefined) {
      const c = host(l.hostname, `${w}.hostname`);
      if (!c.ok) return c;
      h = c.value;
    }
    const server: GatewayServer = { port: p.value, protocol: proto, hosts: [h], name };
    if (proto === 'HTTPS' || proto === 'TLS') {
      const tls = obj(l.tls);
      const mode = str(tls?.mode) ?? 'Terminate';
      if (mode === 'Passthrough') Object.assign(server, { tls: { mode: 'PASSTHROUGH' } });
      else if (mode === 'Terminate') {
        const ref = obj(arr(tls?.certificateRefs)[0]);
        const rn = str(ref?.name);
        if (!rn) return fail(`${w}.tls.certificateRefs[0].name missing`);
        Object.assign(server, { tls: { mode: 'SIMPLE', credential: `${str(ref?.namespace) ?? m.value.namespace}/${rn}` } });
      } else return fail(`${w}.tls.mode "${mode}" is not Terminate or Passthrough`);
    }
    servers.push(server);
  }
  if (servers.length === 0) return fail('spec.listeners is empty');
  return ok({ kind: 'Gateway', api: 'gatewayapi', namespace: m.value.namespace, name: m.value.name, selector: {}, gatewayClassName: cls, servers });
}

const PATH_TYPES: Record<string, StringMatch['type']> = { Exact: 'exact', PathPrefix: 'prefix', RegularExpression: 'regex' };

function gwString(type: unknown, value: unknown, where: string, dflt: string): R<StringMatch> {
  const t = PATH_TYPES[str(type) ?? dflt];
  if (!t) return fail(`${where}.type "${String(type)}" is not supported`);
  if (typeof value !== 'string') return fail(`${where}.value is not a string`);
  if (t === 'regex' && !compileRegex(value)) return fail(`${where}.value "${value}" is not a valid regular expression`);
  return ok({ type: t, value });
}

function rule(v: unknown, namespace: string, where: string): R<HttpRouteSpec> {
  const r = obj(v);
  if (!r) return fail(`${where} is not an object`);
  const matches: RequestMatch[] = [];
  const raw = arr(r.matches);
  for (const [i, rm] of (raw.length ? raw : [{}]).entries()) {
    const mm = obj(rm) ?? {};
    const w = `${where}.matches[${i}]`;
    const pth = obj(mm.path) ?? { type: 'PathPrefix', value: '/' };
    const uri = gwString(pth.type, pth.value ?? '/', `${w}.path`, 'PathPrefix');
    if (!uri.ok) return uri;
    const headers: HeaderMatch[] = [];
    for (const [j, rh] of arr(mm.headers).entries()) {
      const hh = obj(rh);
      const name = str(hh?.name);
      if (!name) return fail(`${w}.headers[${j}].name missing`);
      const s = gwString(hh?.type, hh?.value, `${w}.headers[${j}]`, 'Exact');
      if (!s.ok) return s;
      headers.push({ name: name.toLowerCase(), match: s.value });
    }
    const rmatch: RequestMatch = { uri: uri.value, headers };
    if (str(mm.method)) Object.assign(rmatch, { method: { type: 'exact', value: str(mm.method) } });
    matches.push(rmatch);
  }
  const dests: RouteDestination[] = [];
  for (const [i, rb] of arr(r.backendRefs).entries()) {
    const b = obj(rb);
    const name = str(b?.name);
    if (!b || !name) return fail(`${where}.backendRefs[${i}].name missing`);
    if (b.kind !== undefined && b.kind !== 'Service') return fail(`${where}.backendRefs[${i}].kind "${String(b.kind)}" is not Service`);
    const w = b.weight ?? 1;
    if (typeof w !== 'number' || !Number.isInteger(w) || w < 0 || w > 1_000_000) return fail(`${where}.backendRefs[${i}].weight ${JSON.stringify(b.weight)} is out of range`);
    const d: RouteDestination = { host: `${name}.${str(b.namespace) ?? namespace}`, weight: w };
    if (b.port !== undefined) {
      const p = port(b.port, `${where}.backendRefs[${i}].port`);
      if (!p.ok) return p;
      Object.assign(d, { port: p.value });
    }
    dests.push(d);
  }
  if (dests.length === 0 || dests.every((d) => d.weight === 0)) return fail(`${where}.backendRefs has no backend with a weight`);
  const spec: HttpRouteSpec = { matches, destinations: dests };
  if (str(r.name)) Object.assign(spec, { name: str(r.name) });
  for (const [i, rf] of arr(r.filters).entries()) {
    const f = obj(rf);
    if (f?.type !== 'URLRewrite') return fail(`${where}.filters[${i}].type "${String(f?.type)}" is not supported (URLRewrite only)`);
    const u = obj(f.urlRewrite) ?? {};
    const rw: { uri?: string; fullPath?: boolean; authority?: string } = {};
    if (str(u.hostname)) rw.authority = str(u.hostname)!;
    const p = obj(u.path);
    if (p?.type === 'ReplaceFullPath' && typeof p.replaceFullPath === 'string') { rw.uri = p.replaceFullPath; rw.fullPath = true; }
    else if (p?.type === 'ReplacePrefixMatch' && typeof p.replacePrefixMatch === 'string') rw.uri = p.replacePrefixMatch;
    else if (p) return fail(`${where}.filters[${i}].urlRewrite.path is not ReplaceFullPath or ReplacePrefixMatch`);
    Object.assign(spec, { rewrite: rw });
  }
  const t = durationMs(obj(r.timeouts)?.request);
  if (t === null) return fail(`${where}.timeouts.request is not a duration`);
  if (t) Object.assign(spec, { timeoutMs: t });
  const retry = obj(r.retry);
  if (retry && typeof retry.attempts === 'number' && Number.isInteger(retry.attempts) && retry.attempts >= 0 && retry.attempts <= 10) {
    Object.assign(spec, { retries: { attempts: retry.attempts } });
  }
  return ok(spec);
}

/** gateway.networking.k8s.io/v1 HTTPRoute. */
export function convertHttpRoute(o: unknown): R<IngressRoute> {
  const m = meta(o, true);
  if (!m.ok) return m;
  const spec = obj(obj(o)?.spec);
  if (!spec) return fail('spec missing');
  const { namespace } = m.value;
  const gateways: string[] = [];
  for (const [i, rp] of arr(spec.parentRefs).entries()) {
    const p = obj(rp);
    const name = str(p?.name);
    if (!p || !name) return fail(`spec.parentRefs[${i}].name missing`);
    if (p.kind !== undefined && p.kind !== 'Gateway') continue;
    gateways.push(`${str(p.namespace) ?? namespace}/${name}${str(p.sectionName) ? `#${str(p.sectionName)}` : ''}`);
  }
  if (gateways.length === 0) return fail('spec.parentRefs names no Gateway');
  const h = hosts(spec.hostnames, 'spec.hostnames');
  if (!h.ok) return h;
  const http: HttpRouteSpec[] = [];
  for (const [i, r] of arr(spec.rules).entries()) {
    const c = rule(r, namespace, `spec.rules[${i}]`);
    if (!c.ok) return c;
    http.push(c.value);
  }
  if (http.length === 0) return fail('spec.rules is empty');
  return ok({ kind: 'Route', api: 'gatewayapi', namespace, name: m.value.name, hosts: h.value, gateways, http, tls: [], tcp: [] });
}
