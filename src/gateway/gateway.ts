/**
 * The edge gateway: catalog snapshot → route model (model.ts) + plan (plan/) →
 * backends, TLS contexts, per-port handlers and listeners. `apply` is idempotent and
 * never cuts connections in progress: a changed port keeps its sockets and takes the
 * new routes for the next request; a port that disappears stops accepting.
 */
import type { Registry } from 'prom-client';
import type { Snapshot } from '../catalog/types.js';
import type { TlsSecret } from '../catalog/ingress.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../util/log.js';
import type { RemoteDialer } from '../proxy/remote-dialer.js';
import { ProxyMetrics } from '../proxy/metrics.js';
import { reasonClass } from '../catalog/store.js';
import type { PlanFor } from '../plan/memo.js';
import { buildRouteModel } from './model.js';
import type { RouteModel } from './types.js';
import { GatewayMetrics } from './metrics.js';
import { Upstreams } from './upstream.js';
import { TlsContexts } from './tls.js';
import { GatewayHttpProxy } from './http-proxy.js';
import { PortHandler } from './listen-handler.js';
import { ListenerSet } from './listeners.js';

export interface EdgeGatewayOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly planFor: PlanFor;
  /** The tunnel's dialer for endpoints in other LANs (undefined → those fail fast with 503). */
  readonly remoteDialer: () => RemoteDialer | undefined;
  /** [0,1) for weighted picks; default Math.random. */
  readonly random?: () => number;
}

export class EdgeGateway {
  readonly metrics: GatewayMetrics;
  private readonly upstreams: Upstreams;
  private readonly contexts: TlsContexts;
  private readonly proxy: GatewayHttpProxy;
  private readonly handlers = new Map<number, PortHandler>();
  private readonly listeners: ListenerSet;
  private readonly log: Logger;
  private readonly seenRejections = new Set<string>();
  private current: RouteModel | undefined;
  private applied = false;
  /** Client connections open now (closed on stop after a short drain). */
  private readonly sockets = new Set<import('node:net').Socket>();

  constructor(private readonly opts: EdgeGatewayOptions) {
    const g = opts.config.gateway;
    this.log = opts.logger.child({ subsystem: 'gateway' });
    this.metrics = new GatewayMetrics(opts.registry);
    this.upstreams = new Upstreams(new ProxyMetrics(opts.registry, opts.config.proxy.perServiceLabels), {
      connectTimeoutMs: g.connectTimeoutMs, maxConnectAttempts: g.maxConnectAttempts, maxIdlePerEndpoint: g.maxIdlePerEndpoint, remoteDialer: opts.remoteDialer,
    });
    this.contexts = new TlsContexts(this.metrics, this.log);
    this.proxy = new GatewayHttpProxy(this.upstreams, this.metrics, this.log, opts.random);
    this.listeners = new ListenerSet(g.addresses, g.addressPollMs, (port, sock) => {
      const h = this.handlers.get(port);
      if (!h || this.sockets.size >= g.maxConnections) { sock.destroy(); return; }
      this.sockets.add(sock);
      sock.once('close', () => { this.sockets.delete(sock); });
      h.accept(sock);
    }, this.log, (n) => this.metrics.listeners.set(n));
  }

  /** The model in force (tests, logs). */
  get model(): RouteModel | undefined {
    return this.current;
  }

  readiness(): { ready: boolean; detail?: string } {
    return this.applied ? { ready: true, detail: `${this.handlers.size} ports on ${this.listeners.bound.length} sockets` } : { ready: false, detail: 'no catalog applied yet' };
  }

  /** Serve what this snapshot says. Idempotent. */
  async apply(snapshot: Snapshot): Promise<void> {
    const { config } = this.opts;
    const ingress = snapshot.ingress ?? [];
    const model = buildRouteModel(ingress, snapshot.services, { labels: config.gateway.labels, gatewayClassName: config.gateway.gatewayClassName, clusterDomain: config.clusterDomain });
    for (const r of model.rejected) {
      const k = `${r.kind}\0${r.ref}\0${r.reason}`;
      if (this.seenRejections.has(k)) continue;
      this.seenRejections.add(k);
      this.metrics.rejected.inc({ kind: r.kind, reason: reasonClass(r.reason) });
      this.log.warn({ kind: r.kind, object: r.ref, reason: r.reason }, 'gateway object rejected');
    }
    const wanted = new Set<string>();
    for (const l of model.listeners) {
      for (const r of [...l.httpRoutes, ...l.sniRoutes, ...l.tcpRoutes]) for (const d of r.destinations) wanted.add(`${d.serviceKey}:${d.port}/TCP`);
    }
    this.upstreams.apply(this.opts.planFor(snapshot), snapshot, wanted);
    const secrets = new Map<string, TlsSecret>();
    for (const o of ingress) if (o.kind === 'Secret') secrets.set(`${o.namespace}/${o.name}`, o);
    this.contexts.update(model.listeners.flatMap((l) => l.tlsServers), secrets);
    const ports = new Set<number>();
    for (const l of model.listeners) {
      ports.add(l.port);
      const h = this.handlers.get(l.port);
      if (h && h.kind === l.kind) { h.update(l); continue; }
      h?.close();
      this.handlers.set(l.port, new PortHandler(l, {
        proxy: this.proxy, upstreams: this.upstreams, contexts: this.contexts, metrics: this.metrics, log: this.log,
        idleTimeoutMs: config.gateway.idleTimeoutMs, ...(this.opts.random ? { random: this.opts.random } : {}),
      }));
    }
    for (const [p, h] of this.handlers) if (!ports.has(p)) { h.close(); this.handlers.delete(p); }
    const changed = JSON.stringify(this.current?.listeners.map((l) => [l.port, l.kind, l.httpRoutes.length + l.sniRoutes.length + l.tcpRoutes.length])) !==
      JSON.stringify(model.listeners.map((l) => [l.port, l.kind, l.httpRoutes.length + l.sniRoutes.length + l.tcpRoutes.length]));
    this.current = model;
    await this.listeners.setPorts([...ports]);
    if (changed) this.log.info({ revision: snapshot.revision, listeners: model.listeners.map((l) => `${l.port}/${l.kind}`), rejected: model.rejected.length, sockets: this.listeners.bound.length }, 'gateway routes applied');
    this.applied = true;
  }

  /** Stop accepting, close idle keep-alive clients, give requests in flight `drainMs`, then close the rest. */
  async stop(drainMs = 2_000): Promise<void> {
    this.listeners.close();
    for (const h of this.handlers.values()) h.close();
    this.handlers.clear();
    const deadline = Date.now() + drainMs;
    while (this.sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const s of this.sockets) s.destroy();
    this.upstreams.close();
  }
}
