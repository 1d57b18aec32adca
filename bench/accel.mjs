#!/usr/bin/env node
// Forwarding paths side by side, one run, in network namespaces:
//   direct, nft DNAT, Node streams, splice, sockmap, HAProxy (mode tcp), socat.
// Bulk throughput (iperf3), new connections/s, 1-byte request/response p50/p99,
// CPU per GB (whole machine, and the proxy process alone). Interleaved rounds,
// median of ROUNDS (env, default 3). Ratios against `direct` from the same run.
//
// Topology (namespaces only; nothing in the host namespace):
//   cli 10.77.1.1 ── 10.77.1.2 px 10.77.2.1 ── 10.77.2.2 srv
// px routes (direct), DNATs (:9001/:9002) or proxies (:81xx) to srv's iperf3 :5201
// and echo :7000.
//
// Usage: npm run bench accel   (needs root, iperf3, haproxy, socat, nft; `npm run build`)
// Env: ROUNDS, BULK_SECS, RATE_SECS, RR_COUNT, PATHS=splice,sockmap (direct always runs).
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const here = new URL('.', import.meta.url).pathname;
const root = join(here, '..');
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const BULK_SECS = Number(process.env.BULK_SECS ?? 3);
const RATE_SECS = Number(process.env.RATE_SECS ?? 2);
const RR_COUNT = Number(process.env.RR_COUNT ?? 5000);
const tag = randomBytes(2).toString('hex');
const NS = { cli: `ewb${tag}c`, px: `ewb${tag}p`, srv: `ewb${tag}s` };
const SRV = '10.77.2.2';
const PX = '10.77.1.2';
const procs = [];

if (process.getuid?.() !== 0) { console.log('bench accel needs root (network namespaces); skipped'); process.exit(0); }

function sh(cmd, args, opts = {}) { return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], ...opts }); }
function nsx(ns, cmd, args, opts) { return sh('ip', ['netns', 'exec', ns, cmd, ...args], opts); }
function bg(ns, cmd, args) {
  const p = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { out += d; });
  procs.push(p);
  return { p, out: () => out };
}
async function waitOut(h, re, ms = 10_000) {
  const until = Date.now() + ms;
  while (!re.test(h.out())) {
    if (Date.now() > until || h.p.exitCode !== null) throw new Error(`waiting for ${re}: ${h.out().slice(-500)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
function stop(h) { if (h.p.exitCode === null) h.p.kill('SIGTERM'); }

function cleanup() {
  for (const p of procs) { try { p.kill('SIGKILL'); } catch { /* gone */ } }
  for (const ns of Object.values(NS)) {
    try {
      for (const pid of sh('ip', ['netns', 'pids', ns]).split(/\s+/).filter(Boolean)) { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } }
    } catch { /* no ns */ }
    try { sh('ip', ['netns', 'del', ns]); } catch { /* gone */ }
  }
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

function setup() {
  for (const ns of Object.values(NS)) { sh('ip', ['netns', 'add', ns]); nsx(ns, 'ip', ['link', 'set', 'lo', 'up']); }
  const link = (a, aIp, b, bIp, n) => {
    sh('ip', ['link', 'add', `vb${tag}${n}a`, 'netns', a, 'type', 'veth', 'peer', 'name', `vb${tag}${n}b`, 'netns', b]);
    nsx(a, 'ip', ['addr', 'add', aIp, 'dev', `vb${tag}${n}a`]); nsx(a, 'ip', ['link', 'set', `vb${tag}${n}a`, 'up']);
    nsx(b, 'ip', ['addr', 'add', bIp, 'dev', `vb${tag}${n}b`]); nsx(b, 'ip', ['link', 'set', `vb${tag}${n}b`, 'up']);
  };
  link(NS.cli, '10.77.1.1/24', NS.px, '10.77.1.2/24', 1);
  link(NS.px, '10.77.2.1/24', NS.srv, '10.77.2.2/24', 2);
  nsx(NS.cli, 'ip', ['route', 'add', 'default', 'via', '10.77.1.2']);
  nsx(NS.srv, 'ip', ['route', 'add', 'default', 'via', '10.77.2.1']);
  nsx(NS.px, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  for (const ns of Object.values(NS)) {
    nsx(ns, 'sysctl', ['-qw', 'net.ipv4.ip_local_port_range=1024 65000', 'net.ipv4.tcp_tw_reuse=1', 'net.core.somaxconn=4096']);
  }
  nsx(NS.px, 'nft', ['-f', '-'], { input: `table ip ewbench {\n chain pre {\n type nat hook prerouting priority -100; policy accept;
    tcp dport 9001 dnat to ${SRV}:5201
    tcp dport 9002 dnat to ${SRV}:7000\n }\n}\n` });
}

/** Paths: name → [bulk port on host, echo port on host, start(), stop()] */
function paths() {
  const tmp = join(tmpdir(), `ewbench-${tag}`);
  mkdirSync(tmp, { recursive: true });
  const proxy = (kind, bulk, echo) => ({
    host: PX, bulk, echo,
    async start() {
      this.h = bg(NS.px, process.execPath, [join(here, 'accel-proxy.mjs'), kind, `${bulk}:${SRV}:5201`, `${echo}:${SRV}:7000`]);
      await waitOut(this.h, /^ready$/m);
    },
    stop() { stop(this.h); },
    pid() { return this.h.p.pid; },
  });
  return {
    direct: { host: SRV, bulk: 5201, echo: 7000, start() {}, stop() {} },
    'nft DNAT': { host: PX, bulk: 9001, echo: 9002, start() {}, stop() {} },
    'Node streams': proxy('node', 8101, 8102),
    splice: proxy('splice', 8111, 8112),
    sockmap: proxy('sockmap', 8121, 8122),
    HAProxy: {
      host: PX, bulk: 8131, echo: 8132,
      async start() {
        const cfg = join(tmp, 'haproxy.cfg');
        writeFileSync(cfg, `global\n  nbthread 2\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n` +
          `listen bulk\n  bind ${PX}:8131\n  server s ${SRV}:5201\nlisten echo\n  bind ${PX}:8132\n  server s ${SRV}:7000\n`);
        this.h = bg(NS.px, 'haproxy', ['-db', '-f', cfg]);
        await new Promise((r) => setTimeout(r, 500));
        if (this.h.p.exitCode !== null) throw new Error(`haproxy exited: ${this.h.out().slice(-300)}`);
      },
      stop() { stop(this.h); },
      pid() { return this.h.p.pid; },
    },
    socat: {
      host: PX, bulk: 8141, echo: 8142,
      async start() {
        this.h1 = bg(NS.px, 'socat', [`TCP-LISTEN:8141,bind=${PX},fork,reuseaddr,backlog=4096`, `TCP:${SRV}:5201`]);
        this.h2 = bg(NS.px, 'socat', [`TCP-LISTEN:8142,bind=${PX},fork,reuseaddr,backlog=4096`, `TCP:${SRV}:7000`]);
        await new Promise((r) => setTimeout(r, 300));
      },
      stop() { stop(this.h1); stop(this.h2); },
      pid() { return this.h1.p.pid; },
    },
  };
}

function machineBusy() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + f[4];
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle };
}
/** CPU seconds of a process tree rooted at pid (the `ip netns exec` wrapper execs, so pid is the proxy). */
function procCpu(pid) {
  if (!pid) return 0;
  let sum = 0;
  const walk = (p) => {
    try {
      const st = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      sum += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
      for (const c of readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').split(/\s+/).filter(Boolean)) walk(c);
    } catch { /* gone */ }
  };
  walk(pid);
  return sum / 100; // USER_HZ
}

function bulk(p) {
  const m0 = machineBusy();
  const c0 = procCpu(p.pid?.());
  const out = nsx(NS.cli, 'iperf3', ['-c', p.host, '-p', String(p.bulk), '-t', String(BULK_SECS), '-J'], { timeout: (BULK_SECS + 20) * 1000 });
  const m1 = machineBusy();
  const c1 = procCpu(p.pid?.());
  const j = JSON.parse(out);
  if (!j.end?.sum_received) throw new Error(`iperf3: ${j.error ?? 'no result'}`);
  const bytes = j.end.sum_received.bytes;
  const gb = bytes / 1e9;
  return { gbps: j.end.sum_received.bits_per_second / 8e9, machineCpuPerGB: (m1.busy - m0.busy) / 100 / gb, procCpuPerGB: (c1 - c0) / gb };
}
function load(args, timeoutS) { return JSON.parse(nsx(NS.cli, process.execPath, [join(here, 'accel-load.mjs'), ...args], { timeout: timeoutS * 1000 })); }

const median = (xs) => { const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : NaN; };

async function main() {
  setup();
  const srvIperf = bg(NS.srv, 'iperf3', ['-s', '-p', '5201']);
  const echo = bg(NS.srv, process.execPath, [join(root, 'test/helpers/fixtures/echo-server.mjs'), '--port', '7000', '--host', '0.0.0.0']);
  await waitOut(echo, /listening/);
  await new Promise((r) => setTimeout(r, 300));
  void srvIperf;
  const wanted = process.env.PATHS?.split(',');
  const all = Object.fromEntries(Object.entries(paths()).filter(([k]) => !wanted || k === 'direct' || wanted.includes(k)));
  const samples = Object.fromEntries(Object.keys(all).map((k) => [k, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, p] of Object.entries(all)) {
      try {
        await p.start();
        const b = bulk(p);
        const r = load(['rate', p.host, String(p.echo), String(RATE_SECS), '8'], RATE_SECS + 30);
        const l = load(['rr', p.host, String(p.echo), String(RR_COUNT)], 60);
        samples[name].push({ ...b, rate: r.rate, rateErrors: r.errors, p50: l.p50, p99: l.p99 });
        console.error(`round ${round + 1} ${name}: ${b.gbps.toFixed(2)} GB/s, ${r.rate.toFixed(0)} conn/s, p50 ${l.p50.toFixed(1)} µs`);
      } catch (err) {
        console.error(`round ${round + 1} ${name}: failed: ${String(err.message).slice(0, 300)}`);
      } finally {
        p.stop();
        await new Promise((r) => setTimeout(r, 300));
      }
    }
  }
  const rows = Object.entries(samples).map(([name, s]) => ({
    name,
    gbps: median(s.map((x) => x.gbps)),
    rate: median(s.map((x) => x.rate)),
    p50: median(s.map((x) => x.p50)),
    p99: median(s.map((x) => x.p99)),
    machineCpuPerGB: median(s.map((x) => x.machineCpuPerGB)),
    procCpuPerGB: median(s.map((x) => x.procCpuPerGB)),
    samples: s.length,
  }));
  const base = rows.find((r) => r.name === 'direct');
  if (process.env.PATHS) { console.log(rows.map((r) => `${r.name}: ${r.gbps.toFixed(2)} GB/s (${(r.gbps / base.gbps).toFixed(2)}x), ${r.rate.toFixed(0)} conn/s, p50 ${r.p50.toFixed(1)} us`).join('\n')); return; }
  const fmt = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
  const lines = [
    `| path | bulk GB/s | × direct | new conn/s | × direct | RR p50 µs | +p50 µs | RR p99 µs | machine CPU s/GB | proxy CPU s/GB |`,
    `|---|---|---|---|---|---|---|---|---|---|`,
    ...rows.map((r) => `| ${r.name} | ${fmt(r.gbps)} | ${fmt(r.gbps / base.gbps)} | ${fmt(r.rate, 0)} | ${fmt(r.rate / base.rate)} | ${fmt(r.p50, 1)} | ${fmt(r.p50 - base.p50, 1)} | ${fmt(r.p99, 1)} | ${fmt(r.machineCpuPerGB)} | ${fmt(r.procCpuPerGB)} |`),
  ];
  const splice = rows.find((r) => r.name === 'splice');
  const sockmap = rows.find((r) => r.name === 'sockmap');
  const haproxy = rows.find((r) => r.name === 'HAProxy');
  const faster = splice && sockmap ? (splice.gbps >= sockmap.gbps ? 'splice' : 'sockmap') : 'n/a';
  const best = rows.find((r) => r.name === faster);
  const summary = best && haproxy ? [
    ``,
    `Faster accelerated path on bulk: **${faster}** (default order in src/native/accelerator.ts AUTO_ORDER).`,
    `Targets: best ≥ 0.8× direct bulk → ${fmt(best.gbps / base.gbps)}×; ≥ 1.5× HAProxy bulk → ${fmt(best.gbps / haproxy.gbps)}×; ` +
      `conn rate ≥ HAProxy → ${fmt(best.rate / haproxy.rate)}×; added p50 ≤ 30 µs → ${fmt(best.p50 - base.p50, 1)} µs.`,
  ] : [];
  const md = [`# bench/accel (${new Date().toISOString()}, kernel ${sh('uname', ['-r']).trim()}, ${ROUNDS} rounds, median)`, '',
    'Shared 2-core machine: absolute figures are noisy; compare ratios from the same run.', '', ...lines, ...summary].join('\n');
  console.log(md);
  mkdirSync(join(here, 'results'), { recursive: true });
  writeFileSync(join(here, 'results', 'accel.json'), JSON.stringify({ date: new Date().toISOString(), rounds: ROUNDS, rows, samples, faster }, null, 2));
  writeFileSync(join(here, 'results', 'accel.md'), md + '\n');
}

main().then(() => { cleanup(); process.exit(0); }, (err) => { console.error(err); cleanup(); process.exit(1); });
