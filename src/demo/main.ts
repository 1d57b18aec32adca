/**
 * `npm run demo`: the whole mesh on one machine. Builds the two-LAN topology in
 * network namespaces (src/lab), starts the relay, three agents and backends from
 * the real CLI, then from a "pod" on a1 resolves names through the node DNS and
 * calls a local, a same-LAN and a cross-LAN service; prints which path each took,
 * latency and bytes/s, and where to look. Everything is torn down on exit, on
 * Ctrl-C, and — for leftovers of a killed run — at the start of the next run
 * (namespaces named ewdemo*, which no test lab uses). `--keep` leaves it running.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Lab, run, type NsProcess } from '../lab/netns.js';
import { buildTopology, IP, type Topology } from '../lab/topology.js';
import { AGENTS, GATEWAY, METRICS, NODE_DNS, POD, SERVICES, backendArgs, catalogYaml, gatewayCatalogYaml, gatewayConfig, processConfig, PSK_FILE, type AgentHost } from './scenario.js';
import { classify, formatReport, pokeCommands, type DemoReport, type GatewayOutcome } from './report.js';
import type { ProbeResult } from './probe.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const TAG = 'demo';
const PREFIX = `ew${TAG}`;
const node = process.execPath;
const cli = join(root, 'bin/edgeway.js');

const { values } = parseArgs({ options: { keep: { type: 'boolean' }, json: { type: 'boolean' }, 'bulk-mib': { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
if (values.help) {
  process.stdout.write(`Usage: npm run demo [-- --keep] [-- --json] [-- --bulk-mib N]

Builds two LANs behind NAT and a cloud relay in network namespaces (root), runs
edgeway agents, a relay and backends, and calls three services from a pod on a1.
  --keep        leave everything running and print commands to poke at it
  --json        print the report as JSON on stdout (progress stays on stderr)
  --bulk-mib N  bytes per throughput test (default 16 MiB)
`);
  process.exit(0);
}
const dir = join(tmpdir(), 'edgeway-demo');
const progress = (msg: string): void => void process.stderr.write(`▸ ${msg}\n`);

/** Remove what an earlier (killed) run left: its namespaces, their processes, its state dir. */
async function cleanLeftovers(): Promise<number> {
  const list = (await run('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith(PREFIX));
  for (const ns of list) {
    const pids = (await run('ip', ['netns', 'pids', ns]).catch(() => ({ stdout: '' }))).stdout.split(/\s+/).filter(Boolean);
    for (const pid of pids) { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } }
    await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  }
  await rm(dir, { recursive: true, force: true });
  return list.length;
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs: number, procs: NsProcess[], checkpoint: () => void): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    checkpoint();
    if (await check()) return;
    const dead = procs.find((p) => p.child.exitCode !== null);
    if (dead) throw new Error(`${what}: a process exited (${dead.child.exitCode}) during start-up`);
    if (Date.now() > end) throw new Error(`${what}: not after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** SIGTERM, then the exit code (or the signal name when it had to be killed after timeoutMs). */
async function terminate(p: NsProcess, timeoutMs: number): Promise<number | string> {
  const c = p.child;
  if (c.exitCode === null && c.signalCode === null) {
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(t);
  }
  return c.exitCode ?? c.signalCode ?? 'unknown';
}

interface TunnelState { relays: { reserved?: boolean }[]; peers: { nodeName?: string; paths: string[] }[]; channels?: { nodeName: string; path?: string }[] }
const channelPath = (st: TunnelState | undefined, to: string): string | undefined => st?.channels?.find((c) => c.nodeName === to)?.path;
const tunnelState = async (h: string): Promise<TunnelState | undefined> => {
  try { return JSON.parse(await readFile(join(dir, h, 'tunnel-state.json'), 'utf8')) as TunnelState; } catch { return undefined; }
};

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) { process.stderr.write('the demo needs root (network namespaces, nftables)\n'); return 2; }
  const lab = new Lab({ tag: TAG });
  const agents = new Map<string, NsProcess>();
  const others: NsProcess[] = [];
  let stopping = false;
  const checkpoint = (): void => { if (stopping) throw new Error('interrupted'); };
  let teardownDone: Promise<void> | undefined;
  const teardown = (): Promise<void> => (teardownDone ??= (async () => {
    progress('tearing down');
    const codes: string[] = [];
    // SIGTERM and a generous wait: a clean exit (code 0) is part of what the demo shows.
    await Promise.all([...agents].map(async ([h, p]) => {
      const code = await terminate(p, 30_000);
      if (code !== 0) codes.push(`${h} exited ${code}`);
    }));
    if (codes.length) process.stderr.write(`warning: ${codes.join(', ')}\n`);
    await lab.destroy();
    // Also what a step still in flight created after destroy() looked (matched by name).
    await cleanLeftovers();
  })());
  const onSignal = (sig: string): void => {
    if (stopping) return;
    stopping = true;
    progress(`${sig}: stopping`);
    // Steps check `interrupted` and stop; a step in flight may still add a namespace,
    // so look once more after a moment.
    void teardown()
      .then(() => new Promise((r) => setTimeout(r, 500)))
      .then(() => cleanLeftovers())
      .finally(() => process.exit(130));
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  try {
    const left = await cleanLeftovers();
    if (left) progress(`removed ${left} namespaces left by an earlier run`);
    checkpoint();
    progress('building two LANs behind NAT and a cloud relay (network namespaces)');
    // Both routers masquerade behind a stateful firewall (unsolicited SYNs dropped), as
    // home and cloud NAT gateways do: LAN B is reachable only through the relay until
    // the agents punch a TCP hole.
    const topo: Topology = await buildTopology(lab, { firewall: true });
    const pod = await lab.ns('p1');
    await lab.link(topo.ns.a1, `${POD.gw}/24`, pod, `${POD.ip}/24`);
    await lab.route(pod, 'default', 'via', POD.gw);
    await lab.sysctl(topo.ns.a1, 'net.ipv4.ip_forward=1');
    // The pod network's SNAT on its node, as a CNI plugin would do it.
    await lab.exec(topo.ns.a1, 'nft', ['-f', '-'], { input: `table ip edgeway_demo_pods {\n  chain post {\n    type nat hook postrouting priority 100; policy accept;\n    ip saddr ${POD.cidr} ip daddr != ${POD.cidr} masquerade\n  }\n}\n` });

    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'catalog.yaml'), catalogYaml());
    await writeFile(join(dir, PSK_FILE), `/key/swarm/psk/1.0.0/\n/base16/\n${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    for (const h of ['relay', ...AGENTS] as const) await writeFile(join(dir, `${h}.json`), JSON.stringify(processConfig(h, dir), null, 2));

    checkpoint();
    progress('starting the relay in the cloud');
    const relay = lab.spawn(topo.ns.relay, node, [cli, 'relay', '--config', join(dir, 'relay.json')]);
    agents.set('relay', relay);
    await relay.waitFor(/^relay /, 60_000);
    checkpoint();
    progress('starting backends on a1, a2, b1');
    for (const h of AGENTS) {
      const b = lab.spawn(topo.ns[h], node, [join(root, 'dist/demo/backend.js'), ...backendArgs(h)]);
      others.push(b);
      await b.waitFor(/^listening/, 30_000);
    }
    checkpoint();
    progress('starting agents on a1, a2 (LAN A) and b1 (LAN B)');
    for (const h of AGENTS) agents.set(h, lab.spawn(topo.ns[h], node, [cli, 'agent', '--config', join(dir, `${h}.json`)]));
    const procs = [...agents.values(), ...others];
    const ready = async (h: AgentHost): Promise<boolean> => {
      const r = await lab.exec(topo.ns[h], node, ['-e', `fetch('http://${METRICS}/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`]).then(() => true, () => false);
      return r;
    };
    await waitUntil('agents ready (/readyz)', async () => (await Promise.all(AGENTS.map(ready))).every(Boolean), 120_000, procs, checkpoint);
    checkpoint();
    progress('waiting for the agents\' relay reservations');
    await waitUntil('relay reservations', async () => (await Promise.all(AGENTS.map(tunnelState))).every((s) => s?.relays[0]?.reserved === true), 120_000, procs, checkpoint);

    checkpoint();
    progress('calling the services from a pod on a1 (DNS through the node DNS, then TCP)');
    const mib = Number(values['bulk-mib'] ?? 16);
    const metricSum = async (name: string): Promise<number> => {
      const text = await lab.exec(topo.ns.a1, node, ['-e', `fetch('http://${METRICS}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`]).then((r) => r.stdout, () => '');
      return sumMetric(text, name);
    };
    const tunnelBytesBefore = await metricSum('edgeway_tunnel_bytes_total');
    const probe = async (names: readonly string[]): Promise<ProbeResult[]> => {
      const out = await lab.exec(pod, node, [join(root, 'dist/demo/probe.js'), '--dns', NODE_DNS, '--names', names.map((n) => `${n}.demo.svc.cluster.local`).join(','), '--rtt', '20', '--bulk', String(Math.round(mib * 1024 * 1024))], { timeoutMs: 300_000 });
      return JSON.parse(out.stdout.trim().split('\n').at(-1)!) as ProbeResult[];
    };
    const results = await probe(SERVICES.map((s) => s.name));
    // The tunnel state file is rewritten every second: give it a moment to list b1.
    await waitUntil('a1 lists its tunnel peer', async () => (await tunnelState('a1'))?.peers.some((p) => p.nodeName === 'b1') ?? false, 15_000, procs, checkpoint).catch(() => undefined);
    const a1State = await tunnelState('a1');
    const tunnelBytes = (await metricSum('edgeway_tunnel_bytes_total')) - tunnelBytesBefore;
    const services = SERVICES.map((s, i) => classify(s, results[i]!, IP, POD.ip, a1State?.peers.find((p) => p.nodeName === s.node)?.paths ?? [], channelPath(a1State, s.node)));
    // The cross-LAN service once more, after the agents have had time to punch a TCP
    // hole through both NATs (the relayed channel is upgraded in the background).
    const remote = SERVICES.find((s) => s.node === 'b1')!;
    progress('waiting (up to 30 s) for a1 and b1 to punch a hole through both NATs, then calling hello-remote again');
    await waitUntil('a1 → b1 hole-punched', async () => channelPath(await tunnelState('a1'), 'b1') === 'punched', 30_000, procs, checkpoint).catch(() => undefined);
    const [again] = await probe([remote.name]);
    const a1After = await tunnelState('a1');
    services.push({
      ...classify(remote, again!, IP, POD.ip, a1After?.peers.find((p) => p.nodeName === 'b1')?.paths ?? [], channelPath(a1After, 'b1')),
      name: `${remote.name} (again)`,
    });
    const report: DemoReport = {
      services,
      a1TunnelBytes: tunnelBytes,
      gateway: await gatewayStep(lab, topo, agents, checkpoint),
      where: pokeCommands({ ...topo.ns, p1: pod }, dir, cli),
    };
    process.stdout.write(values.json ? `${JSON.stringify(report)}\n` : formatReport(report, values.keep === true));
    const ok = report.services.every((s) => s.ok) && report.gateway.ok;
    if (values.keep && !stopping) {
      process.stderr.write(`\nLeft running (--keep): try the commands above. Ctrl-C tears everything down.\n`);
      await new Promise(() => undefined);
    }
    return ok ? 0 : 1;
  } catch (err) {
    if (stopping) return 130;
    process.stderr.write(`demo failed: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await teardown();
  }
}

/** Sum of every series of one metric in Prometheus text format. */
function sumMetric(text: string, name: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) total += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
  }
  return total;
}

/**
 * The gateway step, once `edgeway gateway` is built (branch gateway; until then it
 * is reported as skipped): an outside client in the cloud calls LAN A's router,
 * whose port forward leads to `edgeway gateway` on a2, which routes by an Istio
 * Gateway + VirtualService to the HTTP backend on a2.
 */
async function gatewayStep(lab: Lab, topo: Topology, procs: Map<string, NsProcess>, checkpoint: () => void): Promise<GatewayOutcome> {
  const help = await run(node, [cli, 'gateway', '--help']).then((r) => r.stdout, () => '');
  if (help === '' || /does not include it yet/.test(help)) return { ran: false, ok: true, detail: 'skipped: `edgeway gateway` is not in this build' };
  progress('starting edgeway gateway on a2; an outside client calls it through LAN A\'s router');
  await writeFile(join(dir, 'gateway-catalog.yaml'), gatewayCatalogYaml());
  await writeFile(join(dir, 'gateway.json'), JSON.stringify(gatewayConfig(dir), null, 2));
  await topo.portForward('ra', GATEWAY.port, IP[GATEWAY.node]);
  const gw = lab.spawn(topo.ns[GATEWAY.node], node, [cli, 'gateway', '--config', join(dir, 'gateway.json')]);
  procs.set('gateway', gw);
  const url = `http://${IP.raWan}:${GATEWAY.port}/`;
  const times: number[] = [];
  let last = '';
  for (let i = 0; i < 120 && times.length < 10; i++) {
    checkpoint();
    if (gw.child.exitCode !== null) return { ran: true, ok: false, detail: `edgeway gateway exited ${gw.child.exitCode}` };
    const out = await lab.exec(topo.ns.cloud, node, ['-e', `const t=process.hrtime.bigint();fetch(${JSON.stringify(url)},{signal:AbortSignal.timeout(3000)}).then(async(r)=>{const b=await r.text();console.log(JSON.stringify({s:r.status,b:b.trim(),ms:Number(process.hrtime.bigint()-t)/1e6}))},(e)=>console.log(JSON.stringify({e:String(e.cause??e)})))`]).then((r) => r.stdout.trim(), () => '');
    last = out;
    const r = (out ? JSON.parse(out) : {}) as { s?: number; b?: string; ms?: number };
    if (r.s === 200 && r.b?.startsWith(`${GATEWAY.node} `)) times.push(r.ms!);
    else await new Promise((res) => setTimeout(res, 500));
  }
  if (times.length === 0) return { ran: true, ok: false, detail: `no answer through the gateway at ${url}: ${last}` };
  const seen = ((JSON.parse(last) as { b?: string }).b ?? '').split(' ')[1];
  times.sort((a, b) => a - b);
  return {
    ran: true, ok: true,
    detail: `outside client (cloud) → ${url} (ra port forward) → edgeway gateway on ${GATEWAY.node} → ${GATEWAY.service} → backend ${GATEWAY.node} (saw ${seen}); ${times.length} requests, p50 ${times[Math.floor(times.length / 2)]!.toFixed(2)} ms`,
  };
}

process.exitCode = await main();
