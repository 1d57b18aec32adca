/**
 * Kubernetes source: `@kubernetes/client-node` informers for core/v1 Services,
 * discovery.k8s.io/v1 EndpointSlices (core/v1 Endpoints where slices are not
 * served, as on KubeEdge's metaServer), core/v1 Nodes, and Istio DestinationRules
 * when that CRD is served (absence is normal).
 *
 * One "unit" per record kind owns one informer at a time:
 * - every (re)list replaces the unit's records wholesale (`sink.replaceAll`), so
 *   objects deleted while disconnected, or across a 410 Gone, are not lost or kept;
 * - the informer's own add/update callbacks after a list are deduplicated by
 *   resourceVersion (the list already applied them);
 * - an informer that emits `error` is dead for good (client-node stops on anything
 *   but 410): it is replaced by a fresh one after a per-unit backoff;
 * - the source is `synced` once every unit has listed, `degraded` (with the
 *   failing units in the detail) while one is failing.
 */
import { ListWatch, type Informer, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../util/log.js';
import type { RecordKind, SourceSink, SourceState } from '../catalog/store.js';
import { objectRef, type ServiceFilterMode } from '../catalog/convert.js';
import { Backoff } from '../util/backoff.js';
import { applyDelete, applyUpsert, convertObject, KIND_TO_RECORD, recordKey, type ApiKind } from './dispatch.js';
import type { Source } from './source.js';
import { KubeApiError, SourceError } from './errors.js';
import { AbortableWatch, getJson, loadKubeConfig, mergePatch, toPlainObject } from './kube-client.js';

export interface KubernetesSourceOptions {
  kubeconfig: string;
  apiServer: string;
  filterMode: ServiceFilterMode;
  logger: Logger;
  minBackoffMs: number;
  maxBackoffMs: number;
  /** How often an optional resource that is not served (the DestinationRule CRD) is looked for again. Default 60 s. */
  recheckMs?: number;
  /** Also watch the gateway's objects (INGRESS_UNITS): only the gateway command asks. */
  ingress?: boolean;
}

/** One API resource a unit may watch; units try their candidates in order. */
interface Candidate {
  readonly kind: ApiKind;
  readonly path: string;
  readonly label: string;
}

interface UnitSpec {
  readonly name: string;
  readonly record: RecordKind;
  readonly candidates: readonly Candidate[];
  /** Absence of every candidate is normal (the unit then contributes nothing). */
  readonly optional: boolean;
}

const UNITS: readonly UnitSpec[] = [
  { name: 'services', record: 'service', optional: false, candidates: [{ kind: 'Service', path: '/api/v1/services', label: 'core/v1 Services' }] },
  {
    name: 'endpoints', record: 'slice', optional: false, candidates: [
      { kind: 'EndpointSlice', path: '/apis/discovery.k8s.io/v1/endpointslices', label: 'discovery.k8s.io/v1 EndpointSlices' },
      { kind: 'Endpoints', path: '/api/v1/endpoints', label: 'core/v1 Endpoints' },
    ],
  },
  { name: 'nodes', record: 'node', optional: false, candidates: [{ kind: 'Node', path: '/api/v1/nodes', label: 'core/v1 Nodes' }] },
  {
    name: 'destinationrules', record: 'policy', optional: true, candidates: (['v1', 'v1beta1', 'v1alpha3'] as const).map((v) => ({
      kind: 'DestinationRule' as const, path: `/apis/networking.istio.io/${v}/destinationrules`, label: `networking.istio.io/${v} DestinationRules`,
    })),
  },
];

const istio = (plural: string, kind: 'Gateway' | 'VirtualService'): Candidate[] => (['v1', 'v1beta1', 'v1alpha3'] as const).map((v) => ({
  kind, path: `/apis/networking.istio.io/${v}/${plural}`, label: `networking.istio.io/${v} ${kind}s`,
}));

/**
 * The gateway's objects, all optional (a cluster without Istio or the Gateway API is
 * normal). Secrets: every kubernetes.io/tls Secret is listed (a field selector on
 * the type), and only those a server's credentialName names are ever used.
 */
export const INGRESS_UNITS: readonly UnitSpec[] = [
  { name: 'gateways', record: 'ingress', optional: true, candidates: istio('gateways', 'Gateway') },
  { name: 'virtualservices', record: 'ingress', optional: true, candidates: istio('virtualservices', 'VirtualService') },
  { name: 'gatewayapi-gateways', record: 'ingress', optional: true, candidates: [{ kind: 'GatewayApiGateway', path: '/apis/gateway.networking.k8s.io/v1/gateways', label: 'gateway.networking.k8s.io/v1 Gateways' }] },
  { name: 'httproutes', record: 'ingress', optional: true, candidates: [{ kind: 'HTTPRoute', path: '/apis/gateway.networking.k8s.io/v1/httproutes', label: 'gateway.networking.k8s.io/v1 HTTPRoutes' }] },
  { name: 'tls-secrets', record: 'ingress', optional: true, candidates: [{ kind: 'Secret', path: '/api/v1/secrets', label: 'core/v1 Secrets' }] },
];

type UnitStatus = 'pending' | 'listed' | 'failed' | 'absent';

interface Unit {
  readonly spec: UnitSpec;
  status: UnitStatus;
  detail?: string;
  current?: Candidate;
  informer?: Informer<KubernetesObject>;
  /** Bumped on every (re)start and on failure: callbacks of an older informer are ignored. */
  generation: number;
  readonly backoff: Backoff;
  timer?: NodeJS.Timeout;
  /** objectRef → resourceVersion of what was last given to the sink. */
  applied: Map<string, string>;
  /** Record keys this unit gave (units sharing the `ingress` kind replace only their own). */
  keys: Set<string>;
}

export class KubernetesSource implements Source {
  readonly name = 'kubernetes';
  private kc: KubeConfig | undefined;
  private running = false;
  private everSynced = false;
  private lastState = '';
  private readonly units: Unit[];
  private abort = new AbortController();
  private readonly log: Logger;
  /** Optional resources already reported as forbidden (warned once). */
  private readonly forbidden = new Set<string>();

  constructor(private readonly sink: SourceSink, private readonly opts: KubernetesSourceOptions) {
    this.log = opts.logger.child({ subsystem: 'source', source: 'kubernetes' });
    this.units = [...UNITS, ...(opts.ingress ? INGRESS_UNITS : [])].map((spec) => ({ spec, status: 'pending', generation: 0, backoff: new Backoff(opts.minBackoffMs, opts.maxBackoffMs), applied: new Map(), keys: new Set() }));
  }

  /**
   * Load credentials and start every informer; resolves without waiting for the
   * lists (the API may be down: units retry on their own). Throws SourceError
   * ERR_KUBE_CONFIG when no usable credentials exist. Idempotent.
   */
  async start(): Promise<void> {
    if (this.running) return;
    try {
      const { kc, via } = loadKubeConfig(this.opts);
      this.kc = kc;
      this.log.info({ via, server: kc.getCurrentCluster()?.server }, 'kubernetes source starting');
    } catch (err) {
      this.setState('degraded', (err as Error).message);
      throw err;
    }
    this.running = true;
    this.abort = new AbortController();
    this.setState('starting', 'waiting for the initial lists');
    for (const u of this.units) this.relaunch(u);
  }

  /**
   * Set one annotation on a Node (JSON merge patch; needs `patch` on nodes). Used to
   * publish this node's tunnel peer id. Throws KubeApiError (e.g. 403 without RBAC).
   */
  async annotateNode(nodeName: string, key: string, value: string, signal: AbortSignal = AbortSignal.timeout(30_000)): Promise<void> {
    if (!this.kc) throw new SourceError('ERR_KUBE_CONFIG', 'kubernetes source not started');
    await mergePatch(this.kc, `/api/v1/nodes/${encodeURIComponent(nodeName)}`, { metadata: { annotations: { [key]: value } } }, signal);
  }

  /** Stop every informer; records already given stay in the catalog. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.abort.abort();
    for (const u of this.units) {
      if (u.timer) clearTimeout(u.timer);
      u.generation++;
      // client-node's stop() aborts the watch and emits a spurious `error`; the
      // generation bump above makes our handler ignore it.
      await u.informer?.stop().catch(() => undefined);
      u.informer = undefined;
    }
    this.setState('stopped');
  }

  /** Start (or restart) a unit; an unexpected throw counts as a failure of that unit, never an unhandled rejection. */
  private relaunch(u: Unit): void {
    this.launch(u).catch((err: unknown) => this.fail(u, u.generation, err));
  }

  private async launch(u: Unit): Promise<void> {
    if (!this.running) return;
    const gen = ++u.generation;
    u.timer = undefined;
    const wasAbsent = u.status === 'absent';
    if (u.status !== 'failed') u.status = 'pending';
    let cand: Candidate | undefined;
    try {
      cand = await this.resolve(u.spec);
    } catch (err) {
      this.fail(u, gen, err);
      return;
    }
    if (!this.running || gen !== u.generation) return;
    if (!cand) {
      if (!wasAbsent) {
        this.log.info({ resource: u.spec.name, recheckMs: this.recheckMs }, `${u.spec.candidates[0]!.label.replace(/^[^ ]+ /, '')} not served by the API; not an error, looking again periodically`);
      }
      u.status = 'absent';
      u.current = undefined;
      u.applied = new Map();
      u.backoff.reset();
      this.replaceUnit(u, new Map<string, never>());
      u.timer = setTimeout(() => this.relaunch(u), this.recheckMs);
      this.updateState();
      return;
    }
    if (u.current?.path !== cand.path) {
      const fallback = cand !== u.spec.candidates[0];
      this.log.info({ resource: u.spec.name, path: cand.path }, fallback ? `using ${cand.label} (${u.spec.candidates[0]!.label} not served)` : `watching ${cand.label}`);
    }
    u.current = cand;
    // client-node's informer (what makeInformer builds) over a watch that stop() can always abort.
    const inf = new ListWatch<KubernetesObject>(cand.path, new AbortableWatch(this.kc!, this.abort.signal), () => this.list(u, gen, cand), false);
    u.informer = inf;
    const live = (): boolean => this.running && gen === u.generation;
    const upsert = (raw: KubernetesObject, type: 'add' | 'update'): void => {
      if (!live()) return;
      const o = toPlainObject(raw);
      const ref = objectRef(o);
      const rv = resourceVersion(o);
      if (rv !== undefined && u.applied.get(ref) === rv) return; // already applied by the list
      u.applied.set(ref, rv ?? '');
      this.sink.event(u.spec.record, type);
      u.keys.add(recordKey(cand.kind, o));
      applyUpsert(this.sink, cand.kind, o, this.opts.filterMode);
    };
    inf.on('add', (o) => upsert(o, 'add'));
    inf.on('update', (o) => upsert(o, 'update'));
    inf.on('delete', (raw) => {
      if (!live()) return;
      const o = toPlainObject(raw);
      u.applied.delete(objectRef(o));
      this.sink.event(u.spec.record, 'delete');
      u.keys.delete(recordKey(cand.kind, o));
      applyDelete(this.sink, cand.kind, o);
    });
    inf.on('error', (err) => this.fail(u, gen, err));
    inf.start().catch((err: unknown) => this.fail(u, gen, err));
  }

  /** Which candidate the API serves (probing with `limit=1`); undefined = none (optional units only). */
  private async resolve(spec: UnitSpec): Promise<Candidate | undefined> {
    if (spec.candidates.length === 1 && !spec.optional) return spec.candidates[0];
    for (const [i, c] of spec.candidates.entries()) {
      const last = i === spec.candidates.length - 1;
      if (last && !spec.optional) return c; // the fallback of a required unit: its list reports errors
      try {
        await getJson(this.kc!, `${c.path}?limit=1`, this.abort.signal);
        return c;
      } catch (err) {
        if (!(err instanceof KubeApiError)) throw err;
        // An optional resource we may not read (RBAC without Istio rules) is treated as absent, not as an outage.
        if (spec.optional && err.statusCode === 403) {
          if (!this.forbidden.has(c.path)) this.log.warn({ resource: spec.name, path: c.path }, `${c.label}: access forbidden; treated as not served (check RBAC)`);
          this.forbidden.add(c.path);
          continue;
        }
        if (err.statusCode !== 404) throw err;
      }
    }
    return undefined;
  }

  /** The informer's list function: fetch, replace the unit's records, mark listed. */
  private async list(u: Unit, gen: number, cand: Candidate): Promise<KubernetesListObject<KubernetesObject>> {
    const body = (await getJson(this.kc!, cand.path, this.abort.signal)) as { metadata?: { resourceVersion?: string }; items?: unknown };
    if (!this.running || gen !== u.generation) throw new Error('superseded');
    if (!Array.isArray(body.items)) throw new KubeApiError(`GET ${cand.path}: list without items`, 200);
    const records = new Map<string, never>();
    const applied = new Map<string, string>();
    // Items without metadata.name would crash the informer's cache: rejected here, not handed on.
    const items: KubernetesObject[] = [];
    for (const raw of body.items) {
      const o = toPlainObject(raw);
      const ref = objectRef(o);
      if (typeof (o as KubernetesObject | null)?.metadata?.name !== 'string') {
        this.sink.reject(u.spec.record, ref, 'metadata.name missing');
        continue;
      }
      items.push(o as KubernetesObject);
      applied.set(ref, resourceVersion(o) ?? '');
      const c = convertObject(cand.kind, o, this.opts.filterMode);
      if (!c.ok) { this.sink.reject(c.kind, c.ref, c.reason); continue; }
      this.sink.clearRejection(c.kind, ref);
      if (c.record !== null) records.set(c.key, c.record as never);
    }
    // Objects gone since the last list: forget their rejections too.
    for (const ref of u.applied.keys()) if (!applied.has(ref)) this.sink.clearRejection(KIND_TO_RECORD[cand.kind], ref);
    u.applied = applied;
    this.replaceUnit(u, records);
    this.sink.event(u.spec.record, 'relist');
    u.status = 'listed';
    u.detail = undefined;
    u.backoff.reset();
    this.log.debug({ resource: u.spec.name, items: items.length, resourceVersion: body.metadata?.resourceVersion }, 'listed');
    this.updateState();
    return { ...(body as KubernetesListObject<KubernetesObject>), items };
  }

  /** A unit's relist: replaces its records; units that share a record kind (ingress) touch only their own keys. */
  private replaceUnit(u: Unit, records: Map<string, never>): void {
    if (u.spec.record !== 'ingress') { this.sink.replaceAll(u.spec.record, records); return; }
    for (const k of u.keys) if (!records.has(k)) this.sink.remove('ingress', k);
    for (const [k, r] of records) this.sink.upsert('ingress', k, r);
    u.keys = new Set(records.keys());
  }

  private fail(u: Unit, gen: number, err: unknown): void {
    if (!this.running || gen !== u.generation) return;
    u.generation++; // late callbacks of the dead informer are ignored from here on
    const dead = u.informer;
    u.informer = undefined;
    void dead?.stop().catch(() => undefined);
    const message = errorMessage(err);
    const delay = u.backoff.next();
    u.status = 'failed';
    u.detail = message;
    this.sink.event(u.spec.record, 'error');
    this.log.warn({ resource: u.spec.name, err: message, attempt: u.backoff.attempts, retryInMs: delay }, 'kubernetes informer failed; restarting');
    this.updateState();
    u.timer = setTimeout(() => this.relaunch(u), delay);
  }

  private updateState(): void {
    const failed = this.units.filter((u) => u.status === 'failed');
    if (failed.length > 0) {
      this.setState('degraded', failed.map((u) => `${u.spec.name}: ${u.detail ?? 'failed'}`).join('; '));
      return;
    }
    if (this.units.every((u) => u.status === 'listed' || u.status === 'absent')) {
      this.everSynced = true;
      const notes = this.units.flatMap((u) => {
        if (u.status === 'absent') return [`${u.spec.name} not served`];
        if (u.current && u.current !== u.spec.candidates[0]) return [`${u.spec.name} from ${u.current.label}`];
        return [];
      });
      this.setState('synced', notes.length ? notes.join('; ') : undefined);
      return;
    }
    // Before the first full sync say what is still missing; afterwards a unit that
    // restarts (a CRD that appeared) keeps the current state until it has listed.
    if (!this.everSynced) {
      this.setState('starting', `waiting for ${this.units.filter((u) => u.status === 'pending').map((u) => u.spec.name).join(', ')}`);
    }
  }

  private setState(state: SourceState, detail?: string): void {
    const key = `${state}\0${detail ?? ''}`;
    if (key === this.lastState) return;
    this.lastState = key;
    this.sink.setState(state, detail);
  }

  private get recheckMs(): number {
    return this.opts.recheckMs ?? 60_000;
  }
}

function resourceVersion(o: unknown): string | undefined {
  const rv = (o as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion;
  return typeof rv === 'string' ? rv : undefined;
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { statusCode?: unknown }).statusCode;
    const cause = (err as { cause?: { code?: unknown } }).cause?.code;
    return `${err.message}${typeof code === 'number' && !err.message.includes(String(code)) ? ` (HTTP ${code})` : ''}${typeof cause === 'string' && !err.message.includes(cause) ? ` (${cause})` : ''}`;
  }
  return String(err);
}
