/**
 * The syncer's per-service-port shadow (incremental.ts) against the plain
 * compiler: after any sequence of seeded random changes its ruleset equals
 * compile(plan), and the transaction it sends is the one diffTransaction would
 * send — applied to the table model (FakeNftExecutor, which checks jump targets,
 * set references and missing elements) it leaves exactly the table a full apply
 * of the new plan leaves. IP plan: see random-plan.ts.
 */
import { describe, expect, it } from 'vitest';
import { compile } from '../../src/dataplane/nftables/compile.js';
import { RulesetTracker } from '../../src/dataplane/nftables/incremental.js';
import { diffTransaction, fullTransaction, type Transaction } from '../../src/dataplane/nftables/transaction.js';
import type { Ruleset } from '../../src/dataplane/nftables/model.js';
import { FakeNftExecutor } from '../helpers/fake-nft-executor.js';
import { prng } from '../helpers/prng.js';
import { mutate, randomPlan } from './random-plan.js';

/** Order-insensitive view of a ruleset (chain and element order is not part of the contract). */
function view(rs: Ruleset): unknown {
  return {
    sets: rs.sets.map((s) => JSON.stringify(s)).sort(),
    chains: rs.chains.map((c) => JSON.stringify(c)).sort(),
    elements: [...rs.elements].filter(([, m]) => m.size > 0).map(([name, m]) => [name, [...m.values()].map((e) => JSON.stringify(e)).sort()]).sort(),
  };
}
/** A transaction as a sorted list; element lists sorted too (their order within one command means nothing). */
const commands = (tx: Transaction): string[] => [
  ...tx.declare.map((d) => `declare ${JSON.stringify(d)}`),
  ...tx.commands.map((c) => JSON.stringify(c, (k, v: unknown) => (k === 'elem' && Array.isArray(v) ? v.map((e) => JSON.stringify(e)).sort() : v))),
].sort();

describe('RulesetTracker (incremental shadow)', () => {
  it.each([1, 2, 3, 4])('seed %i: 40 random syncs — same ruleset as compile(), same commands as diffTransaction, same table as a full apply', async (seed) => {
    const rnd = prng(seed);
    let plan = randomPlan(rnd, 120, 1);
    const t = new RulesetTracker();
    t.reset(plan);
    expect(view(t.ruleset())).toEqual(view(compile(plan)));
    const fake = new FakeNftExecutor();
    await fake.run(fullTransaction(t.ruleset()));
    let sent = 0;
    for (let step = 0; step < 40; step++) {
      const prev = compile(plan);
      plan = mutate(rnd, plan);
      const tx = t.advance(plan);
      sent += tx.commands.length;
      expect(commands(tx), `step ${step}`).toEqual(commands(diffTransaction(prev, compile(plan))));
      await fake.run(tx);
      expect(view(t.ruleset()), `step ${step}`).toEqual(view(compile(plan)));
      const fresh = new FakeNftExecutor();
      await fresh.run(fullTransaction(compile(plan)));
      // An affinity set outlives the last port that needed it (diffs never delete
      // sets; stickiness survives): the only difference a fresh table may show.
      const got = fake.dump()!;
      const want = fresh.dump()!;
      for (const name of Object.keys(got.sets)) if (/^aff[46]_\d+$/.test(name) && !(name in want.sets)) delete got.sets[name];
      expect(got, `step ${step}`).toEqual(want);
    }
    expect(sent).toBeGreaterThan(40);
  });

  it('an unchanged plan sends nothing; one endpoint change sends only its element', () => {
    const plan = randomPlan(prng(9), 500, 1);
    const t = new RulesetTracker();
    t.reset(plan);
    expect(t.advance({ ...plan, revision: 2 }).commands).toEqual([]);
    const i = plan.servicePorts.findIndex((sp) => sp.target === 'kernel' && sp.policy.kind === 'random' && sp.endpoints.length === 2 && sp.endpoints[0]!.family === 4);
    const sp = plan.servicePorts[i]!;
    const ports = [...plan.servicePorts];
    ports[i] = { ...sp, endpoints: [sp.endpoints[0]!, { ...sp.endpoints[1]!, ip: '10.244.99.99' }] };
    const tx = t.advance({ ...plan, revision: 3, servicePorts: ports });
    expect(tx.declare).toEqual([]);
    expect(tx.commands.map((c) => Object.keys(c)[0])).toEqual(['delete', 'add']);
    expect(JSON.stringify(tx.commands[1])).toContain('10.244.99.99');
  });
});
