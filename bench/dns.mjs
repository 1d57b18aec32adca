#!/usr/bin/env node
// bench/dns: dnsperf against edgeway, dnsmasq and unbound serving the same records,
// in one run on 127.0.0.1 high ports: queries/s at saturation (median of ROUNDS
// interleaved runs) and latency p50/p99 at a fixed offered load (bench/tools/
// dnsprobe.c, a paced C client built here with cc), for cluster names
// and for cached external names (each server forwards to the same upstream, a
// separate dnsmasq, and is warmed first). edgeway runs twice: on the main thread
// only (dns.workers 1) and with DNS_BENCH_WORKERS worker threads (default: one per
// core, as the agent does); unbound gets as many threads; dnsmasq has only one.
// With workers nothing is pinned (DNS_BENCH_PIN=1 pins the single-threaded run's
// layout: servers on CPU 1, dnsperf on CPU 0).
//
//   npm run bench dns
//   DNS_BENCH_SECONDS=5 DNS_BENCH_ROUNDS=3 DNS_BENCH_NAMES=1000 DNS_BENCH_RATES=5000,20000 DNS_BENCH_WORKERS=2 node bench/dns.mjs
//
// Writes bench/results/dns.{json,md,svg}. The box is shared: figures are noisy,
// ratios against dnsmasq in the same run are what to read.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const SECONDS = Number(process.env.DNS_BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.DNS_BENCH_ROUNDS ?? 3);
const NAMES = Number(process.env.DNS_BENCH_NAMES ?? 1000);
const RATES = (process.env.DNS_BENCH_RATES ?? '5000,20000').split(',').map(Number);
const CLIENTS = 8;
const LATENCY_SECONDS = Number(process.env.DNS_BENCH_LATENCY_SECONDS ?? 3);
const PROBE = join(fileURLToPath(new URL('.', import.meta.url)), 'build/dnsprobe');
const WORKERS = Number(process.env.DNS_BENCH_WORKERS ?? availableParallelism());
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const spread = (xs) => ({ min: Math.min(...xs), median: median(xs), max: Math.max(...xs) });

const ipOf = (i) => `10.96.${(i >> 8) & 255}.${i & 255}`;
const extIpOf = (i) => `198.18.${(i >> 8) & 255}.${i & 255}`;


/**
 * The edgeway DNS server as the agent runs it (zone + forwarder + server), one
 * process: on the main thread (workers = 1) or in worker threads sharing the port.
 */
async function serveEdgeway(port, upstreamPort, workers, batched) {
  const { Zone } = await import('../dist/dns/zone.js');
  const { DnsServer } = await import('../dist/dns/server.js');
  const { DnsWorkers } = await import('../dist/dns/workers.js');
  const { reusePort } = await import('../dist/dns/reuse-port.js');
  const { Forwarder } = await import('../dist/dns/forwarder.js');
  const { DnsMetrics } = await import('../dist/dns/metrics.js');
  const { silentLogger } = await import('../dist/util/log.js');
  const { loadNative } = await import('../dist/native/addon.js');
  const { batchAddon } = await import('../dist/dns/udp-batch.js');
  const batch = batched ? batchAddon(loadNative().addon) : undefined;
  if (batched && !batch) throw new Error('the native addon has no UdpBatch: build it (npm ci / scripts/build-native.sh)');
  /** @type {any[]} */
  const services = Array.from({ length: NAMES }, (_, i) => ({
    namespace: 'bench', name: `svc-${i}`, key: `bench/svc-${i}`, type: 'ClusterIP', clusterIPs: [ipOf(i)], headless: false,
    ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 80 }], sessionAffinity: { kind: 'None' }, internalTrafficPolicy: 'Cluster', endpoints: [],
  }));
  /** @type {any} */
  const snapshot = { version: 1, revision: 1, builtAt: new Date().toISOString(), origin: 'live', services, nodes: [] };
  const zopts = { domain: 'cluster.local', ttl: 30, negativeTtl: 5 };
  const metrics = new DnsMetrics();
  const upstreams = [{ host: '127.0.0.1', port: upstreamPort }];
  let server;
  if (workers > 1) {
    const reuse = reusePort();
    if (!reuse.ok) throw new Error('reason' in reuse ? reuse.reason : 'no shared UDP port');
    server = new DnsWorkers({
      count: workers, listen: [`127.0.0.1:${port}`], snapshot, zone: zopts, upstreams, upstreamTimeoutMs: 2000, cacheSize: 10000,
      maxTcpConnections: 256, logger: silentLogger(), metrics, openUdpFd: reuse.openUdpFd, batch: batched,
    });
  } else {
    const forwarder = new Forwarder({ upstreams, timeoutMs: 2000, cacheSize: 10000, metrics });
    server = new DnsServer({ listen: [`127.0.0.1:${port}`], zone: Zone.build(snapshot, zopts), forwarder, logger: silentLogger(), metrics, batch });
  }
  await server.start();
  console.log('ready');
  process.on('SIGTERM', () => { void server.stop().then(() => process.exit(0)); });
}

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd} || test -x /usr/sbin/${cmd}`]).status === 0;
}

function bin(cmd) {
  return existsSync(`/usr/sbin/${cmd}`) ? `/usr/sbin/${cmd}` : cmd;
}

// Servers pinned to CPU 1 and dnsperf to CPU 0 ("one core" each; taskset execs, so
// the child's PID is the server's). Default: pinned only when every server is
// single-threaded (DNS_BENCH_WORKERS=1); DNS_BENCH_PIN=0/1 overrides.
const PIN = (process.env.DNS_BENCH_PIN ?? (WORKERS > 1 ? '0' : '1')) !== '0' && spawnSync('sh', ['-c', 'command -v taskset']).status === 0;
const pinned = (cpu, cmd, args) => (PIN ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args]);

function startProc(name, cmd0, args0, cpu = 1) {
  const [cmd, args] = name === 'upstream' ? [cmd0, args0] : pinned(cpu, cmd0, args0);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => { err = (err + d).slice(-4000); });
  child.stdout.on('data', () => undefined);
  return { name, child, stderr: () => err };
}

function stopProc(p) {
  return new Promise((resolve) => {
    if (p.child.exitCode !== null || p.child.signalCode !== null) return resolve();
    const t = setTimeout(() => p.child.kill('SIGKILL'), 3000);
    p.child.once('exit', () => { clearTimeout(t); resolve(); });
    p.child.kill('SIGTERM'); // by PID: only processes this script started
  });
}

async function waitAnswer(port, name, expect, ms = 10000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const r = spawnSync('dig', ['@127.0.0.1', '-p', String(port), '+short', '+time=1', '+tries=1', name], { encoding: 'utf8' });
    if (r.stdout.trim() === expect) return;
    await new Promise((r2) => setTimeout(r2, 100));
  }
  throw new Error(`server on ${port} never answered ${name} with ${expect}`);
}

function dnsperf(port, file, extra) {
  const [cmd, args] = pinned(0, 'dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', file, '-c', String(CLIENTS), '-T', '1', ...extra]);
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 512 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`dnsperf failed: ${r.stderr}`);
  return r.stdout;
}

/** CPU seconds (user + system) a process has used, from /proc (clock ticks of 1/100 s). */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

function throughput(port, file, pid) {
  const c0 = cpuSeconds(pid);
  const out = dnsperf(port, file, ['-l', String(SECONDS), '-q', '100']);
  const cpu = cpuSeconds(pid) - c0;
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const lost = Number(/Queries lost:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const noerror = Number(/NOERROR (\d+)/.exec(out)?.[1] ?? 0);
  const completed = Number(/Queries completed:\s+(\d+)/.exec(out)?.[1] ?? 0);
  // Queries per CPU-second of the server: what one core would do, robust to a busy box.
  return { qps, lost, okShare: completed ? noerror / completed : 0, perCpuSecond: cpu > 0 ? completed / cpu : 0, cpu };
}

/**
 * Latency at a fixed offered load, from bench/tools/dnsprobe.c: queries paced on
 * an absolute schedule, each timed with CLOCK_MONOTONIC from its send to its
 * answer (dnsperf 2.10 prints no latency distribution, and its -v per-query
 * lines are printed on its receive path).
 */
function latency(port, file, rate) {
  const [cmd, args] = pinned(0, PROBE, ['127.0.0.1', String(port), String(rate), String(LATENCY_SECONDS), file, String(CLIENTS)]);
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`dnsprobe failed: ${r.stderr}`);
  const o = JSON.parse(r.stdout.trim());
  return { p50us: o.p50_us, p99us: o.p99_us, p999us: o.p999_us, maxUs: o.max_us, samples: o.answered, errors: o.errors + o.lost + o.mismatched, late: o.late, offered: o.rate };
}

/** Build the latency probe (a C file; `cc` is part of the bench's system deps). */
function buildProbe() {
  mkdirSync(dirname(PROBE), { recursive: true });
  const r = spawnSync('cc', ['-O2', '-Wall', '-o', PROBE, join(here, 'tools/dnsprobe.c')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot build bench/tools/dnsprobe.c: ${r.error?.message ?? r.stderr}`);
}

async function main() {
  for (const c of ['dnsperf', 'dig', 'cc']) if (!have(c)) { console.error(`bench/dns needs ${c}`); process.exit(1); }
  buildProbe();
  const dir = mkdtempSync(join(tmpdir(), 'ew-bench-dns-'));
  const procs = [];
  const base = 20000 + Math.floor(Math.random() * 20000);
  const ports = { upstream: base, edgeway: base + 1, dnsmasq: base + 2, unbound: base + 3, edgewayN: base + 4, edgewayB: base + 5 };
  try {
    // Records: NAMES cluster services, NAMES external names (served by the upstream).
    writeFileSync(join(dir, 'cluster.hosts'), Array.from({ length: NAMES }, (_, i) => `${ipOf(i)} svc-${i}.bench.svc.cluster.local`).join('\n') + '\n');
    writeFileSync(join(dir, 'ext.hosts'), Array.from({ length: NAMES }, (_, i) => `${extIpOf(i)} ext-${i}.example`).join('\n') + '\n');
    writeFileSync(join(dir, 'cluster.txt'), Array.from({ length: NAMES }, (_, i) => `svc-${i}.bench.svc.cluster.local A`).join('\n') + '\n');
    writeFileSync(join(dir, 'external.txt'), Array.from({ length: NAMES }, (_, i) => `ext-${i}.example A`).join('\n') + '\n');
    const dnsmasqCommon = ['--keep-in-foreground', '--conf-file=/dev/null', '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts', '--user=root', '--group=root', '--cache-size=10000', '--dns-forward-max=1000'];

    procs.push(startProc('upstream', bin('dnsmasq'), [...dnsmasqCommon, `--port=${ports.upstream}`, `--addn-hosts=${join(dir, 'ext.hosts')}`, '--local-ttl=3600', '--local=/example/']));
    await waitAnswer(ports.upstream, 'ext-1.example', extIpOf(1));

    const servers = [];
    // edgeway-dgram: the main thread on dgram (before batching); edgeway: the main
    // thread, batched UDP through the addon; edgeway-Nw: N batched worker threads.
    const variants = [
      { name: 'edgeway-dgram', port: ports.edgeway, workers: 1, udp: 'dgram' },
      { name: 'edgeway', port: ports.edgewayB, workers: 1, udp: 'batch' },
      ...(WORKERS > 1 ? [{ name: `edgeway-${WORKERS}w`, port: ports.edgewayN, workers: WORKERS, udp: 'batch' }] : []),
    ];
    for (const v of variants) {
      procs.push(startProc(v.name, process.execPath, [fileURLToPath(import.meta.url), '--serve-edgeway', String(v.port), String(ports.upstream), String(v.workers), v.udp]));
      servers.push({ name: v.name, port: v.port, proc: procs.at(-1) });
    }
    procs.push(startProc('dnsmasq', bin('dnsmasq'), [...dnsmasqCommon, `--port=${ports.dnsmasq}`, `--addn-hosts=${join(dir, 'cluster.hosts')}`, '--local-ttl=30', '--local=/cluster.local/', `--server=127.0.0.1#${ports.upstream}`]));
    servers.push({ name: 'dnsmasq', port: ports.dnsmasq, proc: procs.at(-1) });
    if (have('unbound')) {
      const conf = [
        'server:',
        `  interface: 127.0.0.1`, `  port: ${ports.unbound}`, `  num-threads: ${WORKERS}`, '  so-reuseport: yes', '  do-daemonize: no', '  username: ""', '  chroot: ""',
        `  directory: "${dir}"`, '  pidfile: ""', '  use-syslog: no', '  logfile: ""', '  verbosity: 0', '  do-not-query-localhost: no',
        '  access-control: 127.0.0.0/8 allow', '  module-config: "iterator"', '  msg-cache-size: 32m', '  rrset-cache-size: 64m',
        '  local-zone: "cluster.local." static',
        ...Array.from({ length: NAMES }, (_, i) => `  local-data: "svc-${i}.bench.svc.cluster.local. 30 IN A ${ipOf(i)}"`),
        '  domain-insecure: "example."',
        'forward-zone:', '  name: "."', `  forward-addr: 127.0.0.1@${ports.upstream}`,
        'remote-control:', '  control-enable: no', '',
      ].join('\n');
      writeFileSync(join(dir, 'unbound.conf'), conf);
      procs.push(startProc('unbound', bin('unbound'), ['-d', '-c', join(dir, 'unbound.conf')]));
      servers.push({ name: WORKERS > 1 ? `unbound-${WORKERS}t` : 'unbound', port: ports.unbound, proc: procs.at(-1) });
    } else {
      console.warn('unbound not installed: skipped');
    }
    for (const s of servers) {
      try { await waitAnswer(s.port, 'svc-1.bench.svc.cluster.local', ipOf(1)); } catch (err) {
        throw new Error(`${s.name}: ${err.message}; stderr: ${procs.find((p) => p.name === s.name)?.stderr()}`);
      }
      // Warm the caches with every external name once.
      dnsperf(s.port, join(dir, 'external.txt'), ['-n', '1', '-q', '50']);
      await waitAnswer(s.port, 'ext-1.example', extIpOf(1));
    }

    const sets = [{ set: 'cluster', file: join(dir, 'cluster.txt') }, { set: 'external (cached)', file: join(dir, 'external.txt') }];
    const runs = {};
    for (let r = 0; r < ROUNDS; r++) {
      for (const { set, file } of sets) {
        for (const s of servers) {
          const t = throughput(s.port, file, s.proc.child.pid);
          (runs[`${s.name}|${set}`] ??= []).push(t);
          console.log(`round ${r + 1} ${set.padEnd(18)} ${s.name.padEnd(11)} ${Math.round(t.qps)} qps, ${Math.round(t.perCpuSecond)} per CPU-s (cpu ${t.cpu.toFixed(2)} s, lost ${t.lost}, NOERROR ${(t.okShare * 100).toFixed(1)}%)`);
        }
      }
    }
    const rows = [];
    for (const { set, file } of sets) {
      const baseQps = median(runs[`dnsmasq|${set}`].map((t) => t.qps));
      const baseCpu = median(runs[`dnsmasq|${set}`].map((t) => t.perCpuSecond));
      for (const s of servers) {
        const ts = runs[`${s.name}|${set}`];
        const qpsSpread = spread(ts.map((t) => Math.round(t.qps)));
        const qps = qpsSpread.median;
        const perCpu = median(ts.map((t) => t.perCpuSecond));
        const unboundQps = median((runs[`${servers.find((x) => x.name.startsWith('unbound'))?.name}|${set}`] ?? []).map((t) => t.qps));
        const latencies = RATES.map((rate) => ({ rate, ...latency(s.port, file, rate) }));
        rows.push({
          set, server: s.name, qps: Math.round(qps), qpsMin: qpsSpread.min, qpsMax: qpsSpread.max, ratio: qps / baseQps,
          unboundRatio: unboundQps ? qps / unboundQps : null, perCpuSecond: Math.round(perCpu), cpuRatio: perCpu / baseCpu,
          lost: ts.reduce((a, t) => a + t.lost, 0),
          latency: latencies.map((l) => ({ rate: l.rate, offered: l.offered, p50us: l.p50us, p99us: l.p99us, p999us: l.p999us, maxUs: l.maxUs, samples: l.samples, errors: l.errors, late: l.late })),
        });
      }
    }
    const result = { bench: 'dns', date: new Date().toISOString(), pinned: PIN, workers: WORKERS, cores: availableParallelism(), seconds: SECONDS, rounds: ROUNDS, names: NAMES, clients: CLIENTS, latencyRates: RATES, node: process.version, rows };
    const md = [
      `# bench/dns — ${result.date}`,
      '',
      `dnsperf (${CLIENTS} clients, 1 thread), ${NAMES} names per set, QPS = median of ${ROUNDS} interleaved ${SECONDS}s runs at saturation;`,
      `latency at fixed offered loads (${RATES.join(', ')} qps, ${LATENCY_SECONDS} s each) from bench/tools/dnsprobe.c (paced C client, ${CLIENTS} sockets, CLOCK_MONOTONIC per query; a cell is p50 / p99 µs, with ⚠ when the client sent > 1% of its queries over 1 ms late or > 0.1% went unanswered). On 127.0.0.1${PIN ? ', servers pinned to CPU 1 (dnsperf on CPU 0)' : ', unpinned (dnsperf shares the cores)'}; \`edgeway-dgram\` = main thread on Node's dgram (the path before batching), \`edgeway\` = main thread with UDP batched through the addon (recvmmsg/sendmmsg; the agent's default), ${WORKERS > 1 ? `\`edgeway-${WORKERS}w\` = ${WORKERS} batched worker threads on SO_REUSEPORT sockets (dns.workers: ${WORKERS}), unbound with ${WORKERS} threads, ` : ''}dnsmasq single-threaded (it has no threads); external names forwarded to the same upstream (dnsmasq) and cached. Shared 2-core box: noisy.`,
      '',
      'QPS/CPU-s = queries answered per CPU-second the server process used (utime+stime from /proc): what one dedicated core would sustain, and far less sensitive to other load on the box than raw QPS.',
      '',
      `| set | server | QPS (median) | min–max | × dnsmasq | × unbound | QPS/CPU-s | × dnsmasq | lost | ${RATES.map((r) => `p50/p99 µs @${r / 1000}k`).join(' | ')} |`,
      `|---|---|---:|---:|---:|---:|---:|---:|---:|${RATES.map(() => '---:').join('|')}|`,
      ...rows.map((r) => `| ${r.set} | ${r.server} | ${r.qps} | ${r.qpsMin}–${r.qpsMax} | ${r.ratio.toFixed(2)} | ${r.unboundRatio === null ? '–' : r.unboundRatio.toFixed(2)} | ${r.perCpuSecond} | ${r.cpuRatio.toFixed(2)} | ${r.lost} | ${r.latency.map((l) => `${l.p50us} / ${l.p99us}${l.late > l.samples / 100 || l.errors > l.samples / 1000 ? ' ⚠' : ''}`).join(' | ')} |`),
      '',
    ].join('\n');
    console.log('\n' + md);
    const out = join(here, 'results');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'dns.json'), JSON.stringify(result, null, 2) + '\n');
    writeFileSync(join(out, 'dns.md'), md);
    writeFileSync(join(out, 'dns.svg'), svg(rows));
  } finally {
    for (const p of procs.reverse()) await stopProc(p);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A bar chart of QPS per server, grouped by query set. */
function svg(rows) {
  const max = Math.max(...rows.map((r) => r.qps), 1);
  const barH = 18;
  const w = 640;
  let y = 30;
  const parts = [`<text x="10" y="18" font-size="14" font-family="sans-serif">DNS queries/s (dnsperf; median of the rounds)</text>`];
  for (const set of [...new Set(rows.map((r) => r.set))]) {
    parts.push(`<text x="10" y="${y + 12}" font-size="12" font-family="sans-serif" font-weight="bold">${set}</text>`);
    y += 18;
    for (const r of rows.filter((x) => x.set === set)) {
      const bw = Math.round((r.qps / max) * (w - 280));
      const color = r.server.startsWith('edgeway') ? '#2b7bb9' : r.server === 'dnsmasq' ? '#888' : '#c77c2b';
      parts.push(`<text x="20" y="${y + 13}" font-size="12" font-family="sans-serif">${r.server}</text>`);
      parts.push(`<rect x="110" y="${y}" width="${bw}" height="${barH - 4}" fill="${color}"/>`);
      parts.push(`<text x="${115 + bw}" y="${y + 13}" font-size="11" font-family="sans-serif">${r.qps} (${r.ratio.toFixed(2)}×; ${r.perCpuSecond}/CPU-s, ${r.cpuRatio.toFixed(2)}×)</text>`);
      y += barH;
    }
    y += 8;
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${y + 10}">${parts.join('')}</svg>\n`;
}

if (process.argv[2] === '--serve-edgeway') {
  await serveEdgeway(Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5] ?? 1), process.argv[6] !== 'dgram');
} else {
  await main();
}
