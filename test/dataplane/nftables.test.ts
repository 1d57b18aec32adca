/**
 * nftables compiler, transactions, fake executor and sync loop (no kernel).
 * IP plan: cluster IPs 10.96.0.0/16 and fd00:96::/64; endpoints 10.244.0.0/16 and
 * fd00:244::/64.
 */
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { compile } from '../../src/dataplane/nftables/compile.js';
import { diffTransaction, fullTransaction } from '../../src/dataplane/nftables/transaction.js';
import { FakeNftExecutor } from '../helpers/fake-nft-executor.js';
import { NftError, classifyNftStderr } from '../../src/dataplane/nftables/errors.js';
import { NftSyncer } from '../../src/dataplane/nftables/sync.js';
import { serviceChain } from '../../src/dataplane/nftables/names.js';
import { rulesetText } from '../../src/dataplane/nftables/render.js';
import { silentLogger } from '../../src/util/log.js';
import type { Plan, PlannedEndpoint, PlannedPolicy, PlannedServicePort } from '../../src/plan/types.js';

function ep(ip: string, port = 8080): PlannedEndpoint {
  return { ip, family: ip.includes(':') ? 6 : 4, port, class: 'local', ready: true };
}

function sp(name: string, clusterIPs: string[], endpoints: PlannedEndpoint[], policy: PlannedPolicy = { kind: 'random' }, over: Partial<PlannedServicePort> = {}): PlannedServicePort {
  return {
    id: `default/${name}:80/TCP`, serviceKey: `default/${name}`, namespace: 'default', name, portName: '', protocol: 'TCP', port: 80,
    clusterIPs, endpoints, policy, target: endpoints.length ? 'kernel' : 'reject', ...over,
  };
}

function plan(servicePorts: PlannedServicePort[], revision = 1): Plan {
  return { nodeName: 'n1', revision, servicePorts: [...servicePorts].sort((a, b) => (a.id < b.id ? -1 : 1)), userspacePortExhausted: [] };
}

function manyServices(n: number, eps = 2): PlannedServicePort[] {
  return Array.from({ length: n }, (_, i) => sp(`s${i}`, [`10.96.${i >> 8}.${i & 255}`], Array.from({ length: eps }, (_, j) => ep(`10.${100 + j}.${i >> 8}.${i & 255}`))));
}

async function applyFull(p: Plan): Promise<FakeNftExecutor> {
  const fake = new FakeNftExecutor();
  await fake.run(fullTransaction(compile(p)));
  return fake;
}

const svc4 = (fake: FakeNftExecutor): Record<string, unknown> => fake.dump()!.sets.svc4!;

describe('compile → fake kernel', () => {
  it.each([
    { name: 'random → shared lb_K chain', p: sp('a', ['10.96.0.1'], [ep('10.244.0.1'), ep('10.244.0.2')]), target: 'lb_2', ep4: 2 },
    { name: 'round robin → own chain', p: sp('a', ['10.96.0.1'], [ep('10.244.0.1'), ep('10.244.0.2')], { kind: 'roundRobin' }), target: serviceChain('rr', 'default/a:80/TCP'), ep4: 2 },
    { name: 'affinity → own chain, no endpoint elements', p: sp('a', ['10.96.0.1'], [ep('10.244.0.1')], { kind: 'clientIp', timeoutSeconds: 30 }), target: serviceChain('aff', 'default/a:80/TCP'), ep4: 0 },
    { name: 'no endpoints → reject', p: sp('a', ['10.96.0.1'], []), target: 'no_endpoints', ep4: 0 },
    { name: 'userspace → redirect chain', p: sp('a', ['10.96.0.1'], [ep('10.244.0.1')], { kind: 'leastRequest' }, { target: 'userspace', userspacePort: 20123 }), target: 'userspace', ep4: 0 },
  ])('$name', async ({ p, target, ep4 }) => {
    const fake = await applyFull(plan([p]));
    const d = fake.dump()!;
    expect(Object.values(svc4(fake))).toEqual([{ goto: { target } }]);
    expect(Object.keys(d.sets.ep4_tcp!)).toHaveLength(ep4);
    expect(d.chains[target]).toBeDefined();
  });

  it('dual-stack service fills both maps; an empty family rejects', async () => {
    const fake = await applyFull(plan([sp('a', ['10.96.0.1', 'fd00:96::1'], [ep('10.244.0.1')])]));
    const d = fake.dump()!;
    expect(Object.values(d.sets.svc4!)).toEqual([{ goto: { target: 'lb_1' } }]);
    expect(Object.values(d.sets.svc6!)).toEqual([{ goto: { target: 'no_endpoints' } }]);
  });

  it('affinity declares one dynamic set per endpoint position', () => {
    const rs = compile(plan([sp('a', ['10.96.0.1'], [ep('10.244.0.1'), ep('10.244.0.2'), ep('10.244.0.3')], { kind: 'clientIp', timeoutSeconds: 30 })]));
    expect(rs.sets.filter((s) => s.dynamic).map((s) => s.name)).toEqual(['aff4_0', 'aff4_1', 'aff4_2']);
    expect(rulesetText(rs)).toContain('numgen random mod 3 0 update @aff4_0 { ip saddr . ip daddr . meta l4proto . tcp dport timeout 30s } dnat ip to 10.244.0.1:8080');
  });

  it('hairpin set holds ep . ep for kernel endpoints', async () => {
    const fake = await applyFull(plan([sp('a', ['10.96.0.1'], [ep('10.244.0.1')])]));
    expect(Object.keys(fake.dump()!.sets.hairpin4!)).toEqual([JSON.stringify({ concat: ['10.244.0.1', '10.244.0.1'] })]);
  });
});

describe('fake executor is a real model', () => {
  it('rejects a jump to a missing chain and leaves the table unchanged', async () => {
    const fake = await applyFull(plan([sp('a', ['10.96.0.1'], [ep('10.244.0.1')])]));
    const before = JSON.stringify(fake.dump());
    const bad = { declare: [], commands: [
      { add: { element: { family: 'inet', table: 'edgeway', name: 'ep4_tcp', elem: [[{ concat: ['10.96.9.9', 'tcp', 80, 0] }, { concat: ['10.244.0.9', 80] }]] as never } } },
      { add: { element: { family: 'inet', table: 'edgeway', name: 'svc4', elem: [[{ concat: ['10.96.9.9', 'tcp', 80] }, { goto: { target: 'nope' } }]] as never } } },
    ] } as const;
    await expect(fake.run(bad)).rejects.toMatchObject({ code: 'ERR_NFT_NOT_FOUND' });
    expect(JSON.stringify(fake.dump())).toBe(before);
  });

  it.each([
    { name: 'deleting a chain still referenced', cmd: { delete: { chain: { family: 'inet', table: 'edgeway', name: 'lb_1' } } }, code: 'ERR_NFT_BUSY' },
    { name: 'deleting a missing element', cmd: { delete: { element: { family: 'inet', table: 'edgeway', name: 'svc4', elem: [{ concat: ['10.1.1.1', 'tcp', 1] }] } } }, code: 'ERR_NFT_NOT_FOUND' },
    { name: 'a rule naming a missing set', cmd: { add: { rule: { family: 'inet', table: 'edgeway', chain: 'services', expr: [{ vmap: { key: 1, data: '@nope' } }] } } }, code: 'ERR_NFT_NOT_FOUND' },
    { name: 'an object outside our table', cmd: { add: { chain: { family: 'ip', table: 'filter', name: 'x' } } }, code: 'ERR_NFT_INVALID' },
  ])('refuses $name', async ({ cmd, code }) => {
    const fake = await applyFull(plan([sp('a', ['10.96.0.1'], [ep('10.244.0.1')])]));
    await expect(fake.run({ declare: [], commands: [cmd as never] })).rejects.toMatchObject({ code });
  });
});

describe('incremental transactions', () => {
  const steps: { name: string; next: (p: PlannedServicePort[]) => PlannedServicePort[] }[] = [
    { name: 'add an endpoint', next: (p) => p.map((s, i) => (i === 0 ? { ...s, endpoints: [...s.endpoints, ep('10.244.9.9')] } : s)) },
    { name: 'remove an endpoint', next: (p) => p.map((s, i) => (i === 1 ? { ...s, endpoints: s.endpoints.slice(1) } : s)) },
    { name: 'switch to round robin', next: (p) => p.map((s, i) => (i === 2 ? { ...s, policy: { kind: 'roundRobin' } } : s)) },
    { name: 'switch to affinity', next: (p) => p.map((s, i) => (i === 3 ? { ...s, policy: { kind: 'clientIp', timeoutSeconds: 10 } } : s)) },
    { name: 'back to random', next: (p) => p.map((s, i) => (i === 2 || i === 3 ? { ...s, policy: { kind: 'random' } } : s)) },
    { name: 'drop all endpoints', next: (p) => p.map((s, i) => (i === 4 ? { ...s, endpoints: [], target: 'reject' } : s)) },
    { name: 'to userspace', next: (p) => p.map((s, i) => (i === 5 ? { ...s, target: 'userspace', userspacePort: 20200, policy: { kind: 'leastRequest' } } : s)) },
    { name: 'remove a service', next: (p) => p.slice(1) },
    { name: 'add services', next: (p) => [...p, ...manyServices(12).slice(10)] },
  ];

  it('a sequence of diffs gives exactly what a full sync gives', async () => {
    let ports = manyServices(10);
    const inc = await applyFull(plan(ports));
    let prev = compile(plan(ports));
    for (const s of steps) {
      ports = s.next(ports);
      const next = compile(plan(ports));
      await inc.run(diffTransaction(prev, next));
      const full = await applyFull(plan(ports));
      const strip = (f: FakeNftExecutor): unknown => {
        const d = f.dump()!;
        return { chains: d.chains, sets: Object.fromEntries(Object.entries(d.sets).filter(([k]) => !k.startsWith('aff'))) };
      };
      expect(strip(inc), s.name).toEqual(strip(full));
      prev = next;
    }
  });

  it('one endpoint change costs the same at 10 and 2000 services', () => {
    const size = (n: number): number => {
      const a = manyServices(n);
      const b = a.map((s, i) => (i === 0 ? { ...s, endpoints: [s.endpoints[0]!, ep('10.244.7.7')] } : s));
      return diffTransaction(compile(plan(a)), compile(plan(b))).commands.length;
    };
    expect(size(10)).toBe(size(2000));
    expect(size(10)).toBeLessThanOrEqual(4);
  });

  it('nothing changed → empty transaction', () => {
    const p = plan(manyServices(5));
    expect(diffTransaction(compile(p), compile(p)).commands).toEqual([]);
  });
});

describe('errors', () => {
  it.each([
    ['Error: Could not process rule: No such file or directory', 'ERR_NFT_NOT_FOUND'],
    ['Error: Could not process rule: File exists', 'ERR_NFT_EXISTS'],
    ['Error: Could not process rule: Device or resource busy', 'ERR_NFT_BUSY'],
    ['internal:0:0-0: Error: Invalid map type', 'ERR_NFT_INVALID'],
    ['Error: Could not process rule: Operation not supported', 'ERR_NFT_UNAVAILABLE'],
    ['something else', 'ERR_NFT_APPLY'],
  ])('%s → %s', (stderr, code) => {
    expect(classifyNftStderr(stderr)).toBe(code);
  });
});

describe('NftSyncer', () => {
  const make = (fake: FakeNftExecutor): NftSyncer => new NftSyncer({ executor: fake, logger: silentLogger(), registry: new Registry(), minIntervalMs: 20, driftCheckIntervalMs: 0, backoffMinMs: 10, backoffMaxMs: 20 });
  const wait = async (cond: () => boolean): Promise<void> => {
    for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
    expect(cond()).toBe(true);
  };

  it('writes nothing before the first plan', async () => {
    const fake = new FakeNftExecutor();
    const s = make(fake);
    s.start();
    await s.flush();
    expect(fake.history).toHaveLength(0);
    await s.stop();
  });

  it('full first, incremental next, bursts coalesced', async () => {
    const fake = new FakeNftExecutor();
    const s = make(fake);
    const ports = manyServices(20);
    s.update(plan(ports, 1));
    await s.flush();
    expect(s.lastResult?.kind).toBe('full');
    for (let r = 2; r < 7; r++) s.update(plan(ports.map((x, i) => (i === 0 ? { ...x, endpoints: x.endpoints.slice(0, 1 + (r % 2)) } : x)), r));
    await wait(() => s.appliedRevision === 6);
    expect(fake.history).toHaveLength(2);
    expect(s.lastResult?.kind).toBe('incremental');
    await s.stop();
  });

  it('a failure forces a full sync on retry', async () => {
    const fake = new FakeNftExecutor();
    const s = make(fake);
    s.update(plan(manyServices(3), 1));
    await s.flush();
    fake.failNext = new NftError('ERR_NFT_APPLY', 'boom');
    s.update(plan(manyServices(4), 2));
    await wait(() => s.appliedRevision === 2);
    expect(s.lastResult?.kind).toBe('full');
    await s.stop();
  });

  it('drift (table flushed by hand) is repaired by a full sync', async () => {
    const fake = new FakeNftExecutor();
    const s = make(fake);
    s.update(plan(manyServices(3), 1));
    await s.flush();
    expect(await s.checkDrift()).toEqual([]);
    fake.flushTableByHand();
    expect((await s.checkDrift()).length).toBeGreaterThan(0);
    await s.flush();
    expect(s.lastResult?.kind).toBe('full');
    expect(await s.checkDrift()).toEqual([]);
    await fake.deleteTable();
    expect(await s.checkDrift()).toEqual(['table inet edgeway is missing']);
    await s.flush();
    expect(await fake.inspect()).toBeDefined();
    await s.stop();
  });
});
