#!/usr/bin/env node
// Control-plane cost of the nftables data plane vs kube-proxy-style iptables, in one
// run, inside a throwaway network namespace (nothing touches the host's tables):
//  - full apply of N services × 2 endpoints (N = 1k, 10k, 50k) through the agent's
//    compiler + executor (text declarations + one `nft -j -f` transaction);
//  - one endpoint change at each N (the incremental diff the sync loop sends);
//  - the drift check (`nft -j list table`) at each N;
//  - the same sizes as kube-proxy iptables chains (KUBE-SERVICES → KUBE-SVC-* →
//    KUBE-SEP-*) through iptables-restore (nf_tables backend) and
//    iptables-legacy-restore; one change = kube-proxy's partial restore
//    (--noflush, KUBE-SERVICES rewritten plus the changed service's chains).
// Median of 3 for the small operations. Usage: npm run bench nft-sync [-- --sizes 1000,10000]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { compile } from '../dist/dataplane/nftables/compile.js';
import { diffTransaction, fullTransaction } from '../dist/dataplane/nftables/transaction.js';
import { CliNftExecutor } from '../dist/dataplane/nftables/executor.js';

const argSizes = process.argv.indexOf('--sizes');
const SIZES = argSizes > 0 ? process.argv[argSizes + 1].split(',').map(Number) : [1000, 10000, 50000];
const ns = `ewbench${randomBytes(3).toString('hex')}`;
// Baseline runs are capped: iptables-nft partial restores take minutes at 50k.
const CAP_MS = 120_000;
class Capped extends Error {}
const inNs = (cmd, args, input, timeout = 0) => {
  const r = spawnSync('nsenter', [`--net=/run/netns/${ns}`, cmd, ...args], { input, maxBuffer: 1 << 30, timeout, killSignal: 'SIGKILL' });
  if (/** @type {NodeJS.ErrnoException | undefined} */ (r.error)?.code === 'ETIMEDOUT' || r.signal === 'SIGKILL') throw new Capped(`${cmd} over ${timeout} ms`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.toString();
};
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

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
  const ex = new CliNftExecutor({ prefix: ['nsenter', `--net=/run/netns/${ns}`] });
  for (const n of SIZES) {
    const a = compile(plan(n, 1));
    const b = compile(plan(n, 2, true));
    let t = process.hrtime.bigint();
    await ex.run(fullTransaction(a));
    const full = ms(t);
    const one = [];
    let prev = a;
    for (let k = 0; k < 3; k++) {
      const next = k % 2 === 0 ? b : a;
      const tx = diffTransaction(prev, next);
      t = process.hrtime.bigint();
      await ex.run(tx);
      one.push(ms(t));
      prev = next;
    }
    t = process.hrtime.bigint();
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
    const nftBackend = timeIptables('iptables-nft-restore', n);
    const legacy = timeIptables('iptables-legacy-restore', n);
    const row = { services: n, endpoints: 2 * n, nft: { fullMs: full, resyncMs: resync, oneChangeMs: median(one), driftCheckDeepMs: drift, driftCheckShallowMs: driftShallow }, iptablesNft: nftBackend, iptablesLegacy: legacy };
    results.push(row);
    console.error(JSON.stringify(row));
  }
} finally {
  spawnSync('ip', ['netns', 'del', ns]);
}

const f = (x) => (x === null ? `>${CAP_MS / 1000} s` : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const ratio = (a, b) => (b === null ? `<${(a / CAP_MS).toPrecision(2)}` : (a / b).toFixed(2));
const md = [
  '| services | nft full apply ms | nft resync ms | nft one change ms | drift check deep / shallow ms | iptables-nft full ms | iptables-nft one change ms | iptables-legacy full ms | iptables-legacy one change ms | full: nft vs iptables-nft | one change: nft vs iptables-nft |',
  '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...results.map((r) => `| ${r.services} | ${f(r.nft.fullMs)} | ${f(r.nft.resyncMs)} | ${f(r.nft.oneChangeMs)} | ${f(r.nft.driftCheckDeepMs)} / ${f(r.nft.driftCheckShallowMs)} | ${f(r.iptablesNft.full)} | ${f(r.iptablesNft.one)} | ${f(r.iptablesLegacy.full)} | ${f(r.iptablesLegacy.one)} | ${ratio(r.nft.fullMs, r.iptablesNft.full)}× | ${ratio(r.nft.oneChangeMs, r.iptablesNft.one)}× |`),
].join('\n');
console.log(md);
const out = new URL('./results/', import.meta.url).pathname;
mkdirSync(out, { recursive: true });
const meta = { date: new Date().toISOString(), node: process.version, note: 'one run on a shared 2-core machine (other suites running: noisy); 2 endpoints per service on other nodes (routable), random policy; one change = median of 3', loadavg: (await import('node:os')).loadavg() };
writeFileSync(`${out}nft-sync.json`, `${JSON.stringify({ ...meta, results }, null, 2)}\n`);
writeFileSync(`${out}nft-sync.md`, `# nft-sync (${meta.date})\n\n${meta.note}\n\n${md}\n`);
