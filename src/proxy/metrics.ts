/**
 * Proxy metrics on an injected registry. Per-service labels (`service` =
 * `namespace/name:port/PROTO`) can be turned off for large clusters: every series
 * then carries `service=""` and cardinality stays constant.
 *
 * Hot paths hold bound children (`ServiceMetrics`) so a byte count is one add on a
 * pre-resolved series, never a label lookup per chunk.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export type ConnectionResult = 'ok' | 'connect_failed' | 'no_endpoints' | 'remote_unavailable' | 'limit' | 'http_error';
export type DropReason =
  | 'no_endpoints' | 'connect_failed' | 'limit' | 'emfile' | 'udp_session_limit' | 'remote_unavailable' | 'idle_timeout' | 'http_parse' | 'unknown_destination';

export class ProxyMetrics {
  readonly connections: Counter<'service' | 'protocol' | 'result'>;
  readonly active: Gauge<'service' | 'protocol'>;
  readonly bytes: Counter<'service' | 'direction'>;
  readonly connectSeconds: Histogram<'service'>;
  readonly retries: Counter<'service'>;
  readonly drops: Counter<'service' | 'reason'>;
  readonly acceptErrors: Counter<'code'>;
  readonly fdExhausted: Counter;
  readonly listeners: Gauge;

  /** Bound series sets whose byte counts are flushed into `bytes` at scrape time. */
  private readonly bound = new Set<ServiceMetrics>();

  constructor(registry: Registry, readonly perServiceLabels = true) {
    const registers = [registry];
    const bound = this.bound;
    this.connections = new Counter({ name: 'edgeway_proxy_connections_total', help: 'Proxied flows (TCP connections, UDP sessions, HTTP requests) by service and result', labelNames: ['service', 'protocol', 'result'], registers });
    this.active = new Gauge({ name: 'edgeway_proxy_active_flows', help: 'Flows open now', labelNames: ['service', 'protocol'], registers });
    this.bytes = new Counter({ name: 'edgeway_proxy_bytes_total', help: 'Bytes proxied, by direction (to_endpoint = client→endpoint)', labelNames: ['service', 'direction'], registers,
      // Hot path adds plain numbers (ServiceMetrics.toEndpoint/toClient); they reach the series here.
      collect(this: Counter<'service' | 'direction'>) {
        for (const sm of bound) sm.flushBytes(this);
      },
    });
    this.connectSeconds = new Histogram({
      name: 'edgeway_proxy_connect_duration_seconds', help: 'Time to connect to an endpoint (successful attempts)', labelNames: ['service'], registers,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    });
    this.retries = new Counter({ name: 'edgeway_proxy_retries_total', help: 'Connect attempts retried on another endpoint', labelNames: ['service'], registers });
    this.drops = new Counter({ name: 'edgeway_proxy_drops_total', help: 'Flows or datagrams dropped, by reason', labelNames: ['service', 'reason'], registers });
    this.acceptErrors = new Counter({ name: 'edgeway_proxy_accept_errors_total', help: 'accept() failures (EMFILE: fd limit reached)', labelNames: ['code'], registers });
    this.fdExhausted = new Counter({ name: 'edgeway_proxy_fd_exhausted_seconds_total', help: 'Seconds (probed every 100 ms, counted once a second) in which the process had no file descriptor left: new connections are refused, and libuv drops them before the proxy sees them', registers });
    this.listeners = new Gauge({ name: 'edgeway_proxy_listeners', help: 'Listening sockets (TCP and UDP) of the proxy', registers });
  }

  /** Bound series for one service port. */
  forService(id: string, protocol: string): ServiceMetrics {
    const sm = new ServiceMetrics(this, this.perServiceLabels ? id : '', protocol);
    this.bound.add(sm);
    return sm;
  }

  /** Stop tracking a series set (its pending bytes are flushed first). */
  unbind(sm: ServiceMetrics): void {
    sm.flushBytes(this.bytes);
    this.bound.delete(sm);
  }
}

export class ServiceMetrics {
  /** Bytes not yet flushed into the counter (plain adds on the hot path). */
  toEndpoint = 0;
  toClient = 0;
  readonly activeFlows;
  private readonly retriesChild;
  private readonly connectChild;
  constructor(private readonly m: ProxyMetrics, readonly service: string, readonly protocol: string) {
    this.activeFlows = m.active.labels(service, protocol);
    this.retriesChild = m.retries.labels(service);
    this.connectChild = m.connectSeconds.labels(service);
  }

  flushBytes(c: Counter<'service' | 'direction'>): void {
    if (this.toEndpoint > 0) c.inc({ service: this.service, direction: 'to_endpoint' }, this.toEndpoint);
    if (this.toClient > 0) c.inc({ service: this.service, direction: 'to_client' }, this.toClient);
    this.toEndpoint = 0;
    this.toClient = 0;
  }

  /** Bound children by result: `labels()` hashes its label values on every call. */
  private readonly results = new Map<ConnectionResult, { inc(): void }>();

  result(r: ConnectionResult): void {
    let c = this.results.get(r);
    if (!c) { c = this.m.connections.labels(this.service, this.protocol, r); this.results.set(r, c); }
    c.inc();
  }

  drop(reason: DropReason): void {
    this.m.drops.labels(this.service, reason).inc();
  }

  retry(): void {
    this.retriesChild.inc();
  }

  connected(seconds: number): void {
    this.connectChild.observe(seconds);
  }
}
