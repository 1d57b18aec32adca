/** Shared bits of the tunnel tests: a snapshot builder and free ports. */
import net from 'node:net';
import { SNAPSHOT_VERSION, type Endpoint, type Node, type Service, type Snapshot } from '../../src/catalog/types.js';

export function endpoint(ip: string, nodeName: string, port: number, proto: 'TCP' | 'UDP' = 'TCP', name = 'p'): Endpoint {
  return { ip, family: ip.includes(':') ? 6 : 4, nodeName, ready: true, serving: true, terminating: false, zoneHints: [], ports: [{ name, protocol: proto, port }] };
}

export function service(ns: string, name: string, port: number, eps: Endpoint[], proto: 'TCP' | 'UDP' = 'TCP', targetPort: number | string = port): Service {
  return {
    namespace: ns, name, key: `${ns}/${name}`, type: 'ClusterIP', clusterIPs: ['10.96.0.1'], headless: false,
    ports: [{ name: 'p', protocol: proto, port, targetPort }], sessionAffinity: { kind: 'None' }, internalTrafficPolicy: 'Cluster', endpoints: eps,
  };
}

export function snapshot(services: Service[], nodes: Node[]): Snapshot {
  return { version: SNAPSHOT_VERSION, revision: 1, builtAt: new Date().toISOString(), origin: 'live', services, nodes };
}

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
