/**
 * The nftables data plane in real network namespaces, driven by the real agent
 * (`bin/edgeway.js agent`, built by `npm run build`) fed from a static file.
 *
 * Topology and IP plan (all addresses exist only inside the lab's namespaces):
 *   client 10.10.0.2/24 ── 10.10.0.1 node (agent, ip_forward) 10.20.i.1 ── bN 10.20.i.2/24  (i = 1..3)
 *   IPv6 too: client fd10::2/64 ── fd10::1 node fd20:i::1 ── bN fd20:i::2/64
 * Services (ClusterIPs 10.96.0.0/16, only ever answered by the node's rules):
 *   web 10.96.0.10:80 random b1-b3 · rr 10.96.0.11:80 round robin · sticky 10.96.0.12:80
 *   ClientIP · empty 10.96.0.13:80 no endpoints · dns 10.96.0.14:53/UDP b1,b2 ·
 *   self 10.96.0.15:80 only b1 (hairpin) · l7 10.96.0.16:80 LEAST_REQUEST → redirected
 *   to its userspace port on the node, where the agent's userspace proxy forwards
 *   it to b1 (the kernel has no DNAT for it: only the proxy can reach b1) ·
 *   web6 [fd00:96::10]:80 random b1,b2 over IPv6
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, kernelSkipReason, type NsProcess } from '../helpers/netns.js';
import { requirement } from '../helpers/skip.js';

const skip = requirement('nftables kernel tests', kernelSkipReason(), existsSync('dist/cli/main.js') ? undefined : 'dist/ missing: run `npm run build` first');
const fixture = (f: string): string => fileURLToPath(new URL(`../helpers/fixtures/${f}`, import.meta.url));

interface Counts { counts: Record<string, number>; errors: number; firstError?: string }

const BACKENDS = ['b1', 'b2', 'b3'] as const;
const ip = (b: string): string => `10.20.${b.slice(1)}.2`;

function svc(name: string, clusterIP: string, port: number, eps: readonly string[], opts: { proto?: string; target?: number; extra?: string } = {}): string {
  const proto = opts.proto ?? 'TCP';
  const target = opts.target ?? 8080;
  return `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: default }
spec:
  clusterIP: ${clusterIP}
  ports: [{ name: p, port: ${port}, targetPort: ${target}, protocol: ${proto} }]
${opts.extra ?? ''}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${name}-1, namespace: default, labels: { kubernetes.io/service-name: ${name} } }
addressType: IPv4
ports: [{ name: p, port: ${target}, protocol: ${proto} }]
endpoints: [${eps.map((b) => `{ addresses: [${ip(b)}], nodeName: node-1 }`).join(', ')}]
---
`;
}

function services(webEps: readonly string[] = BACKENDS): string {
  return [
    'apiVersion: v1\nkind: Node\nmetadata: { name: node-1 }\n---\n',
    svc('web', '10.96.0.10', 80, webEps),
    svc('rr', '10.96.0.11', 80, BACKENDS),
    'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: { name: rr, namespace: default }\nspec: { host: rr, trafficPolicy: { loadBalancer: { simple: ROUND_ROBIN } } }\n---\n',
    svc('sticky', '10.96.0.12', 80, BACKENDS, { extra: '  sessionAffinity: ClientIP\n  sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } }' }),
    svc('empty', '10.96.0.13', 80, []),
    svc('dns', '10.96.0.14', 53, ['b1', 'b2'], { proto: 'UDP', target: 5353 }),
    svc('self', '10.96.0.15', 80, ['b1']),
    svc('l7', '10.96.0.16', 80, ['b1']),
    'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: { name: l7, namespace: default }\nspec: { host: l7, trafficPolicy: { loadBalancer: { simple: LEAST_REQUEST } } }\n---\n',
    `apiVersion: v1
kind: Service
metadata: { name: web6, namespace: default }
spec: { clusterIPs: ["fd00:96::10"], ipFamilies: [IPv6], ports: [{ name: p, port: 80, targetPort: 8080 }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: web6-1, namespace: default, labels: { kubernetes.io/service-name: web6 } }
addressType: IPv6
ports: [{ name: p, port: 8080, protocol: TCP }]
endpoints: [{ addresses: ["fd20:1::2"], nodeName: node-1 }, { addresses: ["fd20:2::2"], nodeName: node-1 }]
---
`,
  ].join('');
}

describe.skipIf(!!skip)('nftables data plane in namespaces', () => {
  const lab = new Lab();
  let dir: string;
  let cfg: string;
  let node: string;
  let client: string;
  const backendNs: Record<string, string> = {};
  let agent: NsProcess | undefined;

  const whoami = async (ns: string, host: string, port: number, n: number, extra: string[] = []): Promise<Counts> => {
    const r = await lab.exec(ns, process.execPath, [fixture('whoami-client.mjs'), '--host', host, '--port', String(port), '--n', String(n), '--timeout', '1500', ...extra], { timeoutMs: 60_000 });
    return JSON.parse(r.stdout) as Counts;
  };
  const nftJson = async (...args: string[]): Promise<string> => (await lab.exec(node, 'nft', ['-j', 'list', ...args]).catch((e: Error) => ({ stdout: e.message }))).stdout;
  /** Poll until `pred` holds (bounded). */
  const until = async (what: string, pred: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> => {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      if (await pred()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}`);
  };
  /** Rewrite the static source atomically (a poll must never see a half-written file). */
  const setServices = async (text: string): Promise<void> => {
    await writeFile(join(dir, 'services.yaml.tmp'), text);
    await rename(join(dir, 'services.yaml.tmp'), join(dir, 'services.yaml'));
  };
  const startAgent = async (): Promise<void> => {
    agent = lab.spawn(node, process.execPath, ['bin/edgeway.js', 'agent', '--config', cfg]);
    await until('the agent to write table inet edgeway', async () => (await nftJson('map', 'inet', 'edgeway', 'svc4')).includes('10.96.0.15'));
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'edgeway-nft-kt-'));
    node = await lab.ns('node');
    client = await lab.ns('cli');
    await lab.sysctl(node, 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1');
    await lab.link(client, ['10.10.0.2/24', 'fd10::2/64'], node, ['10.10.0.1/24', 'fd10::1/64']);
    await lab.route(client, 'default', 'via', '10.10.0.1');
    await lab.route(client, 'default', 'via', 'fd10::1');
    // Local clients need a route towards service IPs for the output hook to see them.
    await lab.route(node, 'default', 'via', '10.10.0.2');
    const ready: Promise<string>[] = [];
    for (const b of BACKENDS) {
      const ns = await lab.ns(b);
      backendNs[b] = ns;
      const i = b.slice(1);
      await lab.link(ns, [`10.20.${i}.2/24`, `fd20:${i}::2/64`], node, [`10.20.${i}.1/24`, `fd20:${i}::1/64`]);
      await lab.route(ns, 'default', 'via', `10.20.${i}.1`);
      await lab.route(ns, 'default', 'via', `fd20:${i}::1`);
      ready.push(lab.spawn(ns, process.execPath, [fixture('echo-server.mjs'), '--id', b, '--port', '8080']).waitFor(/^listening/));
      ready.push(lab.spawn(ns, process.execPath, [fixture('echo-server.mjs'), '--id', b, '--port', '5353', '--udp']).waitFor(/^listening/));
    }
    await Promise.all(ready);
    await writeFile(join(dir, 'services.yaml'), services());
    cfg = join(dir, 'agent.yaml');
    await writeFile(cfg, [
      'nodeName: node-1',
      `stateDir: ${join(dir, 'state')}`,
      'log: { level: warn }',
      'sources:',
      '  kubernetes: { enabled: false }',
      `  static: { paths: [${join(dir, 'services.yaml')}], pollMs: 100 }`,
      'dataplane: { mode: nftables, minSyncIntervalMs: 20, driftCheckIntervalMs: 500 }',
      'dns: { enabled: false }',
      'tunnel: { enabled: false }',
      'metrics: { listen: "" }',
      '',
    ].join('\n'));
    await startAgent();
  });

  afterAll(async () => {
    await lab.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('random spreads over every endpoint (300 connections, min/max bound)', async () => {
    const r = await whoami(client, '10.96.0.10', 80, 300);
    expect(r.errors).toBe(0);
    for (const b of BACKENDS) {
      expect(r.counts[b], `${b} in ${JSON.stringify(r.counts)}`).toBeGreaterThanOrEqual(60);
      expect(r.counts[b]).toBeLessThanOrEqual(145);
    }
  });

  it('round robin cycles through the endpoints', async () => {
    const r = await whoami(client, '10.96.0.11', 80, 30);
    expect(r).toEqual({ counts: { b1: 10, b2: 10, b3: 10 }, errors: 0 });
  });

  it('ClientIP affinity sticks to one endpoint', async () => {
    const r = await whoami(client, '10.96.0.12', 80, 40);
    expect(r.errors).toBe(0);
    expect(Object.values(r.counts)).toEqual([40]);
  });

  it('a service without endpoints fails fast (ECONNREFUSED)', async () => {
    const t = Date.now();
    const r = await whoami(client, '10.96.0.13', 80, 3);
    expect(r).toMatchObject({ errors: 3, firstError: 'ECONNREFUSED' });
    expect(Date.now() - t).toBeLessThan(1500);
  });

  it('IPv6 ClusterIP spreads over its IPv6 endpoints', async () => {
    const r = await whoami(client, 'fd00:96::10', 80, 60);
    expect(r.errors).toBe(0);
    expect(r.counts.b1).toBeGreaterThan(5);
    expect(r.counts.b2).toBeGreaterThan(5);
    expect((r.counts.b1 ?? 0) + (r.counts.b2 ?? 0)).toBe(60);
  });

  it('UDP service answers', async () => {
    const r = await whoami(client, '10.96.0.14', 53, 20, ['--udp']);
    expect(r.errors).toBe(0);
    expect((r.counts.b1 ?? 0) + (r.counts.b2 ?? 0)).toBe(20);
  });

  it('hairpin: a backend reaches its own service', async () => {
    expect(await whoami(backendNs.b1!, '10.96.0.15', 80, 5)).toEqual({ counts: { b1: 5 }, errors: 0 });
  });

  it('locally generated traffic (output hook) is balanced too', async () => {
    const r = await whoami(node, '10.96.0.10', 80, 30);
    expect(r.errors).toBe(0);
    expect(Object.values(r.counts).reduce((a, b) => a + b, 0)).toBe(30);
  });

  it.each([
    { name: 'forwarded (prerouting)', from: () => client },
    { name: 'local (output)', from: () => node },
  ])('userspace target: $name traffic is redirected to the userspace port', async ({ from }) => {
    expect(await whoami(from(), '10.96.0.16', 80, 3)).toEqual({ counts: { b1: 3 }, errors: 0 });
  });

  it('endpoints removed and added take effect', async () => {
    await setServices(services(['b1', 'b2']));
    await until('b3 gone from ep4', async () => !(await nftJson('map', 'inet', 'edgeway', 'ep4_tcp')).includes('"10.96.0.10", "tcp", 80, 2'));
    const r = await whoami(client, '10.96.0.10', 80, 60);
    expect(r.errors, JSON.stringify(r)).toBe(0);
    expect(r.counts.b3).toBeUndefined();
    expect((r.counts.b1 ?? 0) + (r.counts.b2 ?? 0)).toBe(60);
    await setServices(services());
    await until('b3 back in ep4', async () => (await nftJson('map', 'inet', 'edgeway', 'ep4_tcp')).includes('"10.96.0.10", "tcp", 80, 2'));
    const again = await whoami(client, '10.96.0.10', 80, 90);
    expect(again.counts.b3).toBeGreaterThan(0);
  });

  it('an established connection survives an agent restart and its full resync', async () => {
    // A long-lived connection asking "whoami" every 100 ms; prints each answer.
    const script = `const s=require('net').connect(80,'10.96.0.10');let b='';s.on('data',d=>{b+=d;let i;while((i=b.indexOf('\\n'))>=0){console.log('id '+b.slice(0,i));b=b.slice(i+1);}});
s.on('connect',()=>setInterval(()=>s.write('whoami\\n'),100));s.on('error',e=>{console.log('error '+e.code);process.exit(1)});s.on('close',()=>{console.log('closed');process.exit(1)});`;
    const conn = lab.spawn(client, process.execPath, ['-e', script]);
    const first = await conn.waitFor(/^id /);
    await agent!.stop();
    await startAgent();
    const before = conn.lines.length;
    await until('answers after the restart', async () => conn.lines.length >= before + 5, 5000);
    expect(conn.lines.filter((l) => !l.startsWith('id '))).toEqual([]);
    expect(new Set(conn.lines)).toEqual(new Set([first]));
    await conn.stop();
  });

  it('`nft flush table inet edgeway` is repaired by the drift check', async () => {
    await lab.exec(node, 'nft', ['flush', 'table', 'inet', 'edgeway']);
    await until('the services chain to be rewritten', async () => (await nftJson('chain', 'inet', 'edgeway', 'services')).includes('vmap'));
    const r = await whoami(client, '10.96.0.11', 80, 9);
    expect(r.errors).toBe(0);
  });

  it('`edgeway cleanup` leaves no trace', async () => {
    await agent!.stop();
    await lab.exec(node, process.execPath, ['bin/edgeway.js', 'cleanup', '--config', cfg]);
    expect((await lab.exec(node, 'nft', ['list', 'ruleset'])).stdout.trim()).toBe('');
    const r = await whoami(client, '10.96.0.10', 80, 1, ['--timeout', '300']);
    expect(r.errors).toBe(1);
  });
});
