/**
 * A typed subset of the nft JSON schema (libnftables-json(5), nft 1.0.6): the
 * expressions, statements and commands this data plane emits. Everything we send to
 * `nft -j -f -` is built from these types — never from rule strings.
 */

export const TABLE = 'edgeway';
export const FAMILY = 'inet';

export type Expr =
  | string
  | number
  | { readonly concat: readonly Expr[] }
  | { readonly payload: { readonly protocol: 'ip' | 'ip6' | 'tcp' | 'udp' | 'sctp' | 'th'; readonly field: 'saddr' | 'daddr' | 'sport' | 'dport' } }
  | { readonly meta: { readonly key: 'l4proto' | 'nfproto' } }
  | { readonly ct: { readonly key: 'status' } }
  | { readonly numgen: { readonly mode: 'random' | 'inc'; readonly mod: number } }
  | { readonly map: { readonly key: Expr; readonly data: string } }
  | { readonly elem: { readonly val: Expr; readonly timeout?: number } };

export type Verdict = { readonly jump: { readonly target: string } } | { readonly goto: { readonly target: string } };

export type Stmt =
  | { readonly match: { readonly op: '==' | '!=' | 'in'; readonly left: Expr; readonly right: Expr } }
  | { readonly vmap: { readonly key: Expr; readonly data: string } }
  | Verdict
  | { readonly dnat: { readonly family: 'ip' | 'ip6'; readonly addr: Expr; readonly port?: number } }
  | { readonly redirect: { readonly port: Expr } }
  | { readonly masquerade: null }
  | { readonly reject: { readonly type: 'tcp reset' } | null }
  | { readonly set: { readonly op: 'update' | 'add'; readonly elem: Expr; readonly set: string } }
  | { readonly counter: null };

export type Rule = readonly Stmt[];

export interface BaseChainSpec {
  readonly type: 'nat' | 'filter';
  readonly hook: 'prerouting' | 'output' | 'postrouting' | 'input' | 'forward';
  /** Numeric: nft 1.0.6 JSON rejects `dstnat` on the output hook. */
  readonly prio: number;
  readonly policy: 'accept';
}

export interface ChainDecl {
  readonly name: string;
  readonly base?: BaseChainSpec;
  readonly rules: readonly Rule[];
}

/**
 * A named set or map. `text` marks objects nft 1.0.6 cannot declare in JSON (maps
 * with concatenated data, `typeof` keys with numgen, dynamic sets): they are
 * declared once in nft text (`add map … { text }`, idempotent) and then filled
 * with JSON element commands like any other.
 */
export interface SetDecl {
  readonly name: string;
  readonly kind: 'set' | 'map';
  /** JSON-declarable key type(s), e.g. ['ipv4_addr', 'inet_proto', 'inet_service']. */
  readonly type?: readonly string[];
  /** Map data type, e.g. 'verdict' or 'inet_service'. */
  readonly map?: string;
  readonly flags?: readonly string[];
  readonly text?: string;
  /** Elements are written by the packet path (affinity): never flushed or diffed. */
  readonly dynamic?: boolean;
}

export interface Element {
  readonly key: Expr;
  readonly data?: Expr | Verdict;
}

/** The desired content of table inet edgeway. */
export interface Ruleset {
  readonly sets: readonly SetDecl[];
  readonly chains: readonly ChainDecl[];
  /** Set name → canonical key text → element. */
  readonly elements: ReadonlyMap<string, ReadonlyMap<string, Element>>;
}

/** Commands of a JSON transaction (the `nftables` array of `nft -j -f -`). */
export type Command =
  | { readonly add: AddObject }
  | { readonly flush: FlushObject }
  | { readonly delete: DeleteObject };

export type TableObj = { readonly table: { readonly family: string; readonly name: string } };
export type ChainObj = {
  readonly chain: { readonly family: string; readonly table: string; readonly name: string; readonly type?: string; readonly hook?: string; readonly prio?: number; readonly policy?: string };
};
export type SetObj = {
  readonly set: { readonly family: string; readonly table: string; readonly name: string; readonly type: string | readonly string[]; readonly flags?: readonly string[] };
};
export type MapObj = {
  readonly map: { readonly family: string; readonly table: string; readonly name: string; readonly type: string | readonly string[]; readonly map: string; readonly flags?: readonly string[] };
};
export type RuleObj = { readonly rule: { readonly family: string; readonly table: string; readonly chain: string; readonly expr: Rule } };
export type ElementObj = {
  readonly element: { readonly family: string; readonly table: string; readonly name: string; readonly elem: readonly (Expr | readonly [Expr, Expr | Verdict])[] };
};

export type AddObject = TableObj | ChainObj | SetObj | MapObj | RuleObj | ElementObj;
export type FlushObject = TableObj | ChainObj | { readonly set: { readonly family: string; readonly table: string; readonly name: string } } | { readonly map: { readonly family: string; readonly table: string; readonly name: string } };
export type DeleteObject = TableObj | { readonly chain: { readonly family: string; readonly table: string; readonly name: string } } | ElementObj;

/** Canonical text of an element key, for maps keyed by it and diffs. */
export function keyText(key: Expr): string {
  return JSON.stringify(key);
}

// --- small constructors (readability of the compiler) ---
export const payload = (protocol: 'ip' | 'ip6' | 'tcp' | 'udp' | 'sctp' | 'th', field: 'saddr' | 'daddr' | 'sport' | 'dport'): Expr => ({ payload: { protocol, field } });
export const meta = (key: 'l4proto' | 'nfproto'): Expr => ({ meta: { key } });
export const concat = (...parts: Expr[]): Expr => ({ concat: parts });
export const eq = (left: Expr, right: Expr): Stmt => ({ match: { op: '==', left, right } });
export const goto = (target: string): Verdict => ({ goto: { target } });
export const jump = (target: string): Verdict => ({ jump: { target } });
