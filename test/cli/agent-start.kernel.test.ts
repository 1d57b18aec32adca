/**
 * A half-started agent in `dataplane.mode: ebpf` does not stay up: socket-LB
 * cannot load (its pin directory lies under a regular file), so the data-plane
 * part's start throws ERR_SOCKET_LB_START; the agent (run hostNetwork-like in a
 * namespace of this test, host /sys visible) releases the proxy, the source, the
 * metrics server and the catalog, newest first, and exits 1 — having written no
 * rule and attached no program.
 * IP plan: only loopback inside the namespace; the catalog's ClusterIP 10.96.0.10
 * is data only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, kernelSkipReason, run } from '../helpers/netns.js';
import { requirement } from '../helpers/skip.js';
import { ensureObject } from '../ebpf/object.js';
import { findCgroup2Root } from '../../src/dataplane/ebpf/host.js';
import { ensureBuilt, type LogLine } from '../helpers/agent-process.js';

const cgroupRoot = findCgroup2Root();
// Socket-LB must be supported here (object built, bpftool, cgroup v2), so that the
// failure under test is the load into an unusable pin directory, not the mode check.
const skip = requirement('agent start-failure kernel tests', kernelSkipReason(), cgroupRoot ? undefined : 'no cgroup v2 hierarchy', kernelSkipReason() ? undefined : ensureObject());
const bin = fileURLToPath(new URL('../../bin/edgeway.js', import.meta.url));

describe.skipIf(!!skip)('agent start failure in mode ebpf (real BPF, real nft)', () => {
  const lab = new Lab();
  const cgroup = join(cgroupRoot ?? '/nonexistent', `edgeway-start-${lab.tag}`);
  let ns = '';
  let dir = '';

  beforeAll(async () => {
    await ensureBuilt();
    ns = await lab.ns('s');
    mkdirSync(cgroup);
    dir = await mkdtemp(join(tmpdir(), 'ew-start-ebpf-'));
  }, 120_000);

  afterAll(async () => {
    await lab.destroy();
    for (let i = 0; i < 20 && existsSync(cgroup); i++) {
      try { rmdirSync(cgroup); } catch { await new Promise((r) => setTimeout(r, 100)); }
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('socket-LB cannot load: exit 1 with ERR_SOCKET_LB_START, everything released newest first, no rule, no program', async () => {
    await writeFile(join(dir, 'pinfile'), 'not a directory');
    await writeFile(join(dir, 'services.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: { name: web, namespace: default }\nspec: { clusterIP: 10.96.0.10, ports: [{ name: http, port: 80 }] }\n');
    const cfg = join(dir, 'agent.yaml');
    await writeFile(cfg, [
      'nodeName: node-1',
      `stateDir: ${join(dir, 'state')}`,
      `sources: { kubernetes: { enabled: false }, static: { paths: [${join(dir, 'services.yaml')}], pollMs: 100 } }`,
      `dataplane: { mode: ebpf, ebpf: { cgroupPath: ${cgroup}, pinDir: ${join(dir, 'pinfile', 'pins')} } }`,
      'dns: { enabled: false }',
      'tunnel: { enabled: false }',
      'metrics: { listen: "127.0.0.1:0" }',
    ].join('\n'));
    const agent = lab.spawn(ns, process.execPath, [bin, 'agent', '--config', cfg], process.env, { hostMounts: true });
    let stderr = '';
    agent.child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    // Bounded by the killer below: a hanging agent fails the code check.
    const killer = setTimeout(() => agent.child.kill('SIGKILL'), 60_000);
    const code = await new Promise<number | null>((r) => agent.child.once('close', (c) => r(c)));
    clearTimeout(killer);
    const logs = stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);
    expect(code, stderr.slice(-3000)).toBe(1);
    expect(stderr).toContain('edgeway agent: dataplane-nftables: dataplane.mode ebpf: socket-LB could not be loaded');
    expect(logs.find((l) => l.msg === 'agent start failed; stopping what started')?.code).toBe('ERR_SOCKET_LB_START');
    expect(logs.filter((l) => l.msg === 'released').map((l) => l.part)).toEqual(['dataplane-nftables', 'proxy', 'source static', 'metrics', 'catalog']);
    expect(stderr).not.toContain('handles still open');
    // Nothing was written: no table in the agent's namespace, no program on the cgroup.
    const table = await run('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'inet', 'edgeway']).then(() => 'present', () => 'absent');
    expect(table).toBe('absent');
    expect((await run('bpftool', ['-j', 'cgroup', 'show', cgroup])).stdout.trim() || '[]').toBe('[]');
  }, 90_000);
});
