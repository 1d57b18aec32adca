/**
 * Transactions: an ordered list of JSON commands (one atomic `nft -j -f -`) plus
 * the text-only declarations to make first (idempotent `add`, see model.ts SetDecl).
 * `fullTransaction` rewrites everything we own; `diffTransaction` sends only the
 * chains and elements that changed, so its size follows the change, not the table.
 */
import {
  FAMILY, TABLE, keyText,
  type ChainDecl, type Command, type Element, type Expr, type Ruleset, type SetDecl, type Verdict,
} from './model.js';
import { isServiceChain } from './names.js';

export interface Transaction {
  /** Text-only sets/maps to declare before the JSON commands (idempotent). */
  readonly declare: readonly SetDecl[];
  readonly commands: readonly Command[];
}

const T = { family: FAMILY, table: TABLE } as const;

/** Builder for a JSON transaction; validation happens when it runs (executor or fake). */
export class TxBuilder {
  private readonly cmds: Command[] = [];
  private readonly decls: SetDecl[] = [];

  declare(s: SetDecl): this { this.decls.push(s); return this; }
  addTable(): this { this.cmds.push({ add: { table: { family: FAMILY, name: TABLE } } }); return this; }
  addChain(c: ChainDecl): this {
    this.cmds.push({ add: { chain: { ...T, name: c.name, ...(c.base ? { type: c.base.type, hook: c.base.hook, prio: c.base.prio, policy: c.base.policy } : {}) } } });
    return this;
  }
  flushChain(name: string): this { this.cmds.push({ flush: { chain: { ...T, name } } }); return this; }
  deleteChain(name: string): this { this.cmds.push({ delete: { chain: { ...T, name } } }); return this; }
  addRules(c: ChainDecl): this {
    for (const expr of c.rules) this.cmds.push({ add: { rule: { ...T, chain: c.name, expr } } });
    return this;
  }
  addSet(s: SetDecl): this {
    if (s.text) return this.declare(s);
    const base = { ...T, name: s.name, type: s.type ?? [], ...(s.flags ? { flags: s.flags } : {}) };
    this.cmds.push(s.kind === 'map' ? { add: { map: { ...base, map: s.map ?? 'verdict' } } } : { add: { set: base } });
    return this;
  }
  flushSet(s: SetDecl): this {
    this.cmds.push(s.kind === 'map' ? { flush: { map: { ...T, name: s.name } } } : { flush: { set: { ...T, name: s.name } } });
    return this;
  }
  addElements(set: string, els: readonly Element[]): this {
    // Chunked: one command per 4096 elements keeps each netlink batch message modest.
    for (let i = 0; i < els.length; i += 4096) {
      this.cmds.push({ add: { element: { ...T, name: set, elem: els.slice(i, i + 4096).map(elemJson) } } });
    }
    return this;
  }
  deleteElements(set: string, keys: readonly Expr[]): this {
    for (let i = 0; i < keys.length; i += 4096) this.cmds.push({ delete: { element: { ...T, name: set, elem: keys.slice(i, i + 4096) } } });
    return this;
  }
  deleteTable(): this { this.cmds.push({ delete: { table: { family: FAMILY, name: TABLE } } }); return this; }
  get size(): number { return this.cmds.length + this.decls.length; }
  build(): Transaction { return { declare: [...this.decls], commands: [...this.cmds] }; }
}

function elemJson(e: Element): Expr | readonly [Expr, Expr | Verdict] {
  return e.data === undefined ? e.key : [e.key, e.data];
}

/**
 * Everything, atomically: (re)declare sets and chains, flush what we own (dynamic
 * affinity sets excepted: stickiness survives a resync), write all rules and
 * elements, and delete per-service chains the kernel has but the ruleset does not.
 * Idempotent.
 */
export function fullTransaction(rs: Ruleset, existingChains: readonly string[] = []): Transaction {
  const tx = new TxBuilder().addTable();
  for (const s of rs.sets) {
    tx.addSet(s);
  }
  for (const s of rs.sets) if (!s.dynamic) tx.flushSet(s);
  for (const c of rs.chains) tx.addChain(c).flushChain(c.name);
  for (const c of rs.chains) tx.addRules(c);
  for (const s of rs.sets) {
    const els = rs.elements.get(s.name);
    if (els && els.size) tx.addElements(s.name, [...els.values()]);
  }
  const want = new Set(rs.chains.map((c) => c.name));
  for (const name of existingChains) if (!want.has(name) && isServiceChain(name)) tx.flushChain(name).deleteChain(name);
  return tx.build();
}

function sameRules(a: ChainDecl, b: ChainDecl): boolean {
  return JSON.stringify(a.rules) === JSON.stringify(b.rules) && JSON.stringify(a.base) === JSON.stringify(b.base);
}

/**
 * Only what changed from `prev` (what the kernel holds) to `next`: new sets, new or
 * changed chains, element deletes/adds, then removed chains (after the map elements
 * that jumped to them are gone). Returns an empty transaction when nothing changed.
 */
export function diffTransaction(prev: Ruleset, next: Ruleset): Transaction {
  const tx = new TxBuilder();
  const prevSets = new Map(prev.sets.map((s) => [s.name, s]));
  for (const s of next.sets) if (!prevSets.has(s.name)) tx.addSet(s);
  const prevChains = new Map(prev.chains.map((c) => [c.name, c]));
  const nextChains = new Map(next.chains.map((c) => [c.name, c]));
  // New chains first, rules after: a rule may jump to a chain that is new in
  // this same transaction (e.g. the first service with K endpoints needs lb_K),
  // and nft resolves jump targets command by command.
  for (const c of next.chains) if (!prevChains.has(c.name)) tx.addChain(c);
  for (const c of next.chains) {
    const p = prevChains.get(c.name);
    if (!p) tx.addRules(c);
    else if (!sameRules(p, c)) tx.flushChain(c.name).addRules(c);
  }
  const dels: [string, Expr[]][] = [];
  const adds: [string, Element[]][] = [];
  for (const s of next.sets) {
    if (s.dynamic) continue;
    const before = prev.elements.get(s.name) ?? new Map<string, Element>();
    const after = next.elements.get(s.name) ?? new Map<string, Element>();
    const d: Expr[] = [];
    const a: Element[] = [];
    for (const [k, e] of before) {
      const n = after.get(k);
      if (!n) d.push(e.key);
      else if (JSON.stringify(n.data) !== JSON.stringify(e.data)) { d.push(e.key); a.push(n); }
    }
    for (const [k, e] of after) if (!before.has(k)) a.push(e);
    if (d.length) dels.push([s.name, d]);
    if (a.length) adds.push([s.name, a]);
  }
  for (const [name, keys] of dels) tx.deleteElements(name, keys);
  for (const [name, els] of adds) tx.addElements(name, els);
  for (const c of prev.chains) if (!nextChains.has(c.name)) tx.flushChain(c.name).deleteChain(c.name);
  return tx.build();
}

/** The transaction that removes everything we own. */
export function cleanupTransaction(): Transaction {
  return new TxBuilder().deleteTable().build();
}

export { keyText };
