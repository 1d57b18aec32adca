/**
 * `dataplane.mode: ebpf` through the real agent: socket-LB on top of nftables.
 *
 * Topology and IP plan (addresses exist only inside the lab's namespaces):
 *   node (agent; local clients) 10.30.0.1/24 ── backend 10.30.0.2/24 (echo b1 :8080, b2 :8081)
 * Service web 10.96.0.20:80 → 10.30.0.2:8080, 10.30.0.2:8081 (endpoints on node-1).
 * The programs attach to a test cgroup (dataplane.ebpf.cgroupPath) with pins in a
 * per-run bpffs directory; a counter chain at priority -300 (before any NAT) counts
 * packets still addressed to the ClusterIP.
 *
 * Twice: with the host's mounts (nsenter --net, as a hostNetwork pod sees them),
 * and under `ip netns exec`, which hides the host's cgroup2 and bpffs — there the
 * agent mounts its own (cgroup2 at /run/edgeway/cgroupv2, bpffs at /sys/fs/bpf,
 * private to that mount namespace) and ebpf mode must still work (issue 13, item 8).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, kernelSkipReason, run, type NsProcess } from '../helpers/netns.js';
import { requirement } from '../helpers/skip.js';
import { CGROUP2_MOUNT, findCgroup2Root } from '../../src/dataplane/ebpf/host.js';
import { ensureObject } from '../ebpf/object.js';

const cgroupRoot = findCgroup2Root();
const skip = requirement('ebpf-mode agent tests', kernelSkipReason(),
  existsSync('dist/cli/main.js') ? undefined : 'dist/ missing: run `npm run build` first',
  cgroupRoot ? undefined : 'no cgroup v2 hierarchy',
  ensureObject());
const fixture = (f: string): string => fileURLToPath(new URL(`../helpers/fixtures/${f}`, import.meta.url));
const bin = fileURLToPath(new URL('../../bin/edgeway.js', import.meta.url));

const services = `apiVersion: v1
kind: Node
metadata: { name: node-1 }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec: { clusterIP: 10.96.0.20, ports: [{ name: p, port: 80, targetPort: 8080 }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: web-1, namespace: default, labels: { kubernetes.io/service-name: web } }
addressType: IPv4
ports: [{ name: p, port: 8080 }]
endpoints: [{ addresses: [10.30.0.2], nodeName: node-1 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: web-2, namespace: default, labels: { kubernetes.io/service-name: web } }
addressType: IPv4
ports: [{ name: p, port: 8081 }]
endpoints: [{ addresses: [10.30.0.3], nodeName: node-1 }]
`;

const variants = [
  { name: 'host mounts (nsenter --net)', hostMounts: true },
  { name: 'ip netns exec: the agent mounts cgroup2 and bpffs', hostMounts: false },
];

describe.skipIf(!!skip).each(variants)('agent in ebpf mode (socket-LB over nftables), $name', ({ hostMounts }) => {
  const lab = new Lab();
  const cgroupName = `edgeway-agent-${lab.tag}`;
  const cgroup = join(cgroupRoot ?? '/nonexistent', cgroupName);
  const pinDir = `/sys/fs/bpf/ew${lab.tag}`;
  let node = '';
  let dir = '';
  let cfg = '';
  let agentCfg = '';
  let agent: NsProcess | undefined;
  let agentErr = '';
  let agentExit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;

  const counter = async (): Promise<number> => {
    const out = JSON.parse((await lab.exec(node, 'nft', ['-j', 'list', 'table', 'inet', 'ewcount'])).stdout) as { nftables: { rule?: { expr: { counter?: { packets: number } }[] } }[] };
    return out.nftables.reduce((n, o) => n + (o.rule?.expr ?? []).reduce((m, e) => m + (e.counter?.packets ?? 0), 0), 0);
  };
  const whoami = async (inCgroup: boolean, n: number): Promise<{ counts: Record<string, number>; errors: number; peers?: Record<string, number> }> => {
    const out = await lab.exec(node, process.execPath, [fixture('whoami-client.mjs'), '--host', '10.96.0.20', '--port', '80', '--n', String(n), '--peer'], { timeoutMs: 60_000, ...(inCgroup ? { cgroup } : {}) });
    return JSON.parse(out.stdout.trim().split('\n').at(-1)!) as { counts: Record<string, number>; errors: number; peers?: Record<string, number> };
  };

  beforeAll(async () => {
    node = await lab.ns('n');
    const backend = await lab.ns('b');
    await lab.link(node, '10.30.0.1/24', backend, ['10.30.0.2/24', '10.30.0.3/24']);
    await lab.spawn(backend, process.execPath, [fixture('echo-server.mjs'), '--id', 'b1', '--port', '8080', '--host', '10.30.0.2']).waitFor(/^listening/);
    await lab.spawn(backend, process.execPath, [fixture('echo-server.mjs'), '--id', 'b2', '--port', '8081', '--host', '10.30.0.3']).waitFor(/^listening/);
    // Local clients need a route for the ClusterIP range for connect() to start at all.
    await lab.route(node, 'default', 'via', '10.30.0.2');
    await lab.exec(node, 'nft', ['-f', '-'], { input: 'table inet ewcount {\n chain out {\n type filter hook output priority -300; policy accept;\n ip daddr 10.96.0.0/16 counter\n }\n}\n' });
    mkdirSync(cgroup);
    dir = await mkdtemp(join(tmpdir(), 'ew-ebpf-agent-'));
    await writeFile(join(dir, 'services.yaml'), services);
    // The same cgroup as the agent sees it: under `ip netns exec` through its own
    // cgroup2 mount (one hierarchy, so the same directory).
    const config = (cgroupPath: string): string => [
      'nodeName: node-1',
      `stateDir: ${join(dir, 'state')}`,
      'log: { level: info }',
      'sources: { kubernetes: { enabled: false }, static: { paths: [' + join(dir, 'services.yaml') + '], pollMs: 100 } }',
      `dataplane: { mode: ebpf, minSyncIntervalMs: 20, driftCheckIntervalMs: 1000, ebpf: { cgroupPath: ${cgroupPath}, pinDir: ${pinDir} } }`,
      'dns: { enabled: false }',
      'tunnel: { enabled: false }',
      'metrics: { listen: "" }',
      '',
    ].join('\n');
    cfg = join(dir, 'agent.yaml');
    await writeFile(cfg, config(cgroup));
    agentCfg = hostMounts ? cfg : join(dir, 'agent-in-netns.yaml');
    if (!hostMounts) await writeFile(agentCfg, config(join(CGROUP2_MOUNT, cgroupName)));
    agent = lab.spawn(node, process.execPath, [bin, 'agent', '--config', agentCfg], process.env, { hostMounts });
    const child = agent.child;
    child.stderr!.on('data', (d: Buffer) => { agentErr = (agentErr + d.toString()).slice(-4000); });
    agentExit = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    let ready = false;
    for (let i = 0; i < 60 && !ready; i++) {
      if (child.exitCode !== null) throw new Error(`agent exited ${child.exitCode}: ${agentErr}`);
      // Ready when a cgroup client is served without a packet to the ClusterIP
      // (earlier attempts may have gone through nftables DNAT and been counted).
      const before = await counter();
      const r = await whoami(true, 1).catch(() => ({ errors: 1, counts: {} }));
      ready = r.errors === 0 && (await counter()) === before;
      if (!ready) await new Promise((res) => setTimeout(res, 100));
    }
    if (!ready) throw new Error(`socket-LB never served a cgroup client; agent log: ${agentErr}`);
  }, 240_000);

  afterAll(async () => {
    await lab.destroy();
    // Best effort if the cleanup test did not run (idempotent; it also detaches our
    // programs by name when the pins went with the agent's private bpffs); then the
    // test cgroup goes.
    if (cfg) await run(process.execPath, [bin, 'cleanup', '--config', cfg]).catch(() => undefined);
    for (let i = 0; i < 20 && existsSync(cgroup); i++) {
      try { rmdirSync(cgroup); } catch { await new Promise((r) => setTimeout(r, 100)); }
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('clients in the cgroup reach both backends with no packet addressed to the ClusterIP; getpeername shows the ClusterIP', async () => {
    const before = await counter();
    const r = await whoami(true, 60);
    expect(r.errors).toBe(0);
    expect(r.counts.b1).toBeGreaterThan(5);
    expect(r.counts.b2).toBeGreaterThan(5);
    expect(r.peers).toEqual({ '10.96.0.20 80': 60 });
    expect(await counter()).toBe(before);
  });

  it('clients outside the cgroup are served by the nftables rules (packets to the ClusterIP, DNAT in the kernel)', async () => {
    const before = await counter();
    const r = await whoami(false, 20);
    expect(r.errors).toBe(0);
    expect((r.counts.b1 ?? 0) + (r.counts.b2 ?? 0)).toBe(20);
    expect(await counter()).toBeGreaterThan(before);
  });

  it('the agent exits 0 on SIGTERM; edgeway cleanup removes programs, pins and the table', async () => {
    // nsenter and `ip netns exec` exec the command: the child is the agent itself.
    agent?.child.kill('SIGTERM');
    expect(await agentExit).toEqual({ code: 0, signal: null });
    await lab.destroy(); // stop the agent first, as the command's help says
    node = await lab.ns('n2');
    const out = await run('nsenter', [`--net=/run/netns/${node}`, process.execPath, bin, 'cleanup', '--config', cfg]);
    expect(out.stdout, out.stdout + out.stderr).toMatch(/removed socket-LB programs and pins/);
    expect(existsSync(pinDir)).toBe(false);
    expect((await run('bpftool', ['-j', 'cgroup', 'show', cgroup])).stdout.trim() || '[]').toBe('[]');
  });
});
