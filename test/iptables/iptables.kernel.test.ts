// iptables mode end to end, once per backend (iptables-legacy and iptables-nft):
// the proxy runs in a "node" namespace, iptables REDIRECTs ClusterIP:port to it,
// clients in the node (OUTPUT path) and in a second namespace (PREROUTING path)
// reach the identity-echo backends; drift is repaired; cleanup leaves no rule.
//
// IP plan (inside the lab only): node 10.50.0.1/24 — client 10.50.0.2/24;
// cluster IPs 10.96.0.10 (TCP 80 + UDP 53 → proxy), 10.96.0.11 (TCP 80, no
// endpoints → reject); backends a/b on the node's 127.0.0.1:18081/18082.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { kernelSkipReason, Lab, type NsProcess } from '../helpers/netns.js';
import { IptablesDataplane } from '../../src/dataplane/iptables/dataplane.js';
import { detectBackend } from '../../src/dataplane/iptables/detect.js';
import { netnsExec } from '../../src/dataplane/iptables/exec.js';
import { silentLogger } from '../../src/util/log.js';
import { ensureBuilt, ep, servicePort } from '../proxy/util.js';
import type { PlannedServicePort } from '../../src/plan/types.js';

const skip = kernelSkipReason();
const ROOT = new URL('../../', import.meta.url).pathname;
const ECHO = `${ROOT}test/helpers/fixtures/echo-server.mjs`;
const WHOAMI = `${ROOT}test/helpers/fixtures/whoami-client.mjs`;
const PROXY = `${ROOT}test/proxy/fixtures/proxy-in-ns.mjs`;

const CLUSTER = '10.96.0.10';
const REJECTED = '10.96.0.11';

function plan(): PlannedServicePort[] {
  const eps = [ep('127.0.0.1', 18081), ep('127.0.0.1', 18082)];
  return [
    servicePort({ name: 'web', port: 80, userspacePort: 20100, clusterIPs: [CLUSTER], policy: { kind: 'roundRobin' }, endpoints: eps }),
    servicePort({ name: 'dns', protocol: 'UDP', port: 53, userspacePort: 20101, clusterIPs: [CLUSTER], policy: { kind: 'roundRobin' }, endpoints: eps }),
    { ...servicePort({ name: 'none', port: 80, userspacePort: 20102, clusterIPs: [REJECTED], endpoints: [] }), target: 'reject' },
  ];
}

interface Counts { counts: Record<string, number>; errors: number; firstError?: string }

describe.skipIf(skip)(`iptables mode end to end${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const lab = new Lab();
  let node = '';
  let client = '';
  const procs: NsProcess[] = [];

  beforeAll(async () => {
    ensureBuilt();
    node = await lab.ns('n');
    client = await lab.ns('c');
    const { aIf } = await lab.link(node, '10.50.0.1/24', client, '10.50.0.2/24');
    await lab.route(client, '10.96.0.0/16', 'via', '10.50.0.1');
    await lab.route(node, '10.96.0.0/16', 'dev', aIf);
    // Clients in other namespaces are forwarded traffic for the node (a Kubernetes node forwards).
    await lab.sysctl(node, 'net.ipv4.ip_forward=1');
    for (const [id, port] of [['a', 18081], ['b', 18082]] as const) {
      const p = lab.spawn(node, process.execPath, [ECHO, '--id', id, '--port', String(port), '--host', '127.0.0.1', '--udp']);
      await p.waitFor(/listening/);
      procs.push(p);
    }
    const proxy = lab.spawn(node, process.execPath, [PROXY, JSON.stringify(plan())]);
    const ready = await proxy.waitFor(/^ready/);
    expect(JSON.parse(ready.slice(6))).toMatchObject({ failed: [] });
  });

  afterAll(async () => { await lab.destroy(); });

  /** 10 attempts (2 short ones when failure is expected, to stay fast). */
  async function ask(ns: string, host: string, extra: string[] = [], expectFail = false): Promise<Counts> {
    const n = expectFail ? ['--n', '2', '--timeout', '500'] : ['--n', '10', '--timeout', '1500'];
    const r = await lab.exec(ns, process.execPath, [WHOAMI, '--host', host, '--port', extra.includes('--udp') ? '53' : '80', ...n, ...extra]);
    return JSON.parse(r.stdout) as Counts;
  }

  async function saveAll(): Promise<string> {
    const outs = await Promise.all(['iptables-legacy-save', 'iptables-nft-save'].map((b) => lab.exec(node, b, []).then((r) => r.stdout)));
    return outs.join('\n');
  }

  it('detects nft on an empty namespace and legacy where the host rules are legacy', async () => {
    const exec = netnsExec(node);
    expect((await detectBackend(exec)).backend).toBe('nft');
    const probe = await lab.ns('p');
    await lab.exec(probe, 'iptables-legacy', ['-A', 'INPUT', '-p', 'tcp', '--dport', '22', '-j', 'ACCEPT']);
    expect(await detectBackend(netnsExec(probe))).toMatchObject({ backend: 'legacy' });
  });

  it.each(['legacy', 'nft'] as const)('%s backend: redirect to the proxy, reject, drift repair, cleanup', async (backend) => {
    const dp = new IptablesDataplane({ logger: silentLogger(), registry: new Registry(), exec: netnsExec(node), backend });
    try {
      await dp.apply({ servicePorts: plan() });
      await dp.apply({ servicePorts: plan() }); // idempotent: no duplicate jumps
      expect(await dp.reconcile()).toEqual([]);
      const other = backend === 'legacy' ? 'iptables-nft-save' : 'iptables-legacy-save';
      expect((await lab.exec(node, other, [])).stdout).not.toContain('EDGEWAY');

      for (const ns of [node, client]) {
        const tcp = await ask(ns, CLUSTER);
        expect(tcp, `tcp from ${ns}`).toMatchObject({ errors: 0, counts: { a: 5, b: 5 } });
        const udp = await ask(ns, CLUSTER, ['--udp', '--strict-source']);
        expect(udp.errors, `udp from ${ns}: ${udp.firstError}`).toBe(0);
        expect(Object.values(udp.counts).reduce((x, y) => x + y, 0)).toBe(10);
        const t0 = Date.now();
        const rej = await ask(ns, REJECTED, [], true);
        expect(rej.errors).toBe(2);
        expect(rej.firstError, `reject seen from ${ns}`).toBe('ECONNREFUSED');
        expect(Date.now() - t0).toBeLessThan(3_000); // refused at once, not timed out
      }

      // Drift: someone removes our PREROUTING jump and flushes our nat chain.
      const bin = `iptables-${backend}`;
      await lab.exec(node, bin, ['-t', 'nat', '-D', 'PREROUTING', '-m', 'comment', '--comment', 'edgeway: service portals', '-j', 'EDGEWAY-SERVICES']);
      await lab.exec(node, bin, ['-t', 'nat', '-F', 'EDGEWAY-SERVICES']);
      expect((await ask(client, CLUSTER, [], true)).errors).toBe(2);
      const drift = await dp.reconcile();
      expect(drift.join('\n')).toMatch(/PREROUTING: 0 jumps/);
      expect(await ask(client, CLUSTER)).toMatchObject({ errors: 0 });
    } finally {
      await dp.cleanup();
    }
    const after = await saveAll();
    expect(after).not.toContain('EDGEWAY');
    expect(after).not.toContain('edgeway');
  });

  it('cleanup with nothing installed is a no-op', async () => {
    const dp = new IptablesDataplane({ logger: silentLogger(), registry: new Registry(), exec: netnsExec(node) });
    await dp.cleanup();
    expect(await saveAll()).not.toContain('EDGEWAY');
  });
});
