/**
 * The addons at exit, with root (issue 13, item 1):
 * - a child with the sockmap object, a SockmapLink and a pool that linked a pair
 *   exits naturally with code 0;
 * - the real agent with `accelerator.mode: splice` and `auto` (nftables mode, a
 *   LEAST_REQUEST service so the userspace proxy carries it) forwards a connection
 *   through splice and exits 0 on SIGTERM (it aborted with exit 134 before).
 *
 * Topology and IP plan (addresses exist only inside the lab's namespaces):
 *   node (agent, client) 10.31.0.1/24 ── backend 10.31.0.2/24 (echo b1 :8080)
 * Service web 10.96.0.31:80 → 10.31.0.2:8080 on node-1.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadNative } from '../../src/native/addon.js';
import { Lab, kernelSkipReason } from '../helpers/netns.js';
import { requirement } from '../helpers/skip.js';
import { runScenario } from './addon-child.js';

const native = loadNative();
const skip = requirement('addon exit tests (root)', kernelSkipReason(), native.addonReason, native.bpfReason,
  native.sockmapObject ? undefined : 'BPF object not built (bpf/build/sockmap_verdict.bpf.o)',
  existsSync('dist/cli/main.js') ? undefined : 'dist/ missing: run `npm run build` first');
const fixture = (f: string): string => fileURLToPath(new URL(`../helpers/fixtures/${f}`, import.meta.url));
const bin = fileURLToPath(new URL('../../bin/edgeway.js', import.meta.url));

const services = `apiVersion: v1
kind: Node
metadata: { name: node-1 }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec: { clusterIP: 10.96.0.31, ports: [{ name: p, port: 80, targetPort: 8080 }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: web-1, namespace: default, labels: { kubernetes.io/service-name: web } }
addressType: IPv4
ports: [{ name: p, port: 8080 }]
endpoints: [{ addresses: [10.31.0.2], nodeName: node-1 }]
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: { name: web, namespace: default }
spec: { host: web, trafficPolicy: { loadBalancer: { simple: LEAST_REQUEST } } }
`;

describe.skipIf(skip)('addons at exit (root)', () => {
  it('sockmap object + link + pool after a linked pair: natural exit 0', async () => {
    const end = await runScenario('pool after a sockmap pair', native);
    expect(end.stderr).not.toMatch(/AddressSanitizer|runtime error:|corrupted|double free/);
    expect({ code: end.code, signal: end.signal, stdout: end.stdout.trim() }).toEqual({ code: 0, signal: null, stdout: 'ok pool after a sockmap pair' });
  });

  describe.each(['splice', 'auto'] as const)('agent with accelerator.mode: %s', (mode) => {
    const lab = new Lab();
    let node = '';
    let dir = '';

    beforeAll(async () => {
      node = await lab.ns('n');
      const backend = await lab.ns('b');
      await lab.link(node, '10.31.0.1/24', backend, '10.31.0.2/24');
      await lab.spawn(backend, process.execPath, [fixture('echo-server.mjs'), '--id', 'b1', '--port', '8080', '--host', '10.31.0.2']).waitFor(/^listening/);
      await lab.route(node, 'default', 'via', '10.31.0.2');
      dir = await mkdtemp(join(tmpdir(), 'ew-native-exit-'));
      await writeFile(join(dir, 'services.yaml'), services);
    });
    afterAll(async () => {
      await lab.destroy();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('forwards through splice and exits 0 on SIGTERM', async () => {
      const cfg = join(dir, `agent-${mode}.yaml`);
      await writeFile(cfg, [
        'nodeName: node-1',
        `stateDir: ${join(dir, `state-${mode}`)}`,
        'log: { level: info }',
        `sources: { kubernetes: { enabled: false }, static: { paths: [${join(dir, 'services.yaml')}], pollMs: 100 } }`,
        'dataplane: { mode: nftables, minSyncIntervalMs: 20 }',
        `accelerator: { mode: ${mode} }`,
        'dns: { enabled: false }',
        'tunnel: { enabled: false }',
        'metrics: { listen: "127.0.0.1:19464" }',
        '',
      ].join('\n'));
      const agent = lab.spawn(node, process.execPath, [bin, 'agent', '--config', cfg]);
      let stderr = '';
      agent.child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => agent.child.once('exit', (code, signal) => resolve({ code, signal })));
      // Served once a client through the ClusterIP gets an answer (bounded).
      let served = false;
      for (let i = 0; i < 100 && !served && agent.child.exitCode === null; i++) {
        const out = await lab.exec(node, process.execPath, [fixture('whoami-client.mjs'), '--host', '10.96.0.31', '--port', '80', '--n', '3'], { timeoutMs: 30_000 });
        served = (JSON.parse(out.stdout.trim().split('\n').at(-1)!) as { counts: Record<string, number> }).counts.b1 === 3;
        if (!served) await new Promise((r) => setTimeout(r, 100));
      }
      expect(served, stderr.slice(-2000)).toBe(true);
      const metrics = await lab.exec(node, process.execPath, ['-e', 'fetch("http://127.0.0.1:19464/metrics").then((r) => r.text()).then((t) => process.stdout.write(t))']);
      expect(metrics.stdout).toMatch(/edgeway_dataplane_forwarded_connections_total\{kind="splice"\} [1-9]/);
      agent.child.kill('SIGTERM');
      const end = await exited;
      expect(stderr).not.toMatch(/corrupted|double free|AddressSanitizer/);
      expect(end).toEqual({ code: 0, signal: null });
    });
  });
});
