/**
 * A fake executor that is a real model of our table (knftables' fake, in spirit):
 * it applies each transaction to a copy and swaps it in only when every command
 * succeeded, and it checks what the kernel checks — jump/goto targets exist, set
 * references (`@name`) resolve, chains in use cannot be deleted, elements exist
 * before they are deleted, an existing key cannot be re-added with other data.
 * For unit tests; `dump()` gives the content for assertions.
 */
import { FAMILY, TABLE, keyText, type Command, type Expr, type Rule, type SetDecl } from '../../src/dataplane/nftables/model.js';
import type { Transaction } from '../../src/dataplane/nftables/transaction.js';
import type { NftExecutor } from '../../src/dataplane/nftables/executor.js';
import type { TableSummary } from '../../src/dataplane/nftables/compile.js';
import { NftError } from '../../src/dataplane/nftables/errors.js';

interface FakeSet { kind: 'set' | 'map'; dynamic: boolean; elements: Map<string, unknown> }
interface FakeChain { base: boolean; rules: Rule[] }
interface FakeTable { sets: Map<string, FakeSet>; chains: Map<string, FakeChain> }

function clone(t: FakeTable): FakeTable {
  return {
    sets: new Map([...t.sets].map(([k, s]) => [k, { ...s, elements: new Map(s.elements) }])),
    chains: new Map([...t.chains].map(([k, c]) => [k, { ...c, rules: [...c.rules] }])),
  };
}

/** Every string in a JSON value (targets and @refs are found this way). */
function walk(v: unknown, visit: (key: string, value: unknown) => void): void {
  if (Array.isArray(v)) { for (const x of v) walk(x, visit); return; }
  if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) { visit(k, x); walk(x, visit); }
}

function refsOf(v: unknown): { chains: string[]; sets: string[] } {
  const chains: string[] = [];
  const sets: string[] = [];
  walk(v, (k, x) => {
    if ((k === 'jump' || k === 'goto') && x && typeof x === 'object') chains.push((x as { target: string }).target);
    if (typeof x === 'string' && x.startsWith('@')) sets.push(x.slice(1));
  });
  return { chains, sets };
}

const fail = (code: 'ERR_NFT_NOT_FOUND' | 'ERR_NFT_EXISTS' | 'ERR_NFT_BUSY' | 'ERR_NFT_INVALID', msg: string): never => {
  throw new NftError(code, msg, `Error: ${msg}`);
};

export class FakeNftExecutor implements NftExecutor {
  private table: FakeTable | undefined;
  /** Transactions applied (for assertions on size: incremental syncs stay small). */
  readonly history: Transaction[] = [];
  /** When set, the next run fails with this error (then clears). */
  failNext: NftError | undefined;

  async run(tx: Transaction): Promise<void> {
    this.history.push(tx);
    if (this.failNext) { const e = this.failNext; this.failNext = undefined; throw e; }
    let t = this.table ? clone(this.table) : undefined;
    for (const d of tx.declare) {
      t ??= { sets: new Map(), chains: new Map() };
      this.declareSet(t, d);
    }
    const out = this.applyAll(t, tx.commands);
    this.table = out;
  }

  private declareSet(t: FakeTable, d: SetDecl): void {
    const prev = t.sets.get(d.name);
    if (prev && prev.kind !== d.kind) fail('ERR_NFT_EXISTS', `${d.name} exists as a ${prev.kind}`);
    if (!prev) t.sets.set(d.name, { kind: d.kind, dynamic: !!d.dynamic, elements: new Map() });
  }

  private applyAll(start: FakeTable | undefined, cmds: readonly Command[]): FakeTable | undefined {
    let t = start;
    const need = (): FakeTable => t ?? fail('ERR_NFT_NOT_FOUND', `table ${FAMILY} ${TABLE} does not exist`);
    const own = (o: { family?: string; table?: string; name?: string }): void => {
      if (o.family !== FAMILY || (o.table ?? o.name) !== TABLE) fail('ERR_NFT_INVALID', `object outside ${FAMILY} ${TABLE}`);
    };
    for (const c of cmds) {
      if ('add' in c) {
        const a = c.add;
        if ('table' in a) { own(a.table); t ??= { sets: new Map(), chains: new Map() }; continue; }
        const tt = need();
        if ('chain' in a) { own(a.chain); if (!tt.chains.has(a.chain.name)) tt.chains.set(a.chain.name, { base: !!a.chain.hook, rules: [] }); continue; }
        if ('set' in a) { own(a.set); this.declareSet(tt, { name: a.set.name, kind: 'set' }); continue; }
        if ('map' in a) { own(a.map); this.declareSet(tt, { name: a.map.name, kind: 'map' }); continue; }
        if ('rule' in a) {
          own(a.rule);
          const ch = tt.chains.get(a.rule.chain) ?? fail('ERR_NFT_NOT_FOUND', `chain ${a.rule.chain} does not exist`);
          const r = refsOf(a.rule.expr);
          for (const x of r.chains) if (!tt.chains.has(x)) fail('ERR_NFT_NOT_FOUND', `rule jumps to missing chain ${x}`);
          for (const x of r.sets) if (!tt.sets.has(x)) fail('ERR_NFT_NOT_FOUND', `rule references missing set ${x}`);
          ch.rules.push(a.rule.expr);
          continue;
        }
        own(a.element);
        const s = tt.sets.get(a.element.name) ?? fail('ERR_NFT_NOT_FOUND', `set ${a.element.name} does not exist`);
        for (const el of a.element.elem) {
          const [key, data] = Array.isArray(el) ? (el as [Expr, unknown]) : [el as Expr, undefined];
          if ((s.kind === 'map') !== (data !== undefined)) fail('ERR_NFT_INVALID', `element for ${a.element.name} ${s.kind === 'map' ? 'needs' : 'must not have'} data`);
          for (const x of refsOf(data).chains) if (!tt.chains.has(x)) fail('ERR_NFT_NOT_FOUND', `element jumps to missing chain ${x}`);
          const k = keyText(key);
          if (s.elements.has(k) && JSON.stringify(s.elements.get(k)) !== JSON.stringify(data)) fail('ERR_NFT_EXISTS', `element ${k} exists in ${a.element.name}`);
          s.elements.set(k, data);
        }
        continue;
      }
      if ('flush' in c) {
        const f = c.flush;
        if ('table' in f) { for (const ch of need().chains.values()) ch.rules = []; continue; }
        const tt = need();
        if ('chain' in f) { (tt.chains.get(f.chain.name) ?? fail('ERR_NFT_NOT_FOUND', `chain ${f.chain.name} does not exist`)).rules = []; continue; }
        const name = 'set' in f ? f.set.name : f.map.name;
        (tt.sets.get(name) ?? fail('ERR_NFT_NOT_FOUND', `set ${name} does not exist`)).elements.clear();
        continue;
      }
      const d = c.delete;
      if ('table' in d) { need(); t = undefined; continue; }
      const tt = need();
      if ('chain' in d) {
        const name = d.chain.name;
        if (!tt.chains.has(name)) fail('ERR_NFT_NOT_FOUND', `chain ${name} does not exist`);
        for (const [other, ch] of tt.chains) {
          if (other !== name && ch.rules.some((r) => refsOf(r).chains.includes(name))) fail('ERR_NFT_BUSY', `chain ${name} is used by chain ${other}`);
        }
        for (const [sname, s] of tt.sets) {
          for (const v of s.elements.values()) if (refsOf(v).chains.includes(name)) fail('ERR_NFT_BUSY', `chain ${name} is used by set ${sname}`);
        }
        tt.chains.delete(name);
        continue;
      }
      const s = tt.sets.get(d.element.name) ?? fail('ERR_NFT_NOT_FOUND', `set ${d.element.name} does not exist`);
      for (const el of d.element.elem) {
        const k = keyText(el as Expr);
        if (!s.elements.delete(k)) fail('ERR_NFT_NOT_FOUND', `element ${k} not in ${d.element.name}`);
      }
    }
    return t;
  }

  async inspect(opts: { deep?: boolean } = {}): Promise<TableSummary | undefined> {
    if (!this.table) return undefined;
    if (!opts.deep) return { chains: new Map([...this.table.chains.keys()].map((k) => [k, undefined])), elements: new Map(), deep: false };
    return {
      chains: new Map([...this.table.chains].map(([k, c]) => [k, c.rules.length])),
      elements: new Map([...this.table.sets].map(([k, s]) => [k, s.elements.size])),
      deep: true,
    };
  }

  async deleteTable(): Promise<boolean> {
    const had = !!this.table;
    this.table = undefined;
    return had;
  }

  /** Simulate someone running `nft flush table inet edgeway`. */
  flushTableByHand(): void {
    if (this.table) for (const c of this.table.chains.values()) c.rules = [];
  }

  /** Current content: chain → rules, set → element key texts (sorted) with data. */
  dump(): { chains: Record<string, Rule[]>; sets: Record<string, Record<string, unknown>> } | undefined {
    if (!this.table) return undefined;
    return {
      chains: Object.fromEntries([...this.table.chains].map(([k, c]) => [k, c.rules])),
      sets: Object.fromEntries([...this.table.sets].map(([k, s]) => [k, Object.fromEntries([...s.elements].sort(([a], [b]) => (a < b ? -1 : 1)))])),
    };
  }
}
