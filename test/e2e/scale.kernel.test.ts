/**
 * The scale benchmark's CI variant (bench/scale.mjs, src/lab/fleet*.ts): 12 edge
 * nodes in 3 LANs behind NAT and a relay, every node running the real agent with
 * PSK on and hosting one service. Every sampled cross-LAN pair answers correctly
 * through the real path (64 KiB, sha256 checked by the backend), no node holds a
 * peer connection its flows did not need (never a full mesh), LAN 0 comes back
 * after its uplink is cut for 10 s, every pair answers again after the relay is killed
 * (SIGKILL) and restarted, node 1's pairs answer again after its agent is killed
 * (SIGKILL) and restarted on its state dir, and every agent and the relay exit 0 on SIGTERM.
 * A pair counts as serving when one flow and then another answer correctly; flows
 * reset in between are retried and printed (docs/scale.md).
 */
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { kernelSkipReason } from '../helpers/netns.js';
import { requirement } from '../helpers/skip.js';
import { runFleet, type FleetReport } from '../../src/lab/fleet-run.js';

const skip = requirement('fleet e2e', kernelSkipReason(), existsSync('dist/lab/fleet-probe.js') ? undefined : 'dist/ missing: run `npm run build` first');

describe.skipIf(!!skip)('a fleet of 12 agents in 3 NATed LANs', () => {
  it('serves every sampled cross-LAN pair, holds only the peers it uses, recovers from a cut uplink, a killed relay and a killed agent, exits 0', async () => {
    const r: FleetReport = await runFleet({ nodes: 12, lans: 3, relays: 1, pairsPerNode: 2, bytes: 65_536, deadlineMs: 150_000, probeConcurrency: 4, partitionMs: 10_000, relayRestartMs: 3000, agentCrash: true });
    // Reported, not gated: a flow reset after its pair had answered is retried by the probe.
    console.log(`fleet: ${r.warmResets} flows reset after their pair had answered; after the cut: ${r.partition?.warmResets ?? 0}; after the relay restart: ${r.relayRestart?.warmResets ?? 0}; after the agent crash: ${r.agentCrash?.warmResets ?? 0}; data channels by path: ${JSON.stringify(r.channelPaths)}`);
    expect(r.failures).toEqual([]);
    expect(r.pairsOk).toBe(24);
    for (const [i, conns] of r.connectionsPerNode.entries()) {
      // A node's peers are those its flows dialled or that dialled it — not all 11 others.
      expect(conns, `node n${i}`).toBeLessThanOrEqual(r.peersUsedPerNode[i]!);
    }
    expect(r.partition?.failures).toEqual([]);
    expect(r.partition?.pairsOk).toBe(r.partition?.pairs);
    expect(r.relayRestart?.failures).toEqual([]);
    expect(r.relayRestart?.pairsOk).toBe(24);
    expect(r.agentCrash?.failures).toEqual([]);
    expect(r.agentCrash?.pairs).toBeGreaterThan(0);
    expect(r.agentCrash?.pairsOk).toBe(r.agentCrash?.pairs);
    // Error-level log lines fail the run; warnings (Node's MaxListeners diagnostic included) are printed.
    for (const p of r.problems.filter((x) => !/"level":(50|60)/.test(x.line))) console.log(`fleet warning ${p.who}: ${p.line.slice(0, 200)}`);
    expect(r.problems.filter((p) => /"level":(50|60)/.test(p.line))).toEqual([]);
    // The restarted agent and relay are the ones stopped here: they too exit 0.
    expect(r.exitCodes.agents).toEqual(new Array(12).fill(0));
    expect(r.exitCodes.relays).toEqual([0]);
  }, 600_000);
});
