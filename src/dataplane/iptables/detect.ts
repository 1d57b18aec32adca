/**
 * Which iptables backend the host uses: `legacy` (x_tables) or `nft` (nf_tables
 * through the iptables-nft compat layer). Rules of both can coexist in the kernel
 * but a host's other tools (kubelet, CNI, firewall) use one; ours must sit beside
 * theirs or ordering between the two is undefined.
 *
 * Reading state with `iptables-*-save` does not create tables (a read such as
 * `iptables-legacy -t nat -S` would — PITFALLS.md); whether a backend can *work*
 * here (kernel modules, REDIRECT target) is probed by a restore inside a throwaway
 * network namespace (`unshare --net`), never in the host's.
 */
import type { Exec } from './exec.js';
import { parseSave, SERVICES_CHAIN } from './compile.js';

export type IptablesBackend = 'legacy' | 'nft';

export interface BackendChoice {
  readonly backend: IptablesBackend;
  readonly reason: string;
}

/** Binaries of a backend for a family. */
export function binaries(backend: IptablesBackend, family: 4 | 6): { save: string; restore: string } {
  const base = family === 6 ? 'ip6tables' : 'iptables';
  return { save: `${base}-${backend}-save`, restore: `${base}-${backend}-restore` };
}

const PROBE = `*nat\n:EDGEWAY-PROBE - [0:0]\n-A EDGEWAY-PROBE -p tcp -m tcp --dport 1 -j REDIRECT --to-ports 2\nCOMMIT\n`;

/** Can this backend program a REDIRECT here? Probed in a throwaway namespace. */
export async function backendUsable(exec: Exec, backend: IptablesBackend): Promise<boolean> {
  try {
    await exec('unshare', ['--net', '--', binaries(backend, 4).restore, '-w', '5'], PROBE);
    return true;
  } catch {
    return false;
  }
}

async function savedRules(exec: Exec, backend: IptablesBackend): Promise<{ total: number; ours: boolean } | undefined> {
  try {
    const s = parseSave(await exec(binaries(backend, 4).save, []));
    return { total: s.totalRules, ours: s.chains.has(`nat/${SERVICES_CHAIN}`) };
  } catch {
    return undefined; // binary missing or backend unusable
  }
}

/**
 * Pick the backend: the one already holding our chain (a restart), else the one
 * holding the host's rules (more rules wins, as kubernetes-sigs/iptables-wrappers
 * decides), else nft when usable, else legacy.
 */
export async function detectBackend(exec: Exec): Promise<BackendChoice> {
  const [legacy, nft] = await Promise.all([savedRules(exec, 'legacy'), savedRules(exec, 'nft')]);
  if (nft?.ours && !legacy?.ours) return { backend: 'nft', reason: `${SERVICES_CHAIN} already in the nft backend` };
  if (legacy?.ours && !nft?.ours) return { backend: 'legacy', reason: `${SERVICES_CHAIN} already in the legacy backend` };
  const l = legacy?.total ?? 0;
  const n = nft?.total ?? 0;
  if (l > n) return { backend: 'legacy', reason: `host rules are in the legacy backend (${l} vs ${n})` };
  if (n > l) return { backend: 'nft', reason: `host rules are in the nft backend (${n} vs ${l})` };
  if (await backendUsable(exec, 'nft')) return { backend: 'nft', reason: 'no rules in either backend; nft usable' };
  if (await backendUsable(exec, 'legacy')) return { backend: 'legacy', reason: 'no rules in either backend; nft unusable, legacy usable' };
  return { backend: 'nft', reason: 'neither backend passed the probe; trying nft' };
}
