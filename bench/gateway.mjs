#!/usr/bin/env node
// bench/gateway: HTTP/1.1 keep-alive requests/s and latency p99 through an L7 gateway,
// same run, same machine, in network namespaces: client (c) ── gateway (m) ── server (s).
//   direct     wrk → server (the limit)
//   edgeway    `edgeway gateway` (dist/) with an Istio Gateway + VirtualService
//   haproxy    HAProxy `mode http`, http-reuse always
//   nginx      proxy_pass to an upstream with keepalive 64, HTTP/1.1 upstream
// Each gateway serves HTTP on :18080 and HTTPS on :18443 (one certificate made here
// with openssl). The server is HAProxy answering 200 "ok" in s. wrk -t2 -c64 per run,
// interleaved, median of BENCH_REPS (3) runs of BENCH_SECONDS (4) each, each after an
// uncounted BENCH_WARMUP_SECONDS (1) run on the same fresh process. Ratios are
// against HAProxy in the same run. On a 2-core shared box, the load generator, the
// gateway and the server share the CPUs: read ratios, not absolutes. HAProxy (nbthread
// defaults to the CPU count) and nginx (worker_processes auto) use both cores; the
// edgeway gateway is one Node thread.
//
// BENCH_PROFILE=1 also runs the edgeway gateway once under --cpu-prof and prints the
// top self-time functions (where the time goes).
//
// Usage: npm run bench gateway   (needs root; writes bench/results/gateway.{json,md})
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = new URL('../', import.meta.url).pathname;
const REPS = Number(process.env.BENCH_REPS ?? 3);
const SECS = Number(process.env.BENCH_SECONDS ?? 4);
const WARM_SECS = Number(process.env.BENCH_WARMUP_SECONDS ?? 1);
const TAG = randomBytes(2).toString('hex');
const NS = { c: `ewg${TAG}c`, m: `ewg${TAG}m`, s: `ewg${TAG}s` };
const IP = { c: '10.61.1.2', m1: '10.61.1.1', m2: '10.61.2.1', s: '10.61.2.2' };
const BACKEND = 8080;
const PORT = { http: 18080, https: 18443 };
const DIR = mkdtempSync(join(tmpdir(), `ewbench-gw-${TAG}-`));

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], timeout: 120_000, ...opts });
}
const inNs = (ns, cmd, args) => sh('ip', ['netns', 'exec', ns, cmd, ...args]);
function bg(ns, cmd, args) {
  const p = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((r) => p.once('exit', (code, sig) => r(code ?? (sig ? 128 : -1))));
  return { pid: p.pid, output: () => out, stop: async () => { if (p.exitCode === null && p.signalCode === null) { p.kill('SIGTERM'); setTimeout(() => p.kill('SIGKILL'), 5000).unref(); } return exited; } };
}
async function waitPort(ns, host, port, timeoutMs = 15_000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try { inNs(ns, 'bash', ['-c', `exec 3<>/dev/tcp/${host}/${port}`]); return; } catch { await new Promise((r) => setTimeout(r, 100)); }
  }
  throw new Error(`port ${host}:${port} in ${ns} not open`);
}
function has(bin) { try { sh('which', [bin]); return true; } catch { return false; } }

function setup() {
  for (const n of Object.values(NS)) { sh('ip', ['netns', 'add', n]); inNs(n, 'ip', ['link', 'set', 'lo', 'up']); }
  sh('ip', ['link', 'add', `vg${TAG}c`, 'netns', NS.c, 'type', 'veth', 'peer', 'name', `vg${TAG}m1`, 'netns', NS.m]);
  sh('ip', ['link', 'add', `vg${TAG}s`, 'netns', NS.s, 'type', 'veth', 'peer', 'name', `vg${TAG}m2`, 'netns', NS.m]);
  const addr = (ns, dev, a) => { inNs(ns, 'ip', ['addr', 'add', a, 'dev', dev]); inNs(ns, 'ip', ['link', 'set', dev, 'up']); };
  addr(NS.c, `vg${TAG}c`, `${IP.c}/24`);
  addr(NS.m, `vg${TAG}m1`, `${IP.m1}/24`);
  addr(NS.m, `vg${TAG}m2`, `${IP.m2}/24`);
  addr(NS.s, `vg${TAG}s`, `${IP.s}/24`);
  inNs(NS.c, 'ip', ['route', 'add', 'default', 'via', IP.m1]);
  inNs(NS.s, 'ip', ['route', 'add', 'default', 'via', IP.m2]);
  inNs(NS.m, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  for (const n of Object.values(NS)) inNs(n, 'sysctl', ['-qw', 'net.ipv4.ip_local_port_range=1024 65000', 'net.ipv4.tcp_tw_reuse=1', 'net.core.somaxconn=4096']);
}
function teardown() {
  for (const n of Object.values(NS)) {
    try { for (const pid of sh('ip', ['netns', 'pids', n]).split(/\s+/).filter(Boolean)) { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } } } catch { /* no ns */ }
    try { sh('ip', ['netns', 'del', n]); } catch { /* gone */ }
  }
  rmSync(DIR, { recursive: true, force: true });
}

function makeCert() {
  sh('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(DIR, 'tls.key'), '-out', join(DIR, 'tls.crt'), '-days', '1', '-subj', '/CN=bench.test', '-addext', 'subjectAltName=DNS:bench.test']);
  writeFileSync(join(DIR, 'tls.pem'), readFileSync(join(DIR, 'tls.crt'), 'utf8') + readFileSync(join(DIR, 'tls.key'), 'utf8'));
}

function edgewayFiles(extraArgs = []) {
  const cat = [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: BACKEND }] } },
    { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'web-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } }, addressType: 'IPv4', ports: [{ name: 'http', port: BACKEND }], endpoints: [{ addresses: [IP.s], nodeName: 'bench' }] },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'bench-cert', namespace: 'default' }, type: 'kubernetes.io/tls', stringData: { 'tls.crt': readFileSync(join(DIR, 'tls.crt'), 'utf8'), 'tls.key': readFileSync(join(DIR, 'tls.key'), 'utf8') } },
    { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'edge', namespace: 'default' }, spec: { selector: { istio: 'ingressgateway' }, servers: [
      { port: { number: PORT.http, protocol: 'HTTP' }, hosts: ['*'] },
      { port: { number: PORT.https, protocol: 'HTTPS' }, hosts: ['*'], tls: { mode: 'SIMPLE', credentialName: 'bench-cert' } },
    ] } },
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'web', namespace: 'default' }, spec: { hosts: ['*'], gateways: ['edge'], http: [{ route: [{ destination: { host: 'web' } }] }] } },
  ];
  writeFileSync(join(DIR, 'catalog.json'), cat.map((o) => JSON.stringify(o)).join('\n---\n'));
  writeFileSync(join(DIR, 'gateway.yaml'), JSON.stringify({
    nodeName: 'bench', stateDir: join(DIR, 'state'), log: { level: 'warn' },
    sources: { kubernetes: { enabled: false }, static: { paths: [join(DIR, 'catalog.json')] } },
    tunnel: { enabled: false }, metrics: { listen: '' }, gateway: { addresses: [`${IP.m1}/32`] },
  }));
  return [...extraArgs, join(ROOT, 'bin/edgeway.js'), 'gateway', '--config', join(DIR, 'gateway.yaml')];
}

const MODES = [
  { name: 'direct', direct: true, start: async () => ({ stop: async () => 0 }) },
  {
    name: 'edgeway',
    start: async (profileDir) => {
      const p = bg(NS.m, process.execPath, edgewayFiles(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []));
      await waitPort(NS.c, IP.m1, PORT.http);
      await waitPort(NS.c, IP.m1, PORT.https);
      return p;
    },
  },
  {
    name: 'haproxy',
    available: () => has('haproxy'),
    start: async () => {
      const cfg = join(DIR, 'haproxy.cfg');
      writeFileSync(cfg, `global\n  maxconn 8000\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  http-reuse always\n` +
        `frontend fe\n  bind ${IP.m1}:${PORT.http}\n  bind ${IP.m1}:${PORT.https} ssl crt ${join(DIR, 'tls.pem')}\n  default_backend be\nbackend be\n  server s1 ${IP.s}:${BACKEND}\n`);
      const p = bg(NS.m, 'haproxy', ['-db', '-f', cfg]);
      await waitPort(NS.c, IP.m1, PORT.http);
      return p;
    },
  },
  {
    name: 'nginx',
    available: () => has('nginx'),
    start: async () => {
      const cfg = join(DIR, 'nginx.conf');
      writeFileSync(cfg, `worker_processes auto;\ndaemon off;\npid ${join(DIR, 'nginx.pid')};\nerror_log stderr error;\nevents { worker_connections 8192; }\nhttp {\n  access_log off;\n` +
        `  client_body_temp_path ${DIR}; proxy_temp_path ${DIR}; fastcgi_temp_path ${DIR}; uwsgi_temp_path ${DIR}; scgi_temp_path ${DIR};\n` +
        `  upstream up { server ${IP.s}:${BACKEND}; keepalive 64; }\n` +
        `  server {\n    listen ${IP.m1}:${PORT.http};\n    listen ${IP.m1}:${PORT.https} ssl;\n    ssl_certificate ${join(DIR, 'tls.crt')};\n    ssl_certificate_key ${join(DIR, 'tls.key')};\n` +
        `    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }\n  }\n}\n`);
      const p = bg(NS.m, 'nginx', ['-c', cfg, '-p', DIR]);
      await waitPort(NS.c, IP.m1, PORT.http);
      return p;
    },
  },
];

function wrk(url, secs = SECS) {
  const out = inNs(NS.c, 'wrk', ['-t2', '-c64', `-d${secs}s`, '--latency', url]);
  const rps = Number(out.match(/Requests\/sec:\s+([\d.]+)/)?.[1] ?? 0);
  const p99 = out.match(/\s99%\s+([\d.]+)(us|ms|s)/);
  const p99ms = p99 ? Number(p99[1]) * { us: 0.001, ms: 1, s: 1000 }[p99[2]] : null;
  const errors = (out.match(/Non-2xx or 3xx responses: \d+|Socket errors: .*/g) ?? []).join('; ');
  return { rps, p99ms, errors };
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : null; };

/** Top self-time functions of a V8 .cpuprofile. */
function topFunctions(file, n = 15) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const self = new Map();
  const dt = new Map();
  for (let i = 0; i < prof.samples.length; i++) dt.set(prof.samples[i], (dt.get(prof.samples[i]) ?? 0) + (prof.timeDeltas[i] ?? 0));
  let total = 0;
  for (const node of prof.nodes) {
    const t = dt.get(node.id) ?? 0;
    total += t;
    const f = node.callFrame;
    const k = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules|dist|node:)/, '$1')}:${f.lineNumber}`;
    self.set(k, (self.get(k) ?? 0) + t);
  }
  return [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, t]) => `${((100 * t) / total).toFixed(1).padStart(5)} %  ${k}`);
}

async function main() {
  if (process.getuid?.() !== 0) { console.error('bench/gateway needs root (network namespaces)'); process.exit(1); }
  for (const b of ['wrk', 'haproxy', 'openssl']) if (!has(b)) { console.error(`bench/gateway needs ${b} (scripts/install-system-deps.sh --bench)`); process.exit(1); }
  process.on('SIGINT', () => { teardown(); process.exit(130); });
  setup();
  const servers = [];
  const exitCodes = {};
  try {
    makeCert();
    const hcfg = join(DIR, 'backend.cfg');
    writeFileSync(hcfg, `global\n  maxconn 8000\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend fe\n  bind ${IP.s}:${BACKEND}\n  http-request return status 200 content-type text/plain string ok\n`);
    const backend = bg(NS.s, 'haproxy', ['-db', '-f', hcfg]);
    servers.push(backend);
    await waitPort(NS.c, IP.s, BACKEND).catch((e) => { throw new Error(`${e.message}; backend said: ${backend.output()}`); });
    const modes = MODES.filter((m) => !m.available || m.available());
    const runs = Object.fromEntries(modes.map((m) => [m.name, []]));
    for (let rep = 0; rep < REPS; rep++) {
      for (const mode of modes) {
        const p = await mode.start();
        try {
          const host = mode.direct ? `${IP.s}:${BACKEND}` : `${IP.m1}:${PORT.http}`;
          // Warm-up, not counted: the first second of a fresh Node process runs
          // unoptimised code and finishes loading modules (p99 in the 0.5–1 s range).
          wrk(`http://${host}/`, WARM_SECS);
          if (!mode.direct) wrk(`https://${IP.m1}:${PORT.https}/`, WARM_SECS);
          const http = wrk(`http://${host}/`);
          const https = mode.direct ? null : wrk(`https://${IP.m1}:${PORT.https}/`);
          runs[mode.name].push({ http, https });
          console.log(`rep ${rep + 1} ${mode.name.padEnd(8)} http ${http.rps.toFixed(0)} req/s p99 ${http.p99ms} ms${https ? `  https ${https.rps.toFixed(0)} req/s p99 ${https.p99ms} ms` : ''}${http.errors || https?.errors ? `  errors: ${http.errors} ${https?.errors ?? ''}` : ''}`);
        } finally {
          const code = await p.stop();
          if (mode.name === 'edgeway') (exitCodes.edgeway ??= []).push(code);
        }
      }
    }
    const summary = {};
    for (const [name, rs] of Object.entries(runs)) {
      summary[name] = {
        httpRps: median(rs.map((r) => r.http.rps)), httpP99ms: median(rs.map((r) => r.http.p99ms)),
        httpsRps: rs[0].https ? median(rs.map((r) => r.https.rps)) : null, httpsP99ms: rs[0].https ? median(rs.map((r) => r.https.p99ms)) : null,
      };
    }
    const base = summary.haproxy;
    for (const s of Object.values(summary)) {
      s.httpVsHaproxy = base?.httpRps ? +(s.httpRps / base.httpRps).toFixed(2) : null;
      s.httpsVsHaproxy = base?.httpsRps && s.httpsRps ? +(s.httpsRps / base.httpsRps).toFixed(2) : null;
    }
    let profile;
    if (process.env.BENCH_PROFILE === '1') {
      const pdir = join(DIR, 'prof');
      mkdirSync(pdir);
      const p = await MODES.find((m) => m.name === 'edgeway').start(pdir);
      wrk(`http://${IP.m1}:${PORT.http}/`, WARM_SECS);
      wrk(`http://${IP.m1}:${PORT.http}/`);
      await p.stop();
      const f = readdirSync(pdir).find((x) => x.endsWith('.cpuprofile'));
      profile = f ? topFunctions(join(pdir, f)) : ['no profile written'];
      console.log('\nedgeway gateway, top self time (HTTP keep-alive run):\n' + profile.join('\n'));
    }
    const result = { date: new Date().toISOString(), secondsPerRun: SECS, reps: REPS, wrk: '-t2 -c64', warmupSeconds: WARM_SECS, node: process.version, note: 'busy 2-core shared box: load generator, gateway and server share the CPUs', summary, runs, edgewayExitCodes: exitCodes.edgeway, ...(profile ? { profile } : {}) };
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench/results/gateway.json'), JSON.stringify(result, null, 2) + '\n');
    const md = ['| path | HTTP req/s | HTTP p99 ms | vs HAProxy | HTTPS req/s | HTTPS p99 ms | vs HAProxy |', '|---|---:|---:|---:|---:|---:|---:|',
      ...Object.entries(summary).map(([n, s]) => `| ${n} | ${s.httpRps?.toFixed(0)} | ${s.httpP99ms ?? ''} | ${s.httpVsHaproxy ?? ''} | ${s.httpsRps?.toFixed(0) ?? ''} | ${s.httpsP99ms ?? ''} | ${s.httpsVsHaproxy ?? ''} |`)];
    writeFileSync(join(ROOT, 'bench/results/gateway.md'), `# bench/gateway (${result.date})\n\nwrk ${result.wrk}, ${SECS} s × ${REPS} (median), ${result.note}.\n\n${md.join('\n')}\n`);
    console.log('\n' + md.join('\n'));
    if ((exitCodes.edgeway ?? []).some((c) => c !== 0)) { console.error(`edgeway gateway exit codes on SIGTERM: ${exitCodes.edgeway}`); process.exitCode = 1; }
  } finally {
    for (const s of servers) await s.stop();
    teardown();
  }
}

main().catch((err) => { console.error(err); teardown(); process.exit(1); });
