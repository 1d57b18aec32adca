#!/usr/bin/env node
// Socket-LB control-plane cost per BpfBackend: time to apply N services (two
// endpoints each, one v4 ClusterIP) through bpftool (baseline) and the native
// addon (libbpf), measured in the same run. Phases per backend and N:
//   fresh    start() + first apply (every map entry written, then attach)
//   noop     apply of the same plan (shadow equal: zero writes)
//   churn    10 % of the services change one endpoint (new backend + slot, stale backend removed)
//   restart  a new instance: start() (restored from pins, maps dumped) + apply (zero writes)
//   cleanup  detach and unpin
// Needs root. Only an empty sub-cgroup this script creates gets the programs
// (no process ever joins it) and the bpffs is a private mount under /tmp.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const { SocketLb } = await import(`${root}dist/dataplane/ebpf/socket-lb.js`);
const { BpftoolBackend } = await import(`${root}dist/dataplane/ebpf/backend.js`);
const { LibbpfBackend, nativeBpf } = await import(`${root}dist/dataplane/ebpf/libbpf-backend.js`);
const { findCgroup2Root } = await import(`${root}dist/dataplane/ebpf/host.js`);

const SIZES = (process.env.BENCH_SIZES ?? '1000,10000').split(',').map(Number);
const REPEAT = Number(process.env.BENCH_REPEAT ?? 3);
const tag = randomBytes(3).toString('hex');
const cg2 = findCgroup2Root();
if (process.getuid?.() !== 0 || !cg2) { console.error('bench/ebpf-apply needs root and cgroup v2'); process.exit(1); }
const native = nativeBpf();
if (!native) { console.error('bench/ebpf-apply: the native addon (with bpf functions) is not loaded; run scripts/build-native.sh'); process.exit(1); }
const cgroup = join(cg2, `edgeway-bench-${tag}`);
const bpffsRoot = `/tmp/ew${tag}applybpf`;

function plan(n, variant = 0) {
  const servicePorts = [];
  for (let i = 0; i < n; i++) {
    const vip = `10.96.${i >> 8}.${i & 255}`;
    // variant k: every 10th service (offset by k) gets a different second endpoint.
    const second = variant && i % 10 === 0 ? 20000 + variant : 9001;
    servicePorts.push({
      id: `default/s${i}:80/TCP`, serviceKey: `default/s${i}`, namespace: 'default', name: `s${i}`, portName: '', protocol: 'TCP', port: 80,
      clusterIPs: [vip],
      endpoints: [9000, second].map((port) => ({ ip: `10.2.${i >> 8}.${(i & 255) || 1}`, family: 4, port, class: 'local', ready: true })),
      policy: { kind: 'random' }, target: 'kernel',
    });
  }
  servicePorts.sort((a, b) => a.id.localeCompare(b.id));
  return { nodeName: 'bench', revision: 1, servicePorts, userspacePortExhausted: [] };
}

const ms = async (fn) => { const t = process.hrtime.bigint(); const r = await fn(); return [Number(process.hrtime.bigint() - t) / 1e6, r]; };
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Time spent inside the backend's map transactions (the part a backend changes). */
function timed(backend, acc) {
  return new Proxy(backend, {
    get(target, prop) {
      const v = Reflect.get(target, prop);
      if (prop !== 'mapOps' || typeof v !== 'function') return typeof v === 'function' ? v.bind(target) : v;
      return async (ops) => { const t = process.hrtime.bigint(); try { return await v.call(target, ops); } finally { acc.ms += Number(process.hrtime.bigint() - t) / 1e6; } };
    },
  });
}

async function runOnce(name, make, n, round) {
  const pinDir = join(bpffsRoot, `${name}${n}r${round}`);
  const acc = { ms: 0 };
  const opts = { bpffsRoot, pinDir, cgroup, backend: timed(make(), acc) };
  const lb = new SocketLb(opts);
  try {
    const p = plan(n);
    const [fresh, ops] = await ms(async () => { await lb.start(); return lb.apply(p); });
    const writeMs = acc.ms;
    const [noop, noopOps] = await ms(() => lb.apply(p));
    const [churn, churnOps] = await ms(() => lb.apply(plan(n, 1)));
    const again = new SocketLb({ ...opts, backend: make() });
    const [restart, restartOps] = await ms(async () => { const mode = await again.start(); if (mode !== 'restored') throw new Error(`restart: ${mode}`); return again.apply(plan(n, 1)); });
    if (noopOps !== 0 || restartOps !== 0) throw new Error(`expected zero writes, got noop ${noopOps} restart ${restartOps}`);
    const [cleanup] = await ms(() => again.cleanup());
    return { fresh, writeMs, noop, churn, restart, cleanup, ops, churnOps };
  } finally {
    await lb.cleanup().catch(() => undefined);
  }
}

/** @type {[string, () => import('../dist/dataplane/ebpf/backend.js').BpfBackend][]} */
const backends = [
  ['bpftool', () => new BpftoolBackend()],
  ['libbpf', () => new LibbpfBackend(native)],
];
const rows = [];
try {
  mkdirSync(cgroup);
  for (const n of SIZES) {
    const samples = Object.fromEntries(backends.map(([b]) => [b, []]));
    // Interleaved rounds so load drifting on the shared box hits both backends.
    for (let r = 0; r < REPEAT; r++) {
      for (const [b, make] of backends) {
        const s = await runOnce(b.replace(/\W/g, ''), make, n, r);
        samples[b].push(s);
        process.stderr.write(`n=${n} round ${r + 1} ${b}: fresh ${s.fresh.toFixed(0)} ms (${s.ops} ops written in ${s.writeMs.toFixed(0)} ms), noop ${s.noop.toFixed(1)} ms, churn ${s.churn.toFixed(0)} ms (${s.churnOps} ops), restart ${s.restart.toFixed(0)} ms, cleanup ${s.cleanup.toFixed(0)} ms\n`);
      }
    }
    for (const [b] of backends) {
      const pick = (k) => +median(samples[b].map((s) => s[k])).toFixed(1);
      rows.push({ services: n, backend: b, ops: samples[b][0].ops, churnOps: samples[b][0].churnOps, freshMs: pick('fresh'), writeMs: pick('writeMs'), noopMs: pick('noop'), churnMs: pick('churn'), restartMs: pick('restart'), cleanupMs: pick('cleanup') });
    }
  }
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  for (let i = 0; i < 20 && existsSync(cgroup); i++) { try { rmdirSync(cgroup); } catch { await new Promise((r) => setTimeout(r, 100)); } }
  if (existsSync(bpffsRoot)) { spawnSync('umount', [bpffsRoot]); try { rmdirSync(bpffsRoot); } catch { /* not mounted */ } }
}

if (rows.length) {
  const base = (r, k) => rows.find((x) => x.services === r.services && x.backend === 'bpftool')[k];
  const ratio = (r, k) => (base(r, k) / r[k]).toFixed(1);
  const md = [
    '# bench/ebpf-apply — socket-LB apply time per BpfBackend',
    '',
    `Median of ${REPEAT} interleaved rounds; services with one v4 ClusterIP and two endpoints each. fresh = start() + first apply (load, pin, write, attach), of which write = the map transaction inside the backend; noop = same plan again; churn = 10 % of services swap one endpoint; restart = new instance start() (restored, maps dumped) + apply; speed-up = bpftool time / this backend's time. Shared 2-core box: noisy.`,
    '',
    '| services | backend | map ops | fresh ms | speed-up | write ms | speed-up | noop ms | churn ops | churn ms | speed-up | restart ms | speed-up | cleanup ms |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.services} | ${r.backend} | ${r.ops} | ${r.freshMs} | ${ratio(r, 'freshMs')}× | ${r.writeMs} | ${ratio(r, 'writeMs')}× | ${r.noopMs} | ${r.churnOps} | ${r.churnMs} | ${ratio(r, 'churnMs')}× | ${r.restartMs} | ${ratio(r, 'restartMs')}× | ${r.cleanupMs} |`),
  ].join('\n');
  console.log(md);
  mkdirSync(join(root, 'bench/results'), { recursive: true });
  writeFileSync(join(root, 'bench/results/ebpf-apply.json'), JSON.stringify({ date: new Date().toISOString(), repeat: REPEAT, rows }, null, 2) + '\n');
  writeFileSync(join(root, 'bench/results/ebpf-apply.md'), md + '\n');
}
