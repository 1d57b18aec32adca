#!/usr/bin/env node
// bench/tunnel: the agent path across NATed LANs in network namespaces (layout of
// test/helpers/topology.ts, rebuilt here with `ip`/`nft`), PSK on, one run:
// a client in a1's namespace dials a ClusterIP → a1's nftables rules → a1's
// proxy → the data channel (EWC1 records; or libp2p) → b1's / a2's agent → backend. Raw TCP on
// the same path (a1 → a2 directly; a1 → b1 through a port forward on rb) is the
// baseline, interleaved in the same run, min/median/max of REPS runs:
//   - bulk MB/s: same-LAN (channel on a2's data listener), cross-LAN relayed
//     (channel through the relay's blind data port);
//   - EdgeMesh #551: time to fetch a 4 MB HTTP body;
//   - new-flow time (connect, FIN, reply, close) on an established peer path;
//   - agent and relay CPU seconds per GB, relay RSS over GIB_MB relayed.
// Phases: (1) rb's NAT symmetric, every agent with the addon (record pump on both
// ends): same-LAN and relayed; (2) rb a cone NAT again, a1 restarted: hole-punched;
// (3) a1 restarted without the addon (EWC1 in JS on a1): same-LAN and relayed.
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
  for (const h of ['cl', 'ra', 'rb', 'rl', 'a1', 'a2', 'b1']) ns(h);
  link(NS.cl, '10.200.0.1/24', NS.rl, '10.200.0.10/24');
  link(NS.cl, '10.200.1.1/24', NS.ra, '10.200.1.2/24');
  link(NS.cl, '10.200.2.1/24', NS.rb, '10.200.2.2/24');
  // LAN A is a bridge in ra (a1 and a2 on it), as in topology.ts.
  nsx(NS.ra, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
  nsx(NS.ra, 'ip', ['addr', 'add', '10.1.0.1/24', 'dev', 'br0']);
  nsx(NS.ra, 'ip', ['link', 'set', 'br0', 'up']);
  for (const [h, ip] of [['a1', '10.1.0.2/24'], ['a2', '10.1.0.3/24']]) {
    const inRa = link(NS.ra, undefined, NS[h], ip);
    nsx(NS.ra, 'ip', ['link', 'set', inRa, 'master', 'br0']);
  }
  link(NS.rb, '10.2.0.1/24', NS.b1, '10.2.0.2/24');
  for (const [h, gw] of [['rl', '10.200.0.1'], ['ra', '10.200.1.1'], ['rb', '10.200.2.1'], ['a1', '10.1.0.1'], ['a2', '10.1.0.1'], ['b1', '10.2.0.1']]) nsx(NS[h], 'ip', ['route', 'add', 'default', 'via', gw]);
  for (const [r, lan] of [['ra', '10.1.0.0/24'], ['rb', '10.2.0.0/24']]) {
    nsx(NS[r], 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    nsx(NS[r], 'nft', ['-f', '-'], `table ip bench {\n  chain post { type nat hook postrouting priority 100; policy accept; ip saddr ${lan} ip daddr != ${lan} masquerade; }\n  chain pre { type nat hook prerouting priority -100; policy accept; }\n}\n`);
  }
  // Stateful firewalls on the routers' WAN addresses (unsolicited SYNs dropped, not
  // answered with a RST), as home and cloud NAT gateways do: TCP hole punching needs it.
  for (const [r, wan] of [['ra', '10.200.1.2'], ['rb', '10.200.2.2']]) {
    nsx(NS[r], 'nft', ['-f', '-'], `table ip benchfw {\n  chain in { type filter hook input priority 0; policy accept; ip daddr ${wan} ct state new drop; }\n}\n`);
  }
  nsx(NS.cl, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
}
/** rb's masquerade: 'cone' keeps source ports where free; 'symmetric' picks random ones (no punch can work). */
const setRbNat = (mode) => nsx(NS.rb, 'nft', ['-f', '-'], `flush chain ip bench post\nadd rule ip bench post ip saddr 10.2.0.0/24 ip daddr != 10.2.0.0/24 masquerade${mode === 'symmetric' ? ' random' : ''}\n`);
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
const [host, port, mb, httpPort, httpHostArg] = process.argv.slice(1);
const httpHost = httpHostArg || host;
const bulk = () => new Promise((res, rej) => {
  const t0 = process.hrtime.bigint(); const s = net.connect({ host, port: +port });
  const chunk = Buffer.alloc(256 * 1024, 1); let left = +mb * 4; let reply = '';
  s.on('error', rej); s.on('data', (d) => { reply += d; });
  s.on('end', () => { const ms = Number(process.hrtime.bigint() - t0) / 1e6; if (+reply !== +mb * 1048576) rej(new Error('short: ' + reply)); else res(ms); });
  const pump = () => { while (left > 0) { left--; if (!s.write(chunk)) return s.once('drain', pump); } s.end(); };
  s.on('connect', pump);
});
const connect = () => new Promise((res, rej) => { const t0 = process.hrtime.bigint(); const s = net.connect({ host, port: +port }, () => { s.end(); }); s.on('data', () => {}); s.on('close', () => res(Number(process.hrtime.bigint() - t0) / 1e6)); s.on('error', rej); });
const fetch4 = () => new Promise((res, rej) => { const t0 = process.hrtime.bigint(); http.get({ host: httpHost, port: +httpPort, agent: false }, (r) => { let n = 0; r.on('data', (d) => { n += d.length; }); r.on('end', () => n === 4194304 ? res(Number(process.hrtime.bigint() - t0) / 1e6) : rej(new Error('short body'))); }).on('error', rej); });
(async () => {
  const conn = []; for (let i = 0; i < 20; i++) conn.push(await connect());
  const f = []; for (let i = 0; i < 5; i++) f.push(await fetch4());
  const ms = +mb > 0 ? await bulk() : 0;
  const med = (a) => a.sort((x, y) => x - y)[a.length >> 1];
  console.log(JSON.stringify({ mbps: +mb > 0 ? +mb / (ms / 1000) : 0, connectMs: med(conn), fetch4Ms: med(f) }));
})().catch((e) => { console.log(JSON.stringify({ error: String(e) })); });`;
function client(host, port, httpPort, mb, label, httpHost = '') {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', NS.a1, process.execPath, '-e', CLIENT, host, String(port), String(mb), String(httpPort), httpHost], { stdio: ['ignore', 'pipe', 'pipe'] });
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

/** CPU seconds (user + system) of a process so far. */
const cpuSec = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) / 100; };
const stats = (a) => ({ min: Math.min(...a), median: median(a), max: Math.max(...a) });

async function main() {
  if (process.getuid?.() !== 0) { console.log('bench/tunnel needs root (network namespaces); skipped'); return; }
  topology();
  console.error('topology up');
  const dir = mkdtempSync(join(tmpdir(), 'ew-bench-tunnel-'));
  writeFileSync(join(dir, 'swarm.key'), `/key/swarm/psk/1.0.0/\n/base16/\n${randomBytes(32).toString('hex')}\n`);
  // Services: sink/web on b1 (other LAN) and on a2 (same LAN).
  const svc = (n, ip, node, port, vip) => `---\napiVersion: v1\nkind: Service\nmetadata: { name: ${n}, namespace: default }\nspec: { clusterIP: ${vip}, ports: [{ name: p, port: 80, targetPort: ${port}, protocol: TCP }] }\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: { name: ${n}-1, namespace: default, labels: { kubernetes.io/service-name: ${n} } }\naddressType: IPv4\nports: [{ name: p, port: ${port}, protocol: TCP }]\nendpoints: [{ addresses: [${ip}], nodeName: ${node}, conditions: { ready: true } }]\n`;
  const node = (n, ip) => `---\napiVersion: v1\nkind: Node\nmetadata: { name: ${n} }\nstatus: { addresses: [{ type: InternalIP, address: ${ip} }] }\n`;
  writeFileSync(join(dir, 'catalog.yaml'), [node('a1', '10.1.0.2'), node('a2', '10.1.0.3'), node('b1', '10.2.0.2'),
    svc('sink-b1', '10.2.0.2', 'b1', 9000, '10.96.0.10'), svc('web-b1', '10.2.0.2', 'b1', 9001, '10.96.0.11'),
    svc('sink-a2', '10.1.0.3', 'a2', 9000, '10.96.0.20'), svc('web-a2', '10.1.0.3', 'a2', 9001, '10.96.0.21')].join(''));
  const cfg = (name) => {
    const f = join(dir, `${name}.json`);
    writeFileSync(f, JSON.stringify({
      nodeName: name, stateDir: join(dir, name), log: { level: 'warn' }, metrics: { listen: '' },
      sources: { kubernetes: { enabled: false }, static: { paths: [join(dir, 'catalog.yaml')] } },
      dataplane: { mode: name === 'relay' ? 'none' : 'nftables' }, dns: { enabled: false },
      tunnel: { listenPort: 20006, psk: { path: join(dir, 'swarm.key') }, ...(name === 'relay' ? {} : { relayNodes: [{ nodeName: 'relay', advertiseAddress: ['10.200.0.10:20006'] }] }) },
    }));
    return f;
  };
  const state = (h) => { try { return JSON.parse(readFileSync(join(dir, h, 'tunnel-state.json'), 'utf8')); } catch { return undefined; } };
  const waitFor = async (pred, what, ms = 60_000) => { const end = Date.now() + ms; while (Date.now() < end) { if (pred()) return; await new Promise((r) => setTimeout(r, 200)); } throw new Error(`timeout: ${what}`); };
  const channel = (to) => state('a1')?.channels?.find((c) => c.nodeName === to)?.path ?? 'none';

  const relay = await start(NS.rl, ['bin/edgeway.js', 'relay', '--config', cfg('relay')], /relay \S+/);
  await start(NS.b1, ['-e', BACKEND], /backends up/);
  await start(NS.a2, ['-e', BACKEND], /backends up/);
  const agents = {};
  const startAgent = (h, env = {}) => {
    rmSync(join(dir, h, 'tunnel-state.json'), { force: true });
    const p = spawn('ip', ['netns', 'exec', NS[h], process.execPath, 'bin/edgeway.js', 'agent', '--config', cfg(h)], { stdio: ['ignore', 'ignore', 'pipe'], cwd: root, env: { ...process.env, ...env } });
    procs.push(p);
    p.stderr.on('data', () => undefined);
    agents[h] = p;
  };
  // Phase 1: rb's NAT made symmetric (random source ports), so no hole punch can
  // work and the channel to b1 stays relayed; every agent has the addon (record pump).
  setRbNat('symmetric');
  for (const h of ['b1', 'a2', 'a1']) startAgent(h);
  await waitFor(() => state('a1')?.relays[0]?.reserved && state('b1')?.relays[0]?.reserved, 'reservations');
  console.error('agents up, reservations held');
  await new Promise((r) => setTimeout(r, 2000));
  const rss = { idle: { a1: rssMiB(agents.a1.pid), b1: rssMiB(agents.b1.pid), relay: rssMiB(relay.p.pid) } };
  forward(9000); forward(9001); // raw path a1 → b1 through the routers (the cross-LAN baseline)

  // Warm-up: the first flow to each peer sets the channel up (not measured).
  await client('10.96.0.10', 80, 80, 0, 'warm-up b1', '10.96.0.11');
  await client('10.96.0.20', 80, 80, 0, 'warm-up a2', '10.96.0.21');
  await waitFor(() => channel('b1') !== 'none' && channel('a2') !== 'none', 'channels up', 30_000);
  const paths = { b1: channel('b1'), a2: channel('a2') };
  console.error(`channel paths: ${JSON.stringify(paths)}`);
  const rows = { rawLan: [], lan: [], rawWan: [], relayed: [] };
  for (let i = 0; i < REPS; i++) {
    rows.rawLan.push(await client('10.1.0.3', 9000, 9001, BULK_MB, 'raw same-LAN'));
    rows.lan.push(await client('10.96.0.20', 80, 80, BULK_MB, `mesh same-LAN (${paths.a2})`, '10.96.0.21'));
    rows.rawWan.push(await client('10.200.2.2', 9000, 9001, BULK_MB, 'raw cross-LAN (port forward)'));
    rows.relayed.push(await client('10.96.0.10', 80, 80, BULK_MB, `mesh cross-LAN (${paths.b1})`, '10.96.0.11'));
  }
  // GIB_MB relayed: relay RSS before/peak/after, CPU per GB of each process.
  const pids = { a1: agents.a1.pid, b1: agents.b1.pid, relay: relay.p.pid };
  const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, rssMiB(p)]));
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSec(p)]));
  const peak = { ...before };
  const sampler = setInterval(() => { for (const [k, p] of Object.entries(pids)) peak[k] = Math.max(peak[k], rssMiB(p)); }, 250);
  const gib = await client('10.96.0.10', 80, 80, GIB_MB, `${GIB_MB} MiB relayed`, '10.96.0.11');
  clearInterval(sampler);
  const cpuPerGB = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, (cpuSec(p) - cpu0[k]) / (GIB_MB / 1024)]));
  await new Promise((r) => setTimeout(r, 3000));
  const after = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, rssMiB(p)]));
  rss.gib = { mb: GIB_MB, mbps: gib.mbps, before, peak, after };

  const restartA1 = async (env, why) => {
    const exited = new Promise((r) => agents.a1.once('exit', (code) => r(code)));
    agents.a1.kill('SIGTERM');
    const code = await exited;
    startAgent('a1', env);
    await waitFor(() => state('a1')?.relays[0]?.reserved, `a1 reservation (${why})`);
    return code;
  };
  // Phase 2: rb's NAT back to a cone (ports kept), a1 restarted: its channel to b1
  // is hole-punched through both NATs.
  setRbNat('cone');
  const a1Exit = await restartA1({}, 'punch');
  rows.punched = [];
  await client('10.96.0.10', 80, 80, 0, 'warm-up b1 (punch)', '10.96.0.11');
  await waitFor(() => channel('b1') === 'punched', 'punched channel', 60_000).catch(() => undefined);
  paths.punched = channel('b1');
  console.error(`channel to b1 after restart: ${paths.punched}`);
  for (let i = 0; i < REPS; i++) {
    rows.rawWan.push(await client('10.200.2.2', 9000, 9001, BULK_MB, 'raw cross-LAN (port forward)'));
    rows.punched.push(await client('10.96.0.10', 80, 80, BULK_MB, `mesh cross-LAN (${paths.punched})`, '10.96.0.11'));
  }
  // Phase 3: a1 without the addon (EWC1 in JS on a1; it cannot hole-punch, so b1 is relayed).
  const a1ExitJs = await restartA1({ EDGEWAY_NATIVE: 'off' }, 'no addon');
  rows.lanJs = []; rows.relayedJs = [];
  await client('10.96.0.10', 80, 80, 0, 'warm-up b1 (a1 without the addon)', '10.96.0.11');
  await client('10.96.0.20', 80, 80, 0, 'warm-up a2 (a1 without the addon)', '10.96.0.21');
  await waitFor(() => channel('b1') !== 'none' && channel('a2') !== 'none', 'channels up (a1 without the addon)', 30_000).catch(() => undefined);
  paths.b1Js = channel('b1'); paths.a2Js = channel('a2');
  for (let i = 0; i < REPS; i++) {
    rows.rawLan.push(await client('10.1.0.3', 9000, 9001, BULK_MB, 'raw same-LAN'));
    rows.lanJs.push(await client('10.96.0.20', 80, 80, BULK_MB, `mesh same-LAN, a1 in JS (${paths.a2Js})`, '10.96.0.21'));
    rows.rawWan.push(await client('10.200.2.2', 9000, 9001, BULK_MB, 'raw cross-LAN (port forward)'));
    rows.relayedJs.push(await client('10.96.0.10', 80, 80, BULK_MB, `mesh cross-LAN, a1 in JS (${paths.b1Js})`, '10.96.0.11'));
  }

  const summary = Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, {
    mbps: stats(v.map((r) => r.mbps ?? NaN)), connectMs: stats(v.map((r) => r.connectMs ?? NaN)), fetch4Ms: stats(v.map((r) => r.fetch4Ms ?? NaN)),
    errors: v.filter((r) => r.error).map((r) => r.error),
  }]));
  const ratio = (k, base, m) => summary[k][m].median / summary[base][m].median;
  const result = {
    date: new Date().toISOString(), bulkMB: BULK_MB, reps: REPS, psk: true, paths, summary,
    ratios: { lanBulk: ratio('lan', 'rawLan', 'mbps'), relayedBulk: ratio('relayed', 'rawWan', 'mbps'), punchedBulk: ratio('punched', 'rawWan', 'mbps'), lanJsBulk: ratio('lanJs', 'rawLan', 'mbps'), relayedJsBulk: ratio('relayedJs', 'rawWan', 'mbps'), fetch4Lan: ratio('lan', 'rawLan', 'fetch4Ms'), fetch4Relayed: ratio('relayed', 'rawWan', 'fetch4Ms'), fetch4Punched: ratio('punched', 'rawWan', 'fetch4Ms') },
    newFlowExtraMs: { lan: summary.lan.connectMs.median - summary.rawLan.connectMs.median, relayed: summary.relayed.connectMs.median - summary.rawWan.connectMs.median, punched: summary.punched.connectMs.median - summary.rawWan.connectMs.median },
    a1ExitOnSigterm: [a1Exit, a1ExitJs],
    cpuSecPerGB: cpuPerGB, rss, load: readFileSync('/proc/loadavg', 'utf8').trim(),
  };
  const f = (x, d = 1) => (x ?? NaN).toFixed(d);
  const mmm = (o, d = 1) => `${f(o.median, d)} (${f(o.min, d)}–${f(o.max, d)})`;
  const label = {
    rawLan: 'raw TCP a1→a2 (same LAN)', lan: `mesh a1→a2: channel ${paths.a2}`, rawWan: 'raw TCP a1→b1 (rb port forward)', relayed: `mesh a1→b1: channel ${paths.b1} (rb symmetric NAT)`,
    punched: `mesh a1→b1: channel ${paths.punched}`, lanJs: `mesh a1→a2, a1 without the addon: channel ${paths.a2Js}`, relayedJs: `mesh a1→b1, a1 without the addon: channel ${paths.b1Js}`,
  };
  const base = { rawLan: 'rawLan', lan: 'rawLan', rawWan: 'rawWan', relayed: 'rawWan', punched: 'rawWan', lanJs: 'rawLan', relayedJs: 'rawWan' };
  const md = [
    `# bench/tunnel (${result.date}; load ${result.load}${Number(result.load.split(' ')[0]) > 0.5 ? '; busy shared 2-core box' : ''})`, '',
    'Agent path: client in a1 → ClusterIP → nftables → proxy → data channel → far agent → backend; PSK on.',
    `median (min–max) of ${REPS} runs, ${BULK_MB} MiB bulk per run, raw baseline interleaved.`, '',
    '| path | bulk MB/s | × raw | new flow ms | 4 MB fetch ms | × raw |', '|---|---|---|---|---|---|',
    ...Object.keys(rows).map((k) => `| ${label[k]} | ${mmm(summary[k].mbps)} | ${f(ratio(k, base[k], 'mbps'), 2)} | ${mmm(summary[k].connectMs, 2)} | ${mmm(summary[k].fetch4Ms)} | ${f(ratio(k, base[k], 'fetch4Ms'), 2)} |`),
    '', `CPU seconds per GB over ${GIB_MB} MiB relayed: a1 ${f(cpuPerGB.a1, 2)}, b1 ${f(cpuPerGB.b1, 2)}, relay ${f(cpuPerGB.relay, 2)} (${f(gib.mbps)} MB/s).`, '',
    '| RSS MiB | a1 | b1 | relay |', '|---|---|---|---|',
    `| idle | ${f(rss.idle.a1)} | ${f(rss.idle.b1)} | ${f(rss.idle.relay)} |`,
    `| before ${GIB_MB} MiB relayed | ${f(before.a1)} | ${f(before.b1)} | ${f(before.relay)} |`,
    `| peak during | ${f(peak.a1)} | ${f(peak.b1)} | ${f(peak.relay)} |`,
    `| 3 s after | ${f(after.a1)} | ${f(after.b1)} | ${f(after.relay)} |`,
    '', `Same-LAN, relayed (rb's NAT symmetric: no punch can work) and punched rows: the addon's record pump on both ends; "without the addon" rows: EWC1 in JS on a1, the pump on a2/b1. a1's exit codes on SIGTERM at its restarts: ${a1Exit}, ${a1ExitJs}.`,
  ].join('\n');
  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  writeFileSync(join(root, 'bench', 'results', 'tunnel.json'), JSON.stringify(result, null, 2));
  writeFileSync(join(root, 'bench', 'results', 'tunnel.md'), `${md}\n`);
  console.log(md);
  // Every process we started stops on SIGTERM (exit codes in the JSON).
  result.exitOnSigterm = {};
  for (const [k, p] of [...Object.entries(agents), ['relay', relay.p]]) {
    const code = new Promise((r) => p.once('exit', (c, sig) => r(c ?? sig)));
    p.kill('SIGTERM');
    result.exitOnSigterm[k] = await Promise.race([code, new Promise((r) => setTimeout(() => r('timeout'), 15_000))]);
  }
  writeFileSync(join(root, 'bench', 'results', 'tunnel.json'), JSON.stringify(result, null, 2));
  rmSync(dir, { recursive: true, force: true });
}

main().then(() => { cleanup(); process.exit(0); }, (err) => { console.error(err); cleanup(); process.exit(1); });
