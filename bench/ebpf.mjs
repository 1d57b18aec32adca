#!/usr/bin/env node
// Socket-LB vs direct vs nft DNAT: new TCP connections/s and first-packet latency
// (connect() start → first reply byte), measured in one run, interleaved, median
// of 3 rounds. Needs root; everything lives in namespaces and a sub-cgroup this
// script creates and removes.
//
//   ns A (10.2.1.1) ──veth── ns S (10.2.1.2, 10.2.2.2) ──veth── ns N (10.2.2.1)
//   direct:      A → 10.2.1.2:9000                  (A not in the cgroup: no hooks)
//   direct+hook: A in the cgroup → 10.2.1.2:9000    (hooks run and miss)
//   socket-LB:   A in the cgroup → 10.96.0.10:80    (connect4 rewrites to 10.2.1.2:9000)
//   nft DNAT:    N → 10.96.0.10:80                  (output-hook dnat to 10.2.2.2:9000)
// N is a separate namespace so conntrack (enabled per namespace by the NAT table)
// never touches the other modes.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const { SocketLb } = await import(`${root}dist/dataplane/ebpf/socket-lb.js`);
const { findCgroup2Root } = await import(`${root}dist/dataplane/ebpf/host.js`);

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 11);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 1);
const THREADS = Number(process.env.BENCH_THREADS ?? 4);
const tag = randomBytes(3).toString('hex');
const nsA = `ewb${tag}a`;
const nsS = `ewb${tag}s`;
const nsN = `ewb${tag}n`;
const cg2 = findCgroup2Root();
if (process.getuid?.() !== 0 || !cg2) { console.error('bench/ebpf needs root and cgroup v2'); process.exit(1); }
const cgroup = join(cg2, `edgeway-bench-${tag}`);
const bpffsRoot = `/tmp/ew${tag}benchbpf`;
const tool = join(root, 'bench/build/connrate');

const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], ...opts });
const inNs = (ns, ...args) => sh('ip', ['netns', 'exec', ns, ...args]);
const inNsInput = (ns, input, ...args) => sh('ip', ['netns', 'exec', ns, ...args], { input });

let server;
let iperf;
let lb;
async function cleanup() {
  if (server) server.kill('SIGKILL');
  if (iperf) iperf.kill('SIGKILL');
  if (lb) await lb.cleanup().catch((e) => console.error('socket-LB cleanup:', e.message));
  for (const ns of [nsA, nsS, nsN]) spawnSync('ip', ['netns', 'del', ns]);
  for (let i = 0; i < 20 && existsSync(cgroup); i++) { try { rmdirSync(cgroup); } catch { await new Promise((r) => setTimeout(r, 100)); } }
  if (existsSync(bpffsRoot)) { spawnSync('umount', [bpffsRoot]); try { rmdirSync(bpffsRoot); } catch { /* reported below */ } }
}

/** Bulk throughput with iperf3 (1 s, one stream), in Gbit/s. */
function bulk(ns, host, inCgroup) {
  const argv = ['netns', 'exec', ns, 'iperf3', '-c', host, '-p', '5201', '-t', '1', '-J'];
  const out = inCgroup ? sh('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec ip "$@"', cgroup, ...argv]) : sh('ip', argv);
  return JSON.parse(out).end.sum_received.bits_per_second / 1e9;
}

function client(ns, host, port, threads, inCgroup, udpOps = 0) {
  const argv = udpOps
    ? ['netns', 'exec', ns, tool, 'udpconnect', host, String(port), String(udpOps)]
    : ['netns', 'exec', ns, tool, 'client', host, String(port), String(threads), String(SECONDS)];
  const out = inCgroup
    ? sh('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec ip "$@"', cgroup, ...argv])
    : sh('ip', argv);
  return JSON.parse(out.trim());
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

try {
  sh(join(root, 'scripts/build-bpf.sh'), []);
  mkdirSync(join(root, 'bench/build'), { recursive: true });
  sh('cc', ['-O2', '-Wall', '-pthread', '-o', tool, join(root, 'bench/tools/connrate.c')]);

  for (const ns of [nsA, nsS, nsN]) { sh('ip', ['netns', 'add', ns]); inNs(ns, 'ip', 'link', 'set', 'lo', 'up'); }
  for (const [c, caddr, saddr, n] of [[nsA, '10.2.1.1/24', '10.2.1.2/24', 0], [nsN, '10.2.2.1/24', '10.2.2.2/24', 1]]) {
    const a = `vb${tag}c${n}`; const b = `vb${tag}s${n}`;
    sh('ip', ['link', 'add', a, 'netns', c, 'type', 'veth', 'peer', 'name', b, 'netns', nsS]);
    inNs(c, 'ip', 'addr', 'add', caddr, 'dev', a); inNs(c, 'ip', 'link', 'set', a, 'up');
    inNs(nsS, 'ip', 'addr', 'add', saddr, 'dev', b); inNs(nsS, 'ip', 'link', 'set', b, 'up');
    if (c === nsN) inNs(c, 'ip', 'route', 'add', '10.96.0.0/16', 'dev', a);
  }
  for (const ns of [nsA, nsN]) inNs(ns, 'sysctl', '-qw', 'net.ipv4.ip_local_port_range=1024 65000', 'net.ipv4.tcp_tw_reuse=1');
  inNs(nsS, 'sysctl', '-qw', 'net.core.somaxconn=4096');
  inNsInput(nsN, 'table ip ewbench {\n chain out {\n  type nat hook output priority -100;\n  ip daddr 10.96.0.10 tcp dport 80 dnat to 10.2.2.2:9000\n  ip daddr 10.96.0.10 tcp dport 5201 dnat to 10.2.2.2:5201\n }\n}\n', 'nft', '-f', '-');

  server = spawn('ip', ['netns', 'exec', nsS, tool, 'server', '9000', '2'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => { server.stdout.once('data', resolve); server.once('exit', reject); });

  iperf = spawn('ip', ['netns', 'exec', nsS, 'iperf3', '-s', '-p', '5201'], { stdio: 'ignore' });
  mkdirSync(cgroup);
  lb = new SocketLb({ bpffsRoot, pinDir: join(bpffsRoot, 'edgeway'), cgroup });
  await lb.start();
  await lb.apply({
    nodeName: 'bench', revision: 1, userspacePortExhausted: [],
    servicePorts: [['TCP', 80, 9000], ['UDP', 80, 9000], ['TCP', 5201, 5201]].map(([protocol, port, target]) => ({ id: `default/svc:${port}/${protocol}`, serviceKey: 'default/svc', namespace: 'default', name: 'svc', portName: '', protocol, port, clusterIPs: ['10.96.0.10'], endpoints: [{ ip: '10.2.1.2', family: 4, port: target, class: 'local', ready: true }], policy: { kind: 'random' }, target: 'kernel' })),
  });

  const modes = [
    { name: 'direct', ns: nsA, host: '10.2.1.2', port: 9000, cg: false },
    { name: 'direct+hooks', ns: nsA, host: '10.2.1.2', port: 9000, cg: true },
    { name: 'socket-LB', ns: nsA, host: '10.96.0.10', port: 80, cg: true },
    { name: 'nft DNAT', ns: nsN, host: '10.96.0.10', port: 80, cg: false },
  ];
  const samples = Object.fromEntries(modes.map((m) => [m.name, { rate: [], p50: [], p99: [], p50min: [], cpu: [], udp: [], gbps: [], errors: 0 }]));
  // Warm-up, then interleaved rounds: rate (THREADS loops) and latency (1 loop).
  for (const m of modes) client(m.ns, m.host, m.port, 1, m.cg);
  for (let r = 0; r < ROUNDS; r++) {
    for (const m of modes) {
      const rate = client(m.ns, m.host, m.port, THREADS, m.cg);
      const lat = client(m.ns, m.host, m.port, 1, m.cg);
      const s = samples[m.name];
      // connect() of a UDP socket sends nothing: the hook's cost alone (NAT has none here).
      if (m.name !== 'nft DNAT') s.udp.push(client(m.ns, m.host, m.port, 1, m.cg, 30_000).min_ns);
      if (m.name !== 'direct+hooks') s.gbps.push(bulk(m.ns, m.name === 'socket-LB' || m.name === 'nft DNAT' ? '10.96.0.10' : m.host, m.cg));
      s.rate.push(rate.rate); s.cpu.push(rate.cpu_us / Math.max(1, rate.conns)); s.p50.push(lat.p50_us); s.p99.push(lat.p99_us); s.errors += rate.errors + lat.errors;
      process.stderr.write(`round ${r + 1} ${m.name}: ${rate.rate.toFixed(0)} conn/s, ${(rate.cpu_us / Math.max(1, rate.conns)).toFixed(1)} µs CPU/conn, p50 ${lat.p50_us} µs\n`);
    }
  }
  const stats = await lb.stats();
  // Ratios are paired: each round's figure over the same round's direct figure,
  // then the median over rounds, so load drifting between rounds cancels out.
  const paired = (name, key) => {
    const d = samples.direct[key];
    const xs = samples[name][key].map((v, i) => v / d[i]).filter(Number.isFinite);
    return xs.length ? +median(xs).toFixed(3) : null;
  };
  const rows = modes.map((m) => {
    const s = samples[m.name];
    return {
      mode: m.name,
      connsPerSec: Math.round(median(s.rate)),
      ratio: paired(m.name, 'rate'),
      bestConnsPerSec: Math.round(Math.max(...s.rate)),
      bestRatio: +(Math.max(...s.rate) / Math.max(...samples.direct.rate)).toFixed(3),
      cpuUsPerConn: +median(s.cpu).toFixed(2),
      cpuRatio: paired(m.name, 'cpu'),
      p50us: median(s.p50),
      p50usMin: Math.min(...s.p50),
      p99us: median(s.p99),
      udpConnectNs: s.udp.length ? Math.round(Math.min(...s.udp)) : null,
      gbps: s.gbps.length ? +median(s.gbps).toFixed(2) : null,
      gbpsRatio: s.gbps.length ? paired(m.name, 'gbps') : null,
      errors: s.errors,
      rates: s.rate.map(Math.round),
    };
  });
  const md = [
    `# bench/ebpf — new TCP connections/s and first-packet latency`,
    '',
    `${ROUNDS} interleaved rounds × ${SECONDS} s; rate with ${THREADS} client threads, latency (connect → first reply byte) with 1; medians and bests (max rate, min latency: load from other processes only ever makes a trial slower); × direct = median over rounds of the same round's ratio. Shared 2-core box: noisy. Client CPU per connection = user+sys of the load generator, where output-path hooks, conntrack and NAT run. UDP connect(): socket+connect+close of a UDP socket, no packet sent: the hook's own cost. Bulk: iperf3, one stream, 1 s.`,
    '',
    '| mode | conns/s (median) | × direct | conns/s (best) | × direct | client CPU µs/conn | × direct | p50 µs (median / best) | p99 µs | UDP connect() ns (best) | bulk Gbit/s | × direct | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.mode} | ${r.connsPerSec} | ${r.ratio?.toFixed(2) ?? '–'} | ${r.bestConnsPerSec} | ${r.bestRatio.toFixed(2)} | ${r.cpuUsPerConn} | ${r.cpuRatio?.toFixed(2) ?? '–'} | ${r.p50us} / ${r.p50usMin} | ${r.p99us} | ${r.udpConnectNs ?? '–'} | ${r.gbps ?? '–'} | ${r.gbpsRatio?.toFixed(2) ?? '–'} | ${r.errors} |`),
    '',
    `socket-LB translations counted by the per-CPU map: ${stats.translated}`,
  ].join('\n');
  console.log(md);
  mkdirSync(join(root, 'bench/results'), { recursive: true });
  writeFileSync(join(root, 'bench/results/ebpf.json'), JSON.stringify({ date: new Date().toISOString(), kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), rounds: ROUNDS, seconds: SECONDS, threads: THREADS, rows, translations: String(stats.translated) }, null, 2) + '\n');
  writeFileSync(join(root, 'bench/results/ebpf.md'), md + '\n');
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  await cleanup();
}
