#!/usr/bin/env node
// bench/proxy: TCP forwarding paths side by side, same run, same machine, in network
// namespaces: client (c) ── forwarder (m) ── server (s).
//   direct     c → s, routed by m's kernel (the limit)
//   edgeway    the userspace proxy (dist/proxy) in m
//   haproxy    HAProxy `mode tcp` in m (its default threads)
//   socat      socat TCP-LISTEN,fork in m
// Measures: bulk throughput both ways (iperf3, 1 stream; -R), new connections/s (wrk, Connection:
// close), keep-alive requests/s (wrk), 1-byte request/response latency p50/p99 (one
// connection, ping-pong), forwarder CPU seconds per GB during the two bulk runs. Ratios are
// against `direct`, measured interleaved in the same run, median of BENCH_REPS (3).
//
// Adding a path = one entry in MODES: { name, start(ports) → { pid, stop() } }
// listening on m's address at ports.{bulk,http,echo} and forwarding to the server.
//
// Usage: npm run bench proxy   (needs root; writes bench/results/proxy.{json,md})
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import net from 'node:net';

const ROOT = new URL('../', import.meta.url).pathname;
const REPS = Number(process.env.BENCH_REPS ?? 3);
const SECS = Number(process.env.BENCH_SECONDS ?? 4);
const TAG = randomBytes(2).toString('hex');
const NS = { c: `ewb${TAG}c`, m: `ewb${TAG}m`, s: `ewb${TAG}s` };
const IP = { c: '10.60.1.2', m1: '10.60.1.1', m2: '10.60.2.1', s: '10.60.2.2' };
const SERVER = { bulk: 5201, http: 8080, echo: 7007 };
const FWD = { bulk: 15201, http: 18080, echo: 17007 };

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], timeout: 120_000, ...opts });
}
function inNs(ns, cmd, args) {
  return sh('ip', ['netns', 'exec', ns, cmd, ...args]);
}
function bg(ns, cmd, args) {
  const p = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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

/** Forwarding paths. `start` returns { pid (CPU accounting), stop } with listeners on IP.m1:FWD.*. */
const MODES = [
  { name: 'direct', target: { host: IP.s, ports: SERVER }, start: async () => ({ pid: undefined, stop: async () => undefined }) },
  {
    name: 'edgeway',
    target: { host: IP.m1, ports: FWD },
    start: async () => {
      const sp = (name, port, to) => ({
        id: `bench/${name}:${port}/TCP`, serviceKey: `bench/${name}`, namespace: 'bench', name, portName: '', protocol: 'TCP', port,
        clusterIPs: ['10.96.0.10'], endpoints: [{ ip: IP.s, family: 4, port: to, class: 'routable', ready: true }],
        policy: { kind: 'random' }, target: 'userspace', userspacePort: FWD[name],
      });
      const p = bg(NS.m, process.execPath, [`${ROOT}test/proxy/fixtures/proxy-in-ns.mjs`, JSON.stringify([sp('bulk', 5201, SERVER.bulk), sp('http', 80, SERVER.http), sp('echo', 7, SERVER.echo)])]);
      for (const port of Object.values(FWD)) await waitPort(NS.c, IP.m1, port);
      return p;
    },
  },
  {
    name: 'haproxy',
    target: { host: IP.m1, ports: FWD },
    start: async () => {
      const cfg = `/tmp/ewbench-${TAG}-haproxy.cfg`;
      writeFileSync(cfg, `global\n  maxconn 9000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n` +
        Object.keys(FWD).map((k) => `listen ${k}\n  bind ${IP.m1}:${FWD[k]}\n  server s1 ${IP.s}:${SERVER[k]}\n`).join(''));
      const p = bg(NS.m, 'haproxy', ['-db', '-f', cfg]);
      for (const port of Object.values(FWD)) await waitPort(NS.c, IP.m1, port);
      return p;
    },
  },
  {
    name: 'socat',
    target: { host: IP.m1, ports: FWD },
    start: async () => {
      const ps = Object.keys(FWD).map((k) => bg(NS.m, 'socat', [`TCP-LISTEN:${FWD[k]},bind=${IP.m1},fork,reuseaddr,backlog=4096`, `TCP:${IP.s}:${SERVER[k]}`]));
      for (const port of Object.values(FWD)) await waitPort(NS.c, IP.m1, port);
      // CPU: the bulk listener's process and its (reaped) children.
      return { pid: ps[0].pid, stop: async () => { for (const p of ps) await p.stop(); } };
    },
  },
];

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

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

async function measure(mode, fwd) {
  const { host, ports } = mode.target;
  const cpu0 = fwd.pid ? cpuSeconds(fwd.pid) : 0;
  const ip = await iperf(host, ports.bulk, []);
  const down = await iperf(host, ports.bulk, ['-R']);
  const bytes = ip.end.sum_received.bytes + down.end.sum_received.bytes;
  await new Promise((r) => setTimeout(r, 300)); // let socat children exit and be reaped
  const cpu = fwd.pid ? (cpuSeconds(fwd.pid) - cpu0) / (bytes / 1e9) : null;
  const wrk = (extra) => {
    const out = inNs(NS.c, 'wrk', ['-t2', '-c64', `-d${SECS}s`, ...extra, `http://${host}:${ports.http}/`]);
    const m = out.match(/Requests\/sec:\s+([\d.]+)/);
    const errs = out.match(/Non-2xx|Socket errors: (.*)/);
    return { rps: m ? Number(m[1]) : 0, errors: errs ? errs[0] : '' };
  };
  const conn = wrk(['-H', 'Connection: close']);
  const ka = wrk([]);
  const rr = JSON.parse(inNs(NS.c, process.execPath, [new URL(import.meta.url).pathname, '--rr', host, String(ports.echo), '3000']));
  return { gbps: (ip.end.sum_received.bits_per_second / 1e9), gbpsDown: (down.end.sum_received.bits_per_second / 1e9), connPerSec: conn.rps, connErrors: conn.errors, keepAliveRps: ka.rps, kaErrors: ka.errors, rrP50us: rr.p50, rrP99us: rr.p99, cpuSecPerGB: cpu };
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
    servers.push(bg(NS.s, process.execPath, [`${ROOT}test/helpers/fixtures/echo-server.mjs`, '--id', 'echo', '--port', String(SERVER.echo), '--host', IP.s]));
    for (const port of Object.values(SERVER)) await waitPort(NS.c, IP.s, port);

    const runs = Object.fromEntries(MODES.map((m) => [m.name, []]));
    for (let rep = 0; rep < REPS; rep++) {
      for (const mode of MODES) {
        const fwd = await mode.start();
        try {
          const r = await measure(mode, fwd);
          runs[mode.name].push(r);
          console.error(`rep ${rep + 1}/${REPS} ${mode.name}: ${JSON.stringify(r)}`);
        } finally {
          await fwd.stop();
        }
      }
    }
    const keys = ['gbps', 'gbpsDown', 'connPerSec', 'keepAliveRps', 'rrP50us', 'rrP99us', 'cpuSecPerGB'];
    const result = {};
    for (const [name, rs] of Object.entries(runs)) {
      result[name] = Object.fromEntries(keys.map((k) => [k, rs[0][k] === null ? null : median(rs.map((r) => r[k]))]));
      result[name].errors = [...new Set(rs.flatMap((r) => [r.connErrors, r.kaErrors]).filter(Boolean))];
    }
    const d = result.direct;
    const rows = Object.entries(result).map(([name, r]) => ({
      name,
      bulk: `${r.gbps.toFixed(2)} Gb/s (${(r.gbps / d.gbps).toFixed(2)}×)`,
      down: `${r.gbpsDown.toFixed(2)} Gb/s (${(r.gbpsDown / d.gbpsDown).toFixed(2)}×)`,
      conn: `${Math.round(r.connPerSec)} (${(r.connPerSec / d.connPerSec).toFixed(2)}×)`,
      ka: `${Math.round(r.keepAliveRps)} (${(r.keepAliveRps / d.keepAliveRps).toFixed(2)}×)`,
      rr: `${r.rrP50us.toFixed(0)} / ${r.rrP99us.toFixed(0)} µs (+${(r.rrP50us - d.rrP50us).toFixed(0)})`,
      cpu: r.cpuSecPerGB === null ? 'n/a' : `${r.cpuSecPerGB.toFixed(2)} s/GB`,
    }));
    const md = [
      `# bench/proxy — ${new Date().toISOString()}`, '',
      `Median of ${REPS} interleaved runs, ${SECS} s each; ratios vs direct in the same run. Shared 2-core machine: noisy.`, '',
      '| path | bulk c→s (iperf3, 1 stream) | bulk s→c (iperf3 -R) | new conns/s (wrk -c64, Connection: close) | keep-alive req/s (wrk -c64) | 1-byte RR p50 / p99 (Δp50 vs direct) | forwarder CPU per GB |',
      '|---|---|---|---|---|---|---|',
      ...rows.map((r) => `| ${r.name} | ${r.bulk} | ${r.down} | ${r.conn} | ${r.ka} | ${r.rr} | ${r.cpu} |`),
      '',
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

// ---- 1-byte RR client, run inside the client namespace: proxy.mjs --rr HOST PORT N
function rrClient() {
  const [host, port, n] = [process.argv[3], Number(process.argv[4]), Number(process.argv[5])];
  const s = net.connect({ host, port, noDelay: true });
  const lat = [];
  let t0 = 0n;
  let i = 0;
  const one = Buffer.from('x');
  s.on('connect', () => { s.write('warm\n'); });
  let warmed = false;
  s.on('data', () => {
    const now = process.hrtime.bigint();
    if (!warmed) { warmed = true; } else lat.push(Number(now - t0) / 1000);
    if (i++ >= n) { s.destroy(); lat.sort((a, b) => a - b); console.log(JSON.stringify({ p50: lat[Math.floor(lat.length * 0.5)], p99: lat[Math.floor(lat.length * 0.99)] })); return; }
    t0 = process.hrtime.bigint();
    s.write(one);
  });
}


if (process.argv[2] === '--rr') rrClient();
else await main();
