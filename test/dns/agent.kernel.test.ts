/**
 * The agent's DNS inside a network namespace: it creates the dummy interface with
 * 169.254.96.16, answers cluster names from a static catalog on 169.254.96.16:53
 * (UDP and TCP, with dig), and removes the interface when it stops.
 * IP plan: 169.254.96.16/32 on edgeway0, inside the test namespace only.
 * Needs `npm run build` (CI builds before tests).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, kernelSkipReason } from '../helpers/netns.js';
import { writeDnsAgentConfig } from './fixtures.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const skip = kernelSkipReason() ?? (existsSync(join(root, 'dist/cli/main.js')) ? undefined : 'dist/ missing: run npm run build');
if (skip) console.warn(`skipping dns agent kernel test: ${skip}`);

describe.skipIf(!!skip)('dns agent in a namespace', () => {
  const lab = new Lab();
  let dir = '';
  afterAll(async () => {
    await lab.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('creates edgeway0, answers on 169.254.96.16:53, removes it on stop', async () => {
    const ns = await lab.ns('dns');
    dir = await mkdtemp(join(tmpdir(), 'ew-dns-k-'));
    const cfg = await writeDnsAgentConfig(dir, '{ listen: ["169.254.96.16:53"], upstreams: ["127.0.0.1:5399"] }');
    const agent = lab.spawn(ns, process.execPath, [join(root, 'bin/edgeway.js'), 'agent', '--config', cfg]);
    let answer = '';
    for (let i = 0; i < 50 && answer === ''; i++) {
      await new Promise((r) => setTimeout(r, 200));
      answer = (await lab.exec(ns, 'dig', ['@169.254.96.16', '+short', '+time=1', '+tries=1', 'web.default.svc.cluster.local']).catch(() => ({ stdout: '' }))).stdout.trim();
    }
    expect(answer).toBe('10.96.0.10');
    const addr = (await lab.exec(ns, 'ip', ['-o', 'addr', 'show', 'dev', 'edgeway0'])).stdout;
    expect(addr).toContain('169.254.96.16/32');
    const tcp = (await lab.exec(ns, 'dig', ['@169.254.96.16', '+tcp', '+short', '+time=2', '+tries=1', 'web.default.svc.cluster.local'])).stdout.trim();
    expect(tcp).toBe('10.96.0.10');
    const nx = (await lab.exec(ns, 'dig', ['@169.254.96.16', '+time=2', '+tries=1', 'nope.default.svc.cluster.local'])).stdout;
    expect(nx).toContain('status: NXDOMAIN');
    // Not listening anywhere else: loopback port 53 is closed.
    const lo = await lab.exec(ns, 'dig', ['@127.0.0.1', '+time=1', '+tries=1', 'web.default.svc.cluster.local']).then(() => 'answered', () => 'no answer');
    expect(lo).toBe('no answer');
    await agent.stop();
    expect(agent.child.exitCode).toBe(0);
    const gone = await lab.exec(ns, 'ip', ['link', 'show', 'dev', 'edgeway0']).then(() => 'present', () => 'absent');
    expect(gone).toBe('absent');

    // An interface left behind by a crashed agent is adopted, served on and removed.
    await lab.exec(ns, 'ip', ['link', 'add', 'edgeway0', 'type', 'bridge']);
    await lab.exec(ns, 'ip', ['addr', 'add', '169.254.96.16/32', 'dev', 'edgeway0']);
    await lab.exec(ns, 'ip', ['link', 'set', 'edgeway0', 'up']);
    const again = lab.spawn(ns, process.execPath, [join(root, 'bin/edgeway.js'), 'agent', '--config', cfg]);
    answer = '';
    for (let i = 0; i < 50 && answer === ''; i++) {
      await new Promise((r) => setTimeout(r, 200));
      answer = (await lab.exec(ns, 'dig', ['@169.254.96.16', '+short', '+time=1', '+tries=1', 'web.default.svc.cluster.local']).catch(() => ({ stdout: '' }))).stdout.trim();
    }
    expect(answer).toBe('10.96.0.10');
    await again.stop();
    expect(await lab.exec(ns, 'ip', ['link', 'show', 'dev', 'edgeway0']).then(() => 'present', () => 'absent')).toBe('absent');
  });
});
