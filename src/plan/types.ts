/**
 * The plan: what goes where, derived purely from a snapshot, this node's identity
 * and the config (plan/build.ts). It is the one contract between the catalog and
 * every data path: the nftables and iptables compilers, eBPF maps, the userspace
 * proxy and the tunnel ingress all read it, so they always agree.
 */
import type { HashKey, IpFamily, Protocol } from '../catalog/types.js';

/** How this node reaches an endpoint. */
export type EndpointClass =
  /** on this node: kernel DNAT */
  | 'local'
  /** on another node, inside `dataplane.routableCIDRs`: kernel DNAT */
  | 'routable'
  /** on another node in another LAN: through the tunnel (userspace ingress) */
  | 'remote';

export interface PlannedEndpoint {
  readonly ip: string;
  readonly family: IpFamily;
  /** Target port on the endpoint (resolved from the EndpointSlice port of the same name). */
  readonly port: number;
  readonly nodeName?: string;
  readonly zone?: string;
  readonly class: EndpointClass;
  /** false = serving-terminating endpoint used only because no ready one exists. */
  readonly ready: boolean;
}

/** Endpoint choice. The kernel handles random/roundRobin/clientIp; the rest need userspace. */
export type PlannedPolicy =
  | { readonly kind: 'random' }
  | { readonly kind: 'roundRobin' }
  | { readonly kind: 'leastRequest' }
  | { readonly kind: 'clientIp'; readonly timeoutSeconds: number }
  | { readonly kind: 'consistentHash'; readonly key: HashKey };

/**
 * Where the kernel sends a flow for this service port:
 * - `kernel`: DNAT to one of `endpoints` (all local/routable, policy kernel-capable);
 * - `userspace`: redirect to `userspacePort` on this node (L7 policy, remote
 *   endpoints, or iptables mode), where the proxy/tunnel ingress serves it;
 * - `reject`: no usable endpoint: TCP reset / ICMP unreachable at once.
 */
export type PlannedTarget = 'kernel' | 'userspace' | 'reject';

export type UserspaceReason = 'l7-policy' | 'remote-endpoints' | 'least-request' | 'iptables-mode';

export interface PlannedServicePort {
  /** Stable id: `namespace/name:port/PROTO` (port = service port number). */
  readonly id: string;
  readonly serviceKey: string;
  readonly namespace: string;
  readonly name: string;
  readonly portName: string;
  readonly protocol: Protocol;
  readonly port: number;
  /** Cluster IPs (v4 and/or v6) the service answers on. */
  readonly clusterIPs: readonly string[];
  /** Endpoints to use, in stable order (ready first choice already applied; zone filtering applied). */
  readonly endpoints: readonly PlannedEndpoint[];
  readonly policy: PlannedPolicy;
  readonly target: PlannedTarget;
  /** Why userspace is needed (when target = userspace). */
  readonly userspaceReason?: UserspaceReason;
  /** Local port the kernel redirects to when target = userspace (one per service port). */
  readonly userspacePort?: number;
  /** Human-readable remarks (e.g. "sessionAffinity ClientIP overrides DestinationRule roundRobin"). */
  readonly notes?: readonly string[];
}

export interface Plan {
  readonly nodeName: string;
  /** Snapshot revision this plan was built from. */
  readonly revision: number;
  /** Sorted by id. Headless, ExternalName and filtered services have no entry. */
  readonly servicePorts: readonly PlannedServicePort[];
  /** Service ports that needed a userspace port but found the range full (they reject). */
  readonly userspacePortExhausted: readonly string[];
}
