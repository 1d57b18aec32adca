#!/usr/bin/env node
// bench/proxy: forwarding paths side by side, same run, same machine, in network
// namespaces: client (c) ── forwarder (m) ── server (s, HAProxy answering 200 "ok").
// Two layers, each against its own HAProxy:
//   direct                 c → s, routed by m's kernel (the limit; baseline of both layers)
//   L4 edgeway             the userspace proxy's raw TCP path, plain Node streams
//   L4 edgeway (addon)     the same with the native forwarder (`accelerator.mode: auto`, as the agent runs)
//   L4 haproxy / 1 thread  HAProxy `mode tcp` (its default threads = cores, and `nbthread 1`)
//   L4 socat               socat TCP-LISTEN,fork
//   L7 edgeway http        the HTTP/1.1 path (consistent hash on a header: an L7 policy)
//   L7 haproxy / 1 thread  HAProxy `mode http`, keep-alive to the server with `http-reuse always`
// Measures: bulk both ways (iperf3, 1 stream; -R; L4 only), new connections/s (wrk -c64,
// Connection: close), keep-alive requests/s (wrk -c64), latency p50/p99 of one connection
// doing sequential requests (wrk -t1 -c1 --latency: a native client), forwarder CPU s/GB
// during the bulk runs. Ratios against direct AND against HAProxy of the same layer,
// interleaved in the same run; median [min–max] of BENCH_REPS (3) runs of BENCH_SECONDS (4).
//
// Adding a path = one entry in MODES: { name, layer, target, start(tag) → { pid, stop() } }.
// BENCH_ONLY=name,name runs a subset (direct is always in). BENCH_PROFILE=DIR: edgeway
// modes run under `node --cpu-prof`, restarted per workload, one DIR/<mode>-<workload>.cpuprofile
// each (bench/tools/cpuprofile-top.mjs summarises); figures are then not written.
//
// Usage: npm run bench proxy   (needs root; writes bench/results/proxy.{json,md})
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

const ROOT = new URL('../', import.meta.url).pathname;
const REPS = Number(process.env.BENCH_REPS ?? 3);
const SECS = Number(process.env.BENCH_SECONDS ?? 4);
const ONLY = process.env.BENCH_ONLY ? new Set(['direct', ...process.env.BENCH_ONLY.split(',')]) : undefined;
const PROFILE = process.env.BENCH_PROFILE;
const TAG = randomBytes(2).toString('hex');
const NS = { c: `ewb${TAG}c`, m: `ewb${TAG}m`, s: `ewb${TAG}s` };
const IP = { c: '10.60.1.2', m1: '10.60.1.1', m2: '10.60.2.1', s: '10.60.2.2' };
const SERVER = { bulk: 5201, http: 8080 };
/** m's listeners: L4 bulk and HTTP (raw TCP), L7 HTTP (parsed). */
const FWD = { bulk: 15201, http: 18080, l7: 18081 };
/** The L7 policy's hash header (every wrk request carries it; harmless on L4). */
const HASH_HEADER = 'x-edgeway-key';

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], timeout: 120_000, ...opts });
}
function inNs(ns, cmd, args) {
  return sh('ip', ['netns', 'exec', ns, cmd, ...args]);
}
function bg(ns, cmd, args, env) {
  const p = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env: { ...process.env, ...env } } : {}) });
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { out += d; });
  return { proc: p, pid: p.pid, output: () => out, stop: () => new Promise((r) => { if (p.exitCode !== null) return r(); p.once('exit', r); p.kill('SIGTERM'); setTimeout(() => p.kill('SIGKILL'), 2000); }) };
}
async function waitPort(ns, host, port, timeoutMs = 10_000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try { inNs(ns, 'bash', ['-c', `exec 3<>/dev/tcp/${host}/${port}`]); return; } catch { await new Promise((r) => setTimeout(r, 100)); }
  }
  throw new Error(`port ${host}:${port} in ${ns} not open`);
}
function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  // fields after ") ": index 11..14 = utime stime cutime cstime (clock ticks, 100/s here)
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
}

function setup() {
  for (const n of Object.values(NS)) { sh('ip', ['netns', 'add', n]); inNs(n, 'ip', ['link', 'set', 'lo', 'up']); }
  sh('ip', ['link', 'add', `vb${TAG}c`, 'netns', NS.c, 'type', 'veth', 'peer', 'name', `vb${TAG}m1`, 'netns', NS.m]);
  sh('ip', ['link', 'add', `vb${TAG}s`, 'netns', NS.s, 'type', 'veth', 'peer', 'name', `vb${TAG}m2`, 'netns', NS.m]);
  const addr = (ns, dev, a) => { inNs(ns, 'ip', ['addr', 'add', a, 'dev', dev]); inNs(ns, 'ip', ['link', 'set', dev, 'up']); };
  addr(NS.c, `vb${TAG}c`, `${IP.c}/24`);
  addr(NS.m, `vb${TAG}m1`, `${IP.m1}/24`);
  addr(NS.m, `vb${TAG}m2`, `${IP.m2}/24`);
  addr(NS.s, `vb${TAG}s`, `${IP.s}/24`);
  inNs(NS.c, 'ip', ['route', 'add', 'default', 'via', IP.m1]);
  inNs(NS.s, 'ip', ['route', 'add', 'default', 'via', IP.m2]);
  inNs(NS.m, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  // Connection-rate runs exhaust ephemeral ports otherwise (PITFALLS.md); per namespace only.
  for (const n of Object.values(NS)) inNs(n, 'sysctl', ['-qw', 'net.ipv4.ip_local_port_range=1024 65000', 'net.ipv4.tcp_tw_reuse=1', 'net.core.somaxconn=4096']);
}
function teardown() {
  for (const n of Object.values(NS)) {
    try { for (const pid of sh('ip', ['netns', 'pids', n]).split(/\s+/).filter(Boolean)) { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } } } catch { /* no ns */ }
    try { sh('ip', ['netns', 'del', n]); } catch { /* gone */ }
  }
}

/** The edgeway proxy in m: raw TCP on FWD.bulk/http, the HTTP path (header hash) on FWD.l7. */
async function startEdgeway(env, profileName) {
  const sp = (name, port, to, listen, policy) => ({
    id: `bench/${name}:${port}/TCP`, serviceKey: `bench/${name}`, namespace: 'bench', name, portName: '', protocol: 'TCP', port,
    clusterIPs: ['10.96.0.10'], endpoints: [{ ip: IP.s, family: 4, port: to, class: 'routable', ready: true }],
    policy, target: 'userspace', userspacePort: listen,
  });
  const ports = [
    sp('bulk', 5201, SERVER.bulk, FWD.bulk, { kind: 'random' }),
    sp('http', 80, SERVER.http, FWD.http, { kind: 'random' }),
    sp('l7', 8080, SERVER.http, FWD.l7, { kind: 'consistentHash', key: { type: 'header', name: HASH_HEADER } }),
  ];
  const prof = PROFILE && profileName ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE}`, `--cpu-prof-name=${profileName}.cpuprofile`] : [];
  const p = bg(NS.m, process.execPath, [...prof, `${ROOT}test/proxy/fixtures/proxy-in-ns.mjs`, JSON.stringify(ports)], env);
  for (const port of Object.values(FWD)) await waitPort(NS.c, IP.m1, port);
  return p;
}

/** HAProxy in m: `mode tcp` on FWD.bulk/http, `mode http` (keep-alive + reuse to the server) on FWD.l7. */
async function startHaproxy(nbthread) {
  const cfg = `/tmp/ewbench-${TAG}-haproxy-${nbthread ?? 'n'}.cfg`;
  writeFileSync(cfg, `global\n  maxconn 9000\n${nbthread ? `  nbthread ${nbthread}\n` : ''}defaults\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n` +
    ['bulk', 'http'].map((k) => `listen ${k}\n  mode tcp\n  bind ${IP.m1}:${FWD[k]}\n  server s1 ${IP.s}:${SERVER[k]}\n`).join('') +
    `listen l7\n  mode http\n  option http-keep-alive\n  http-reuse always\n  balance hdr(${HASH_HEADER})\n  bind ${IP.m1}:${FWD.l7}\n  server s1 ${IP.s}:${SERVER.http}\n`);
  const p = bg(NS.m, 'haproxy', ['-db', '-f', cfg]);
  for (const port of Object.values(FWD)) await waitPort(NS.c, IP.m1, port);
  return p;
}

const L4 = { host: IP.m1, ports: { bulk: FWD.bulk, http: FWD.http } };
const L7 = { host: IP.m1, ports: { http: FWD.l7 } };
/** Forwarding paths. `start(profileName?)` returns { pid (CPU accounting), stop }. `ref`: HAProxy row of the layer. */
const MODES = [
  { name: 'direct', layer: 'base', target: { host: IP.s, ports: SERVER }, start: async () => ({ pid: undefined, stop: async () => undefined }) },
  { name: 'edgeway', layer: 'L4', target: L4, start: (pn) => startEdgeway(undefined, pn) },
  { name: 'edgeway (addon)', layer: 'L4', target: L4, start: (pn) => startEdgeway({ EDGEWAY_ACCEL: 'auto' }, pn) },
  { name: 'haproxy', layer: 'L4', target: L4, start: () => startHaproxy() },
  { name: 'haproxy (1 thread)', layer: 'L4', target: L4, start: () => startHaproxy(1) },
  {
    name: 'socat',
    layer: 'L4',
    target: L4,
    start: async () => {
      const ps = Object.keys(L4.ports).map((k) => bg(NS.m, 'socat', [`TCP-LISTEN:${FWD[k]},bind=${IP.m1},fork,reuseaddr,backlog=4096`, `TCP:${IP.s}:${SERVER[k]}`]));
      for (const port of Object.values(L4.ports)) await waitPort(NS.c, IP.m1, port);
      // CPU: the bulk listener's process and its (reaped) children; none per request
      // (a child per connection, reaped late).
      return { pid: ps[0].pid, opCpu: false, stop: async () => { for (const p of ps) await p.stop(); } };
    },
  },
  { name: 'edgeway http', layer: 'L7', target: L7, start: (pn) => startEdgeway(undefined, pn) },
  { name: 'haproxy http', layer: 'L7', target: L7, start: () => startHaproxy() },
  { name: 'haproxy http (1 thread)', layer: 'L7', target: L7, start: () => startHaproxy(1) },
].filter((m) => !ONLY || ONLY.has(m.name));
const REF = { L4: 'haproxy', L7: 'haproxy http' };

function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * q))];
}
const median = (xs) => quantile(xs, 0.5);

/** One iperf3 run (JSON); a failed run (server busy after the previous test, …) is retried twice. */
async function iperf(host, port, extra) {
  let last = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    let j;
    try { j = JSON.parse(inNs(NS.c, 'iperf3', ['-c', host, '-p', String(port), '-t', String(SECS), '-J', ...extra])); } catch (e) { j = { error: String(e.stdout ?? e.message).slice(0, 300) }; }
    if (j.end?.sum_received) return j;
    last = j.error ?? 'no result';
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`iperf3 to ${host}:${port} failed: ${last}`);
}

/** wrk's "50%  123.45us" → µs. */
function wrkLatencyUs(out, pct) {
  const m = out.match(new RegExp(`^\\s+${pct}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm'));
  if (!m) return NaN;
  return Number(m[1]) * (m[2] === 'us' ? 1 : m[2] === 'ms' ? 1e3 : 1e6);
}

function wrk(host, port, extra) {
  const out = inNs(NS.c, 'wrk', [...extra, '-H', `${HASH_HEADER}: bench`, `-d${SECS}s`, `http://${host}:${port}/`]);
  const m = out.match(/Requests\/sec:\s+([\d.]+)/);
  const errs = out.match(/Non-2xx.*|Socket errors: .*/);
  return { rps: m ? Number(m[1]) : 0, errors: errs ? errs[0] : '', out };
}

/**
 * A wrk run with the forwarder's CPU time per request (µs, user + system, all its
 * threads): on a shared box the rate moves with other load, CPU per operation much less.
 */
function wrkCpu(fwd, run) {
  const pid = fwd.opCpu === false ? undefined : fwd.pid;
  const cpu0 = pid ? cpuSeconds(pid) : 0;
  const w = run();
  const cpuUs = pid && w.rps > 0 ? ((cpuSeconds(pid) - cpu0) * 1e6) / (w.rps * SECS) : null;
  return { ...w, cpuUs };
}

/** Workloads of a layer: name → (target, fwd) → partial result. Bulk (and CPU/GB) only where bytes are forwarded raw. */
const WORKLOADS = {
  bulk: async ({ host, ports }, fwd) => {
    const cpu0 = fwd.pid ? cpuSeconds(fwd.pid) : 0;
    const up = await iperf(host, ports.bulk, []);
    const down = await iperf(host, ports.bulk, ['-R']);
    const bytes = up.end.sum_received.bytes + down.end.sum_received.bytes;
    await new Promise((r) => setTimeout(r, 300)); // let socat children exit and be reaped
    return { gbps: up.end.sum_received.bits_per_second / 1e9, gbpsDown: down.end.sum_received.bits_per_second / 1e9, cpuSecPerGB: fwd.pid ? (cpuSeconds(fwd.pid) - cpu0) / (bytes / 1e9) : null };
  },
  conn: async ({ host, ports }, fwd) => { const w = wrkCpu(fwd, () => wrk(host, ports.http, ['-t2', '-c64', '-H', 'Connection: close'])); return { connPerSec: w.rps, connErrors: w.errors, connCpuUs: w.cpuUs }; },
  ka: async ({ host, ports }, fwd) => { const w = wrkCpu(fwd, () => wrk(host, ports.http, ['-t2', '-c64'])); return { keepAliveRps: w.rps, kaErrors: w.errors, kaCpuUs: w.cpuUs }; },
  latency: async ({ host, ports }) => { const w = wrk(host, ports.http, ['-t1', '-c1', '--latency']); return { p50us: wrkLatencyUs(w.out, 50), p99us: wrkLatencyUs(w.out, 99) }; },
};
const workloadsOf = (mode) => (mode.layer === 'L7' ? ['conn', 'ka', 'latency'] : ['bulk', 'conn', 'ka', 'latency']);

async function measure(mode) {
  let r = {};
  if (PROFILE && mode.name.startsWith('edgeway')) {
    // One proxy process per workload, so each profile holds one kind of traffic.
    for (const w of workloadsOf(mode)) {
      const fwd = await mode.start(`${mode.name.replace(/\W+/g, '-')}-${w}`);
      try { r = { ...r, ...(await WORKLOADS[w](mode.target, fwd)) }; } finally { await fwd.stop(); }
    }
    return r;
  }
  const fwd = await mode.start();
  try {
    for (const w of workloadsOf(mode)) r = { ...r, ...(await WORKLOADS[w](mode.target, fwd)) };
  } finally {
    await fwd.stop();
  }
  return r;
}

const KEYS = ['gbps', 'gbpsDown', 'connPerSec', 'keepAliveRps', 'p50us', 'p99us', 'cpuSecPerGB', 'connCpuUs', 'kaCpuUs'];

/** min / median / max per figure over the runs of one mode. */
function summarise(rs) {
  const out = {};
  for (const k of KEYS) {
    const xs = rs.map((r) => r[k]).filter((x) => typeof x === 'number' && Number.isFinite(x));
    out[k] = xs.length ? { min: Math.min(...xs), median: median(xs), max: Math.max(...xs) } : null;
  }
  out.errors = [...new Set(rs.flatMap((r) => [r.connErrors, r.kaErrors]).filter(Boolean))];
  return out;
}

/** Markdown tables, one per layer: median (× direct, × HAProxy of the layer) [min–max]. */
function render(result) {
  const d = result.direct;
  const fmt = (v, dp) => (v >= 100 ? Math.round(v).toString() : v.toFixed(dp));
  const cell = (r, k, unit, dp, ref) => {
    const v = r[k];
    if (!v) return 'n/a';
    const ratios = [];
    if (d?.[k] && r !== d) ratios.push(`${(v.median / d[k].median).toFixed(2)}× d`);
    if (ref?.[k] && r !== ref && r !== d) ratios.push(`${(v.median / ref[k].median).toFixed(2)}× hap`);
    return `${fmt(v.median, dp)}${unit}${ratios.length ? ` (${ratios.join(', ')})` : ''} [${fmt(v.min, dp)}–${fmt(v.max, dp)}]`;
  };
  const lat = (r) => {
    if (!r.p50us) return 'n/a';
    const dp50 = d?.p50us ? ` (Δp50 ${r.p50us.median - d.p50us.median >= 0 ? '+' : ''}${(r.p50us.median - d.p50us.median).toFixed(0)})` : '';
    return `${r.p50us.median.toFixed(0)} / ${r.p99us?.median.toFixed(0) ?? '?'} µs${dp50} [p50 ${r.p50us.min.toFixed(0)}–${r.p50us.max.toFixed(0)}]`;
  };
  const cpuOp = (r) => (r.connCpuUs && r.kaCpuUs ? `${r.connCpuUs.median.toFixed(0)} / ${r.kaCpuUs.median.toFixed(1)}` : 'n/a');
  const lines = [];
  for (const layer of ['L4', 'L7']) {
    const names = MODES.filter((m) => m.layer === 'base' || m.layer === layer).map((m) => m.name).filter((n) => result[n]);
    if (names.length < 2) continue;
    const ref = result[REF[layer]];
    const l4 = layer === 'L4';
    lines.push(`### ${layer} — ${l4 ? 'raw TCP forwarding (vs HAProxy `mode tcp`)' : 'HTTP/1.1 with an L7 policy, header hash (vs HAProxy `mode http`, http-reuse always)'}`, '');
    lines.push(`| path |${l4 ? ' bulk c→s (iperf3) | bulk s→c (iperf3 -R) |' : ''} new conns/s (wrk -c64, close) | keep-alive req/s (wrk -c64) | latency p50 / p99, 1 conn (wrk -c1) | forwarder CPU µs per new conn / per keep-alive req |${l4 ? ' forwarder CPU per GB |' : ''}`);
    lines.push(`|---|${l4 ? '---|---|' : ''}---|---|---|---|${l4 ? '---|' : ''}`);
    for (const n of names) {
      const r = result[n];
      lines.push(`| ${n} |${l4 ? ` ${cell(r, 'gbps', ' Gb/s', 2, ref)} | ${cell(r, 'gbpsDown', ' Gb/s', 2, ref)} |` : ''} ${cell(r, 'connPerSec', '', 0, ref)} | ${cell(r, 'keepAliveRps', '', 0, ref)} | ${lat(r)} | ${cpuOp(r)} |${l4 ? ` ${r.cpuSecPerGB ? `${r.cpuSecPerGB.median.toFixed(2)} s/GB` : 'n/a'} |` : ''}`);
    }
    lines.push('');
  }
  return lines;
}

async function main() {
  if (process.getuid?.() !== 0) { console.error('bench/proxy needs root (network namespaces)'); process.exit(1); }
  process.on('SIGINT', () => { teardown(); process.exit(130); });
  setup();
  const servers = [];
  try {
    servers.push(bg(NS.s, 'iperf3', ['-s', '-p', String(SERVER.bulk)]));
    const hcfg = `/tmp/ewbench-${TAG}-backend.cfg`;
    writeFileSync(hcfg, `global\n  maxconn 9000\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend fe\n  bind ${IP.s}:${SERVER.http}\n  http-request return status 200 content-type text/plain string ok\n`);
    servers.push(bg(NS.s, 'haproxy', ['-db', '-f', hcfg]));
    for (const port of Object.values(SERVER)) await waitPort(NS.c, IP.s, port);

    const runs = Object.fromEntries(MODES.map((m) => [m.name, []]));
    for (let rep = 0; rep < REPS; rep++) {
      for (const mode of MODES) {
        const r = await measure(mode);
        runs[mode.name].push(r);
        console.error(`rep ${rep + 1}/${REPS} ${mode.name}: ${JSON.stringify(r)}`);
      }
    }
    if (PROFILE) { console.log(`profiles in ${PROFILE} (figures under the profiler are not written)`); return; }
    const result = Object.fromEntries(Object.entries(runs).map(([n, rs]) => [n, summarise(rs)]));
    const md = [
      `# bench/proxy — ${new Date().toISOString()}`, '',
      `Median of ${REPS} interleaved runs, ${SECS} s each, [min–max] over the runs; ratios vs direct (d) and vs HAProxy of the same layer (hap, default threads = cores) in the same run. Node ${process.version}. Shared 2-core machine: noisy.`, '',
      ...render(result),
    ].join('\n');
    console.log(md);
    mkdirSync(`${ROOT}bench/results`, { recursive: true });
    writeFileSync(`${ROOT}bench/results/proxy.json`, JSON.stringify({ at: new Date().toISOString(), reps: REPS, seconds: SECS, node: process.version, result, runs }, null, 2));
    writeFileSync(`${ROOT}bench/results/proxy.md`, md);
  } finally {
    for (const s of servers) await s.stop();
    teardown();
  }
}

await main();
