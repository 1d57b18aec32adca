/**
 * The route model builder (pure): ingress records + catalog services + this
 * gateway's identity → listeners and routes (types.ts). Same inputs, same model.
 *
 * - Istio Gateways are served when their `selector` is a subset of `labels`;
 *   Gateway API Gateways when their class is `gatewayClassName`. Others belong to
 *   other gateways and are ignored, not rejected.
 * - Routes bind to served gateways (a Gateway API `sectionName` picks one listener);
 *   a route's hosts are intersected with each server's hosts.
 * - Every destination must name a catalog service (short name, `name.ns`,
 *   `name.ns.svc[.domain]`) and a port (or the service has exactly one TCP port).
 * - Anything refused is refused alone, with a reason: one object, or one route
 *   of an object when the rest of it is fine.
 */
import type { GatewayServer, IngressGateway, IngressObject, IngressRoute, RouteDestination, TlsSecret } from '../catalog/ingress.js';
import type { Service } from '../catalog/types.js';
import type {
  HttpRouteModel, ListenerModel, ModelRejection, ResolvedDestination, RouteModel, SniRouteModel, TcpRouteModel, TlsServerModel,
} from './types.js';
import { hostCovers } from './hosts.js';

export interface ModelOptions {
  readonly labels: Readonly<Record<string, string>>;
  readonly gatewayClassName: string;
  readonly clusterDomain: string;
}

type Kind = ListenerModel['kind'];
interface Draft {
  port: number;
  kind: Kind;
  gateways: string[];
  tlsServers: TlsServerModel[];
  httpRoutes: HttpRouteModel[];
  sniRoutes: SniRouteModel[];
  tcpRoutes: TcpRouteModel[];
}

function kindOf(s: GatewayServer): Kind {
  if (s.protocol === 'HTTPS' || s.protocol === 'TLS') return 'tls';
  if (s.protocol === 'TCP') return 'tcp';
  return 'http';
}

function refOf(o: { namespace: string; name: string }): string {
  return `${o.namespace}/${o.name}`;
}

function served(g: IngressGateway, opts: ModelOptions): boolean {
  if (g.api === 'gatewayapi') return g.gatewayClassName === opts.gatewayClassName;
  return Object.entries(g.selector).every(([k, v]) => opts.labels[k] === v);
}

/** Route host ∩ server hosts: the narrower of each covering pair. */
export function intersectHosts(routeHosts: readonly string[], serverHosts: readonly string[]): string[] {
  const out: string[] = [];
  const rh = routeHosts.length ? routeHosts : ['*'];
  for (const r of rh) {
    for (const s of serverHosts) {
      const h = hostCovers(s, r) ? r : hostCovers(r, s) ? s : undefined;
      if (h !== undefined && !out.includes(h)) out.push(h);
    }
  }
  return out;
}

/** Service host as written → catalog service, per Kubernetes DNS rules relative to `namespace`. */
export function resolveServiceHost(host: string, namespace: string, services: ReadonlyMap<string, Service>, domain: string): Service | undefined {
  const h = host.endsWith(`.svc.${domain}`) ? host.slice(0, -(`.svc.${domain}`.length)) : host.endsWith('.svc') ? host.slice(0, -4) : host;
  const parts = h.split('.');
  if (parts.length === 1) return services.get(`${namespace}/${parts[0]}`);
  if (parts.length === 2) return services.get(`${parts[1]}/${parts[0]}`);
  return undefined;
}

function resolve(dests: readonly RouteDestination[], ns: string, services: ReadonlyMap<string, Service>, domain: string, where: string): ResolvedDestination[] | string {
  const out: ResolvedDestination[] = [];
  for (const [i, d] of dests.entries()) {
    const svc = resolveServiceHost(d.host, ns, services, domain);
    if (!svc) return `${where}[${i}]: destination host "${d.host}" is not a known service`;
    let port = d.port;
    if (port === undefined) {
      const tcp = svc.ports.filter((p) => p.protocol === 'TCP');
      if (tcp.length !== 1) return `${where}[${i}]: destination "${d.host}" needs a port (the service has ${tcp.length} TCP ports)`;
      port = tcp[0]!.port;
    } else if (!svc.ports.some((p) => p.port === port && p.protocol === 'TCP')) {
      return `${where}[${i}]: service ${svc.key} has no TCP port ${port}`;
    }
    if (d.weight > 0) out.push({ serviceKey: svc.key, port, weight: d.weight });
  }
  return out;
}

/** Build the model. Pure and deterministic (inputs are sorted by the catalog). */
export function buildRouteModel(objects: readonly IngressObject[], services: readonly Service[], opts: ModelOptions): RouteModel {
  const rejected: ModelRejection[] = [];
  const reject = (kind: string, ref: string, reason: string): void => { rejected.push({ kind, ref, reason }); };
  const svcByKey = new Map(services.map((s) => [s.key, s]));
  const secrets = new Map<string, TlsSecret>();
  const gateways = new Map<string, IngressGateway>();
  const routes: IngressRoute[] = [];
  for (const o of objects) {
    if (o.kind === 'Secret') secrets.set(refOf(o), o);
    else if (o.kind === 'Gateway') gateways.set(`${o.api}:${refOf(o)}`, o);
    else routes.push(o);
  }

  const drafts = new Map<number, Draft>();
  /** Served server blocks by gateway ref (`ns/name`), with the listener draft they landed on. */
  const bound = new Map<string, { server: GatewayServer; draft: Draft }[]>();
  const credentials = new Set<string>();
  for (const g of [...gateways.values()].filter((x) => served(x, opts))) {
    const gref = refOf(g);
    const kindName = g.api === 'istio' ? 'Gateway' : 'GatewayApiGateway';
    const list: { server: GatewayServer; draft: Draft }[] = [];
    for (const [i, s] of g.servers.entries()) {
      const kind = kindOf(s);
      let d = drafts.get(s.port);
      if (d && d.kind !== kind) { reject(kindName, gref, `servers[${i}]: port ${s.port} already serves ${d.kind}, not ${kind}`); continue; }
      if (s.tls && s.tls.mode !== 'PASSTHROUGH') {
        const cred = s.tls.credential!;
        const sec = secrets.get(cred);
        if (!sec || !sec.cert) { reject(kindName, gref, `servers[${i}]: credential ${cred} is not a kubernetes.io/tls Secret in the catalog`); continue; }
        if (s.tls.mode === 'MUTUAL' && !sec.ca && !secrets.get(`${cred}-cacert`)?.ca) { reject(kindName, gref, `servers[${i}]: MUTUAL needs ca.crt in ${cred} or ${cred}-cacert`); continue; }
        credentials.add(cred);
        if (s.tls.mode === 'MUTUAL' && !sec.ca) credentials.add(`${cred}-cacert`);
      }
      if (!d) drafts.set(s.port, (d = { port: s.port, kind, gateways: [], tlsServers: [], httpRoutes: [], sniRoutes: [], tcpRoutes: [] }));
      if (!d.gateways.includes(gref)) d.gateways.push(gref);
      if (s.tls) {
        const clash = d.tlsServers.find((t) => t.hosts.some((h) => s.hosts.includes(h)));
        if (clash) { reject(kindName, gref, `servers[${i}]: hosts ${s.hosts.join(',')} on port ${s.port} already have a TLS server (${clash.gateway})`); continue; }
        const t: TlsServerModel = { gateway: gref, hosts: s.hosts, mode: s.tls.mode };
        if (s.tls.credential) Object.assign(t, { credential: s.tls.credential });
        if (s.tls.minVersion) Object.assign(t, { minVersion: s.tls.minVersion });
        if (s.tls.maxVersion) Object.assign(t, { maxVersion: s.tls.maxVersion });
        if (s.tls.mode !== 'PASSTHROUGH') Object.assign(t, { terminateAs: s.protocol === 'HTTPS' ? 'http' : 'tcp' });
        d.tlsServers.push(t);
      }
      list.push({ server: s, draft: d });
    }
    bound.set(`${g.api}:${gref}`, list);
  }

  for (const r of routes) {
    const rref = refOf(r);
    const kindName = r.api === 'istio' ? 'VirtualService' : 'HTTPRoute';
    let boundAny = false;
    let unknown: string | undefined;
    let hostMiss: string | undefined;
    for (const gname of r.gateways) {
      const [gref, section] = gname.split('#') as [string, string | undefined];
      const key = `${r.api}:${gref}`;
      const g = gateways.get(key);
      if (!g) { unknown ??= gref; continue; }
      const servers = bound.get(key);
      if (!servers) continue; // another gateway's object
      for (const { server, draft } of servers) {
        if (section !== undefined && server.name !== section) continue;
        const hosts = intersectHosts(r.hosts, server.hosts);
        if (hosts.length === 0) { hostMiss = `${gref} port ${server.port}`; continue; }
        const tm = server.tls;
        if (tm?.mode === 'PASSTHROUGH') {
          for (const [i, t] of r.tls.entries()) {
            if (t.port !== undefined && t.port !== server.port) continue;
            const sni = intersectHosts(t.sniHosts, server.hosts);
            if (sni.length === 0) continue;
            const d = resolve(t.destinations, r.namespace, svcByKey, opts.clusterDomain, `tls[${i}].route`);
            if (typeof d === 'string') { reject(kindName, rref, d); continue; }
            boundAny = true;
            draft.sniRoutes.push({ id: `${rref}#tls${i}`, gateway: gref, sniHosts: sni, destinations: d });
          }
        } else if (server.protocol === 'TCP' || server.protocol === 'TLS') {
          for (const [i, t] of r.tcp.entries()) {
            if (t.port !== undefined && t.port !== server.port) continue;
            const d = resolve(t.destinations, r.namespace, svcByKey, opts.clusterDomain, `tcp[${i}].route`);
            if (typeof d === 'string') { reject(kindName, rref, d); continue; }
            boundAny = true;
            draft.tcpRoutes.push({ id: `${rref}#tcp${i}`, gateway: gref, destinations: d });
          }
        } else {
          for (const [i, h] of r.http.entries()) {
            const d = resolve(h.destinations, r.namespace, svcByKey, opts.clusterDomain, `http[${i}].route`);
            if (typeof d === 'string') { reject(kindName, rref, d); continue; }
            boundAny = true;
            const id = `${rref}#${h.name ?? i}`;
            // Two servers of one port (HTTPS by SNI) bind the same route: one entry, hosts merged.
            const same = draft.httpRoutes.findIndex((x) => x.id === id);
            if (same >= 0) {
              const prev = draft.httpRoutes[same]!;
              draft.httpRoutes[same] = { ...prev, hosts: [...prev.hosts, ...hosts.filter((x) => !prev.hosts.includes(x))] };
              continue;
            }
            const m: HttpRouteModel = { id, gateway: gref, hosts, matches: h.matches, destinations: d };
            if (h.rewrite) Object.assign(m, { rewrite: h.rewrite });
            if (h.timeoutMs !== undefined) Object.assign(m, { timeoutMs: h.timeoutMs });
            if (h.retries) Object.assign(m, { retries: h.retries });
            draft.httpRoutes.push(m);
          }
        }
      }
    }
    if (!boundAny) {
      if (unknown) reject(kindName, rref, `gateway ${unknown} not found`);
      else if (hostMiss) reject(kindName, rref, `hosts ${r.hosts.join(',') || '*'} match no server host of ${hostMiss}`);
    }
  }

  const listeners: ListenerModel[] = [...drafts.values()].sort((a, b) => a.port - b.port);
  return { listeners, rejected, credentials: [...credentials].sort() };
}
