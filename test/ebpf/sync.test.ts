/**
 * Ordering and idempotence of socket-LB map updates (pure; no kernel).
 * IP plan: ClusterIPs 10.96.0.0/16 and fd00:96::/64, backends 10.1.0.0/24, fd00:1::/64.
 */
import { describe, expect, it } from 'vitest';
import { computeSync, desiredFrontends, emptyState, type SyncOp } from '../../src/dataplane/ebpf/sync.js';
import { ep, plan, svcPort } from './plans.js';

const web = (eps: string[]) => svcPort('web', ['10.96.0.10'], 80, eps.map((ip) => ep(ip, 8080)));

/** Index of the first op matching, for ordering assertions. */
const idx = (ops: SyncOp[], pred: (o: SyncOp) => boolean): number => ops.findIndex(pred);
const isMaster = (o: SyncOp): boolean => o.map === 'svc4' && typeof o.key === 'object' && o.key.slot === 0;

describe('desiredFrontends', () => {
  it.each([
    ['kernel TCP service → one frontend', plan(web(['10.1.0.1'])), 1, {}],
    ['userspace target → fallback', plan(svcPort('a', ['10.96.0.11'], 80, [ep('10.1.0.1', 80, 'remote')], { target: 'userspace' })), 0, { userspace: 1 }],
    ['reject target → fallback', plan(svcPort('a', ['10.96.0.11'], 80, [], { target: 'reject' })), 0, { reject: 1 }],
    ['SCTP → fallback', plan(svcPort('a', ['10.96.0.11'], 80, [ep('10.1.0.1', 80)], { protocol: 'SCTP' })), 0, { protocol: 1 }],
    ['dual stack with v4 endpoints only', plan(svcPort('a', ['10.96.0.11', 'fd00:96::11'], 80, [ep('10.1.0.1', 80)])), 1, { 'no-family-endpoints': 1 }],
    ['dual stack with both families', plan(svcPort('a', ['10.96.0.11', 'fd00:96::11'], 80, [ep('10.1.0.1', 80), ep('fd00:1::1', 80)])), 2, {}],
  ])('%s', (_n, p, frontends, fallbacks) => {
    const d = desiredFrontends(p);
    expect(d.frontends.size).toBe(frontends);
    expect(Object.fromEntries(d.fallbacks)).toEqual(fallbacks);
  });

  it('maps clientIp policy to the affinity flag and timeout', () => {
    const d = desiredFrontends(plan(svcPort('a', ['10.96.0.11'], 53, [ep('10.1.0.1', 53)], { protocol: 'UDP', policy: { kind: 'clientIp', timeoutSeconds: 30 } })));
    const fe = [...d.frontends.values()][0]!;
    expect(fe).toMatchObject({ proto: 17, flags: 1, affinityTimeout: 30 });
  });
});

describe('computeSync', () => {
  it('writes backends, then slots, then the master entry', () => {
    const { ops } = computeSync(emptyState(), desiredFrontends(plan(web(['10.1.0.1', '10.1.0.2']))).frontends);
    expect(ops.map((o) => `${o.op}:${o.map}:${typeof o.key === 'number' ? o.key : String(o.key.slot)}`)).toEqual([
      'update:backend4:1', 'update:backend4:2', 'update:svc4:1', 'update:svc4:2', 'update:svc4:0',
    ]);
    expect(ops.at(-1)!.value).toMatchObject({ count: 2, revision: 1 });
  });

  it('is idempotent', () => {
    const d = desiredFrontends(plan(web(['10.1.0.1', '10.1.0.2']))).frontends;
    const first = computeSync(emptyState(), d);
    expect(computeSync(first.next, d).ops).toEqual([]);
  });

  it('replacing a backend: new backend before the master, stale backend deleted last', () => {
    const s1 = computeSync(emptyState(), desiredFrontends(plan(web(['10.1.0.1', '10.1.0.2']))).frontends).next;
    const { ops, next } = computeSync(s1, desiredFrontends(plan(web(['10.1.0.1', '10.1.0.3']))).frontends);
    const newBe = idx(ops, (o) => o.op === 'update' && o.map === 'backend4');
    const master = idx(ops, isMaster);
    const staleBe = idx(ops, (o) => o.op === 'delete' && o.map === 'backend4');
    expect(newBe).toBeGreaterThanOrEqual(0);
    expect(newBe).toBeLessThan(master);
    expect(master).toBeLessThan(staleBe);
    expect(staleBe).toBe(ops.length - 1);
    expect(ops[master]!.value).toMatchObject({ count: 2, revision: 2 });
    // The kept backend keeps its id (affinity and reverse entries stay valid).
    expect([...next.frontends.values()][0]!.slots.get(1)).toBe(1);
  });

  it('shrinking: master (smaller count) before the slot beyond it is deleted', () => {
    const s1 = computeSync(emptyState(), desiredFrontends(plan(web(['10.1.0.1', '10.1.0.2', '10.1.0.3']))).frontends).next;
    const { ops } = computeSync(s1, desiredFrontends(plan(web(['10.1.0.1', '10.1.0.2']))).frontends);
    const master = idx(ops, isMaster);
    const slotDel = idx(ops, (o) => o.op === 'delete' && o.map === 'svc4');
    expect(ops[master]!.value).toMatchObject({ count: 2 });
    expect(master).toBeLessThan(slotDel);
    expect(ops.filter((o) => o.op === 'delete').map((o) => o.map)).toEqual(['svc4', 'backend4']);
  });

  it('removing a service: master first, then its slots, then its backends', () => {
    const s1 = computeSync(emptyState(), desiredFrontends(plan(web(['10.1.0.1', '10.1.0.2']))).frontends).next;
    const { ops, next } = computeSync(s1, new Map());
    expect(ops.map((o) => `${o.op}:${o.map}:${typeof o.key === 'number' ? o.key : String(o.key.slot)}`)).toEqual([
      'delete:svc4:0', 'delete:svc4:1', 'delete:svc4:2', 'delete:backend4:1', 'delete:backend4:2',
    ]);
    expect(next.frontends.size).toBe(0);
    expect(next.backends.size).toBe(0);
  });

  it('allocates distinct service and backend ids across frontends', () => {
    const p = plan(web(['10.1.0.1']), svcPort('api', ['10.96.0.20', 'fd00:96::20'], 443, [ep('10.1.0.1', 8443), ep('fd00:1::1', 8443)]));
    const { next } = computeSync(emptyState(), desiredFrontends(p).frontends);
    const svcIds = [...next.frontends.values()].map((f) => f.svcId);
    expect(new Set(svcIds).size).toBe(3);
    expect(next.backends.size).toBe(3);
  });
});
