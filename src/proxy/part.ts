/**
 * The proxy as a part of `edgeway agent`: on every snapshot, build the plan
 * (through the injected `planFor`, plan/build.ts in the composition root), open
 * listeners on the userspace ports it names, and — in iptables mode — write the
 * REDIRECT rules that lead ClusterIP traffic to them, with a periodic drift check.
 *
 * Bursts of snapshots are coalesced: at most one sync runs at a time and two start
 * at least `minSyncIntervalMs` apart; a failed sync is retried with backoff.
 * Stopping closes the listeners and keeps kernel rules (`edgeway cleanup` removes
 * them), so a restart does not open a window where ClusterIPs bypass the proxy.
 *
 * The part is shaped like cli/parts.ts `AgentPart` without importing cli/.
 */
import type { Config } from '../config/schema.js';
import type { CatalogStore } from '../catalog/store.js';
import type { Snapshot } from '../catalog/types.js';
import type { Logger } from '../util/log.js';
import type { Registry } from '../metrics/registry.js';
import type { Plan, PlannedServicePort } from '../plan/types.js';
import { Backoff } from '../util/backoff.js';
import { IptablesDataplane } from '../dataplane/iptables/dataplane.js';
import type { Exec } from '../dataplane/iptables/exec.js';
import type { DatagramSession, RemoteDialer } from './remote-dialer.js';
import type { OriginalDstResolver } from './original-dst.js';
import { ProxyError } from './errors.js';
import { UserspaceProxy } from './proxy.js';
import type { Forwarder } from '../native/forwarder.js';

export interface ProxyPartContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly store: CatalogStore;
}

export interface ProxyPartDeps {
  /** snapshot → plan (buildPlan with this node's identity and config). Absent → the part is disabled. */
  readonly planFor?: (snapshot: Snapshot) => Pick<Plan, 'servicePorts'>;
  /** The tunnel, when running (looked up per flow, so it may start after the proxy). */
  readonly remoteDialer?: () => RemoteDialer | undefined;
  /** Program iptables REDIRECTs (default: `dataplane.mode === 'iptables'`; the data-plane detector decides for `auto`). */
  readonly iptables?: (config: Config) => boolean | Promise<boolean>;
  readonly originalDst?: { readonly port: number; readonly resolver: OriginalDstResolver };
  /** Accelerated TCP forwarding (splice/sockmap) when the native addon is usable. */
  readonly forwarder?: () => Forwarder | undefined;
  /** Process boundary for iptables (tests run it in a namespace). */
  readonly exec?: Exec;
}

export interface ProxyPart {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly readiness: { readonly name: string; check(): { ready: boolean; detail?: string } };
  /** Resolves when the sync in progress (if any) and any queued one are done (tests). */
  settled(): Promise<void>;
}

/** A RemoteDialer that asks `get` for the tunnel on every call and fails fast without one. */
function lazyDialer(get: () => RemoteDialer | undefined): RemoteDialer {
  const none = (): ProxyError => new ProxyError('ERR_PROXY_NO_REMOTE_DIALER', 'endpoint is in another LAN and no tunnel is running');
  return {
    dialStream: (t, s) => get()?.dialStream(t, s) ?? Promise.reject(none()),
    openDatagramSession: (t, s): Promise<DatagramSession> => get()?.openDatagramSession(t, s) ?? Promise.reject(none()),
  };
}

/** Factory for cli/parts.ts. */
export function createProxyPart(deps: ProxyPartDeps) {
  return async (ctx: ProxyPartContext): Promise<ProxyPart | undefined> => {
    if (!deps.planFor) {
      ctx.logger.warn('userspace proxy disabled: no plan builder wired');
      return undefined;
    }
    return new ProxyAgentPart(ctx, deps, deps.planFor, (await (deps.iptables ?? ((c) => c.dataplane.mode === 'iptables'))(ctx.config)));
  };
}

class ProxyAgentPart implements ProxyPart {
  readonly name = 'proxy';
  private readonly proxy: UserspaceProxy;
  private readonly iptables: IptablesDataplane | undefined;
  private readonly log: Logger;
  private readonly backoff = new Backoff(500, 30_000);
  private running: Promise<void> | undefined;
  private dirty = false;
  private lastSyncAt = 0;
  private synced = false;
  private lastError: string | undefined;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private driftTimer: NodeJS.Timeout | undefined;
  private readonly onSnapshot = (): void => this.kick();

  constructor(private readonly ctx: ProxyPartContext, deps: ProxyPartDeps, private readonly planFor: (s: Snapshot) => Pick<Plan, 'servicePorts'>, useIptables: boolean) {
    this.log = ctx.logger.child({ part: 'proxy' });
    const p = ctx.config.proxy;
    this.proxy = new UserspaceProxy({
      logger: this.log, registry: ctx.registry,
      ...(deps.remoteDialer ? { remoteDialer: lazyDialer(deps.remoteDialer) } : {}),
      ...(deps.originalDst ? { originalDst: deps.originalDst } : {}),
      ...(deps.forwarder?.() ? { forwarder: deps.forwarder()! } : {}),
      connectTimeoutMs: p.connectTimeoutMs, maxConnectAttempts: p.maxConnectAttempts, idleTimeoutMs: p.idleTimeoutMs,
      udpSessionIdleMs: p.udpSessionIdleMs, maxFlows: p.maxFlows, maxUdpSessions: p.maxUdpSessions, perServiceLabels: p.perServiceLabels,
    });
    this.iptables = useIptables
      ? new IptablesDataplane({ logger: this.log, registry: ctx.registry, backend: p.iptablesBackend, ...(deps.exec ? { exec: deps.exec } : {}) })
      : undefined;
  }

  readonly readiness = {
    name: 'proxy',
    check: (): { ready: boolean; detail?: string } => (this.synced
      ? { ready: true, ...(this.lastError ? { detail: `last sync failed: ${this.lastError}` } : {}) }
      : { ready: false, detail: this.lastError ?? 'first sync pending' }),
  };

  async start(): Promise<void> {
    this.ctx.store.on('snapshot', this.onSnapshot);
    this.kick();
    await this.settled();
    if (this.iptables) {
      this.driftTimer = setInterval(() => {
        if (this.running || !this.synced) return;
        this.iptables!.reconcile().catch((err: unknown) => this.log.error({ err: String(err) }, 'iptables drift check failed'));
      }, this.ctx.config.dataplane.driftCheckIntervalMs);
      this.driftTimer.unref();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.ctx.store.off('snapshot', this.onSnapshot);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.driftTimer) clearInterval(this.driftTimer);
    await this.running?.catch(() => undefined);
    await this.proxy.close();
  }

  async settled(): Promise<void> {
    while (this.running) await this.running.catch(() => undefined);
  }

  /** Ask for a sync; coalesced with any sync running or pending. */
  private kick(): void {
    if (this.stopped) return;
    if (this.running) { this.dirty = true; return; }
    const wait = Math.max(0, this.lastSyncAt + this.ctx.config.dataplane.minSyncIntervalMs - Date.now());
    this.running = (wait > 0 ? new Promise((r) => setTimeout(r, wait)) : Promise.resolve()).then(() => this.sync()).finally(() => {
      this.running = undefined;
      if (this.dirty) { this.dirty = false; this.kick(); }
    });
  }

  private async sync(): Promise<void> {
    if (this.stopped) return;
    this.lastSyncAt = Date.now();
    const snapshot = this.ctx.store.snapshot;
    try {
      const plan = this.planFor(snapshot);
      const ports: readonly PlannedServicePort[] = plan.servicePorts;
      // Listeners first, then the rules that send traffic to them.
      const r = await this.proxy.apply(ports);
      if (this.iptables) await this.iptables.apply(plan);
      this.synced = true;
      this.lastError = r.failed.length ? `listeners failed: ${r.failed.join(', ')}` : undefined;
      this.backoff.reset();
      this.log.debug({ revision: snapshot.revision, listeners: r.listeners }, 'proxy synced');
      if (r.failed.length) this.retryLater();
    } catch (err) {
      this.lastError = String(err);
      this.log.error({ revision: snapshot.revision, err: this.lastError }, 'proxy sync failed; retrying');
      this.retryLater();
    }
  }

  private retryLater(): void {
    if (this.retryTimer || this.stopped) return;
    this.retryTimer = setTimeout(() => { this.retryTimer = undefined; this.kick(); }, this.backoff.next());
    this.retryTimer.unref();
  }
}
