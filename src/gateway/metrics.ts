/**
 * Gateway metrics on an injected registry. Route and gateway labels come from the
 * route model (bounded by the objects in the cluster); codes are HTTP status codes.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export type TlsFailure = 'no_certificate' | 'handshake' | 'client_certificate' | 'protocol_version' | 'bad_client_hello' | 'no_route';

export class GatewayMetrics {
  readonly requests: Counter<'gateway' | 'route' | 'code'>;
  readonly duration: Histogram<'gateway' | 'route'>;
  readonly tlsFailures: Counter<'reason'>;
  readonly active: Gauge<'kind'>;
  readonly tcp: Counter<'gateway' | 'route' | 'result'>;
  readonly rejected: Counter<'kind' | 'reason'>;
  readonly listeners: Gauge;
  readonly retries: Counter<'route'>;
  readonly certReloads: Counter<'credential'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({ name: 'edgeway_gateway_requests_total', help: 'HTTP requests (HTTP/1.1, HTTP/2, gRPC) by gateway, route and status code', labelNames: ['gateway', 'route', 'code'], registers });
    this.duration = new Histogram({
      name: 'edgeway_gateway_request_duration_seconds', help: 'Time from request head to response end', labelNames: ['gateway', 'route'], registers,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    });
    this.tlsFailures = new Counter({ name: 'edgeway_gateway_tls_handshake_failures_total', help: 'TLS connections refused or failed, by reason', labelNames: ['reason'], registers });
    this.active = new Gauge({ name: 'edgeway_gateway_active_connections', help: 'Client connections open now, by listener kind', labelNames: ['kind'], registers });
    this.tcp = new Counter({ name: 'edgeway_gateway_tcp_connections_total', help: 'TCP and TLS-passthrough connections by route and result', labelNames: ['gateway', 'route', 'result'], registers });
    this.rejected = new Counter({ name: 'edgeway_gateway_objects_rejected_total', help: 'Gateway objects (or routes of them) refused by the route model, by reason', labelNames: ['kind', 'reason'], registers });
    this.listeners = new Gauge({ name: 'edgeway_gateway_listeners', help: 'Listening sockets (address × port)', registers });
    this.retries = new Counter({ name: 'edgeway_gateway_retries_total', help: 'Requests sent again after a failed attempt', labelNames: ['route'], registers });
    this.certReloads = new Counter({ name: 'edgeway_gateway_certificate_loads_total', help: 'TLS contexts built from Secrets (first load and every change)', labelNames: ['credential'], registers });
  }
}
