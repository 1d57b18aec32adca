/**
 * A fleet of edge nodes in network namespaces for the scale benchmark and its CI
 * variant: L LANs, each a bridge behind its own masquerading router, N nodes spread
 * round-robin over them, R relays on a cloud segment. Every node runs the real
 * agent (static catalog, nftables, PSK on) and hosts one service whose backend
 * (socat → sha256sum) answers with its name and the sha256 of what it received, so a probe
 * knows which backend it reached and whether every byte arrived.
 *
 * IP plan (inside the lab's namespaces only):
 *   cloud segment 10.200.0.0/16 (a bridge in the `cl` namespace);
 *   relay r: 10.200.0.(10+r); router of LAN l: WAN 10.200.1.(1+l);
 *   LAN l: 10.(100+l).0.0/24, router .1, its k-th node .(10+k);
 *   service of node i: ClusterIP 10.96.(1 + i / 250).(1 + i % 250), port 80 → 8080.
 * The pure parts (plan, catalog, configs, pair sampling) are exported for tests.
 */
import { join } from 'node:path';
import type { Lab } from './netns.js';

export const TUNNEL_PORT = 20006;
export const DATA_PORT = 20007;
export const BACKEND_PORT = 8080;
export const METRICS = '127.0.0.1:9464';

export interface FleetOptions {
  nodes: number;
  lans: number;
  relays: number;
}

export interface FleetNode {
  readonly index: number;
  readonly name: string;
  readonly short: string;
  readonly lan: number;
  readonly ip: string;
  readonly serviceIP: string;
}

export interface FleetRelay {
  readonly name: string;
  readonly short: string;
  readonly ip: string;
}

export interface FleetPlan {
  readonly nodes: readonly FleetNode[];
  readonly relays: readonly FleetRelay[];
  readonly lans: readonly { readonly index: number; readonly cidr: string; readonly gateway: string; readonly wan: string }[];
}

/** Addresses and names only (pure). */
export function planFleet(o: FleetOptions): FleetPlan {
  if (o.lans < 1 || o.lans > 150 || o.nodes < 1 || o.nodes > 150 * 240 || o.relays < 1 || o.relays > 200) {
    throw new RangeError(`fleet out of range: ${o.nodes} nodes, ${o.lans} LANs, ${o.relays} relays`);
  }
  const lans = Array.from({ length: o.lans }, (_, l) => ({ index: l, cidr: `10.${100 + l}.0.0/24`, gateway: `10.${100 + l}.0.1`, wan: `10.200.1.${1 + l}` }));
  const perLan = new Array<number>(o.lans).fill(0);
  const nodes = Array.from({ length: o.nodes }, (_, i): FleetNode => {
    const lan = i % o.lans;
    const k = perLan[lan]!++;
    if (k >= 240) throw new RangeError(`LAN ${lan} would hold more than 240 nodes`);
    return { index: i, name: `n${i}`, short: `n${i}`, lan, ip: `10.${100 + lan}.0.${10 + k}`, serviceIP: `10.96.${1 + Math.floor(i / 250)}.${1 + (i % 250)}` };
  });
  const relays = Array.from({ length: o.relays }, (_, r): FleetRelay => ({ name: `relay${r}`, short: `rl${r}`, ip: `10.200.0.${10 + r}` }));
  return { nodes, relays, lans };
}

/** The static catalog every agent reads: a Node per node, one Service + EndpointSlice per node. */
export function fleetCatalogYaml(plan: FleetPlan): string {
  const docs: string[] = [];
  for (const n of plan.nodes) {
    docs.push(`apiVersion: v1
kind: Node
metadata: { name: ${n.name} }
status: { addresses: [{ type: InternalIP, address: ${n.ip} }] }`);
  }
  for (const n of plan.nodes) {
    docs.push(`apiVersion: v1
kind: Service
metadata: { name: svc-${n.name}, namespace: fleet }
spec: { clusterIP: ${n.serviceIP}, ports: [{ name: tcp, port: 80, targetPort: ${BACKEND_PORT} }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: svc-${n.name}-1, namespace: fleet, labels: { kubernetes.io/service-name: svc-${n.name} } }
addressType: IPv4
ports: [{ name: tcp, port: ${BACKEND_PORT} }]
endpoints: [{ addresses: [${n.ip}], nodeName: ${n.name} }]`);
  }
  return `${docs.join('\n---\n')}\n`;
}

/** Agent (or relay) config as the object the CLI reads (JSON). */
export function fleetConfig(plan: FleetPlan, who: FleetNode | FleetRelay, dir: string, pskFile: string): object {
  const relay = !('lan' in who);
  const common = {
    nodeName: who.name,
    stateDir: join(dir, who.name),
    log: { level: 'warn' },
    metrics: { listen: METRICS },
    sources: { kubernetes: { enabled: false }, static: { paths: [join(dir, 'catalog.yaml')], pollMs: 2000 } },
    dns: { enabled: false },
  };
  if (relay) {
    return { ...common, dataplane: { mode: 'none' }, tunnel: { listenPort: TUNNEL_PORT, dataPort: DATA_PORT, psk: { path: pskFile } } };
  }
  return {
    ...common,
    // Nodes of the same LAN reach each other by kernel DNAT; other LANs only through the tunnel.
    dataplane: { mode: 'nftables', routableCIDRs: [plan.lans[who.lan]!.cidr], minSyncIntervalMs: 100 },
    accelerator: { mode: 'auto' },
    tunnel: {
      listenPort: TUNNEL_PORT,
      dataPort: DATA_PORT,
      directDialTimeoutMs: 1000,
      psk: { path: pskFile },
      relayNodes: plan.relays.map((r) => ({ nodeName: r.name, advertiseAddress: [`${r.ip}:${TUNNEL_PORT}`] })),
    },
  };
}

/**
 * `perNode` targets on other LANs for every node (deterministic for a seed; fewer
 * when the other LANs hold fewer nodes). Pairs are [from, to] node indexes.
 */
export function samplePairs(plan: FleetPlan, perNode: number, seed: number): [number, number][] {
  let s = seed >>> 0 || 1;
  const rnd = (): number => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s; };
  const pairs: [number, number][] = [];
  for (const from of plan.nodes) {
    const others = plan.nodes.filter((n) => n.lan !== from.lan).map((n) => n.index);
    for (let k = 0; k < Math.min(perNode, others.length); k++) {
      const j = k + (rnd() % (others.length - k));
      [others[k], others[j]] = [others[j]!, others[k]!];
      pairs.push([from.index, others[k]!]);
    }
  }
  return pairs;
}

export interface FleetNet {
  readonly cloud: string;
  readonly routers: readonly string[];
  readonly nodes: readonly string[];
  readonly relays: readonly string[];
}

/** Build the namespaces, links, routes and NAT of a plan. */
export async function buildFleet(lab: Lab, plan: FleetPlan): Promise<FleetNet> {
  const cloud = await lab.ns('cl');
  await lab.exec(cloud, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
  await lab.exec(cloud, 'ip', ['link', 'set', 'br0', 'up']);
  const onBridge = async (bridgeNs: string, other: string, addr: string): Promise<void> => {
    const { aIf } = await lab.link(bridgeNs, [], other, addr);
    await lab.exec(bridgeNs, 'ip', ['link', 'set', aIf, 'master', 'br0']);
  };
  const relays: string[] = [];
  for (const r of plan.relays) {
    const ns = await lab.ns(r.short);
    await onBridge(cloud, ns, `${r.ip}/16`);
    relays.push(ns);
  }
  const routers: string[] = [];
  for (const l of plan.lans) {
    const ns = await lab.ns(`rt${l.index}`);
    await onBridge(cloud, ns, `${l.wan}/16`);
    await lab.exec(ns, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
    await lab.exec(ns, 'ip', ['addr', 'add', `${l.gateway}/24`, 'dev', 'br0']);
    await lab.exec(ns, 'ip', ['link', 'set', 'br0', 'up']);
    await lab.sysctl(ns, 'net.ipv4.ip_forward=1');
    // A home/edge NAT gateway: the LAN leaves masqueraded (ports kept where free),
    // nothing is forwarded in, and unsolicited connections to the WAN address are
    // dropped by its stateful firewall (not answered with a RST).
    await lab.exec(ns, 'nft', ['-f', '-'], { input: `table ip edgeway_fleet_nat {
  chain post { type nat hook postrouting priority 100; policy accept; ip saddr ${l.cidr} oifname != "br0" masquerade; }
  chain in { type filter hook input priority 0; policy accept; ip daddr ${l.wan} ct state new drop; }
}
` });
    routers.push(ns);
  }
  const nodes: string[] = [];
  for (const n of plan.nodes) {
    const ns = await lab.ns(n.short);
    await onBridge(routers[n.lan]!, ns, `${n.ip}/24`);
    await lab.route(ns, 'default', 'via', plan.lans[n.lan]!.gateway);
    nodes.push(ns);
  }
  return { cloud, routers, nodes, relays };
}

/** Cut (or restore) a LAN's uplink: its router drops everything between the LAN and the cloud. */
export async function setUplink(lab: Lab, net: FleetNet, lan: number, up: boolean): Promise<void> {
  const router = net.routers[lan]!;
  if (up) {
    await lab.exec(router, 'nft', ['delete', 'table', 'ip', 'edgeway_fleet_cut']).catch(() => undefined);
    return;
  }
  await lab.exec(router, 'nft', ['-f', '-'], { input: 'table ip edgeway_fleet_cut {\n  chain cut { type filter hook forward priority -10; policy drop; }\n}\n' });
}

/** The backend of a node: socat answering "<node>\n<sha256 of the bytes until EOF>  -\n". */
export function backendArgs(node: FleetNode): string[] {
  return [`TCP-LISTEN:${BACKEND_PORT},bind=${node.ip},reuseaddr,fork`, `SYSTEM:echo ${node.name}; exec sha256sum`];
}

/** What a backend answers for bytes with this sha256 (see backendArgs). */
export function backendAnswer(node: string, sha256hex: string): string {
  return `${node}\n${sha256hex}  -`;
}
