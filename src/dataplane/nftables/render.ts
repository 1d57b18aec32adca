/**
 * nft text for humans (`edgeway render --format nft`) and for the text-only
 * declarations (model.ts SetDecl.text). The kernel is always written with JSON.
 */
import { FAMILY, TABLE, type ChainDecl, type Element, type Expr, type Ruleset, type SetDecl, type Stmt, type Verdict } from './model.js';

export function exprText(e: Expr): string {
  if (typeof e === 'string' || typeof e === 'number') return String(e);
  if ('concat' in e) return e.concat.map(exprText).join(' . ');
  if ('payload' in e) return `${e.payload.protocol} ${e.payload.field}`;
  if ('meta' in e) return `meta ${e.meta.key}`;
  if ('ct' in e) return `ct ${e.ct.key}`;
  if ('numgen' in e) return `numgen ${e.numgen.mode} mod ${e.numgen.mod}`;
  if ('map' in e) return `${exprText(e.map.key)} map ${e.map.data}`;
  return `${exprText(e.elem.val)}${e.elem.timeout !== undefined ? ` timeout ${e.elem.timeout}s` : ''}`;
}

function verdictText(v: Verdict): string {
  return 'jump' in v ? `jump ${v.jump.target}` : `goto ${v.goto.target}`;
}

function isVerdict(x: unknown): x is Verdict {
  return typeof x === 'object' && x !== null && ('jump' in x || 'goto' in x);
}

export function stmtText(s: Stmt): string {
  if ('match' in s) return s.match.op === '!=' ? `${exprText(s.match.left)} != ${exprText(s.match.right)}` : `${exprText(s.match.left)} ${exprText(s.match.right)}`;
  if ('vmap' in s) return `${exprText(s.vmap.key)} vmap ${s.vmap.data}`;
  if ('jump' in s || 'goto' in s) return verdictText(s);
  if ('dnat' in s) {
    const { family, addr, port } = s.dnat;
    if (typeof addr === 'string' && port !== undefined) return `dnat ${family} to ${family === 'ip6' ? `[${addr}]` : addr}:${port}`;
    return `dnat ${family} to ${exprText(addr)}${port !== undefined ? `:${port}` : ''}`;
  }
  if ('redirect' in s) return `redirect to :${exprText(s.redirect.port)}`;
  if ('masquerade' in s) return 'masquerade';
  if ('reject' in s) return s.reject ? `reject with ${s.reject.type}` : 'reject';
  if ('set' in s) return `${s.set.op} ${s.set.set} { ${exprText(s.set.elem)} }`;
  return 'counter';
}

/** Body of a set/map declaration (inside the braces). */
export function setBody(s: SetDecl): string {
  if (s.text) return s.text;
  const type = (s.type ?? []).join(' . ');
  return `type ${type}${s.kind === 'map' ? ` : ${s.map ?? 'verdict'}` : ''};${s.flags?.length ? ` flags ${s.flags.join(',')};` : ''}`;
}

/** `add map inet edgeway NAME { … }` lines for text-only declarations. */
export function declareText(decls: readonly SetDecl[]): string {
  return [`add table ${FAMILY} ${TABLE}`, ...decls.map((s) => `add ${s.kind} ${FAMILY} ${TABLE} ${s.name} { ${setBody(s)} }`)].join('\n') + '\n';
}

function elementText(e: Element): string {
  if (e.data === undefined) return exprText(e.key);
  return `${exprText(e.key)} : ${isVerdict(e.data) ? verdictText(e.data) : exprText(e.data)}`;
}

function chainText(c: ChainDecl): string[] {
  const lines = [`\tchain ${c.name} {`];
  if (c.base) lines.push(`\t\ttype ${c.base.type} hook ${c.base.hook} priority ${c.base.prio}; policy ${c.base.policy};`);
  for (const r of c.rules) lines.push(`\t\t${r.map(stmtText).join(' ')}`);
  lines.push('\t}');
  return lines;
}

/** The whole table as nft text (loadable with `nft -f`; elements sorted for stable output). */
export function rulesetText(rs: Ruleset): string {
  const lines = [`table ${FAMILY} ${TABLE} {`];
  for (const s of rs.sets) {
    lines.push(`\t${s.kind} ${s.name} {`);
    for (const part of setBody(s).split(';').map((x) => x.trim()).filter(Boolean)) lines.push(`\t\t${part}`);
    const els = [...(rs.elements.get(s.name)?.values() ?? [])].map(elementText).sort();
    if (els.length) lines.push(`\t\telements = {\n${els.map((x) => `\t\t\t${x}`).join(',\n')}\n\t\t}`);
    lines.push('\t}');
  }
  for (const c of rs.chains) lines.push(...chainText(c));
  lines.push('}');
  return lines.join('\n') + '\n';
}
