/**
 * The fleet's pure parts (src/lab/fleet.ts): the address plan, the catalog every
 * agent reads (through the real static-source parser and catalog builder), the
 * agents' configs (through the real config schema) and the sampled pairs.
 */
import { describe, expect, it } from 'vitest';
import { buildSnapshot } from '../../src/catalog/build.js';
import type { SlimPolicy, SlimService, SlimSlice } from '../../src/catalog/convert.js';
import type { Node } from '../../src/catalog/types.js';
import { parseConfig } from '../../src/config/load.js';
import { fleetCatalogYaml, fleetConfig, planFleet, samplePairs } from '../../src/lab/fleet.js';
import { parseStaticFile } from '../../src/sources/static.js';

describe('fleet plan', () => {
  it('gives every node, relay and router a distinct address inside its segment', () => {
    const plan = planFleet({ nodes: 100, lans: 10, relays: 2 });
    const ips = [...plan.nodes.map((n) => n.ip), ...plan.relays.map((r) => r.ip), ...plan.lans.flatMap((l) => [l.gateway, l.wan])];
    expect(new Set(ips).size).toBe(ips.length);
    for (const n of plan.nodes) expect(n.ip.startsWith(plan.lans[n.lan]!.cidr.replace('0/24', ''))).toBe(true);
    expect(new Set(plan.nodes.map((n) => n.serviceIP)).size).toBe(100);
    expect(plan.nodes.map((n) => n.lan).filter((l) => l === 3)).toHaveLength(10);
    expect(() => planFleet({ nodes: 10, lans: 0, relays: 1 })).toThrow(RangeError);
  });

  it('its catalog parses into one service per node with its endpoint on that node', () => {
    const plan = planFleet({ nodes: 12, lans: 3, relays: 1 });
    const rejected: string[] = [];
    const r = parseStaticFile('fleet.yaml', fleetCatalogYaml(plan), 'FilterIfLabelExists', { reject: (_k, ref, why) => void rejected.push(`${ref}: ${why}`), clearRejection: () => undefined });
    expect(rejected).toEqual([]);
    const snap = buildSnapshot({
      services: r.service.values() as Iterable<SlimService>, slices: r.slice.values() as Iterable<SlimSlice>,
      nodes: r.node.values() as Iterable<Node>, policies: r.policy.values() as Iterable<SlimPolicy>,
    }, 1, '1970-01-01T00:00:00.000Z');
    expect(snap.nodes).toHaveLength(12);
    expect(snap.services.map((s) => [s.key, s.clusterIPs[0], s.endpoints.map((e) => `${e.ip}@${e.nodeName}`).join()]).sort())
      .toEqual(plan.nodes.map((n) => [`fleet/svc-${n.name}`, n.serviceIP, `${n.ip}@${n.name}`]).sort());
  });

  it('its configs are valid agent and relay configs with PSK and every relay', () => {
    const plan = planFleet({ nodes: 4, lans: 2, relays: 2 });
    const agent = parseConfig(fleetConfig(plan, plan.nodes[1]!, '/d', '/d/swarm.key'), 'n1.json', {}, {});
    expect(agent.tunnel.psk.path).toBe('/d/swarm.key');
    expect(agent.tunnel.relayNodes.map((r) => r.nodeName)).toEqual(['relay0', 'relay1']);
    expect(agent.dataplane.routableCIDRs).toEqual([plan.lans[1]!.cidr]);
    const relay = parseConfig(fleetConfig(plan, plan.relays[0]!, '/d', '/d/swarm.key'), 'relay0.json', {}, {});
    expect(relay.tunnel.relayNodes).toEqual([]);
  });

  it('samples distinct cross-LAN targets per node, the same for the same seed', () => {
    const plan = planFleet({ nodes: 30, lans: 5, relays: 1 });
    const pairs = samplePairs(plan, 3, 42);
    expect(pairs).toHaveLength(90);
    expect(samplePairs(plan, 3, 42)).toEqual(pairs);
    expect(samplePairs(plan, 3, 43)).not.toEqual(pairs);
    for (const [from, to] of pairs) expect(plan.nodes[from]!.lan).not.toBe(plan.nodes[to]!.lan);
    for (const n of plan.nodes) {
      const tos = pairs.filter(([f]) => f === n.index).map(([, t]) => t);
      expect(new Set(tos).size).toBe(3);
    }
    // Fewer other-LAN nodes than asked: all of them, once.
    expect(samplePairs(planFleet({ nodes: 4, lans: 2, relays: 1 }), 5, 1).filter(([f]) => f === 0).map(([, t]) => t).sort()).toEqual([1, 3]);
  });
});
