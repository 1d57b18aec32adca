#!/usr/bin/env node
// bench/soak: two LANs behind NAT and a relay, the real agents (PSK, tunnel, data
// channel, addon when built); a load generator on a1 ramps to FLOWS held TCP flows
// through a1's agent (kernel → proxy → tunnel → b1's agent → echo backend), holds
// them under TCP/UDP/HTTP churn, opens EXTRA more past the fd limit (EMFILE counted,
// refused flows fail cleanly, CPU sampled at the limit), releases them (sha256 of
// every flow checked), checks recovery and that fds, streams, channel connections,
// RSS and active resources come back. Runner: src/lab/soak-run.ts (needs
// `npm run build`, root). Env: SOAK_MIN (20; total minutes, 3 for a short run),
// FLOWS (9000), EXTRA (2500), CHURN (20 flows per kind per round), FD_LIMIT (unset:
// the agent's own limit), SOAK_LOGS (a directory for every process's log; level
// SOAK_LOG_LEVEL, default info), ACCEL=off (the agents forward in Node; since the
// addon's pool owns the sockets it forwards, a flow holds 2 fds on a1 either way, so
// 9,000 flows fit under 20,000 with the addon too). Writes bench/results/soak.{json,md}.
import { writeFileSync, mkdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { runSoak } from '../dist/lab/soak-run.js';
import { emfileCounted, soakVerdict } from '../dist/lab/soak-verdict.js';
import { spread } from '../dist/lab/fleet-run.js';

const root = new URL('..', import.meta.url).pathname;
const env = (k, d) => (process.env[k] === undefined ? d : Number(process.env[k]));
const minutes = env('SOAK_MIN', 20);
const opts = {
  flows: env('FLOWS', 9000), extra: env('EXTRA', 2500), churn: env('CHURN', 20), churnEveryMs: 10_000,
  // Ramp, limit, release and settle take a few minutes; the hold gets the rest.
  holdMs: Math.max(30_000, (minutes - 2.5) * 60_000), fdTolerance: 150,
  ...(process.env.FD_LIMIT ? { fdLimit: Number(process.env.FD_LIMIT) } : {}),
  ...(process.env.ACCEL === 'off' ? { accelerator: /** @type {const} */ ('off') } : {}),
  ...(process.env.SOAK_LOGS ? { logDir: process.env.SOAK_LOGS, logLevel: process.env.SOAK_LOG_LEVEL ?? 'info' } : {}),
};
const load = loadavg().map((x) => x.toFixed(2)).join(' ');
const started = Date.now();
const r = await runSoak({ ...opts, log: (l) => console.error(`  ${new Date().toISOString().slice(11, 19)} ${l}`) });
const v = soakVerdict(r);

const f = (xs, d = 1) => { const s = spread(xs); return `${s.min.toFixed(d)} / ${s.median.toFixed(d)} / ${s.max.toFixed(d)}`; };
const tallies = (k) => r.holdMix.map((m) => m[k]);
const sumT = (ts) => ts.reduce((a, t) => ({ ok: a.ok + t.ok, failed: a.failed + t.failed, bad: a.bad + t.bad }), { ok: 0, failed: 0, bad: 0 });
const t = (x) => `${x.ok} ok, ${x.failed} failed${x.bad ? `, ${x.bad} CORRUPT` : ''}${x.errors && Object.keys(x.errors).length ? ` (${Object.entries(x.errors).map(([k, n]) => `${k} ${n}`).join(', ')})` : ''}`;
const hold = r.samples.filter((s) => s.phase === 'hold');
const m = (h, k) => `${r.baseline.metrics[h][k] ?? 0} → ${r.after.metrics[h][k] ?? 0}`;
const mib = (h, k) => `${((r.baseline.metrics[h][k] ?? 0) / 2 ** 20).toFixed(0)} → ${((r.after.metrics[h][k] ?? 0) / 2 ** 20).toFixed(0)}`;
const resKeys = [...new Set([...Object.keys(r.baseline.metrics.a1), ...Object.keys(r.after.metrics.a1)].filter((k) => k.startsWith('resources:')))];
const md = [
  `# bench/soak (${new Date().toISOString()}; load ${load}${Number(load.split(' ')[0]) > 0.5 ? '; busy shared 2-core box' : ''})`,
  '',
  `${opts.flows} held TCP flows on a1's agent (cross-LAN, data channel, PSK on) for ${(opts.holdMs / 60_000).toFixed(1)} min under churn (${opts.churn} TCP + UDP + HTTP flows every ${opts.churnEveryMs / 1000} s), then ${opts.extra} more past the fd limit; run took ${((Date.now() - started) / 60_000).toFixed(1)} min. fd limits (soft/hard): a1 ${r.fdLimits.a1}, b1 ${r.fdLimits.b1}, relay ${r.fdLimits.relay}.`,
  '',
  '| figure | value |',
  '|---|---|',
  `| verdict | ${v.ok ? 'PASS' : `FAIL: ${v.reasons.join('; ')}`} |`,
  `| warm-up (TCP / UDP / HTTP) | ${t(r.warmup.tcp)} / ${t(r.warmup.udp)} / ${t(r.warmup.http)} |`,
  `| ramp: flows held | ${r.ramp.held} of ${opts.flows} (${t(r.ramp)}), ${(r.ramp.ms / 1000).toFixed(1)} s |`,
  `| churn during hold: TCP / UDP / HTTP | ${t(sumT(tallies('tcp')))} / ${t(sumT(tallies('udp')))} / ${t(sumT(tallies('http')))} |`,
  `| past the limit: ${opts.extra} more | ${t(r.past)} |`,
  `| a1 agent CPU at the limit (cpu-s per s, ${r.atLimitMs / 1000} s) | ${r.atLimitCpu.toFixed(3)} |`,
  `| EMFILE counted on a1: total (s at the fd limit / accept errors / dials refused) | ${emfileCounted(r.after.metrics.a1)} (${r.after.metrics.a1.edgeway_proxy_fd_exhausted_seconds_total ?? 0} / ${r.after.metrics.a1['edgeway_proxy_accept_errors_total:EMFILE'] ?? 0} / ${r.after.metrics.a1['edgeway_proxy_drops_total:emfile'] ?? 0}) |`,
  `| release: held flows finished, sha256 checked | ${t(r.release)}; lost while held: ${JSON.stringify(r.release.lostWhileHeld)} |`,
  `| recovery: first clean round (TCP / UDP / HTTP) | ${t(r.recovery.tcp)} / ${t(r.recovery.udp)} / ${t(r.recovery.http)}; after ${r.recoveryRounds} round(s), ${(r.recoveryMs / 1000).toFixed(1)} s from the release |`,
  `| fds a1 / b1 / relay: baseline → after (settled in ${(r.after.settledMs / 1000).toFixed(0)} s) | ${r.baseline.sample.fds.a1} → ${r.after.sample.fds.a1} / ${r.baseline.sample.fds.b1} → ${r.after.sample.fds.b1} / ${r.baseline.sample.fds.relay} → ${r.after.sample.fds.relay} |`,
  `| fds a1 during hold (min / median / max) | ${f(hold.map((s) => s.fds.a1), 0)} |`,
  `| RSS MiB a1 / b1 / relay: baseline → after | ${r.baseline.sample.rssMiB.a1.toFixed(0)} → ${r.after.sample.rssMiB.a1.toFixed(0)} / ${r.baseline.sample.rssMiB.b1.toFixed(0)} → ${r.after.sample.rssMiB.b1.toFixed(0)} / ${r.baseline.sample.rssMiB.relay.toFixed(0)} → ${r.after.sample.rssMiB.relay.toFixed(0)} |`,
  `| RSS MiB a1 during hold (min / median / max) | ${f(hold.map((s) => s.rssMiB.a1))} |`,
  `| a1 JS heap used / heap total / external MiB: baseline → after | ${mib('a1', 'edgeway_process_nodejs_heap_size_used_bytes')} / ${mib('a1', 'edgeway_process_nodejs_heap_size_total_bytes')} / ${mib('a1', 'edgeway_process_nodejs_external_memory_bytes')} |`,
  `| tunnel streams open a1 / b1: baseline → after | ${m('a1', 'edgeway_tunnel_streams_open')} / ${m('b1', 'edgeway_tunnel_streams_open')} |`,
  `| channel warm connections a1 / b1: baseline → after | ${m('a1', 'edgeway_tunnel_channel_warm_connections')} / ${m('b1', 'edgeway_tunnel_channel_warm_connections')} |`,
  `| proxy active flows a1: baseline → after | ${m('a1', 'edgeway_proxy_active_flows')} |`,
  `| a1 active resources by type: baseline → after | ${resKeys.map((k) => `${k.slice(10)} ${m('a1', k)}`).join(', ')} |`,
  `| warn/error log lines (unexpected / expected refusals) | ${r.problems.filter((p) => !p.expected).length} / ${r.problems.filter((p) => p.expected).length} |`,
  `| exit codes on SIGTERM | ${Object.entries(r.exitCodes).map(([h, c]) => `${h} ${c}`).join(', ')} |`,
  '',
  ...(r.problems.filter((p) => !p.expected).slice(0, 5).map((p) => `- ${p.who}: \`${p.line.slice(0, 240)}\``)),
  '',
  `Command: \`SOAK_MIN=${minutes} FLOWS=${opts.flows} EXTRA=${opts.extra}${opts.fdLimit ? ` FD_LIMIT=${opts.fdLimit}` : ''}${opts.accelerator ? ` ACCEL=${opts.accelerator}` : ''} CHURN=${opts.churn} npm run bench soak\`.`,
].join('\n');
console.log(md);
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(join(root, 'bench/results/soak.json'), JSON.stringify({ at: new Date().toISOString(), load, verdict: v, ...r }, null, 2));
writeFileSync(join(root, 'bench/results/soak.md'), `${md}\n`);
process.exit(v.ok ? 0 : 1);
