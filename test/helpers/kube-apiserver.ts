/**
 * Test Kubernetes API server — the project's ONLY stand-in, for the Kubernetes API
 * server, which cannot be installed on the test machines. Everything else in the
 * tests is real.
 *
 * A real HTTP server on 127.0.0.1 (port 0 by default) that speaks the wire protocol
 * `@kubernetes/client-node` uses, so the client runs unmodified through its real
 * informer code:
 * - lists: `GET /api/v1/services`, `/apis/<group>/<version>/<plural>` (and the
 *   `/namespaces/<ns>/` forms) → `{"kind":"ServiceList","metadata":{"resourceVersion":…},"items":[…]}`;
 *   `?limit=N` truncates (with `remainingItemCount`; `continue` is not implemented);
 * - watches: `?watch=true&resourceVersion=RV` → a chunked stream of newline-delimited
 *   `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":…}`, replaying the
 *   history after RV and then following live changes; a watch without RV starts
 *   with a synthetic ADDED for every object;
 * - one global, monotonically increasing resourceVersion; an event history with a
 *   compaction point: a watch from an RV older than it is refused with 410 Gone,
 *   as the real server does (an ERROR event carrying a `Status` with code 410), or
 *   as an HTTP 410 response (`goneAs: 'status'`) — the client handles both;
 * - 404 (a `Status` body) for groups/resources not served (`serve` option, and
 *   `setServed()` at run time);
 * - discovery: `/api`, `/api/v1`, `/apis`, `/apis/<group>`, `/apis/<group>/<version>`;
 * - periodic BOOKMARK events (`bookmarkIntervalMs`).
 * Test controls: `create/update/delete`, `compact()`, `dropWatches()`, `failNext()`,
 * `stop()`/`restart()` (API down, then back on the same port), `close()`, and a log
 * of the requests received (`requests`).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { randomUUID } from 'node:crypto';

/** A served resource type. */
export interface ResourceType {
  readonly group: string; // '' = core
  readonly version: string;
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

export const RESOURCE_TYPES = {
  services: { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true },
  endpoints: { group: '', version: 'v1', plural: 'endpoints', kind: 'Endpoints', namespaced: true },
  nodes: { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false },
  namespaces: { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  endpointslices: { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true },
} as const satisfies Record<string, ResourceType>;

export type IstioVersion = 'v1' | 'v1beta1' | 'v1alpha3';

export interface KubeApiServerOptions {
  /** Serve discovery.k8s.io/v1 EndpointSlices (default true). */
  endpointSlices?: boolean;
  /** Serve networking.istio.io DestinationRules at this version (default: not served). */
  istio?: IstioVersion | false;
  /** How a watch from a compacted resourceVersion is refused (default 'event', as the real server does). */
  goneAs?: 'event' | 'status';
  /** Send a BOOKMARK on every open watch this often (0 = never; default 0). */
  bookmarkIntervalMs?: number;
  /** Listen port (default 0: any free port). */
  port?: number;
  /**
   * Answer watch requests only after this many ms (default 0): the latency of a
   * distant API server, which widens the window between a list and its watch.
   */
  watchDelayMs?: number;
  /** More resource types served from the start (e.g. the gateway's Istio and Gateway API kinds, Secrets). */
  extra?: readonly ResourceType[];
}

/** Minimal object shape: what the server reads and stamps. */
export interface KubeObject {
  apiVersion?: string;
  kind: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; creationTimestamp?: string; [k: string]: unknown };
  [k: string]: unknown;
}

export interface RequestRecord {
  readonly method: string;
  readonly path: string;
  readonly watch: boolean;
  readonly resourceVersion?: string;
  readonly status: number;
  /** `?limit=` of a list (probes), when sent. */
  readonly limit?: number;
  /** The Authorization header, when sent. */
  readonly authorization?: string;
}

interface WatchEvent {
  /** Resource type key (`group/plural`). */
  tk: string;
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: KubeObject;
}

interface Watcher {
  type: ResourceType;
  namespace?: string;
  res: ServerResponse;
  bookmark?: NodeJS.Timeout;
}

interface Failure {
  path: string;
  status: number;
  watch?: boolean;
  times: number;
}

const istioType = (version: IstioVersion): ResourceType => ({ group: 'networking.istio.io', version, plural: 'destinationrules', kind: 'DestinationRule', namespaced: true });

function status(code: number, reason: string, message: string): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, details: {}, code };
}

function typeKey(t: ResourceType): string {
  return `${t.group}/${t.plural}`;
}

export class KubeApiServer {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly watchers = new Set<Watcher>();
  /** Objects per resource type (`group/plural`), keyed `ns/name`. */
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  private history: WatchEvent[] = [];
  private rv = 1;
  private compactedRv = 0;
  private readonly failures: Failure[] = [];
  /** Watches waiting out `watchDelayMs`. */
  private readonly delayed = new Set<NodeJS.Timeout>();
  private served: ResourceType[];
  private portNumber = 0;
  /** Every request received, in order. */
  readonly requests: RequestRecord[] = [];

  private constructor(private readonly opts: KubeApiServerOptions) {
    this.served = [];
    this.setServed({ endpointSlices: opts.endpointSlices ?? true, istio: opts.istio ?? false });
  }

  static async start(opts: KubeApiServerOptions = {}): Promise<KubeApiServer> {
    const s = new KubeApiServer(opts);
    await s.listen(opts.port ?? 0);
    return s;
  }

  get port(): number {
    return this.portNumber;
  }

  get url(): string {
    return `http://127.0.0.1:${this.portNumber}`;
  }

  /** The current (global) resourceVersion. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /** Change which optional groups are served (e.g. a CRD installed later). */
  setServed(s: { endpointSlices?: boolean; istio?: IstioVersion | false }): void {
    const slices = s.endpointSlices ?? this.served.some((t) => t.plural === 'endpointslices');
    const istio = s.istio !== undefined ? s.istio : (this.served.find((t) => t.plural === 'destinationrules')?.version as IstioVersion | undefined) ?? false;
    this.served = [RESOURCE_TYPES.services, RESOURCE_TYPES.endpoints, RESOURCE_TYPES.nodes, RESOURCE_TYPES.namespaces];
    if (slices) this.served.push(RESOURCE_TYPES.endpointslices);
    if (istio) this.served.push(istioType(istio));
    this.served.push(...(this.opts.extra ?? []));
  }

  // ---- test controls: objects ----

  /** Add an object (kind picks the resource type); returns the stored copy with its resourceVersion. */
  create(obj: KubeObject): KubeObject {
    const { type, key, map } = this.locate(obj);
    if (map.has(key)) throw new Error(`${obj.kind} ${key} already exists`);
    const stored = this.stamp(obj, type);
    stored.metadata.uid = randomUUID();
    stored.metadata.creationTimestamp = new Date().toISOString();
    map.set(key, stored);
    this.record(type, 'ADDED', stored);
    return stored;
  }

  update(obj: KubeObject): KubeObject {
    const { type, key, map } = this.locate(obj);
    const old = map.get(key);
    if (!old) throw new Error(`${obj.kind} ${key} not found`);
    const stored = this.stamp(obj, type);
    stored.metadata.uid = old.metadata.uid;
    stored.metadata.creationTimestamp = old.metadata.creationTimestamp;
    map.set(key, stored);
    this.record(type, 'MODIFIED', stored);
    return stored;
  }

  /** Create or update. */
  apply(obj: KubeObject): KubeObject {
    const { key, map } = this.locate(obj);
    return map.has(key) ? this.update(obj) : this.create(obj);
  }

  delete(ref: { kind: string; metadata: { name: string; namespace?: string } }): void {
    const { type, key, map } = this.locate(ref as KubeObject);
    const old = map.get(key);
    if (!old) throw new Error(`${ref.kind} ${key} not found`);
    map.delete(key);
    // The DELETED event carries the object at the deletion's resourceVersion, as the real server sends it.
    const gone = structuredClone(old);
    gone.metadata.resourceVersion = String(++this.rv);
    this.record(type, 'DELETED', gone);
  }

  list(kind: string): KubeObject[] {
    const type = this.typeOfKind(kind);
    return [...(this.objects.get(typeKey(type))?.values() ?? [])].map((o) => structuredClone(o));
  }

  // ---- test controls: failures ----

  /** Forget the event history: a watch from an older resourceVersion now gets 410 Gone. */
  compact(): void {
    this.history = [];
    this.compactedRv = this.rv;
  }

  /**
   * Close every open watch stream: cleanly (like the server's watch timeout; the
   * client resumes from its last resourceVersion) or, with `abrupt`, by destroying the socket.
   */
  dropWatches(opts: { abrupt?: boolean } = {}): number {
    const n = this.watchers.size;
    for (const w of [...this.watchers]) {
      if (opts.abrupt) w.res.socket?.destroy();
      else w.res.end();
      this.endWatch(w);
    }
    return n;
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  /**
   * Answer the next `times` requests whose path starts with `path` (list or watch,
   * or only one of them with `watch`) with HTTP `status` and a Status body.
   */
  failNext(path: string, status: number, opts: { times?: number; watch?: boolean } = {}): void {
    this.failures.push({ path, status, times: opts.times ?? 1, ...(opts.watch !== undefined ? { watch: opts.watch } : {}) });
  }

  /** Number of successful full lists (not watches, not `limit` probes) whose path starts with `path`. */
  listCount(path: string): number {
    return this.requests.filter((r) => !r.watch && r.limit === undefined && r.method === 'GET' && r.path.startsWith(path) && r.status === 200).length;
  }

  // ---- test controls: lifecycle ----

  /** API down: close the listener and every connection (state is kept). */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const t of this.delayed) clearTimeout(t);
    this.delayed.clear();
    for (const w of [...this.watchers]) this.endWatch(w);
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await closed;
  }

  /** API back on the same port, with the same objects and history. */
  async restart(): Promise<void> {
    if (this.server) return;
    await this.listen(this.portNumber);
  }

  async close(): Promise<void> {
    await this.stop();
  }

  // ---- internals ----

  private async listen(port: number): Promise<void> {
    const server = createServer((req, res) => this.handle(req, res));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => { server.off('error', reject); resolve(); });
    });
    this.server = server;
    this.portNumber = (server.address() as AddressInfo).port;
  }

  private typeOfKind(kind: string, apiVersion?: string): ResourceType {
    // Extra types may share a kind across groups (Istio's and the Gateway API's Gateway): the group decides.
    const extra = (this.opts.extra ?? []).filter((t) => t.kind === kind);
    if (extra.length) return extra.find((t) => apiVersion?.startsWith(`${t.group}/`)) ?? extra[0]!;
    if (kind === 'DestinationRule') return this.served.find((t) => t.kind === kind) ?? istioType('v1');
    const t = Object.values(RESOURCE_TYPES).find((x) => x.kind === kind);
    if (!t) throw new Error(`unknown kind ${kind}`);
    return t;
  }

  private locate(obj: KubeObject): { type: ResourceType; key: string; map: Map<string, KubeObject> } {
    const type = this.typeOfKind(obj.kind, obj.apiVersion);
    const ns = type.namespaced ? (obj.metadata.namespace ?? 'default') : '';
    const key = `${ns}/${obj.metadata.name}`;
    let map = this.objects.get(typeKey(type));
    if (!map) this.objects.set(typeKey(type), (map = new Map()));
    return { type, key, map };
  }

  private stamp(obj: KubeObject, type: ResourceType): KubeObject {
    const stored = structuredClone(obj);
    stored.apiVersion = type.group ? `${type.group}/${type.version}` : type.version;
    if (type.namespaced) stored.metadata.namespace = obj.metadata.namespace ?? 'default';
    stored.metadata.resourceVersion = String(++this.rv);
    return stored;
  }

  private record(type: ResourceType, evType: WatchEvent['type'], obj: KubeObject): void {
    const ev: WatchEvent = { tk: typeKey(type), rv: Number(obj.metadata.resourceVersion), type: evType, object: obj };
    this.history.push(ev);
    for (const w of this.watchers) {
      if (typeKey(w.type) !== typeKey(type)) continue;
      if (w.namespace && obj.metadata.namespace !== w.namespace) continue;
      this.send(w, evType, obj);
    }
  }

  private send(w: Watcher, type: string, object: unknown): void {
    w.res.write(`${JSON.stringify({ type, object: this.wire(w.type, object) })}\n`);
  }

  /** Objects go out with kind/apiVersion in watch events and without them in list items, as the real server does. */
  private wire(type: ResourceType, object: unknown): unknown {
    const o = object as KubeObject;
    if (o.kind === 'Status') return o;
    return { ...o, kind: type.kind, apiVersion: type.group ? `${type.group}/${type.version}` : type.version };
  }

  private endWatch(w: Watcher): void {
    if (w.bookmark) clearInterval(w.bookmark);
    this.watchers.delete(w);
    if (!w.res.writableEnded) w.res.end();
  }

  private json(res: ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const watch = url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1';
    const rvParam = url.searchParams.get('resourceVersion') ?? undefined;
    const log = (code: number): void => {
      const auth = req.headers.authorization;
      this.requests.push({
        method: req.method ?? 'GET', path, watch, status: code,
        ...(rvParam !== undefined ? { resourceVersion: rvParam } : {}), ...(auth ? { authorization: auth } : {}),
        ...(url.searchParams.has('limit') ? { limit: Number(url.searchParams.get('limit')) } : {}),
      });
    };
    if (req.method === 'PATCH') {
      this.patch(req, path, log, res);
      return;
    }
    if (req.method !== 'GET') {
      log(405);
      this.json(res, 405, status(405, 'MethodNotAllowed', 'only GET and PATCH (merge patch) are served; use the controls'));
      return;
    }
    const fi = this.failures.findIndex((f) => path.startsWith(f.path) && (f.watch === undefined || f.watch === watch));
    if (fi >= 0) {
      const f = this.failures[fi]!;
      if (--f.times <= 0) this.failures.splice(fi, 1);
      log(f.status);
      this.json(res, f.status, status(f.status, f.status >= 500 ? 'InternalError' : 'Failure', `injected failure ${f.status}`));
      return;
    }
    const discovery = this.discovery(path);
    if (discovery) { log(200); this.json(res, 200, discovery); return; }

    const m = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))(?:\/namespaces\/([^/]+))?\/([^/]+)$/.exec(path);
    const type = m && this.served.find((t) => t.group === (m[2] ?? '') && t.version === (m[1] ?? m[3]) && t.plural === m[5]);
    if (!m || !type || (m[4] && !type.namespaced)) {
      log(404);
      this.json(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));
      return;
    }
    const namespace = m[4];
    log(200);
    if (watch) {
      const delay = this.opts.watchDelayMs ?? 0;
      if (delay <= 0) this.startWatch(type, namespace, rvParam, res);
      else {
        const t = setTimeout(() => { this.delayed.delete(t); if (!res.destroyed) this.startWatch(type, namespace, rvParam, res); }, delay);
        this.delayed.add(t);
      }
    } else this.sendList(type, namespace, Number(url.searchParams.get('limit') ?? 0), res);
  }

  /**
   * PATCH of one named object with `application/merge-patch+json` (RFC 7386), as
   * `kubectl annotate` sends; the change is a MODIFIED event with a new resourceVersion.
   * `patchForbidden` answers 403 (an agent without RBAC for it).
   */
  private patch(req: IncomingMessage, path: string, log: (code: number) => void, res: ServerResponse): void {
    const m = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))(?:\/namespaces\/([^/]+))?\/([^/]+)\/([^/]+)$/.exec(path);
    const type = m && this.served.find((t) => t.group === (m[2] ?? '') && t.version === (m[1] ?? m[3]) && t.plural === m[5]);
    const key = m ? `${m[4] ?? ''}/${m[6]}` : '';
    const obj = type ? this.objects.get(typeKey(type))?.get(key) : undefined;
    if (!type || !obj) { log(404); this.json(res, 404, status(404, 'NotFound', 'not found')); return; }
    if (this.patchForbidden) { log(403); this.json(res, 403, status(403, 'Forbidden', 'patch is forbidden')); return; }
    if (req.headers['content-type'] !== 'application/merge-patch+json') {
      log(415);
      this.json(res, 415, status(415, 'UnsupportedMediaType', 'only application/merge-patch+json'));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let patch: unknown;
      try { patch = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { log(400); this.json(res, 400, status(400, 'BadRequest', 'body is not JSON')); return; }
      const merged = mergePatchJson(structuredClone(obj), patch) as KubeObject;
      const stored = this.update({ ...merged, kind: obj.kind ?? type.kind } as KubeObject);
      log(200);
      this.json(res, 200, stored);
    });
  }

  /** Answer PATCH with 403 (an agent whose RBAC lacks it). */
  patchForbidden = false;

  private itemsOf(type: ResourceType, namespace: string | undefined): KubeObject[] {
    const all = [...(this.objects.get(typeKey(type))?.values() ?? [])];
    return namespace ? all.filter((o) => o.metadata.namespace === namespace) : all;
  }

  private sendList(type: ResourceType, namespace: string | undefined, limit: number, res: ServerResponse): void {
    let items = this.itemsOf(type, namespace).sort((a, b) => `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`));
    const metadata: Record<string, unknown> = { resourceVersion: String(this.rv) };
    if (limit > 0 && items.length > limit) {
      metadata.remainingItemCount = items.length - limit;
      items = items.slice(0, limit);
    }
    // List items carry no kind/apiVersion on the wire.
    const stripped = items.map(({ kind: _k, apiVersion: _a, ...rest }) => rest);
    this.json(res, 200, { kind: `${type.kind}List`, apiVersion: type.group ? `${type.group}/${type.version}` : type.version, metadata, items: stripped });
  }

  private startWatch(type: ResourceType, namespace: string | undefined, rvParam: string | undefined, res: ServerResponse): void {
    const from = rvParam && rvParam !== '0' ? Number(rvParam) : undefined;
    if (from !== undefined && (!Number.isFinite(from) || from < this.compactedRv)) {
      const st = status(410, 'Expired', `too old resource version: ${rvParam} (${this.compactedRv})`);
      if (this.opts.goneAs === 'status') { this.json(res, 410, st); return; }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify({ type: 'ERROR', object: st })}\n`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.flushHeaders();
    const w: Watcher = { type, res, ...(namespace ? { namespace } : {}) };
    this.watchers.add(w);
    res.on('close', () => this.endWatch(w));
    if (from === undefined) {
      for (const o of this.itemsOf(type, namespace)) this.send(w, 'ADDED', o);
    } else {
      for (const ev of this.history) {
        if (ev.rv <= from || ev.tk !== typeKey(type)) continue;
        if (namespace && ev.object.metadata.namespace !== namespace) continue;
        this.send(w, ev.type, ev.object);
      }
    }
    const every = this.opts.bookmarkIntervalMs ?? 0;
    if (every > 0) {
      w.bookmark = setInterval(() => {
        this.send(w, 'BOOKMARK', { kind: type.kind, metadata: { resourceVersion: String(this.rv) } });
      }, every);
    }
  }

  private discovery(path: string): unknown {
    const resources = (group: string, version: string): unknown => ({
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: group ? `${group}/${version}` : version,
      resources: this.served.filter((t) => t.group === group && t.version === version)
        .map((t) => ({ name: t.plural, singularName: '', namespaced: t.namespaced, kind: t.kind, verbs: ['get', 'list', 'watch'] })),
    });
    if (path === '/api') return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] };
    if (path === '/api/v1') return resources('', 'v1');
    const groups = [...new Set(this.served.filter((t) => t.group).map((t) => t.group))].map((g) => {
      const versions = [...new Set(this.served.filter((t) => t.group === g).map((t) => t.version))]
        .map((v) => ({ groupVersion: `${g}/${v}`, version: v }));
      return { name: g, versions, preferredVersion: versions[0] };
    });
    if (path === '/apis') return { kind: 'APIGroupList', apiVersion: 'v1', groups };
    const g = /^\/apis\/([^/]+)(?:\/([^/]+))?$/.exec(path);
    if (!g) return undefined;
    const group = groups.find((x) => x.name === g[1]);
    if (!group) return undefined;
    if (!g[2]) return { kind: 'APIGroup', apiVersion: 'v1', ...group };
    if (!group.versions.some((v) => v.version === g[2])) return undefined;
    return resources(g[1]!, g[2]);
  }
}

/** RFC 7386 JSON merge patch. */
function mergePatchJson(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatchJson(out[k], v);
  }
  return out;
}
