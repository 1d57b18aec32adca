/**
 * The catalog: one immutable snapshot of what the cluster says, in slim internal
 * objects converted from API objects at the boundary (CoreDNS style — whole API
 * objects are never kept). Everything downstream (plan, DNS, proxy, tunnel) reads
 * only these types.
 *
 * Snapshots are persisted as JSON (see persist.ts); bump SNAPSHOT_VERSION when a
 * field changes meaning so an old file is ignored instead of misread.
 */

export const SNAPSHOT_VERSION = 1;

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type IpFamily = 4 | 6;

export interface ServicePort {
  /** Port name ('' allowed only when the service has a single port). */
  readonly name: string;
  readonly protocol: Protocol;
  readonly port: number;
  /** Numeric target port or a named container port. */
  readonly targetPort: number | string;
  readonly nodePort?: number;
  readonly appProtocol?: string;
}

export type SessionAffinity = { readonly kind: 'None' } | { readonly kind: 'ClientIP'; readonly timeoutSeconds: number };

/** How the hash key of a consistent-hash policy is taken. */
export type HashKey =
  | { readonly type: 'sourceIp' }
  | { readonly type: 'header'; readonly name: string }
  | { readonly type: 'cookie'; readonly name: string; readonly path?: string; readonly ttlSeconds?: number };

/** Load-balancing policy from an Istio DestinationRule `trafficPolicy.loadBalancer`. */
export type LbPolicy =
  | { readonly kind: 'random' }
  | { readonly kind: 'roundRobin' }
  | { readonly kind: 'leastRequest' }
  | { readonly kind: 'consistentHash'; readonly key: HashKey };

export interface EndpointPort {
  readonly name: string;
  readonly protocol: Protocol;
  readonly port: number;
}

export interface Endpoint {
  readonly ip: string;
  readonly family: IpFamily;
  readonly nodeName?: string;
  readonly zone?: string;
  readonly hostname?: string;
  /** EndpointConditions (ready implies serving; terminating endpoints may still serve). */
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
  /** EndpointSlice `hints.forZones[].name`. */
  readonly zoneHints: readonly string[];
  /** Ports this endpoint serves, matched to service ports by name. */
  readonly ports: readonly EndpointPort[];
}

export interface Service {
  readonly namespace: string;
  readonly name: string;
  /** `namespace/name`. */
  readonly key: string;
  readonly type: 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
  /** Cluster IPs, v4 and/or v6, normalised; empty when headless or ExternalName. */
  readonly clusterIPs: readonly string[];
  /** `clusterIP: None` or label `service.kubernetes.io/headless`. */
  readonly headless: boolean;
  readonly externalName?: string;
  readonly ports: readonly ServicePort[];
  readonly sessionAffinity: SessionAffinity;
  /** `spec.trafficDistribution`. */
  readonly trafficDistribution?: string;
  readonly internalTrafficPolicy: 'Cluster' | 'Local';
  /** From a DestinationRule of the same name and namespace; undefined = default (random). */
  readonly lbPolicy?: LbPolicy;
  /** Endpoints from every EndpointSlice (or the Endpoints object) of this service, deduplicated by IP. */
  readonly endpoints: readonly Endpoint[];
}

export interface NodeAddress {
  readonly type: string;
  readonly address: string;
}

export interface Node {
  readonly name: string;
  readonly addresses: readonly NodeAddress[];
  /** Label `topology.kubernetes.io/zone`. */
  readonly zone?: string;
  /** Annotation `edgeway.io/peer-id`: the node's tunnel identity. */
  readonly peerId?: string;
  readonly ready: boolean;
}

/** Where the snapshot came from: live sources, or the persisted copy while offline. */
export type SnapshotOrigin = 'live' | 'persisted';

export interface Snapshot {
  readonly version: typeof SNAPSHOT_VERSION;
  /** Monotonic per process; a change of revision means the content may have changed. */
  readonly revision: number;
  /** ISO time the snapshot was built. */
  readonly builtAt: string;
  readonly origin: SnapshotOrigin;
  /** Sorted by key. */
  readonly services: readonly Service[];
  /** Sorted by name. */
  readonly nodes: readonly Node[];
  /**
   * Gateway objects (Istio Gateway/VirtualService, Gateway API Gateway/HTTPRoute,
   * TLS Secrets), sorted by record key; present only when a source was asked for
   * them (the gateway command). Never persisted.
   */
  readonly ingress?: readonly import('./ingress.js').IngressObject[];
}

/** An empty snapshot (revision 0). */
export function emptySnapshot(origin: SnapshotOrigin = 'live'): Snapshot {
  return { version: SNAPSHOT_VERSION, revision: 0, builtAt: new Date(0).toISOString(), origin, services: [], nodes: [] };
}
