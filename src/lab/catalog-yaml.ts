/**
 * Static catalog YAML for the two-LAN lab (pure): Nodes of topology.ts's hosts and
 * Services whose one EndpointSlice puts the endpoint on a named host. The kernel
 * e2e tests (through test/helpers/lab-catalog.ts) and the soak (soak-plan.ts) write
 * their catalogs with it, so their shapes cannot drift apart.
 */
import { IP } from './topology.js';

/** Hosts of the two-LAN topology that run an agent. */
export type LabHost = 'a1' | 'a2' | 'b1';

export interface LabNode {
  readonly name: LabHost;
  /** An ExternalIP besides the InternalIP (the host's router WAN address, say). */
  readonly externalIP?: string;
  /** The `edgeway.io/peer-id` annotation (an agent publishes it with the Kubernetes source). */
  readonly peerId?: string;
}

export interface LabService {
  readonly name: string;
  /** Default `default`. */
  readonly namespace?: string;
  readonly clusterIP: string;
  readonly port: number;
  readonly targetPort: number;
  /** Written only when given (the API's default is TCP). */
  readonly protocol?: 'TCP' | 'UDP';
  /** The Service port's name; default `p`. */
  readonly portName?: string;
  /** The EndpointSlice port's name: default the Service port's; '' leaves it unnamed (the plan's single-port rule). */
  readonly endpointPortName?: string;
  /** The host its one endpoint runs on (the endpoint address is that host's InternalIP). */
  readonly on: LabHost;
  /** Write `conditions: { ready: true }` (absent means ready too). */
  readonly ready?: boolean;
}

export function nodeYaml(n: LabNode): string {
  const addrs = [`{ type: InternalIP, address: ${IP[n.name]} }`, ...(n.externalIP ? [`{ type: ExternalIP, address: ${n.externalIP} }`] : [])];
  return `apiVersion: v1
kind: Node
metadata: { name: ${n.name}${n.peerId ? `, annotations: { edgeway.io/peer-id: ${n.peerId} }` : ''} }
status: { addresses: [${addrs.join(', ')}] }`;
}

/** The Service and its EndpointSlice (two documents). */
export function serviceYaml(s: LabService): string {
  const ns = s.namespace ?? 'default';
  const portName = s.portName ?? 'p';
  const epPortName = s.endpointPortName ?? portName;
  const proto = s.protocol ? `, protocol: ${s.protocol}` : '';
  return `apiVersion: v1
kind: Service
metadata: { name: ${s.name}, namespace: ${ns} }
spec: { clusterIP: ${s.clusterIP}, ports: [{ name: ${portName}, port: ${s.port}, targetPort: ${s.targetPort}${proto} }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${s.name}-1, namespace: ${ns}, labels: { kubernetes.io/service-name: ${s.name} } }
addressType: IPv4
ports: [{ ${epPortName ? `name: ${epPortName}, ` : ''}port: ${s.targetPort}${proto} }]
endpoints: [{ addresses: [${IP[s.on]}], nodeName: ${s.on}${s.ready ? ', conditions: { ready: true }' : ''} }]`;
}

/** A whole catalog file: the nodes (a name alone, or with its extras), then the services. */
export function labCatalogYaml(nodes: readonly (LabHost | LabNode)[], services: readonly LabService[]): string {
  const docs = [...nodes.map((n) => nodeYaml(typeof n === 'string' ? { name: n } : n)), ...services.map(serviceYaml)];
  return `${docs.join('\n---\n')}\n`;
}
