/**
 * Start/stop ordering against the real kernel: the data-plane part writes table
 * inet edgeway with the real `nft` (or its chains with the real
 * `iptables-legacy-restore`) inside a namespace this test creates, and every
 * write that points a redirect at the proxy's userspace port finds the real
 * proxy already listening on it (the proxy runs in this process on 127.0.0.1; the
 * rules only exist in the namespace, nothing is dialled through them).
 * IP plan: see listener-order.ts (ClusterIP 10.96.0.10 → remote endpoint 10.244.1.5
 * on node n2: data only).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, kernelSkipReason, run } from '../helpers/netns.js';
import { requirement } from '../helpers/skip.js';
import { CliNftExecutor } from '../../src/dataplane/nftables/executor.js';
import { netnsExec } from '../../src/dataplane/iptables/exec.js';
import { listenerOrder, recordingExecutor } from './listener-order.js';

const skip = requirement('data-plane ordering kernel test', kernelSkipReason());

describe.skipIf(!!skip)('data-plane part with the real nft / iptables: listeners before rules', () => {
  const lab = new Lab();
  let ns = '';
  beforeAll(async () => { ns = await lab.ns('o'); });
  afterAll(async () => { await lab.destroy(); });

  it('every nft transaction pointing at the userspace port finds the proxy listening; the port closes after the rules moved', async () => {
    let inKernel = '';
    const r = await listenerOrder('nftables', {
      nft: (record) => recordingExecutor(new CliNftExecutor({ prefix: ['ip', 'netns', 'exec', ns] }), record),
      afterFirstSync: async (port) => {
        inKernel = (await run('ip', ['netns', 'exec', ns, 'nft', 'list', 'map', 'inet', 'edgeway', 'usp4'])).stdout;
        expect(inKernel).toContain(`10.96.0.10 . tcp . 80 : ${port}`);
      },
    });
    expect(inKernel).not.toBe('');
    expect(r.pointing).toBeGreaterThan(0);
    expect(r.pointingWithoutListener).toBe(0);
    expect(r.lastWriteBeforeCloseHadListener).toBe(true);
    // The service is gone from the kernel too.
    const after = (await run('ip', ['netns', 'exec', ns, 'nft', 'list', 'map', 'inet', 'edgeway', 'usp4'])).stdout;
    expect(after).not.toContain('10.96.0.10');
  });

  it('iptables (legacy, real iptables-restore in the namespace): every write pointing at the port finds the proxy listening', async () => {
    const ipt = await lab.ns('i');
    let saved = '';
    const r = await listenerOrder('iptables', {
      iptables: netnsExec(ipt),
      afterFirstSync: async (port) => {
        saved = (await run('ip', ['netns', 'exec', ipt, 'iptables-legacy-save', '-t', 'nat'])).stdout;
        expect(saved).toContain(`--to-ports ${port}`);
      },
    });
    expect(saved).not.toBe('');
    expect(r.pointing).toBeGreaterThan(0);
    expect(r.pointingWithoutListener).toBe(0);
    expect(r.lastWriteBeforeCloseHadListener).toBe(true);
    expect((await run('ip', ['netns', 'exec', ipt, 'iptables-legacy-save', '-t', 'nat'])).stdout).not.toContain('10.96.0.10');
  });
});
