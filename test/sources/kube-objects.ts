/**
 * Kubernetes-shaped test objects for the source tests.
 *
 * IP plan (exists only as data; nothing here is routed):
 *   cluster IPs   10.96.0.0/16, fd00:96::/64
 *   pod IPs       10.244.0.0/16
 *   node IPs      192.168.50.0/24
 */
import type { KubeObject } from '../helpers/kube-apiserver.js';

export const NS = 'default';

export function service(name: string, clusterIP: string, ports: { name?: string; port: number; protocol?: string }[] = [{ name: 'http', port: 80 }], extra: Record<string, unknown> = {}): KubeObject {
  return {
    kind: 'Service',
    metadata: { name, namespace: NS },
    spec: { type: 'ClusterIP', clusterIP, clusterIPs: [clusterIP], ports: ports.map((p) => ({ protocol: 'TCP', targetPort: p.port, ...p })), ...extra },
  };
}

export function slice(name: string, serviceName: string, ips: string[], opts: { zone?: string; hints?: string[]; ready?: boolean; addressType?: string; port?: number } = {}): KubeObject {
  return {
    kind: 'EndpointSlice',
    metadata: { name, namespace: NS, labels: { 'kubernetes.io/service-name': serviceName } },
    addressType: opts.addressType ?? 'IPv4',
    ports: [{ name: 'http', port: opts.port ?? 8080, protocol: 'TCP' }],
    endpoints: ips.map((ip) => ({
      addresses: [ip],
      conditions: { ready: opts.ready ?? true, serving: opts.ready ?? true, terminating: false },
      nodeName: 'edge-1',
      ...(opts.zone ? { zone: opts.zone } : {}),
      ...(opts.hints ? { hints: { forZones: opts.hints.map((z) => ({ name: z })) } } : {}),
    })),
  };
}

export function endpoints(name: string, ips: string[], port = 8080): KubeObject {
  return {
    kind: 'Endpoints',
    metadata: { name, namespace: NS },
    subsets: [{ addresses: ips.map((ip) => ({ ip, nodeName: 'edge-1' })), ports: [{ name: 'http', port, protocol: 'TCP' }] }],
  };
}

export function node(name: string, ip: string, extra: { zone?: string; peerId?: string } = {}): KubeObject {
  return {
    kind: 'Node',
    metadata: {
      name,
      labels: extra.zone ? { 'topology.kubernetes.io/zone': extra.zone } : {},
      annotations: extra.peerId ? { 'edgeway.io/peer-id': extra.peerId } : {},
    },
    status: { addresses: [{ type: 'InternalIP', address: ip }, { type: 'Hostname', address: name }], conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

export function destinationRule(name: string, loadBalancer: Record<string, unknown>): KubeObject {
  return { kind: 'DestinationRule', metadata: { name, namespace: NS }, spec: { host: name, trafficPolicy: { loadBalancer } } };
}
