/**
 * Feature probes for `edgeway doctor` and `dataplane.mode: auto`. Nothing here
 * touches the caller's network namespace: writes happen in a throwaway one
 * (`unshare -n`), which also keeps `iptables-legacy` from creating tables here.
 */
import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { compile } from './nftables/compile.js';
import { fullTransaction } from './nftables/transaction.js';
import { declareText } from './nftables/render.js';

const pexec = promisify(execFile);

export interface Probe {
  readonly ok: boolean;
  readonly detail: string;
}

export interface Capabilities {
  readonly root: boolean;
  readonly nft: Probe & { readonly version?: string };
  readonly nftJson: Probe;
  /** nf_tables in the kernel, proven by loading our own base ruleset in a throwaway netns. */
  readonly nfTables: Probe;
  readonly iptables: Probe & { readonly backend?: 'nf_tables' | 'legacy' };
  readonly bpf: { readonly sockmap: Probe; readonly skSkb: Probe; readonly cgroupSockAddr: Probe };
  readonly cgroupV2: Probe & { readonly mount?: string };
}

export type DataplaneMode = 'ebpf' | 'nftables' | 'iptables' | 'none';

async function tryRun(cmd: string, args: string[], timeoutMs = 10_000): Promise<{ ok: boolean; out: string }> {
  try {
    const r = await pexec(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
    return { ok: true, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    return { ok: false, out: (e.stderr || e.message).trim() };
  }
}

/** cgroup v2 mount point from /proc/mounts (hybrid layouts mount it at /sys/fs/cgroup/unified). */
export async function cgroupV2Mount(mounts?: string): Promise<string | undefined> {
  const text = mounts ?? (await readFile('/proc/mounts', 'utf8').catch(() => ''));
  for (const line of text.split('\n')) {
    const [, dir, type] = line.split(' ');
    if (type === 'cgroup2' && dir) return dir;
  }
  return undefined;
}

export async function probeCapabilities(): Promise<Capabilities> {
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  const v = await tryRun('nft', ['--version']);
  const version = /v(\d+\.\d+\.\d+)/.exec(v.out)?.[1];
  const nft = { ok: v.ok, detail: v.ok ? `nft ${version ?? v.out.trim()}` : `nft not runnable: ${v.out}`, ...(version ? { version } : {}) };

  let nftJson: Probe = { ok: false, detail: 'nft missing' };
  let nfTables: Probe = { ok: false, detail: 'nft missing' };
  if (nft.ok) {
    const j = await tryRun('nft', ['-j', 'list', 'tables']);
    nftJson = j.ok && j.out.trim().startsWith('{') ? { ok: true, detail: 'nft -j works' } : { ok: false, detail: `nft -j: ${j.out.slice(0, 200)}` };
    if (!root) nfTables = { ok: false, detail: 'needs root (CAP_NET_ADMIN) to load a ruleset' };
    else {
      try {
        // Both steps (text declarations, JSON transaction) must run in ONE namespace.
        await probeInThrowawayNs(fullTransaction(compile({ nodeName: 'probe', revision: 0, servicePorts: [], userspacePortExhausted: [] })));
        nfTables = { ok: true, detail: 'loaded the edgeway base ruleset (nat hooks, maps) in a throwaway netns' };
      } catch (err) {
        nfTables = { ok: false, detail: `loading the base ruleset failed: ${(err as Error).message.slice(0, 300)}` };
      }
    }
  }

  const ipt = await tryRun('iptables', ['--version']);
  const backend = /\((nf_tables|legacy)\)/.exec(ipt.out)?.[1] as 'nf_tables' | 'legacy' | undefined;
  const iptables = { ok: ipt.ok, detail: ipt.ok ? ipt.out.trim() : `iptables not runnable: ${ipt.out.slice(0, 200)}`, ...(backend ? { backend } : {}) };

  const b = await tryRun('bpftool', ['-j', 'feature', 'probe', 'kernel']);
  let feats: { program_types?: Record<string, boolean>; map_types?: Record<string, boolean> } = {};
  try { if (b.ok) feats = JSON.parse(b.out) as typeof feats; } catch { /* reported below */ }
  const feat = (have: boolean | undefined, what: string): Probe => (b.ok ? { ok: !!have, detail: `${what} ${have ? 'available' : 'not available'}` } : { ok: false, detail: `bpftool feature probe failed: ${b.out.slice(0, 160)}` });
  const bpf = {
    sockmap: feat(feats.map_types?.have_sockmap_map_type, 'map type sockmap'),
    skSkb: feat(feats.program_types?.have_sk_skb_prog_type, 'program type sk_skb'),
    cgroupSockAddr: feat(feats.program_types?.have_cgroup_sock_addr_prog_type, 'program type cgroup_sock_addr'),
  };

  const mount = await cgroupV2Mount();
  const cgroupV2 = mount ? { ok: true, detail: `cgroup2 mounted at ${mount}`, mount } : { ok: false, detail: 'no cgroup2 mount in /proc/mounts' };
  return { root, nft, nftJson, nfTables, iptables, bpf, cgroupV2 };
}

/** Load the base ruleset in a fresh network namespace (declarations and JSON in the same one). */
async function probeInThrowawayNs(tx: ReturnType<typeof fullTransaction>): Promise<void> {
  const base = join(tmpdir(), `edgeway-probe-${process.pid}-${Date.now()}`);
  await writeFile(`${base}.nft`, declareText(tx.declare), { mode: 0o600 });
  await writeFile(`${base}.json`, JSON.stringify({ nftables: tx.commands }), { mode: 0o600 });
  try {
    await pexec('unshare', ['-n', 'sh', '-c', 'nft -f "$1" && nft -j -f "$2"', 'probe', `${base}.nft`, `${base}.json`], { timeout: 10_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error((e.stderr || e.message).trim());
  } finally {
    await rm(`${base}.nft`, { force: true });
    await rm(`${base}.json`, { force: true });
  }
}

/**
 * The mode `auto` picks, and why. eBPF socket-LB rides on top of nftables, so the
 * base choice is nftables whenever it loads; the eBPF part decides for itself.
 */
export function chooseMode(c: Capabilities): { mode: DataplaneMode; reason: string } {
  if (c.nft.ok && c.nftJson.ok && c.nfTables.ok) return { mode: 'nftables', reason: `${c.nft.detail} with JSON; kernel nf_tables loads the edgeway ruleset` };
  const why = [c.nft, c.nftJson, c.nfTables].find((p) => !p.ok)?.detail ?? 'nftables unusable';
  if (c.iptables.ok) return { mode: 'iptables', reason: `nftables unusable (${why}); ${c.iptables.detail} redirects to the userspace proxy` };
  return { mode: 'none', reason: `nftables unusable (${why}) and iptables missing: no kernel data plane` };
}
