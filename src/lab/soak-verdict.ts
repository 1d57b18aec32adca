/**
 * What a soak must show (pure; the bench prints it, the CI variant asserts the
 * same reasons): every held flow and every churn/recovery flow answered with the
 * right sha256, refused flows failed cleanly (no hang), EMFILE counted, no spin at
 * the limit, counts back to the baseline, no unexpected warn/error lines, exit 0.
 */
import type { SoakReport, Tally } from './soak-run.js';

/** cpu-s per wall-s above which an idle agent at the fd limit counts as spinning. */
export const SPIN_CPU = 0.5;

/** EMFILE as the agent's metrics count it: seconds at the fd limit, accept errors, dials refused for lack of fds. */
export function emfileCounted(m: Record<string, number>): number {
  return (m['edgeway_proxy_fd_exhausted_seconds_total'] ?? 0) + (m['edgeway_proxy_accept_errors_total:EMFILE'] ?? 0) + (m['edgeway_proxy_drops_total:emfile'] ?? 0);
}

export function soakVerdict(r: SoakReport): { ok: boolean; reasons: string[] } {
  const reasons: string[] = [];
  const all = (t: Tally): boolean => t.failed === 0 && t.bad === 0;
  const corrupt = [r.ramp, r.past, r.release, r.recovery.tcp, r.recovery.udp, r.recovery.http, ...r.holdMix.flatMap((m) => [m.tcp, m.udp, m.http])].reduce((n, t) => n + t.bad, 0);
  if (corrupt > 0) reasons.push(`${corrupt} flows with wrong bytes`);
  if (r.ramp.held !== r.options.flows) reasons.push(`held ${r.ramp.held} of ${r.options.flows} flows (${JSON.stringify(r.ramp.errors)})`);
  if (!all(r.release)) reasons.push(`release: ${r.release.failed} held flows did not finish correctly (${JSON.stringify(r.release.errors)})`);
  if ((r.past.errors.timeout ?? 0) > 0) reasons.push(`${r.past.errors.timeout} refused flows hung until the client's deadline`);
  if (r.past.failed === 0) reasons.push('no flow past the hold was refused: the fd limit was not reached');
  const emfile = emfileCounted(r.after.metrics.a1);
  if (r.past.failed > 0 && emfile === 0) reasons.push('flows were refused at the fd limit but no EMFILE was counted');
  if (r.atLimitCpu > SPIN_CPU) reasons.push(`agent busy at the limit: ${r.atLimitCpu.toFixed(2)} cpu-s/s`);
  if (!all(r.recovery.tcp) || !all(r.recovery.udp) || !all(r.recovery.http)) reasons.push(`recovery flows failed: ${JSON.stringify(r.recovery)}`);
  for (const h of ['a1', 'b1', 'relay'] as const) {
    const [b, a] = [r.baseline.sample.fds[h], r.after.sample.fds[h]];
    if (!(a <= b + r.options.fdTolerance)) reasons.push(`${h} fds ${b} → ${a} (tolerance ${r.options.fdTolerance})`);
  }
  for (const h of ['a1', 'b1'] as const) {
    const [base, after] = [r.baseline.metrics[h], r.after.metrics[h]];
    if (Object.keys(after).length === 0) { reasons.push(`${h}: metrics could not be read after the load`); continue; }
    for (const k of ['edgeway_tunnel_streams_open', 'edgeway_proxy_active_flows']) {
      if ((after[k] ?? 0) > (base[k] ?? 0)) reasons.push(`${h} ${k} ${base[k] ?? 0} → ${after[k] ?? 0}`);
    }
    // Active handles and timers by type (process.getActiveResourcesInfo()).
    for (const k of Object.keys(after).filter((x) => x.startsWith('resources:'))) {
      if ((after[k] ?? 0) > (base[k] ?? 0) + r.options.fdTolerance) reasons.push(`${h} active ${k.slice(10)} ${base[k] ?? 0} → ${after[k]} (tolerance ${r.options.fdTolerance})`);
    }
  }
  const unexpected = r.problems.filter((p) => !p.expected);
  if (unexpected.length) reasons.push(`${unexpected.length} unexpected warn/error lines, first ${unexpected[0]!.who}: ${unexpected[0]!.line.slice(0, 200)}`);
  for (const [h, c] of Object.entries(r.exitCodes)) if (c !== 0) reasons.push(`${h} exited ${c} on SIGTERM`);
  return { ok: reasons.length === 0, reasons };
}
