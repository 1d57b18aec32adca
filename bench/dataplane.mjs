#!/usr/bin/env node
// Data path cost of the nftables ruleset, in namespaces, same run:
//   client 10.31.0.2 ── node (ip_forward; table inet edgeway) ── server 10.32.0.2
// "direct" = client → 10.32.0.2 (routed by the node, no service rule hit);
// "ClusterIP" = client → 10.96.0.10 (DNAT in the node's prerouting).
// Bulk throughput (iperf3, 3 s), new connections/s (connect + 1 byte + close, 16
// concurrent, 3 s) and connect latency p50/p99 (2000 sequential connects), each the
// median of 3 interleaved rounds; latency again with 50k services loaded.
// Usage: npm run bench dataplane
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { compile } from '../dist/dataplane/nftables/compile.js';
import { fullTransaction } from '../dist/dataplane/nftables/transaction.js';
import { CliNftExecutor } from '../dist/dataplane/nftables/executor.js';

const tag = randomBytes(2).toString('hex');
const NS = { client: `ewdpc${tag}`, node: `ewdpn${tag}`, server: `ewdps${tag}` };
const sh = (...a) => execFileSync(a[0], a.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
const inNs = (ns, ...a) => sh('ip', 'netns', 'exec', ns, ...a);
const procs = [];
const bg = (ns, ...a) => { const p = spawn('ip', ['netns', 'exec', ns, ...a], { stdio: 'ignore' }); procs.push(p); return p; };
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const SERVER = `
const net=require('net');net.createServer(s=>{s.on('error',()=>{});s.end('x')}).listen(7000,'0.0.0.0');`;
const RATE = `
const net=require('net');const [host,secs]=process.argv.slice(1);let n=0,err=0;const end=Date.now()+Number(secs)*1000;
function one(){if(Date.now()>end)return done();const s=net.connect(7000,host);s.on('data',()=>{});s.on('end',()=>{n++;s.destroy();one()});s.on('error',()=>{err++;s.destroy();one()})}
let live=16;function done(){if(--live===0)console.log(JSON.stringify({rate:n/Number(secs),err}))}for(let i=0;i<16;i++)one();`;
const LAT = `
const net=require('net');const [host,count]=process.argv.slice(1);const xs=[];let i=0;
function one(){if(i++>=Number(count)){xs.sort((a,b)=>a-b);console.log(JSON.stringify({p50:xs[xs.length>>1],p99:xs[Math.floor(xs.length*0.99)]}));return}
const t=process.hrtime.bigint();const s=net.connect(7000,host);s.on('connect',()=>{xs.push(Number(process.hrtime.bigint()-t)/1e3);s.destroy();setImmediate(one)});s.on('error',()=>{s.destroy();one()})}one();`;

function plan(n) {
  const servicePorts = [];
  const add = (id, ip, port) => servicePorts.push({ id, serviceKey: id, namespace: 'b', name: id, portName: '', protocol: 'TCP', port, clusterIPs: [ip], endpoints: [{ ip: '10.32.0.2', family: 4, port, class: 'routable', ready: true }], policy: { kind: 'random' }, target: 'kernel' });
  add('b/web:7000/TCP', '10.96.0.10', 7000);
  add('b/iperf:5201/TCP', '10.96.0.10', 5201);
  for (let i = 0; i < n - 2; i++) add(`b/s${i}:80/TCP`, `10.${97 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, 80);
  return { nodeName: 'bench', revision: 1, servicePorts: servicePorts.sort((a, b) => (a.id < b.id ? -1 : 1)), userspacePortExhausted: [] };
}

const results = { date: new Date().toISOString(), loadavg: loadavg(), note: 'one run on a shared 2-core machine (other suites running): noisy; medians of 3 interleaved rounds', rows: [] };
try {
  for (const ns of Object.values(NS)) sh('ip', 'netns', 'add', ns);
  for (const ns of Object.values(NS)) inNs(ns, 'ip', 'link', 'set', 'lo', 'up');
  sh('ip', 'link', 'add', `dc${tag}`, 'netns', NS.client, 'type', 'veth', 'peer', 'name', `dn${tag}`, 'netns', NS.node);
  sh('ip', 'link', 'add', `ds${tag}`, 'netns', NS.server, 'type', 'veth', 'peer', 'name', `dm${tag}`, 'netns', NS.node);
  inNs(NS.client, 'ip', 'addr', 'add', '10.31.0.2/24', 'dev', `dc${tag}`); inNs(NS.client, 'ip', 'link', 'set', `dc${tag}`, 'up');
  inNs(NS.node, 'ip', 'addr', 'add', '10.31.0.1/24', 'dev', `dn${tag}`); inNs(NS.node, 'ip', 'link', 'set', `dn${tag}`, 'up');
  inNs(NS.node, 'ip', 'addr', 'add', '10.32.0.1/24', 'dev', `dm${tag}`); inNs(NS.node, 'ip', 'link', 'set', `dm${tag}`, 'up');
  inNs(NS.server, 'ip', 'addr', 'add', '10.32.0.2/24', 'dev', `ds${tag}`); inNs(NS.server, 'ip', 'link', 'set', `ds${tag}`, 'up');
  inNs(NS.client, 'ip', 'route', 'add', 'default', 'via', '10.31.0.1');
  inNs(NS.server, 'ip', 'route', 'add', 'default', 'via', '10.32.0.1');
  inNs(NS.node, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
  for (const ns of [NS.client, NS.server]) {
    inNs(ns, 'sysctl', '-qw', 'net.ipv4.ip_local_port_range=1024 65000', 'net.ipv4.tcp_tw_reuse=1', 'net.core.somaxconn=4096');
  }
  bg(NS.server, process.execPath, '-e', SERVER);
  bg(NS.server, 'iperf3', '-s', '-p', '5201');
  const ex = new CliNftExecutor({ prefix: ['nsenter', `--net=/run/netns/${NS.node}`] });
  await ex.run(fullTransaction(compile(plan(10))));
  await new Promise((r) => setTimeout(r, 500));

  const bulk = (host) => JSON.parse(inNs(NS.client, 'iperf3', '-c', host, '-p', '5201', '-t', '3', '-J')).end.sum_received.bits_per_second / 8 / 1e6;
  const rate = (host) => JSON.parse(inNs(NS.client, process.execPath, '-e', RATE, host, '3')).rate;
  const lat = (host) => JSON.parse(inNs(NS.client, process.execPath, '-e', LAT, host, '2000'));
  const measure = (label, fn) => {
    const d = [], s = [];
    for (let i = 0; i < 3; i++) { d.push(fn('10.32.0.2')); s.push(fn('10.96.0.10')); }
    return { label, direct: d, clusterIP: s };
  };
  const m = [measure('bulk MB/s', bulk), measure('new conns/s', rate)];
  const l10 = [], l50 = [];
  for (let i = 0; i < 3; i++) l10.push(lat('10.96.0.10'));
  const ld = [];
  for (let i = 0; i < 3; i++) ld.push(lat('10.32.0.2'));
  const t = process.hrtime.bigint();
  await ex.run(fullTransaction(compile(plan(50_000))));
  const applyMs = Number(process.hrtime.bigint() - t) / 1e6;
  for (let i = 0; i < 3; i++) l50.push(lat('10.96.0.10'));
  for (const x of m) results.rows.push({ metric: x.label, direct: median(x.direct), clusterIP: median(x.clusterIP), ratio: median(x.clusterIP) / median(x.direct), samples: x });
  const p = (xs, k) => median(xs.map((x) => x[k]));
  results.rows.push({ metric: 'connect p50 µs (direct vs ClusterIP @10 services)', direct: p(ld, 'p50'), clusterIP: p(l10, 'p50'), ratio: p(l10, 'p50') / p(ld, 'p50') });
  results.rows.push({ metric: 'connect p50 µs (ClusterIP @10 vs @50k services)', direct: p(l10, 'p50'), clusterIP: p(l50, 'p50'), ratio: p(l50, 'p50') / p(l10, 'p50') });
  results.rows.push({ metric: 'connect p99 µs (ClusterIP @10 vs @50k services)', direct: p(l10, 'p99'), clusterIP: p(l50, 'p99'), ratio: p(l50, 'p99') / p(l10, 'p99') });
  results.apply50kMs = applyMs;
} finally {
  for (const p of procs) p.kill('SIGKILL');
  for (const ns of Object.values(NS)) spawnSync('ip', ['netns', 'del', ns]);
}
const f = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(2));
const md = ['| metric | baseline | ClusterIP | ratio |', '|---|---:|---:|---:|', ...results.rows.map((r) => `| ${r.metric} | ${f(r.direct)} | ${f(r.clusterIP)} | ${r.ratio.toFixed(2)}× |`)].join('\n');
console.log(md);
const out = new URL('./results/', import.meta.url).pathname;
mkdirSync(out, { recursive: true });
writeFileSync(`${out}dataplane.json`, `${JSON.stringify(results, null, 2)}\n`);
writeFileSync(`${out}dataplane.md`, `# dataplane (${results.date})\n\n${results.note}; load average ${results.loadavg.map((x) => x.toFixed(1)).join(' ')}\n\n${md}\n`);
