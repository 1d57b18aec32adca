/**
 * Loads edgeway_nft.node (native/src/nft-addon.cc: libnftables in-process) on its
 * own, apart from the splice and libbpf addons (src/native/addon.ts): it links
 * libnftables1, and a host without that library must keep the others. Never
 * throws: absent, disabled or broken, it says why and the executor falls back to
 * the `nft` CLI.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { NATIVE_ABI, packageRoot } from '../../native/addon.js';

/** What one libnftables call returned: `ok` is rc == 0; `error` is nft's error text. */
export interface NftRunResult {
  readonly ok: boolean;
  readonly output: string;
  readonly error: string;
}

/** One libnftables context; calls run on a libuv worker, one at a time per process. */
export interface NativeNftContext {
  /** Run nft commands: JSON (`json` true; listings print JSON) or nft script. Rejects only when the call cannot be made. */
  run(commands: string, json: boolean): Promise<NftRunResult>;
  /** Drop the context (calls in flight finish). */
  close(): void;
}

export interface NftAddon {
  readonly abi: number;
  /** `netnsPath` (e.g. /run/netns/NAME) makes every call run in that network namespace. */
  NftContext: new (netnsPath?: string) => NativeNftContext;
}

export type NftAddonLoad = { addon: NftAddon; path: string } | { reason: string };

let cached: NftAddonLoad | undefined;

/**
 * Find and load edgeway_nft.node: `EDGEWAY_NFT_ADDON` (a file), then
 * `EDGEWAY_NATIVE_BUILD` (e.g. native/build-asan), the cmake-js build and the
 * node-gyp build. `EDGEWAY_NATIVE=off` or `EDGEWAY_NATIVE_NFT=off` disable it.
 */
export function loadNftAddon(opts: { reload?: boolean } = {}): NftAddonLoad {
  if (cached && !opts.reload) return cached;
  cached = loadUncached();
  return cached;
}

function loadUncached(): NftAddonLoad {
  if (process.env.EDGEWAY_NATIVE === 'off') return { reason: 'disabled by EDGEWAY_NATIVE=off' };
  if (process.env.EDGEWAY_NATIVE_NFT === 'off') return { reason: 'disabled by EDGEWAY_NATIVE_NFT=off' };
  if (process.platform !== 'linux') return { reason: 'needs Linux' };
  const file = 'edgeway_nft.node';
  const root = packageRoot();
  const dirs = [process.env.EDGEWAY_NATIVE_BUILD, join(root, 'native', 'build'), join(root, 'build')];
  const candidates = [process.env.EDGEWAY_NFT_ADDON, ...dirs.map((d) => (d ? join(d, 'Release', file) : undefined))];
  const found = candidates.find((p): p is string => !!p && existsSync(p));
  if (!found) return { reason: `${file} not built (needs libnftables-dev; run scripts/build-native.sh)` };
  try {
    const mod = createRequire(import.meta.url)(found) as NftAddon;
    if (mod.abi !== NATIVE_ABI || typeof mod.NftContext !== 'function') return { reason: `${file} ABI ${String(mod.abi)} != ${NATIVE_ABI} (rebuild it)` };
    return { addon: mod, path: found };
  } catch (err) {
    // Typically "libnftables.so.1: cannot open shared object file".
    return { reason: `${file} failed to load: ${(err as Error).message.split('\n')[0]}` };
  }
}
