/**
 * Pure compiler: plan → `iptables-restore --noflush` input. Our rules live in
 * chains we own, written in the exact form `iptables-save` prints them back, so a
 * drift check is a plain comparison of lines:
 *
 * - nat `EDGEWAY-SERVICES` (jumped to from PREROUTING and OUTPUT): ClusterIP:port
 *   → `REDIRECT --to-ports <userspacePort>` where the userspace proxy listens;
 * - filter `EDGEWAY-REJECT` (from INPUT, FORWARD, OUTPUT): service ports with no
 *   endpoint are refused at once (TCP reset / ICMP port unreachable) instead of
 *   timing out.
 *
 * Declaring an owned chain (`:CHAIN - [0:0]`) in a --noflush restore flushes it, so
 * every sync rewrites our chains whole in one atomic call; built-in chains are never
 * flushed, only given one jump each, inserted when missing.
 */
import type { IpFamily } from '../../catalog/types.js';
import type { Plan, PlannedServicePort } from '../../plan/types.js';

export const SERVICES_CHAIN = 'EDGEWAY-SERVICES';
export const REJECT_CHAIN = 'EDGEWAY-REJECT';
const JUMP_COMMENT = 'edgeway: service portals';

/** Built-in chains that jump to our chains, by table. */
export const JUMPS: readonly { table: 'nat' | 'filter'; from: string; to: string }[] = [
  { table: 'nat', from: 'PREROUTING', to: SERVICES_CHAIN },
  { table: 'nat', from: 'OUTPUT', to: SERVICES_CHAIN },
  { table: 'filter', from: 'INPUT', to: REJECT_CHAIN },
  { table: 'filter', from: 'FORWARD', to: REJECT_CHAIN },
  { table: 'filter', from: 'OUTPUT', to: REJECT_CHAIN },
];

/** The jump rule as iptables-save prints it (minus the `-A <from> ` prefix). */
export function jumpSpec(to: string): string {
  return `-m comment --comment "${JUMP_COMMENT}" -j ${to}`;
}

/** Rules of our chains for one family, in iptables-save form (`-A CHAIN …`). */
export interface IptablesRuleset {
  readonly family: IpFamily;
  readonly nat: readonly string[];
  readonly filter: readonly string[];
  /** Service port ids not expressible here (kernel target without userspace port, SCTP). */
  readonly skipped: readonly string[];
}

function quote(s: string): string {
  // iptables-save always double-quotes comments; ids never hold quotes, strip to be safe.
  return `"${s.replace(/["\\]/g, '')}"`;
}

function isV6(ip: string): boolean {
  return ip.includes(':');
}

function ruleFor(sp: PlannedServicePort, ip: string, family: IpFamily): { table: 'nat' | 'filter'; rule: string } | undefined {
  const proto = sp.protocol.toLowerCase();
  const dst = `-d ${ip}/${family === 6 ? 128 : 32} -p ${proto}`;
  const match = `-m ${proto} --dport ${sp.port}`;
  if (sp.target === 'reject') {
    const how = proto === 'tcp' ? 'tcp-reset' : family === 6 ? 'icmp6-port-unreachable' : 'icmp-port-unreachable';
    return { table: 'filter', rule: `-A ${REJECT_CHAIN} ${dst} -m comment --comment ${quote(`${sp.id} has no endpoints`)} ${match} -j REJECT --reject-with ${how}` };
  }
  // In iptables mode every served port goes through the proxy; a kernel-target port
  // that still carries a userspace port is sent there too.
  if (sp.userspacePort === undefined || sp.protocol === 'SCTP') return undefined;
  return { table: 'nat', rule: `-A ${SERVICES_CHAIN} ${dst} -m comment --comment ${quote(sp.id)} ${match} -j REDIRECT --to-ports ${sp.userspacePort}` };
}

/** Compile the plan's service ports for one address family. Pure. */
export function compileIptables(plan: Pick<Plan, 'servicePorts'>, family: IpFamily): IptablesRuleset {
  const nat: string[] = [];
  const filter: string[] = [];
  const skipped: string[] = [];
  for (const sp of plan.servicePorts) {
    for (const ip of sp.clusterIPs) {
      if (isV6(ip) !== (family === 6)) continue;
      const r = ruleFor(sp, ip, family);
      if (!r) { if (!skipped.includes(sp.id)) skipped.push(sp.id); continue; }
      (r.table === 'nat' ? nat : filter).push(r.rule);
    }
  }
  return { family, nat, filter, skipped };
}

/**
 * The restore input for a ruleset: our chains declared (which flushes them) and
 * refilled, the jumps that are missing (per `jumps`, copies by `table/from` from a
 * parsed save) inserted at the top of their built-in chains (so our REDIRECT sees
 * traffic before other NAT rules), extra copies deleted. Pure.
 */
export function renderRestore(rs: IptablesRuleset, jumps: ReadonlyMap<string, number> = new Map()): string {
  const out: string[] = [];
  for (const table of ['nat', 'filter'] as const) {
    const chain = table === 'nat' ? SERVICES_CHAIN : REJECT_CHAIN;
    out.push(`*${table}`, `:${chain} - [0:0]`);
    for (const j of JUMPS) {
      if (j.table !== table) continue;
      const n = jumps.get(`${table}/${j.from}`) ?? 0;
      if (n === 0) out.push(`-I ${j.from} 1 ${jumpSpec(j.to)}`);
      // Duplicates (a second agent, a manual copy): keep exactly one.
      for (let i = 1; i < n; i++) out.push(`-D ${j.from} ${jumpSpec(j.to)}`);
    }
    out.push(...(table === 'nat' ? rs.nat : rs.filter), 'COMMIT');
  }
  return out.join('\n') + '\n';
}

/**
 * Restore input that removes everything we own: every copy of each jump (`count`
 * from the parsed save), then our chains flushed and deleted. Pure.
 */
export function renderCleanup(jumpCounts: ReadonlyMap<string, number>, chainsPresent: ReadonlySet<string>): string {
  const out: string[] = [];
  for (const table of ['nat', 'filter'] as const) {
    const chain = table === 'nat' ? SERVICES_CHAIN : REJECT_CHAIN;
    const lines: string[] = [];
    for (const j of JUMPS) {
      if (j.table !== table) continue;
      for (let i = 0; i < (jumpCounts.get(`${table}/${j.from}`) ?? 0); i++) lines.push(`-D ${j.from} ${jumpSpec(j.to)}`);
    }
    if (chainsPresent.has(`${table}/${chain}`)) lines.push(`:${chain} - [0:0]`, `-X ${chain}`);
    if (lines.length) out.push(`*${table}`, ...lines, 'COMMIT');
  }
  return out.length ? out.join('\n') + '\n' : '';
}

/**
 * `edgeway render --format iptables`: the restore input for both families as a
 * fresh host would get it (every jump inserted), with a header per family.
 */
export function renderIptables(plan: Pick<Plan, 'servicePorts'>): string {
  const parts: string[] = [];
  for (const family of [4, 6] as const) {
    const rs = compileIptables(plan, family);
    if (family === 6 && rs.nat.length === 0 && rs.filter.length === 0) continue;
    parts.push(`# ${family === 4 ? 'iptables' : 'ip6tables'}-restore --noflush`);
    if (rs.skipped.length) parts.push(`# not expressible in iptables mode: ${rs.skipped.join(', ')}`);
    parts.push(renderRestore(rs));
  }
  return parts.join('\n');
}

/** What an `iptables-save` dump says about our state. */
export interface SavedState {
  /** Rules of our chains, by table. */
  readonly rules: { readonly nat: readonly string[]; readonly filter: readonly string[] };
  /** Jump copies by `table/from`. */
  readonly jumps: ReadonlyMap<string, number>;
  /** Our chains that exist, as `table/chain`. */
  readonly chains: ReadonlySet<string>;
  /** Rules of any chain (the host's own, too): how much this backend is in use. */
  readonly totalRules: number;
}

/** Parse `iptables-save` output (all tables). Pure. */
export function parseSave(text: string): SavedState {
  const rules = { nat: [] as string[], filter: [] as string[] };
  const jumps = new Map<string, number>();
  const chains = new Set<string>();
  let table = '';
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) { table = line.slice(1).trim(); continue; }
    if (line.startsWith(':')) {
      const name = line.slice(1).split(' ')[0]!;
      if (name === SERVICES_CHAIN || name === REJECT_CHAIN) chains.add(`${table}/${name}`);
      continue;
    }
    if (!line.startsWith('-A ')) continue;
    total++;
    const chain = line.slice(3).split(' ')[0]!;
    if ((table === 'nat' && chain === SERVICES_CHAIN) || (table === 'filter' && chain === REJECT_CHAIN)) {
      rules[table].push(line);
      continue;
    }
    for (const j of JUMPS) {
      if (j.table === table && j.from === chain && line === `-A ${chain} ${jumpSpec(j.to)}`) {
        const k = `${table}/${chain}`;
        jumps.set(k, (jumps.get(k) ?? 0) + 1);
      }
    }
  }
  return { rules, jumps, chains, totalRules: total };
}

/** Differences between what is in the kernel and what should be (empty = no drift). Pure. */
export function driftOf(saved: SavedState, want: IptablesRuleset): string[] {
  const d: string[] = [];
  for (const j of JUMPS) {
    const n = saved.jumps.get(`${j.table}/${j.from}`) ?? 0;
    if (n !== 1) d.push(`${j.table}/${j.from}: ${n} jumps to ${j.to}`);
  }
  for (const table of ['nat', 'filter'] as const) {
    const have = [...saved.rules[table]].sort();
    const should = [...want[table]].sort();
    if (have.length !== should.length || have.some((r, i) => r !== should[i])) d.push(`${table}: ${have.length} rules, want ${should.length} (or different)`);
  }
  return d;
}
