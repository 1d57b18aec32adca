/**
 * The two-LAN topology used by the tunnel e2e tests, the tunnel benchmark and the
 * demo: LAN A (a1, a2 on a bridge) behind NAT router ra, LAN B (b1) behind NAT
 * router rb, both routers on a "cloud" router that also reaches the relay. The
 * routers masquerade (nft, inside their own namespaces); the cloud has no route
 * into either LAN, so a LAN host is reachable from outside only through the relay
 * or a port forward (`portForward`), or by TCP hole punching while both NATs are
 * `cone` (masquerade keeps ports); `nat: { rb: 'symmetric' }` (or `setNat`) makes a
 * router pick random ports so punching fails.
 *
 * IP plan (exists only inside the lab's namespaces):
 *   LAN A 10.1.0.0/24: ra 10.1.0.1 (bridge), a1 10.1.0.2, a2 10.1.0.3
 *   LAN B 10.2.0.0/24: rb 10.2.0.1, b1 10.2.0.2
 *   cloud: relay 10.200.0.10 (cloud 10.200.0.1), ra WAN 10.200.1.2 (cloud 10.200.1.1),
 *          rb WAN 10.200.2.2 (cloud 10.200.2.1)
 */
import type { Lab } from './netns.js';

export type HostName = 'a1' | 'a2' | 'b1' | 'ra' | 'rb' | 'cloud' | 'relay';

export const IP = {
  a1: '10.1.0.2', a2: '10.1.0.3', ra: '10.1.0.1', raWan: '10.200.1.2',
  b1: '10.2.0.2', rb: '10.2.0.1', rbWan: '10.200.2.2',
  relay: '10.200.0.10',
} as const;

export interface Topology {
  readonly lab: Lab;
  /** Namespace name of each host. */
  readonly ns: Readonly<Record<HostName, string>>;
  /** Forward `port` (tcp) on the router's WAN address to `toIp:port` (an operator opening a port). */
  portForward(router: 'ra' | 'rb', port: number, toIp: string): Promise<void>;
  /** Remove every port forward of a router. */
  clearPortForwards(router: 'ra' | 'rb'): Promise<void>;
  /** Switch a router's NAT mode (new connections only; existing mappings stay). */
  setNat(router: 'ra' | 'rb', mode: NatMode): Promise<void>;
}

/**
 * How a router maps its LAN's outgoing connections: `cone` = Linux masquerade, which
 * keeps the source port when it is free (endpoint-independent: hole punching
 * works); `symmetric` = masquerade fully-random, a new random port per connection
 * (hole punching must fail cleanly).
 */
export type NatMode = 'cone' | 'symmetric';

export interface TopologyOptions {
  /** Per-router NAT mode (default cone for both). */
  nat?: Partial<Record<'ra' | 'rb', NatMode>>;
  /**
   * Routers drop new connections to their own WAN address (a home router's or cloud
   * NAT gateway's stateful firewall) instead of answering them with a RST. TCP hole
   * punching needs this: a RST leaves a conntrack entry on the router that makes it
   * map the LAN host's own SYN to another port. Port forwards still work (DNAT
   * happens before the input hook).
   */
  firewall?: boolean;
}

function masqueradeRule(lan: string, mode: NatMode): string {
  return `ip saddr ${lan} ip daddr != ${lan} masquerade${mode === 'symmetric' ? ' fully-random' : ''}`;
}

function natRuleset(lan: string, mode: NatMode): string {
  return `table ip edgeway_test_nat {
  chain post { type nat hook postrouting priority 100; policy accept; ${masqueradeRule(lan, mode)}; }
  chain pre { type nat hook prerouting priority -100; policy accept; }
}
`;
}

const LAN = { ra: '10.1.0.0/24', rb: '10.2.0.0/24' } as const;

function firewallRuleset(wan: string): string {
  return `table ip edgeway_test_fw {
  chain in { type filter hook input priority 0; policy accept; ip daddr ${wan} ct state new drop; }
}
`;
}

export async function buildTopology(lab: Lab, opts: TopologyOptions = {}): Promise<Topology> {
  const ns = {} as Record<HostName, string>;
  for (const h of ['cloud', 'ra', 'rb', 'relay', 'a1', 'a2', 'b1'] as const) ns[h] = await lab.ns(h === 'cloud' ? 'cl' : h === 'relay' ? 'rl' : h);

  // Cloud segment.
  await lab.link(ns.cloud, '10.200.0.1/24', ns.relay, `${IP.relay}/24`);
  await lab.link(ns.cloud, '10.200.1.1/24', ns.ra, `${IP.raWan}/24`);
  await lab.link(ns.cloud, '10.200.2.1/24', ns.rb, `${IP.rbWan}/24`);
  await lab.route(ns.relay, 'default', 'via', '10.200.0.1');
  await lab.route(ns.ra, 'default', 'via', '10.200.1.1');
  await lab.route(ns.rb, 'default', 'via', '10.200.2.1');
  await lab.sysctl(ns.cloud, 'net.ipv4.ip_forward=1');

  // LAN A: a bridge in ra so a1 and a2 share one L2 segment.
  await lab.exec(ns.ra, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
  await lab.exec(ns.ra, 'ip', ['addr', 'add', `${IP.ra}/24`, 'dev', 'br0']);
  await lab.exec(ns.ra, 'ip', ['link', 'set', 'br0', 'up']);
  for (const h of ['a1', 'a2'] as const) {
    const { aIf } = await lab.link(ns.ra, [], ns[h], `${IP[h]}/24`);
    await lab.exec(ns.ra, 'ip', ['link', 'set', aIf, 'master', 'br0']);
    await lab.route(ns[h], 'default', 'via', IP.ra);
  }
  // LAN B.
  await lab.link(ns.rb, `${IP.rb}/24`, ns.b1, `${IP.b1}/24`);
  await lab.route(ns.b1, 'default', 'via', IP.rb);

  for (const r of ['ra', 'rb'] as const) {
    await lab.sysctl(ns[r], 'net.ipv4.ip_forward=1');
    await lab.exec(ns[r], 'nft', ['-f', '-'], { input: natRuleset(LAN[r], opts.nat?.[r] ?? 'cone') });
    if (opts.firewall) await lab.exec(ns[r], 'nft', ['-f', '-'], { input: firewallRuleset(r === 'ra' ? IP.raWan : IP.rbWan) });
  }

  const wan = { ra: IP.raWan, rb: IP.rbWan } as const;
  return {
    lab,
    ns,
    async portForward(router, port, toIp) {
      await lab.exec(ns[router], 'nft', ['add', 'rule', 'ip', 'edgeway_test_nat', 'pre', 'ip', 'daddr', wan[router], 'tcp', 'dport', String(port), 'dnat', 'to', `${toIp}:${port}`]);
    },
    async clearPortForwards(router) {
      await lab.exec(ns[router], 'nft', ['flush', 'chain', 'ip', 'edgeway_test_nat', 'pre']);
    },
    async setNat(router, mode) {
      await lab.exec(ns[router], 'nft', ['-f', '-'], { input: `flush chain ip edgeway_test_nat post\nadd rule ip edgeway_test_nat post ${masqueradeRule(LAN[router], mode)}\n` });
    },
  };
}
