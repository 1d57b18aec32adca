/**
 * The gateway's route model: what the catalog's Istio and Gateway API objects say
 * this gateway serves, after selection (Istio `selector`, Gateway API class),
 * binding (routes to gateway servers), host intersection and destination resolution.
 * Built purely by model.ts; the listeners and the per-request router only read it.
 */
import type { RequestMatch, TlsVersion } from '../catalog/ingress.js';

/** A destination resolved to a catalog service port. */
export interface ResolvedDestination {
  /** `namespace/name`. */
  readonly serviceKey: string;
  /** Service port number. */
  readonly port: number;
  readonly weight: number;
}

export interface HttpRouteModel {
  /** Stable id for metrics and logs: `namespace/name#index` or `namespace/name#routeName`. */
  readonly id: string;
  /** `namespace/name` of the gateway object this route was bound through. */
  readonly gateway: string;
  /** Hosts (lower case, `*`/`*.suffix` wildcards) this route answers on this listener. */
  readonly hosts: readonly string[];
  /** Empty = every request. */
  readonly matches: readonly RequestMatch[];
  readonly destinations: readonly ResolvedDestination[];
  readonly rewrite?: { readonly uri?: string; readonly fullPath?: boolean; readonly authority?: string };
  readonly timeoutMs?: number;
  readonly retries?: { readonly attempts: number; readonly perTryTimeoutMs?: number };
}

/** A TLS server block on a TLS port, chosen by SNI. */
export interface TlsServerModel {
  readonly gateway: string;
  readonly hosts: readonly string[];
  readonly mode: 'SIMPLE' | 'MUTUAL' | 'PASSTHROUGH';
  /** `namespace/name` of the Secret (SIMPLE/MUTUAL). */
  readonly credential?: string;
  readonly minVersion?: TlsVersion;
  readonly maxVersion?: TlsVersion;
  /** After termination: HTTP routing (HTTPS servers) or TCP routes (TLS servers in SIMPLE/MUTUAL). */
  readonly terminateAs?: 'http' | 'tcp';
}

export interface SniRouteModel {
  readonly id: string;
  readonly gateway: string;
  readonly sniHosts: readonly string[];
  readonly destinations: readonly ResolvedDestination[];
}

export interface TcpRouteModel {
  readonly id: string;
  readonly gateway: string;
  readonly destinations: readonly ResolvedDestination[];
}

export interface ListenerModel {
  readonly port: number;
  /** `http`: plain HTTP/1.1 and h2c; `tls`: TLS (terminate or pass through by SNI); `tcp`: raw TCP. */
  readonly kind: 'http' | 'tls' | 'tcp';
  readonly gateways: readonly string[];
  readonly tlsServers: readonly TlsServerModel[];
  readonly httpRoutes: readonly HttpRouteModel[];
  readonly sniRoutes: readonly SniRouteModel[];
  readonly tcpRoutes: readonly TcpRouteModel[];
}

export interface ModelRejection {
  readonly kind: string;
  readonly ref: string;
  readonly reason: string;
}

export interface RouteModel {
  /** Sorted by port. */
  readonly listeners: readonly ListenerModel[];
  /** Objects (or parts) refused, one by one, with a reason. */
  readonly rejected: readonly ModelRejection[];
  /** Secrets named by served credentialNames (`namespace/name`), sorted. */
  readonly credentials: readonly string[];
}
