#!/usr/bin/env node
// bench/tunnel: the tunnel across two NATed LANs in network namespaces (same
// layout as test/helpers/topology.ts, rebuilt here with `ip`/`nft`), one run:
//   - bulk MB/s and connect time: raw TCP a1→b1 (router port forward) vs the
//     tunnel relayed vs the tunnel direct (socket → libp2p stream → socket);
//   - EdgeMesh #551: time to fetch a 4 MB HTTP body, raw vs through the tunnel;
//   - RSS of the peers idle, and before/after a 1 GiB relayed transfer.
// Needs root and `npm run build`. Writes bench/results/tunnel.{json,md}.
// Env: BULK_MB (default 256), GIB_MB (default 1024), REPS (default 3).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const BULK_MB = Number(process.env.BULK_MB ?? 256);
const GIB_MB = Number(process.env.GIB_MB ?? 1024);
const REPS = Number(process.env.REPS ?? 3);
const tag = randomBytes(2).toString('hex');
const NS = {}; const procs = []; const namespaces = [];
const sh = (cmd, args, input) => execFileSync(cmd, args, { input, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
const nsx = (ns, cmd, args, input) => sh('ip', ['netns', 'exec', ns, cmd, ...args], input);
let links = 0;
function ns(name) { const n = `ewtb${tag}${name}`; sh('ip', ['netns', 'add', n]); namespaces.push(n); nsx(n, 'ip', ['link', 'set', 'lo', 'up']); NS[name] = n; return n; }
function link(a, aAddr, b, bAddr) {
  const i = links++; const aIf = `vta${tag}${i}`; const bIf = `vtb${tag}${i}`;
  sh('ip', ['link', 'add', aIf, 'netns', a, 'type', 'veth', 'peer', 'name', bIf, 'netns', b]);
  for (const [n, f, ad] of [[a, aIf, aAddr], [b, bIf, bAddr]]) { if (ad) nsx(n, 'ip', ['addr', 'add', ad, 'dev', f]); nsx(n, 'ip', ['link', 'set', f, 'up']); }
  return aIf;
}
function cleanup() {
  for (const p of procs) { try { p.kill('SIGKILL'); } catch { /* gone */ } }
  for (const n of namespaces.reverse()) { try { sh('ip', ['netns', 'del', n]); } catch { /* gone */ } }
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

function topology() {
  for (const h of ['cl', 'ra', 'rb', 'rl', 'a1', 'b1']) ns(h);
  link(NS.cl, '10.200.0.1/24', NS.rl, '10.200.0.10/24');
  link(NS.cl, '10.200.1.1/24', NS.ra, '10.200.1.2/24');
  link(NS.cl, '10.200.2.1/24', NS.rb, '10.200.2.2/24');
  link(NS.ra, '10.1.0.1/24', NS.a1, '10.1.0.2/24');
  link(NS.rb, '10.2.0.1/24', NS.b1, '10.2.0.2/24');
  for (const [h, gw] of [['rl', '10.200.0.1'], ['ra', '10.200.1.1'], ['rb', '10.200.2.1'], ['a1', '10.1.0.1'], ['b1', '10.2.0.1']]) nsx(NS[h], 'ip', ['route', 'add', 'default', 'via', gw]);
  for (const [r, lan] of [['ra', '10.1.0.0/24'], ['rb', '10.2.0.0/24']]) {
    nsx(NS[r], 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    nsx(NS[r], 'nft', ['-f', '-'], `table ip bench {\n  chain post { type nat hook postrouting priority 100; policy accept; ip saddr ${lan} ip daddr != ${lan} masquerade; }\n  chain pre { type nat hook prerouting priority -100; policy accept; }\n}\n`);
  }
  nsx(NS.cl, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
}
const forward = (port) => nsx(NS.rb, 'nft', ['add', 'rule', 'ip', 'bench', 'pre', 'ip', 'daddr', '10.200.2.2', 'tcp', 'dport', String(port), 'dnat', 'to', `10.2.0.2:${port}`]);

function start(nsName, args, waitRe) {
  const p = spawn('ip', ['netns', 'exec', nsName, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: root });
  procs.push(p);
  let err = '';
  p.stderr.on('data', (d) => { err = (err + d).slice(-4000); });
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`timeout starting ${args.join(' ')}: ${err}`)), 30_000);
    p.stdout.on('data', (d) => { buf += d; const m = buf.match(waitRe); if (m) { clearTimeout(t); resolve({ p, line: m[0] }); } });
    p.on('exit', (c) => { clearTimeout(t); reject(new Error(`${args.join(' ')} exited ${c}: ${err}`)); });
  });
}
const rssMiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };

// Backends on b1: a sink (counts bytes, answers the count on end) and an HTTP 4 MB body.
const BACKEND = `
const net = require('net'), http = require('http');
net.createServer({ allowHalfOpen: true }, (s) => { let n = 0; s.on('data', (d) => { n += d.length; }); s.on('end', () => s.end(n + '\\n')); s.on('error', () => {}); }).listen(9000);
const body = Buffer.alloc(4 * 1024 * 1024, 120);
http.createServer((q, r) => { r.writeHead(200, { 'content-length': body.length }); r.end(body); }).listen(9001, () => console.log('backends up'));`;
// Client in a1: bulk send + connect times + 4 MB fetches; one JSON line.
const CLIENT = `
const net = require('net'), http = require('http');
const [host, port, mb, httpPort] = process.argv.slice(1);
const bulk = () => new Promise((res, rej) => {
  const t0 = process.hrtime.bigint(); const s = net.connect({ host, port: +port });
  const chunk = Buffer.alloc(256 * 1024, 1); let left = +mb * 4; let reply = '';
  s.on('error', rej); s.on('data', (d) => { reply += d; });
  s.on('end', () => { const ms = Number(process.hrtime.bigint() - t0) / 1e6; if (+reply !== +mb * 1048576) rej(new Error('short: ' + reply)); else res(ms); });
  const pump = () => { while (left > 0) { left--; if (!s.write(chunk)) return s.once('drain', pump); } s.end(); };
  s.on('connect', pump);
});
const connect = () => new Promise((res, rej) => { const t0 = process.hrtime.bigint(); const s = net.connect({ host, port: +port }, () => { s.end(); }); s.on('data', () => {}); s.on('close', () => res(Number(process.hrtime.bigint() - t0) / 1e6)); s.on('error', rej); });
const fetch4 = () => new Promise((res, rej) => { const t0 = process.hrtime.bigint(); http.get({ host, port: +httpPort, agent: false }, (r) => { let n = 0; r.on('data', (d) => { n += d.length; }); r.on('end', () => n === 4194304 ? res(Number(process.hrtime.bigint() - t0) / 1e6) : rej(new Error('short body'))); }).on('error', rej); });
(async () => {
  const conn = []; for (let i = 0; i < 20; i++) conn.push(await connect());
  const f = []; for (let i = 0; i < 5; i++) f.push(await fetch4());
  const ms = +mb > 0 ? await bulk() : 0;
  const med = (a) => a.sort((x, y) => x - y)[a.length >> 1];
  console.log(JSON.stringify({ mbps: +mb > 0 ? +mb / (ms / 1000) : 0, connectMs: med(conn), fetch4Ms: med(f) }));
})().catch((e) => { console.log(JSON.stringify({ error: String(e) })); });`;
function client(host, port, httpPort, mb, label) {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', NS.a1, process.execPath, '-e', CLIENT, host, String(port), String(mb), String(httpPort)], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(p);
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    const t = setTimeout(() => p.kill('SIGKILL'), 600_000);
    p.on('exit', () => {
      clearTimeout(t);
      let r;
      try { r = JSON.parse(out.trim().split('\n').pop()); } catch { r = { error: `client failed: ${out.slice(-200)}` }; }
      console.error(`  ${label}: ${JSON.stringify(r)} (${Date.now() - t0} ms)`);
      resolve(r);
    });
  });
}

async function main() {
  if (process.getuid?.() !== 0) { console.log('bench/tunnel needs root (network namespaces); skipped'); return; }
  topology();
  console.error('topology up');
  const dir = mkdtempSync(join(tmpdir(), 'ew-bench-tunnel-'));
  mkdirSync(join(dir, 'x'), { recursive: true });
  const catalog = `apiVersion: v1\nkind: Node\nmetadata: { name: a1 }\nstatus: { addresses: [{ type: InternalIP, address: 10.1.0.2 }] }\n---\napiVersion: v1\nkind: Node\nmetadata: { name: b1 }\nstatus: { addresses: [{ type: InternalIP, address: 10.2.0.2 }, { type: ExternalIP, address: 10.200.2.2 }] }\n` +
    /** @type {[string, number][]} */ ([['sink', 9000], ['web', 9001]]).map(([n, p]) => `---\napiVersion: v1\nkind: Service\nmetadata: { name: ${n}, namespace: default }\nspec: { clusterIP: 10.96.0.${p - 8990}, ports: [{ name: p, port: 80, targetPort: ${p}, protocol: TCP }] }\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: { name: ${n}-1, namespace: default, labels: { kubernetes.io/service-name: ${n} } }\naddressType: IPv4\nports: [{ name: p, port: ${p}, protocol: TCP }]\nendpoints: [{ addresses: [10.2.0.2], nodeName: b1, conditions: { ready: true } }]\n`).join('');
  writeFileSync(join(dir, 'catalog.yaml'), catalog);
  const cfg = (name) => { const f = join(dir, `${name}.json`); writeFileSync(f, JSON.stringify({ nodeName: name, stateDir: join(dir, name), log: { level: 'warn' }, metrics: { listen: '' }, sources: { kubernetes: { enabled: false }, static: { paths: [join(dir, 'catalog.yaml')] } }, dataplane: { mode: 'none' }, dns: { enabled: false }, tunnel: { listenPort: 20006, ...(name === 'relay' ? {} : { relayNodes: [{ nodeName: 'relay', advertiseAddress: ['10.200.0.10:20006'] }] }) } })); return f; };
  const state = (h) => { try { return JSON.parse(readFileSync(join(dir, h, 'tunnel-state.json'), 'utf8')); } catch { return undefined; } };
  const waitFor = async (pred, what, ms = 60_000) => { const end = Date.now() + ms; while (Date.now() < end) { if (pred()) return; await new Promise((r) => setTimeout(r, 200)); } throw new Error(`timeout: ${what}`); };
  const path = () => state('a1')?.peers.find((p) => p.nodeName === 'b1')?.paths.join('+') ?? 'none';

  const relay = await start(NS.rl, ['bin/edgeway.js', 'relay', '--config', cfg('relay')], /relay \S+/);
  await start(NS.b1, ['-e', BACKEND], /backends up/);
  const b1 = await start(NS.b1, ['test/tunnel/fixtures/tunnel-node.mjs', '--config', cfg('b1')], /ready \S+/);
  const a1 = await start(NS.a1, ['test/tunnel/fixtures/tunnel-node.mjs', '--config', cfg('a1'), '--route', '15000=default/sink:80/TCP', '--route', '15001=default/web:80/TCP'], /ready \S+/);
  await waitFor(() => state('a1')?.relays[0]?.reserved && state('b1')?.relays[0]?.reserved, 'reservations');
  console.error('peers up, reservations held');
  await new Promise((r) => setTimeout(r, 2000));
  const rss = { idle: { a1: rssMiB(a1.p.pid), b1: rssMiB(b1.p.pid), relay: rssMiB(relay.p.pid) } };
  forward(9000); forward(9001); // raw path a1 → b1 through the routers (the baseline)

  const rows = { raw: [], relayed: [], direct: [] };
  // Phase 1: b1's tunnel port is not forwarded: the tunnel is relayed.
  for (let i = 0; i < REPS; i++) {
    rows.raw.push(await client('10.200.2.2', 9000, 9001, BULK_MB, 'raw'));
    rows.relayed.push(await client('127.0.0.1', 15000, 15001, BULK_MB, 'relayed'));
  }
  const phase1Path = path();
  // 1 GiB relayed: RSS before/after (the pipe() fix keeps the relay flat).
  const before = { a1: rssMiB(a1.p.pid), b1: rssMiB(b1.p.pid), relay: rssMiB(relay.p.pid) };
  let peak = { ...before };
  const sampler = setInterval(() => { for (const [k, p] of [['a1', a1.p], ['b1', b1.p], ['relay', relay.p]]) peak[k] = Math.max(peak[k], rssMiB(p.pid)); }, 250);
  const gib = await client('127.0.0.1', 15000, 15001, GIB_MB, `${GIB_MB} MiB relayed`);
  clearInterval(sampler);
  await new Promise((r) => setTimeout(r, 3000));
  const after = { a1: rssMiB(a1.p.pid), b1: rssMiB(b1.p.pid), relay: rssMiB(relay.p.pid) };
  rss.gib = { mb: GIB_MB, mbps: gib.mbps, before, peak, after };
  // Phase 2: forward the tunnel port; the agents upgrade to direct.
  forward(20006);
  await waitFor(() => path() === 'direct', 'direct upgrade', 90_000);
  console.error('upgraded to direct');
  for (let i = 0; i < REPS; i++) {
    rows.raw.push(await client('10.200.2.2', 9000, 9001, BULK_MB, 'raw'));
    rows.direct.push(await client('127.0.0.1', 15000, 15001, BULK_MB, 'direct'));
  }
  const summary = Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, { mbps: median(v.map((r) => r.mbps)), connectMs: median(v.map((r) => r.connectMs)), fetch4Ms: median(v.map((r) => r.fetch4Ms)), errors: v.filter((r) => r.error).map((r) => r.error) }]));
  const base = summary.raw;
  const result = { date: new Date().toISOString(), bulkMB: BULK_MB, reps: REPS, phase1Path, summary, ratios: { directBulk: summary.direct.mbps / base.mbps, relayedBulk: summary.relayed.mbps / base.mbps, fetch4DirectVsRaw: summary.direct.fetch4Ms / base.fetch4Ms, fetch4RelayedVsRaw: summary.relayed.fetch4Ms / base.fetch4Ms }, rss, load: readFileSync('/proc/loadavg', 'utf8').trim() };
  const f = (x, d = 1) => (x ?? NaN).toFixed(d);
  const md = [
    `# bench/tunnel (${result.date}; load ${result.load}; noisy shared 2-core box)`, '',
    `| path | bulk MB/s | × raw | connect ms (p50) | 4 MB fetch ms (p50) | × raw |`, '|---|---|---|---|---|---|',
    ...['raw', 'direct', 'relayed'].map((k) => `| ${k === 'raw' ? 'raw TCP a1→b1 (port forward)' : `tunnel ${k}`} | ${f(summary[k].mbps)} | ${f(summary[k].mbps / base.mbps, 2)} | ${f(summary[k].connectMs, 2)} | ${f(summary[k].fetch4Ms)} | ${f(summary[k].fetch4Ms / base.fetch4Ms, 2)} |`),
    '', `Relayed phase path: ${phase1Path}. Bulk = ${BULK_MB} MiB per run, median of ${REPS}.`, '',
    `| RSS MiB | a1 | b1 | relay |`, '|---|---|---|---|',
    `| idle | ${f(rss.idle.a1)} | ${f(rss.idle.b1)} | ${f(rss.idle.relay)} |`,
    `| before ${GIB_MB} MiB relayed | ${f(before.a1)} | ${f(before.b1)} | ${f(before.relay)} |`,
    `| peak during | ${f(peak.a1)} | ${f(peak.b1)} | ${f(peak.relay)} |`,
    `| 3 s after | ${f(after.a1)} | ${f(after.b1)} | ${f(after.relay)} |`,
    '', `${GIB_MB} MiB relayed at ${f(gib.mbps)} MB/s.`,
  ].join('\n');
  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  writeFileSync(join(root, 'bench', 'results', 'tunnel.json'), JSON.stringify(result, null, 2));
  writeFileSync(join(root, 'bench', 'results', 'tunnel.md'), `${md}\n`);
  console.log(md);
  rmSync(dir, { recursive: true, force: true });
}

main().then(() => { cleanup(); process.exit(0); }, (err) => { console.error(err); cleanup(); process.exit(1); });
