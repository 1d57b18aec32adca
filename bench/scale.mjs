#!/usr/bin/env node
// bench/scale: N edge nodes in L LANs behind NAT, R relays in a cloud segment, every
// node running the real agent (static catalog, nftables, PSK on) and hosting one
// service; each node reaches PAIRS services on other LANs through the real path
// (nftables → proxy → tunnel → far agent → backend; 64 KiB per flow, sha256 checked
// by the backend). Reports the time until the mesh serves, agent and relay RSS/CPU,
// direct vs relayed peers, tunnel connections per node vs peers used, and the exit
// codes on SIGTERM; then cuts LAN 0's uplink for PARTITION_S seconds and probes its
// pairs again. Layout and runner: src/lab/fleet.ts, fleet-run.ts (needs `npm run build`, root).
// Then kills relay0 (SIGKILL) for RELAY_DOWN_S seconds and probes every pair again, and
// kills node 1's agent (SIGKILL), restarts it on its state dir and probes its pairs.
// Env: NODES (100), LANS (10), RELAYS (1), PAIRS (3), PARTITION_S (30), RELAY_DOWN_S (10;
// -1 = skip), AGENT_CRASH (1), START_BATCH (agents started at once; default 10 when
// NODES > 30, else all: 2.5–4 CPU-s start-up each would otherwise swamp a small box),
// IDLE_S (30: once all joined, the idle CPU of every agent and relay over this long; 0 = skip),
// LOG_DIR (keep every agent's and relay's stderr there, at warn level).
// Writes bench/results/scale.{json,md}.
import { writeFileSync, mkdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { runFleet, spread } from '../dist/lab/fleet-run.js';

const root = new URL('..', import.meta.url).pathname;
const env = (k, d) => Number(process.env[k] ?? d);
const opts = {
  nodes: env('NODES', 100), lans: env('LANS', 10), relays: env('RELAYS', 1), pairsPerNode: env('PAIRS', 3),
  bytes: 65_536, deadlineMs: env('DEADLINE_S', 180) * 1000, probeConcurrency: 8, partitionMs: env('PARTITION_S', 30) * 1000,
  ...(env('RELAY_DOWN_S', 10) >= 0 ? { relayRestartMs: env('RELAY_DOWN_S', 10) * 1000 } : {}),
  agentCrash: env('AGENT_CRASH', 1) === 1,
  startBatch: env('START_BATCH', env('NODES', 100) > 30 ? 10 : env('NODES', 100)),
  idleMs: env('IDLE_S', 30) * 1000,
};
const load = loadavg().map((x) => x.toFixed(2)).join(' ');
const r = await runFleet({ ...opts, ...(process.env.LOG_DIR ? { logDir: process.env.LOG_DIR } : {}), log: (l) => console.error(`  ${new Date().toISOString().slice(11, 19)} ${l}`) });

const f = (s, d = 1) => `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})`;
const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const pct = (a, b) => (b ? ((100 * a) / b).toFixed(0) : '0');
const step = (x) => `${x.pairsOk} / ${x.pairs}, all within ${(x.recoveredMs / 1000).toFixed(1)} s of the probe start; flows reset after a pair had answered: ${x.warmResets}`;
const relayRss = sum(r.relays.map((x) => x.rssMiB));
const relayCpu = sum(r.relays.map((x) => x.cpuSeconds));
const direct = sum(r.peersDirect); const relayed = sum(r.peersRelayed);
const md = [
  `# bench/scale (${new Date().toISOString()}; load ${load}${Number(load.split(' ')[0]) > 0.5 ? '; busy shared 2-core box' : ''})`,
  '',
  `${opts.nodes} nodes in ${opts.lans} LANs behind NAT, ${opts.relays} relay(s), PSK on; ${r.pairs} sampled cross-LAN pairs (${opts.pairsPerNode} per node), 64 KiB each, sha256 checked.`,
  '',
  '| figure | median (min–max) |',
  '|---|---|',
  `| pairs answered correctly | ${r.pairsOk} / ${r.pairs} |`,
  `| mesh serves every pair after (first agent spawned → last first answer) | ${(r.meshServesMs / 1000).toFixed(1)} s${r.allJoinedMs !== undefined ? ` (started ${opts.startBatch} at a time; all joined a relay after ${(r.allJoinedMs / 1000).toFixed(1)} s)` : ''} |`,
  `| first answer per pair, s from probe start | ${f(spread(r.firstOkMs.map((x) => x / 1000)))} |`,
  `| new flow on an established peer path, ms | ${f(spread(r.warmMs))} |`,
  `| flows reset after their pair had answered (then retried) | ${r.warmResets} |`,
  `| agent RSS MiB | ${f(spread(r.agents.map((a) => a.rssMiB)))} |`,
  `| agent CPU s (start + probes) | ${f(spread(r.agents.map((a) => a.cpuSeconds)), 2)} |`,
  ...(r.idle ? [`| idle CPU, % of a core, over ${r.idle.ms / 1000} s once all joined: agent / relay total / relay per connected node | ${f(spread(r.idle.agentPct), 2)} / ${sum(r.idle.relayPct).toFixed(2)} / ${(sum(r.idle.relayPct) / opts.nodes).toFixed(3)} |`] : []),
  `| relay RSS MiB total / per connected node | ${relayRss.toFixed(1)} / ${(relayRss / opts.nodes).toFixed(2)} |`,
  `| relay CPU s total / per node | ${relayCpu.toFixed(2)} / ${(relayCpu / opts.nodes).toFixed(3)} |`,
  `| libp2p peer connections direct / relayed (all nodes) | ${direct} / ${relayed} (${direct + relayed ? ((100 * direct) / (direct + relayed)).toFixed(0) : 0} % direct) |`,
  `| data channels by path (the bytes' path, all nodes) | ${Object.entries(r.channelPaths).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'} (${pct(r.channelPaths.punched ?? 0, sum(Object.values(r.channelPaths)))} % punched) |`,
  `| tunnel peer connections per node | ${f(spread(r.connectionsPerNode), 0)} |`,
  `| peers a node's flows used (dialled or dialled by) | ${f(spread(r.peersUsedPerNode), 0)} |`,
  ...(r.partition ? [`| after LAN 0's uplink was cut ${r.partition.cutMs / 1000} s and restored: pairs answered | ${step(r.partition)} |`] : []),
  ...(r.relayRestart ? [`| after relay0 was killed (SIGKILL) and restarted ${r.relayRestart.downMs / 1000} s later: pairs answered | ${step(r.relayRestart)} |`] : []),
  ...(r.agentCrash ? [`| after ${r.agentCrash.node}'s agent was killed (SIGKILL) and restarted: its pairs answered | ${step(r.agentCrash)} |`] : []),
  `| exit codes on SIGTERM (agents, relays) | ${[...new Set(r.exitCodes.agents)].join(',')} / ${[...new Set(r.exitCodes.relays)].join(',')} |`,
  '',
  ...(r.failures.length ? ['Failures (first 5):', '', ...r.failures.slice(0, 5).map((x) => `- ${x.node} via ${x.target}: ${x.error}`), ''] : []),
  ...(r.problems.length ? [`Warn/error log lines: ${r.problems.length}${r.problems.length >= 40 ? '+' : ''} (in scale.json); first: ${r.problems[0].who}: \`${r.problems[0].line.slice(0, 200)}\``, ''] : []),
  'Command: `NODES=' + opts.nodes + ' LANS=' + opts.lans + ' RELAYS=' + opts.relays + ' PAIRS=' + opts.pairsPerNode + ' START_BATCH=' + opts.startBatch + ' npm run bench scale`.',
].join('\n');
console.log(md);
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(join(root, 'bench/results/scale.json'), JSON.stringify({ at: new Date().toISOString(), load, ...r }, null, 2));
writeFileSync(join(root, 'bench/results/scale.md'), `${md}\n`);
const steps = [r.partition, r.relayRestart, r.agentCrash].filter(Boolean);
const bad = r.pairsOk !== r.pairs || steps.some((x) => x.pairsOk !== x.pairs) || r.exitCodes.agents.some((c) => c !== 0) || r.exitCodes.relays.some((c) => c !== 0);
process.exit(bad ? 1 : 0);
