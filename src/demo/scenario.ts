/**
 * What the demo runs, as data: services and where their backends live, the static
 * catalog every agent reads, and each process's config. IP plan: src/lab/topology.ts
 * (LAN A 10.1.0.0/24, LAN B 10.2.0.0/24, relay 10.200.0.10) plus the pod network
 * on a1, 10.1.1.0/24 (pod 10.1.1.2, a1 10.1.1.1). All inside the demo's namespaces.
 */
import { join } from 'node:path';
import { IP } from '../lab/topology.js';

export const TUNNEL_PORT = 20006;
export const NODE_DNS = '169.254.96.16';
export const METRICS = '127.0.0.1:9464';
export const POD = { ip: '10.1.1.2', gw: '10.1.1.1', cidr: '10.1.1.0/24' } as const;
export const AGENTS = ['a1', 'a2', 'b1'] as const;
export type AgentHost = (typeof AGENTS)[number];

export interface DemoService {
  readonly name: string;
  readonly clusterIP: string;
  /** Node whose backend serves it. */
  readonly node: AgentHost;
  /** What a request from the pod on a1 should take, in words. */
  readonly expect: string;
}

export const SERVICES: readonly DemoService[] = [
  { name: 'hello-local', clusterIP: '10.96.0.10', node: 'a1', expect: 'same node: kernel DNAT (nftables) to the local backend' },
  { name: 'hello-lan', clusterIP: '10.96.0.20', node: 'a2', expect: 'same LAN: kernel DNAT to a2 (10.1.0.0/24 is in routableCIDRs)' },
  { name: 'hello-remote', clusterIP: '10.96.0.30', node: 'b1', expect: 'other LAN behind NAT: tunnel to b1 (relayed, upgraded to direct where the NATs allow)' },
];

const BACKEND_PORT = 8080;
/** The tunnel PSK (libp2p swarm.key format) under the demo's directory. */
export const PSK_FILE = 'swarm.key';
/** The gateway step: an HTTP backend on a2, served to outside clients by `edgeway gateway` on a2. */
export const GATEWAY = { port: 8088, backendPort: 8081, node: 'a2' as const, service: 'hello-web', clusterIP: '10.96.0.40' };

/** Istio Gateway + VirtualService and the HTTP service behind them (only when the gateway is built: agents without it reject these kinds). */
export function gatewayCatalogYaml(): string {
  return `apiVersion: v1
kind: Service
metadata: { name: ${GATEWAY.service}, namespace: demo }
spec: { clusterIP: ${GATEWAY.clusterIP}, ports: [{ name: http, port: 80, targetPort: ${GATEWAY.backendPort} }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${GATEWAY.service}-1, namespace: demo, labels: { kubernetes.io/service-name: ${GATEWAY.service} } }
addressType: IPv4
ports: [{ name: http, port: ${GATEWAY.backendPort} }]
endpoints: [{ addresses: [${IP[GATEWAY.node]}], nodeName: ${GATEWAY.node} }]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: demo-gw, namespace: demo }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: ${GATEWAY.port}, name: http, protocol: HTTP }, hosts: ["*"] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: hello-web, namespace: demo }
spec:
  hosts: ["*"]
  gateways: [demo-gw]
  http: [{ route: [{ destination: { host: ${GATEWAY.service}, port: { number: 80 } } }] }]
`;
}

/** `edgeway gateway` on a2: LAN A routable (kernel-free dial to a2's backend), no tunnel (a2's agent holds the node's tunnel identity). */
export function gatewayConfig(dir: string): object {
  return {
    nodeName: GATEWAY.node,
    stateDir: join(dir, 'a2-gateway'),
    log: { level: 'warn' },
    metrics: { listen: '127.0.0.1:9465' },
    sources: { kubernetes: { enabled: false }, static: { paths: [join(dir, 'catalog.yaml'), join(dir, 'gateway-catalog.yaml')], pollMs: 500 } },
    dataplane: { mode: 'none', routableCIDRs: ['10.1.0.0/24'] },
    dns: { enabled: false },
    tunnel: { enabled: false },
    gateway: { addresses: ['10.1.0.0/24'] },
  };
}

export function catalogYaml(): string {
  const nodes = AGENTS.map((n) => `apiVersion: v1
kind: Node
metadata: { name: ${n} }
status: { addresses: [{ type: InternalIP, address: ${IP[n]} }] }`);
  const svcs = SERVICES.map((s) => `apiVersion: v1
kind: Service
metadata: { name: ${s.name}, namespace: demo }
spec: { clusterIP: ${s.clusterIP}, ports: [{ name: http, port: 80, targetPort: ${BACKEND_PORT} }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${s.name}-1, namespace: demo, labels: { kubernetes.io/service-name: ${s.name} } }
addressType: IPv4
ports: [{ name: http, port: ${BACKEND_PORT} }]
endpoints: [{ addresses: [${IP[s.node]}], nodeName: ${s.node} }]`);
  return `${[...nodes, ...svcs].join('\n---\n')}\n`;
}

/** Config of the agent on `host` (or the relay), as the YAML/JSON object the CLI reads. */
export function processConfig(host: AgentHost | 'relay', dir: string): object {
  const relay = host === 'relay';
  return {
    nodeName: host,
    stateDir: join(dir, host),
    log: { level: 'warn' },
    metrics: { listen: METRICS },
    sources: { kubernetes: { enabled: false }, static: { paths: [join(dir, 'catalog.yaml')], pollMs: 500 } },
    dataplane: relay
      ? { mode: 'none' }
      // LAN A's agents reach each other's endpoints by kernel DNAT; LAN B is only reachable through the tunnel.
      : { mode: 'nftables', routableCIDRs: [host === 'b1' ? '10.2.0.0/24' : '10.1.0.0/24'], minSyncIntervalMs: 50 },
    // splice/sockmap where the native addon is built, plain Node streams otherwise.
    accelerator: { mode: 'auto' },
    dns: relay ? { enabled: false } : { enabled: true, listen: [`${NODE_DNS}:53`], upstreams: ['127.0.0.1:5399'] },
    tunnel: {
      listenPort: TUNNEL_PORT,
      directDialTimeoutMs: 1000,
      // The private network key every node and the relay share, as a user runs it.
      psk: { path: join(dir, PSK_FILE) },
      ...(relay ? {} : { relayNodes: [{ nodeName: 'relay', advertiseAddress: [`${IP.relay}:${TUNNEL_PORT}`] }] }),
    },
  };
}

export const backendArgs = (host: AgentHost): string[] => ['--id', host, '--port', String(BACKEND_PORT), '--host', IP[host], ...(host === GATEWAY.node ? ['--http-port', String(GATEWAY.backendPort)] : [])];
