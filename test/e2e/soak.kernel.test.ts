/**
 * The soak, CI-sized (bench/soak.mjs is the full one; runner src/lab/soak-run.ts):
 * two LANs behind NAT and a relay, the real agents (PSK, tunnel, data channel, addon
 * when built), a load generator on a1 holding FLOWS TCP flows by ClusterIP through
 * a1's proxy → tunnel → b1's agent → echo backend, with TCP/UDP/HTTP churn. a1's
 * agent gets a low fd limit (prlimit) so the flows opened past the hold meet EMFILE.
 * Asserts: every completed flow's sha256 (held flows, churn, recovery), refused flows
 * fail cleanly (error or EOF, never a hang), EMFILE counted in a1's metrics, no spin
 * at the limit, new flows succeed again, fds / streams / active flows / active
 * resources back to the baseline within FD_TOLERANCE, no unexpected warn/error log
 * lines, exit 0 on SIGTERM.
 * FD_TOLERANCE: the data channel keeps up to 64 warm connections per peer (one fd on
 * each agent) and a hole punch hands over up to 16 at once; a leak of one fd per
 * flow (1,000 here) is far above it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { kernelSkipReason } from '../helpers/netns.js';
import { runSoak, type SoakReport } from '../../src/lab/soak-run.js';
import { emfileCounted, soakVerdict, SPIN_CPU } from '../../src/lab/soak-verdict.js';

const skip = kernelSkipReason() ?? (existsSync('dist/lab/soak-client.js') ? undefined : 'dist/ missing: run `npm run build` first');
if (skip) console.warn(`skipping soak e2e: ${skip}`);

const FLOWS = Number(process.env.EDGEWAY_SOAK_FLOWS ?? 1000);
// fds a held flow costs a1's agent: the client socket and its data channel
// connection, with or without the addon (the pool owns the sockets it forwards; see
// "File descriptors per flow" in src/native/README.md).
const FDS_PER_FLOW = 2;
const FD_TOLERANCE = 150;

describe.skipIf(!!skip)('soak (CI size): held flows, past the fd limit, recovery, nothing leaked', () => {
  let r: SoakReport;
  beforeAll(async () => {
    r = await runSoak({
      flows: FLOWS, extra: FLOWS, holdMs: 10_000, churnEveryMs: 3000, churn: 10, atLimitMs: 5000,
      // Room for the held flows, the warm pool and the agent's own fds; not for twice as many flows.
      fdLimit: FDS_PER_FLOW * FLOWS + 800, fdTolerance: FD_TOLERANCE,
      ...(process.env.EDGEWAY_SOAK_LOGS ? { logDir: process.env.EDGEWAY_SOAK_LOGS, logLevel: 'debug' } : {}),
      log: (l) => console.log(`soak: ${l}`),
    });
  }, 360_000);
  afterAll(() => {
    if (r) console.log(`soak verdict: ${JSON.stringify(soakVerdict(r))}`);
  });

  it('holds every flow and finishes each with the right sha256', () => {
    expect(r.ramp.held, JSON.stringify(r.ramp)).toBe(FLOWS);
    // Flows past the limit that got through are held too, and released with the others.
    expect(r.release, JSON.stringify(r.release)).toMatchObject({ ok: FLOWS + r.past.ok, failed: 0, bad: 0 });
    for (const m of [r.warmup, ...r.holdMix, r.recovery]) for (const t of [m.tcp, m.udp, m.http]) expect(t.bad).toBe(0);
    expect(r.past.bad).toBe(0);
  });

  it('refuses flows past the fd limit cleanly, counts EMFILE and does not spin', () => {
    expect(r.past.failed, JSON.stringify(r.past)).toBeGreaterThan(0);
    expect(r.past.errors.timeout ?? 0, JSON.stringify(r.past)).toBe(0);
    expect(emfileCounted(r.after.metrics.a1), JSON.stringify(r.after.metrics.a1)).toBeGreaterThan(0);
    expect(r.atLimitCpu).toBeLessThan(SPIN_CPU);
  });

  it('serves new flows again after the release', () => {
    expect(r.recovery, JSON.stringify(r.recovery)).toMatchObject({ tcp: { failed: 0 }, udp: { failed: 0 }, http: { failed: 0 } });
  });

  it('comes back to the baseline: fds, streams, active flows, active resources', () => {
    for (const h of ['a1', 'b1', 'relay'] as const) expect(r.after.sample.fds[h], `${h} fds, baseline ${r.baseline.sample.fds[h]}`).toBeLessThanOrEqual(r.baseline.sample.fds[h] + FD_TOLERANCE);
    const v = soakVerdict(r);
    expect(v.reasons.filter((x) => / → /.test(x))).toEqual([]);
  });

  it('logs no warn/error lines beyond the expected refusals, and every process exits 0 on SIGTERM', () => {
    expect(r.problems.filter((p) => !p.expected)).toEqual([]);
    expect(r.exitCodes).toEqual({ a1: 0, b1: 0, relay: 0 });
  });
});
