/**
 * mode ebpf = nftables + socket-LB: nftables stays authoritative and socket-LB
 * failures degrade cleanly. The nftables side and the socket-LB controller are
 * process boundaries here (recording fakes); the real ones are tested in netns.
 */
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { EbpfDataplane, socketLbDecision, type PlanDataplane, type SocketLbLifecycle } from '../../src/dataplane/ebpf/combined.js';
import type { SocketLbProbe } from '../../src/dataplane/ebpf/host.js';
import { ep, plan, svcPort } from './plans.js';

const p1 = plan(svcPort('web', ['10.96.0.10'], 80, [ep('10.1.0.2', 8080)]));

function fakes(fail: Partial<Record<'start' | 'apply' | 'reconcile', number>> = {}) {
  const calls: string[] = [];
  const left = { ...fail };
  const maybeFail = (what: keyof typeof left): void => {
    if ((left[what] ?? 0) > 0) { left[what]!--; throw new Error(`${what} failed`); }
  };
  const base: PlanDataplane = {
    apply: async () => { calls.push('nft.apply'); },
    reconcile: async () => { calls.push('nft.reconcile'); },
    cleanup: async () => { calls.push('nft.cleanup'); },
  };
  const lb: SocketLbLifecycle = {
    start: async () => { calls.push('lb.start'); maybeFail('start'); },
    apply: async () => { calls.push('lb.apply'); maybeFail('apply'); return 1; },
    reconcile: async () => { calls.push('lb.reconcile'); maybeFail('reconcile'); return 0; },
    stop: async () => { calls.push('lb.stop'); },
    cleanup: async () => { calls.push('lb.cleanup'); },
  };
  return { base, lb, calls };
}

describe('EbpfDataplane', () => {
  it('applies nftables first, then socket-LB', async () => {
    const { base, lb, calls } = fakes();
    const dp = new EbpfDataplane({ base, socketLb: lb });
    await dp.start();
    await dp.apply(p1);
    expect(calls).toEqual(['lb.start', 'nft.apply', 'lb.apply']);
    expect(dp.socketLbActive).toBe(true);
  });

  it.each([
    ['start', { start: 1 }, 'start-failed'],
    ['apply', { apply: 1 }, 'apply-failed'],
  ] as const)('a socket-LB %s failure degrades to nftables, is counted, and reconcile recovers', async (_n, fail, reason) => {
    const registry = new Registry();
    const { base, lb, calls } = fakes(fail);
    const dp = new EbpfDataplane({ base, socketLb: lb, registry });
    await dp.start();
    await dp.apply(p1);
    expect(calls).toContain('nft.apply');
    expect(dp.socketLbActive).toBe(false);
    expect(await registry.metrics()).toContain(`edgeway_ebpf_fallbacks_total{reason="${reason}"} 1`);
    await dp.reconcile();
    expect(dp.socketLbActive).toBe(true);
    expect(await registry.metrics()).toContain('edgeway_ebpf_socket_lb_active 1');
    expect(calls.at(-1)).toBe('lb.apply');
  });

  it('nftables errors propagate', async () => {
    const { lb } = fakes();
    const base: PlanDataplane = { apply: () => Promise.reject(new Error('nft broke')), reconcile: async () => undefined, cleanup: async () => undefined };
    const dp = new EbpfDataplane({ base, socketLb: lb });
    await dp.start();
    await expect(dp.apply(p1)).rejects.toThrow('nft broke');
  });

  it('cleanup removes socket-LB state before nftables', async () => {
    const { base, lb, calls } = fakes();
    const dp = new EbpfDataplane({ base, socketLb: lb });
    await dp.cleanup();
    expect(calls).toEqual(['lb.cleanup', 'nft.cleanup']);
  });
});

describe('socketLbDecision', () => {
  const ok: SocketLbProbe = { supported: true, reasons: [], cgroup2Root: '/sys/fs/cgroup/unified', bpftool: 'v7.1.0', bpffsMounted: true, object: { path: 'x.o', present: true }, features: { sockAddrPrograms: true, netnsCookie: true, socketCookie: true } };
  const bad: SocketLbProbe = { ...ok, supported: false, reasons: ['no cgroup v2 hierarchy mounted'] };
  it.each([
    ['auto + supported', 'auto', ok, true, false],
    ['auto + unsupported', 'auto', bad, false, false],
    ['ebpf + unsupported (required)', 'ebpf', bad, false, true],
    ['nftables', 'nftables', ok, false, false],
  ] as const)('%s', (_n, mode, probe, enabled, required) => {
    const d = socketLbDecision(mode, probe);
    expect(d).toMatchObject({ enabled, required });
    if (!enabled && mode !== 'nftables') expect(d.reason).toMatch(/cgroup v2/);
  });
});
