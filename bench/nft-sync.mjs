#!/usr/bin/env node
// Control-plane cost of the nftables data plane vs kube-proxy-style iptables, in one
// run, inside a throwaway network namespace (nothing touches the host's tables):
//  - full apply of N services × 2 endpoints (N = 1k, 10k, 50k) through the agent's
//    compiler + executor (text declarations + one JSON transaction), both ways:
//    in-process (libnftables through edgeway_nft.node, what the agent uses when
//    the addon loads) and the `nft -j -f` CLI (its fallback); min/median/max of 3;
//  - one endpoint change at each N (the incremental diff the sync loop sends), both
//    ways, min/median/max of 5;
//  - where a full apply's time goes: `nft -c` of the same transaction (nft's parse
//    and evaluation, and the kernel's validation of the batch, which is then
//    aborted: no commit) vs the whole apply;
//  - the static source end to end at each N: one edited endpoint in an N-service
//    YAML file → re-read, catalog snapshot, plan, incremental transaction, applied
//    in-process (min / median / max of 5), stage by stage;
//  - the drift check (`nft -j list table`) at each N;
//  - the same sizes as kube-proxy iptables chains (KUBE-SERVICES → KUBE-SVC-* →
//    KUBE-SEP-*) through iptables-restore (nf_tables backend) and
//    iptables-legacy-restore; one change = kube-proxy's partial restore
//    (--noflush, KUBE-SERVICES rewritten plus the changed service's chains).
// Usage: npm run bench nft-sync [-- --sizes 1000,10000] [--no-iptables] [--no-static]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { compile } from '../dist/dataplane/nftables/compile.js';
import { diffTransaction, fullTransaction } from '../dist/dataplane/nftables/transaction.js';
import { CliNftExecutor, nftChildEnv } from '../dist/dataplane/nftables/executor.js';
import { InProcessNftExecutor } from '../dist/dataplane/nftables/inprocess-executor.js';
import { loadNftAddon } from '../dist/dataplane/nftables/native-nft.js';
import { RulesetTracker } from '../dist/dataplane/nftables/incremental.js';
import { StaticSource } from '../dist/sources/static.js';
import { CatalogStore } from '../dist/catalog/store.js';
import { buildPlan } from '../dist/plan/build.js';
import { silentLogger } from '../dist/util/log.js';
import { Registry } from 'prom-client';
import { tmpdir } from 'node:os';
import { rmSync } from 'node:fs';

const argSizes = process.argv.indexOf('--sizes');
const SIZES = argSizes > 0 ? process.argv[argSizes + 1].split(',').map(Number) : [1000, 10000, 50000];
const ns = `ewbench${randomBytes(3).toString('hex')}`;
// Baseline runs are capped: iptables-nft partial restores take minutes at 50k.
const CAP_MS = 120_000;
class Capped extends Error {}
const inNs = (cmd, args, input, timeout = 0, env = undefined) => {
  const r = spawnSync('nsenter', [`--net=/run/netns/${ns}`, cmd, ...args], { input, maxBuffer: 1 << 30, timeout, killSignal: 'SIGKILL', ...(env ? { env } : {}) });
  if (/** @type {NodeJS.ErrnoException | undefined} */ (r.error)?.code === 'ETIMEDOUT' || r.signal === 'SIGKILL') throw new Capped(`${cmd} over ${timeout} ms`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.toString();
};
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const stats = (xs) => ({ min: Math.min(...xs), median: median(xs), max: Math.max(...xs) });
const noIptables = process.argv.includes('--no-iptables');
const noStatic = process.argv.includes('--no-static');

/** An N-service static file (Service + EndpointSlice per service); `edited` gets another first endpoint. */
function staticYaml(n, edited, ep) {
  const docs = ['apiVersion: v1\nkind: Node\nmetadata: { name: bench }\n'];
  for (let i = 0; i < n; i++) {
    docs.push(`apiVersion: v1\nkind: Service\nmetadata: { name: s${i}, namespace: bench }\nspec: { clusterIP: ${svcIp(i)}, ports: [{ name: p, port: 80, targetPort: 8080, protocol: TCP }] }\n`,
      `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: { name: s${i}-1, namespace: bench, labels: { kubernetes.io/service-name: s${i} } }\naddressType: IPv4\nports: [{ name: p, port: 8080, protocol: TCP }]\nendpoints: [{ addresses: [${i === edited ? ep : epIp(i, 0)}], nodeName: other }, { addresses: [${epIp(i, 1)}], nodeName: other }]\n`);
  }
  return docs.join('---\n');
}

/**
 * The static source end to end (what the agent does for one edit, minus its
 * timers): stat + read + parse (changed chunks only), catalog snapshot, plan,
 * the tracker's incremental transaction, applied in-process in the bench namespace.
 */
async function staticChange(n, ex) {
  const dir = join(tmpdir(), `edgeway-bench-static-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'services.yaml');
  try {
    writeFileSync(file, staticYaml(n));
    const store = new CatalogStore({ logger: silentLogger(), registry: new Registry(), coalesceMs: 0 });
    const src = new StaticSource(store.sink('static'), { paths: [file], pollMs: 3_600_000, filterMode: 'FilterIfLabelExists', logger: silentLogger() });
    /** @type {import('../dist/plan/build.js').PlanOptions} */
    const opts = { nodeName: 'bench', routableCIDRs: ['10.0.0.0/8'], userspacePorts: '30000-32767', mode: 'nftables' };
    let t = process.hrtime.bigint();
    await src.refresh(true);
    store.flush();
    const tracker = new RulesetTracker();
    tracker.reset(buildPlan(store.snapshot, opts));
    await ex.deleteTable();
    await ex.run(fullTransaction(tracker.ruleset()));
    const initialMs = ms(t);
    const stages = { read: [], snapshot: [], plan: [], diff: [], apply: [], total: [], commands: [] };
    for (let k = 0; k < 5; k++) {
      writeFileSync(file, staticYaml(n, Math.floor(n / 2), `10.250.0.${k + 1}`));
      const t0 = process.hrtime.bigint();
      t = t0;
      await src.refresh(true);
      stages.read.push(ms(t)); t = process.hrtime.bigint();
      store.flush();
      stages.snapshot.push(ms(t)); t = process.hrtime.bigint();
      const p = buildPlan(store.snapshot, opts);
      stages.plan.push(ms(t)); t = process.hrtime.bigint();
      const tx = tracker.advance(p);
      stages.diff.push(ms(t)); t = process.hrtime.bigint();
      await ex.run(tx);
      stages.apply.push(ms(t));
      stages.total.push(ms(t0));
      stages.commands.push(tx.commands.length);
    }
    await ex.deleteTable();
    await store.close();
    const st = stages;
    return { initialMs, total: stats(st.total), read: stats(st.read), snapshot: stats(st.snapshot), plan: stats(st.plan), diff: stats(st.diff), apply: stats(st.apply), commands: stats(st.commands) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const svcIp = (i) => `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
const epIp = (i, j) => `10.${128 + j * 8 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
/** @returns {import('../dist/plan/types.js').Plan} */
function plan(n, revision, changed = false) {
  /** @type {any[]} */
  const servicePorts = [];
  for (let i = 0; i < n; i++) {
    const eps = [0, 1].map((j) => ({ ip: epIp(i, j), family: 4, port: 8080, class: 'routable', ready: true }));
    if (changed && i === Math.floor(n / 2)) eps[1] = { ...eps[1], ip: '10.250.0.1' };
    servicePorts.push({ id: `bench/s${i}:80/TCP`, serviceKey: `bench/s${i}`, namespace: 'bench', name: `s${i}`, portName: '', protocol: 'TCP', port: 80, clusterIPs: [svcIp(i)], endpoints: eps, policy: { kind: 'random' }, target: 'kernel' });
  }
  return { nodeName: 'bench', revision, servicePorts, userspacePortExhausted: [] };
}

const h = (s) => createHash('sha256').update(s).digest('hex').slice(0, 16).toUpperCase();
function iptablesRules(n, changed = false, only) {
  const lines = ['*nat', ':KUBE-SERVICES - [0:0]', ':KUBE-MARK-MASQ - [0:0]'];
  const rules = [];
  const idx = only === undefined ? [...Array(n).keys()] : [only];
  for (const i of idx) {
    const svc = `KUBE-SVC-${h(`s${i}`)}`;
    const eps = [epIp(i, 0), changed && i === only ? '10.250.0.1' : epIp(i, 1)];
    const seps = eps.map((e) => `KUBE-SEP-${h(`${i}-${e}`)}`);
    lines.push(`:${svc} - [0:0]`, ...seps.map((s) => `:${s} - [0:0]`));
    rules.push(`-A ${svc} -m statistic --mode random --probability 0.5 -j ${seps[0]}`, `-A ${svc} -j ${seps[1]}`);
    eps.forEach((e, j) => rules.push(`-A ${seps[j]} -s ${e}/32 -j KUBE-MARK-MASQ`, `-A ${seps[j]} -p tcp -m tcp -j DNAT --to-destination ${e}:8080`));
  }
  // KUBE-SERVICES is rewritten in full on every sync (kube-proxy does the same).
  for (let i = 0; i < n; i++) rules.push(`-A KUBE-SERVICES -d ${svcIp(i)}/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-${h(`s${i}`)}`);
  if (only === undefined) rules.push('-A OUTPUT -j KUBE-SERVICES', '-A PREROUTING -j KUBE-SERVICES', '-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000');
  return [...lines, ...rules, 'COMMIT', ''].join('\n');
}

function timeIptables(bin, n) {
  try {
    return timeIptablesOnce(bin, n);
  } catch (err) {
    if (!(err instanceof Capped)) throw err;
    console.error(`${bin} at ${n}: ${err.message}; recorded as null (> ${CAP_MS} ms)`);
    spawnSync('nsenter', [`--net=/run/netns/${ns}`, bin.replace('-restore', ''), '-t', 'nat', '-F']);
    spawnSync('nsenter', [`--net=/run/netns/${ns}`, bin.replace('-restore', ''), '-t', 'nat', '-X']);
    return { full: lastFull, one: null };
  }
}
let lastFull = null;
function timeIptablesOnce(bin, n) {
  lastFull = null;
  let t = process.hrtime.bigint();
  inNs(bin, [], iptablesRules(n), CAP_MS);
  const full = ms(t);
  lastFull = full;
  const one = [];
  // Partial restores rewrite KUBE-SERVICES in full: minutes at 50k with the nft
  // backend, so one sample above 10k.
  for (let k = 0; k < (n > 10_000 ? 1 : 3); k++) {
    t = process.hrtime.bigint();
    inNs(bin, ['--noflush'], iptablesRules(n, k % 2 === 0, Math.floor(n / 2)), CAP_MS);
    one.push(ms(t));
  }
  inNs(bin.replace('-restore', ''), ['-t', 'nat', '-F']);
  inNs(bin.replace('-restore', ''), ['-t', 'nat', '-X']);
  return { full, one: median(one) };
}

const results = [];
execFileSync('ip', ['netns', 'add', ns]);
try {
  // nsenter, not `ip netns exec` (which remounts /sys on every call: ~10-30 ms here).
  // Deep listings at 50k take many seconds on a loaded box: no 60 s kill.
  const cli = new CliNftExecutor({ prefix: ['nsenter', `--net=/run/netns/${ns}`], timeoutMs: 900_000 });
  // The CLI as it was before nft's malloc got huge pages (executor.ts hugePages).
  const cli4k = new CliNftExecutor({ prefix: ['nsenter', `--net=/run/netns/${ns}`], timeoutMs: 900_000, hugePages: false });
  // Purely in-process (the agent's executor sends transactions above
  // CLI_ABOVE_ELEMENTS through the CLI; here both ways are measured apart).
  const loaded = loadNftAddon();
  const inproc = 'addon' in loaded
    ? { kind: 'in-process', executor: new InProcessNftExecutor(new loaded.addon.NftContext(`/run/netns/${ns}`)) }
    : { kind: 'cli', executor: cli };
  if (!('addon' in loaded)) console.error(`in-process path unavailable (${loaded.reason}): its rows repeat the CLI`);
  /** Full applies (fresh table each), one-change diffs, resync and drift checks through one executor. */
  async function fullApplies(ex, a) {
    const full = [];
    for (let k = 0; k < 3; k++) {
      await ex.deleteTable();
      const t = process.hrtime.bigint();
      await ex.run(fullTransaction(a));
      full.push(ms(t));
    }
    return full;
  }
  async function measure(ex, a, b) {
    const full = await fullApplies(ex, a);
    const one = [];
    let prev = a;
    for (let k = 0; k < 5; k++) {
      const next = k % 2 === 0 ? b : a;
      const tx = diffTransaction(prev, next);
      const t = process.hrtime.bigint();
      await ex.run(tx);
      one.push(ms(t));
      prev = next;
    }
    let t = process.hrtime.bigint();
    await ex.inspect({ deep: true });
    const drift = ms(t);
    // A resync of a populated table (what the agent does at restart / after drift):
    // shallow listing of our chains, then the full transaction.
    t = process.hrtime.bigint();
    const summary = await ex.inspect({ deep: false });
    const driftShallow = ms(t);
    await ex.run(fullTransaction(prev, [...summary.chains.keys()]));
    const resync = ms(t);
    await ex.deleteTable();
    return { full: stats(full), one: stats(one), fullMs: median(full), resyncMs: resync, oneChangeMs: median(one), driftCheckDeepMs: drift, driftCheckShallowMs: driftShallow };
  }
  for (const n of SIZES) {
    const pa = plan(n, 1);
    const t0 = process.hrtime.bigint();
    const a = compile(pa);
    const compileMs = ms(t0);
    const b = compile(plan(n, 2, true));
    const inP = await measure(inproc.executor, a, b);
    const viaCli = await measure(cli, a, b);
    const cli4kFull = stats(await fullApplies(cli4k, a));
    await cli4k.deleteTable();
    // Where a full apply goes: nft's own parse + evaluation (`nft -c`: no commit)
    // vs the kernel commit (the rest). Declarations first (the check needs the maps).
    const tx = fullTransaction(a);
    await cli.run({ declare: tx.declare, commands: [] });
    const file = `/tmp/edgeway-bench-nft-${process.pid}.json`;
    writeFileSync(file, JSON.stringify({ nftables: tx.commands }));
    const check = [];
    for (let k = 0; k < 3; k++) {
      const t = process.hrtime.bigint();
      inNs('nft', ['-c', '-j', '-f', file], undefined, 0, nftChildEnv());
      check.push(ms(t));
    }
    spawnSync('rm', ['-f', file]);
    await cli.deleteTable();
    const nftBackend = noIptables ? { full: null, one: null } : timeIptables('iptables-nft-restore', n);
    const legacy = noIptables ? { full: null, one: null } : timeIptables('iptables-legacy-restore', n);
    const staticEdit = noStatic ? null : await staticChange(n, inproc.executor);
    const row = { services: n, endpoints: 2 * n, compileMs, nftPath: inproc.kind, nft: inP, nftCli: viaCli, nftCli4kFull: cli4kFull, nftCheckMs: stats(check), staticEdit, iptablesNft: nftBackend, iptablesLegacy: legacy };
    results.push(row);
    console.error(JSON.stringify(row));
  }
} finally {
  spawnSync('ip', ['netns', 'del', ns]);
}

const f = (x) => (x === null ? `>${CAP_MS / 1000} s` : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const mmm = (x) => `${f(x.min)} / ${f(x.median)} / ${f(x.max)}`;
const md = [
  '| services | full apply in-process ms (min / median / max) | full apply `nft` CLI ms | full apply CLI, 4 KiB pages (before) ms | one change in-process ms | one change `nft` CLI ms | `nft -c` of the full apply (nft + kernel validation, no commit) ms | compile ms | resync in-process / CLI ms | drift check deep / shallow ms | iptables-nft full / one change ms | iptables-legacy full / one change ms |',
  '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...results.map((r) => `| ${r.services} | ${mmm(r.nft.full)} | ${mmm(r.nftCli.full)} | ${mmm(r.nftCli4kFull)} | ${mmm(r.nft.one)} | ${mmm(r.nftCli.one)} | ${mmm(r.nftCheckMs)} | ${f(r.compileMs)} | ${f(r.nft.resyncMs)} / ${f(r.nftCli.resyncMs)} | ${f(r.nft.driftCheckDeepMs)} / ${f(r.nft.driftCheckShallowMs)} | ${noIptables ? 'not run' : `${f(r.iptablesNft.full)} / ${f(r.iptablesNft.one)}`} | ${noIptables ? 'not run' : `${f(r.iptablesLegacy.full)} / ${f(r.iptablesLegacy.one)}`} |`),
  '',
  ...(noStatic ? [] : [
    'Static source, one edited endpoint in an N-service file, end to end (in-process apply; ms, min / median / max of 5):',
    '',
    '| services | initial read + full apply | total | re-read (stat, read, changed chunks) | snapshot | plan | incremental diff | apply | commands sent |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...results.map((r) => `| ${r.services} | ${f(r.staticEdit.initialMs)} | ${mmm(r.staticEdit.total)} | ${mmm(r.staticEdit.read)} | ${mmm(r.staticEdit.snapshot)} | ${mmm(r.staticEdit.plan)} | ${mmm(r.staticEdit.diff)} | ${mmm(r.staticEdit.apply)} | ${r.staticEdit.commands.median} |`),
  ]),
].join('\n');
console.log(md);
const out = new URL('./results/', import.meta.url).pathname;
mkdirSync(out, { recursive: true });
const meta = { date: new Date().toISOString(), node: process.version, note: `one run on a shared 2-core machine (other suites running: noisy); 2 endpoints per service on other nodes (routable), random policy; full apply: 3 runs, one change: 5 runs (min / median / max); nft path of the agent: ${results[0]?.nftPath ?? '?'}`, loadavg: (await import('node:os')).loadavg() };
writeFileSync(`${out}nft-sync.json`, `${JSON.stringify({ ...meta, results }, null, 2)}\n`);
writeFileSync(`${out}nft-sync.md`, `# nft-sync (${meta.date})\n\n${meta.note}\n\n${md}\n`);
