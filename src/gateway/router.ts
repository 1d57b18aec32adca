/**
 * Per-request routing (pure): a listener's HTTP routes compiled once per model into
 * a host table of matchers; `route()` runs for every request, so a keep-alive
 * connection re-routes on each one. Regexes were validated at conversion and are
 * compiled here once, never per request. Weighted destinations are picked with an
 * injected random source.
 */
import type { RequestMatch, StringMatch } from '../catalog/ingress.js';
import { compileRegex } from '../catalog/convert-ingress.js';
import type { HttpRouteModel, ResolvedDestination } from './types.js';
import { HostTable } from './hosts.js';

export interface RequestView {
  /** Normalised host (no port, lower case). */
  readonly host: string;
  /** Path with query. */
  readonly url: string;
  readonly method: string;
  /** Lower-case names (Node's `req.headers`). */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

type Pred = (v: string) => boolean;

function stringPred(m: StringMatch): Pred {
  if (m.type === 'exact') return (v) => v === m.value;
  if (m.type === 'prefix') return (v) => v.startsWith(m.value);
  const re = compileRegex(m.value);
  return re ? (v) => re.test(v) : () => false;
}

interface CompiledMatch {
  readonly uri?: Pred;
  /** Prefix to replace on rewrite (prefix matches only). */
  readonly prefix?: string;
  readonly method?: Pred;
  readonly headers: readonly { name: string; pred: Pred }[];
}

export interface CompiledRoute {
  readonly model: HttpRouteModel;
  readonly matches: readonly CompiledMatch[];
  /** Cumulative weights for the pick. */
  readonly cumulative: readonly number[];
  readonly total: number;
}

export interface Routed {
  readonly route: CompiledRoute;
  readonly match?: CompiledMatch;
}

function compileMatch(m: RequestMatch): CompiledMatch {
  const c: { uri?: Pred; prefix?: string; method?: Pred; headers: { name: string; pred: Pred }[] } = {
    headers: m.headers.map((h) => ({ name: h.name, pred: stringPred(h.match) })),
  };
  if (m.uri) { c.uri = stringPred(m.uri); if (m.uri.type === 'prefix') c.prefix = m.uri.value; }
  if (m.method) c.method = stringPred(m.method);
  return c;
}

export function compileRoute(r: HttpRouteModel): CompiledRoute {
  const cumulative: number[] = [];
  let total = 0;
  for (const d of r.destinations) { total += d.weight; cumulative.push(total); }
  return { model: r, matches: r.matches.map(compileMatch), cumulative, total };
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

function header(req: RequestView, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function matches(m: CompiledMatch, req: RequestView, path: string): boolean {
  if (m.uri && !m.uri(path)) return false;
  if (m.method && !m.method(req.method)) return false;
  for (const h of m.headers) {
    const v = header(req, h.name);
    if (v === undefined || !h.pred(v)) return false;
  }
  return true;
}

/** The routes of one HTTP listener, by host. */
export class HttpRouter {
  private readonly table = new HostTable<CompiledRoute>();

  constructor(routes: readonly HttpRouteModel[]) {
    for (const r of routes) {
      const c = compileRoute(r);
      for (const h of r.hosts) this.table.add(h, c);
    }
  }

  /** First route (in order) of the most specific host whose match fits; undefined = 404. */
  route(req: RequestView): Routed | undefined {
    const list = this.table.lookup(req.host);
    if (!list) return undefined;
    const path = pathOf(req.url);
    for (const r of list) {
      if (r.matches.length === 0) return { route: r };
      for (const m of r.matches) if (matches(m, req, path)) return { route: r, match: m };
    }
    return undefined;
  }
}

/** Weighted pick of a destination; `exclude` = destinations already failed (retries try another when there is one). */
export function pickDestination(r: CompiledRoute, random: () => number, exclude?: ReadonlySet<ResolvedDestination>): ResolvedDestination {
  const dests = r.model.destinations;
  if (exclude && exclude.size > 0 && exclude.size < dests.length) {
    const rest = dests.filter((d) => !exclude.has(d));
    const total = rest.reduce((n, d) => n + d.weight, 0);
    let x = random() * total;
    for (const d of rest) { x -= d.weight; if (x < 0) return d; }
    return rest[rest.length - 1]!;
  }
  const x = random() * r.total;
  for (let i = 0; i < dests.length; i++) if (x < r.cumulative[i]!) return dests[i]!;
  return dests[dests.length - 1]!;
}

/** The path sent upstream after `rewrite.uri`: the matched prefix replaced, else the whole path (query kept). */
export function rewritePath(url: string, rewrite: HttpRouteModel['rewrite'], m: Routed['match']): string {
  if (rewrite?.uri === undefined) return url;
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const query = q < 0 ? '' : url.slice(q);
  if (!rewrite.fullPath && m?.prefix !== undefined && path.startsWith(m.prefix)) {
    let rest = path.slice(m.prefix.length);
    // "/api/" → "/" on "/api/x" gives "/x", not "//x".
    if (rewrite.uri.endsWith('/') && rest.startsWith('/')) rest = rest.slice(1);
    return (rewrite.uri + rest || '/') + query;
  }
  return rewrite.uri + query;
}
