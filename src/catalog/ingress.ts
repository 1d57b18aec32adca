/**
 * Slim records of the objects the edge gateway reads: Istio `Gateway` and
 * `VirtualService` (networking.istio.io v1, v1beta1, v1alpha3), Gateway API
 * `Gateway` and `HTTPRoute` (gateway.networking.k8s.io/v1), and `kubernetes.io/tls`
 * Secrets. Converted and validated at the boundary (convert-ingress.ts); the gateway's
 * route model (src/gateway/model.ts) joins them. Only the gateway command asks the
 * sources for them, and its catalog is never persisted (Secrets hold private keys).
 */

/** An exact, prefix or regex string match (Istio StringMatch, Gateway API match types). */
export type StringMatch =
  | { readonly type: 'exact'; readonly value: string }
  | { readonly type: 'prefix'; readonly value: string }
  | { readonly type: 'regex'; readonly value: string };

export interface HeaderMatch {
  /** Lower case. */
  readonly name: string;
  readonly match: StringMatch;
}

export interface RequestMatch {
  readonly uri?: StringMatch;
  readonly method?: StringMatch;
  readonly headers: readonly HeaderMatch[];
}

/** A destination as written: host is a service name (short, `name.ns`, or FQDN), resolved by the route model. */
export interface RouteDestination {
  readonly host: string;
  readonly port?: number;
  readonly weight: number;
}

export interface HttpRouteSpec {
  readonly name?: string;
  /** Empty = matches every request. Several = any of them. */
  readonly matches: readonly RequestMatch[];
  readonly destinations: readonly RouteDestination[];
  /** `uri` replaces the matched prefix (prefix match) or the whole path (`fullPath`, or other matches). */
  readonly rewrite?: { readonly uri?: string; readonly fullPath?: boolean; readonly authority?: string };
  /** Whole-request timeout (ms); undefined = none. */
  readonly timeoutMs?: number;
  readonly retries?: { readonly attempts: number; readonly perTryTimeoutMs?: number };
}

/** VirtualService `tls:` route (passthrough): SNI hosts → destinations. */
export interface TlsRouteSpec {
  readonly sniHosts: readonly string[];
  readonly port?: number;
  readonly destinations: readonly RouteDestination[];
}

/** VirtualService `tcp:` route. */
export interface TcpRouteSpec {
  readonly port?: number;
  readonly destinations: readonly RouteDestination[];
}

export type ServerProtocol = 'HTTP' | 'HTTPS' | 'HTTP2' | 'GRPC' | 'TCP' | 'TLS';
export type TlsMode = 'SIMPLE' | 'MUTUAL' | 'PASSTHROUGH';
export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

export interface ServerTls {
  readonly mode: TlsMode;
  /** `namespace/name` of a kubernetes.io/tls Secret (SIMPLE/MUTUAL). */
  readonly credential?: string;
  readonly minVersion?: TlsVersion;
  readonly maxVersion?: TlsVersion;
}

export interface GatewayServer {
  readonly port: number;
  readonly protocol: ServerProtocol;
  /** Lower case; `*`, `*.example.com`, `example.com`; a `ns/` prefix is dropped. */
  readonly hosts: readonly string[];
  readonly tls?: ServerTls;
  /** Gateway API listener name (the HTTPRoute `sectionName`). */
  readonly name?: string;
}

export interface IngressGateway {
  readonly kind: 'Gateway';
  /** `istio` (networking.istio.io) or `gatewayapi` (gateway.networking.k8s.io). */
  readonly api: 'istio' | 'gatewayapi';
  readonly namespace: string;
  readonly name: string;
  /** Istio `spec.selector` (empty = every gateway); unused for the Gateway API. */
  readonly selector: Readonly<Record<string, string>>;
  /** Gateway API `spec.gatewayClassName`. */
  readonly gatewayClassName?: string;
  readonly servers: readonly GatewayServer[];
}

export interface IngressRoute {
  readonly kind: 'Route';
  readonly api: 'istio' | 'gatewayapi';
  readonly namespace: string;
  readonly name: string;
  /** Lower case; empty = every host of the gateway. */
  readonly hosts: readonly string[];
  /** `namespace/name` of the gateways (optionally `#section`, Gateway API listener name). */
  readonly gateways: readonly string[];
  readonly http: readonly HttpRouteSpec[];
  readonly tls: readonly TlsRouteSpec[];
  readonly tcp: readonly TcpRouteSpec[];
}

export interface TlsSecret {
  readonly kind: 'Secret';
  readonly namespace: string;
  readonly name: string;
  /** PEM text. */
  readonly cert: string;
  readonly key: string;
  /** `ca.crt`: client CAs for MUTUAL. */
  readonly ca?: string;
}

export type IngressObject = IngressGateway | IngressRoute | TlsSecret;
