/**
 * Loads the optional native addon (native/, built by scripts/build-native.sh) and
 * the sockmap BPF object, feature-detected once. Nothing here throws when a piece
 * is missing: `loadNative()` says what is there and why not.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Called once per pair from the addon's epoll threads (through a threadsafe function). */
export type PoolCompletion = (id: number, bytesAB: number, bytesBA: number, errno: number, where: string | null) => void;

export interface NativePool {
  /** Forward between two connected TCP sockets with splice; returns the pair id. Throws (errno) when it cannot start. */
  splice(fdA: number, fdB: number, pipeSize: number): number;
  /** Link the pair into the sockmap; throws (errno EOPNOTSUPP, …) when the kernel refuses. */
  sockmap(sockmap: NativeSockmap, fdA: number, fdB: number): number;
  cancel(id: number): void;
  close(): void;
  readonly active: number;
}

export interface SockmapStats {
  redirectedPkts: number;
  redirectedBytes: number;
  passedPkts: number;
  finDropped: number;
  redirectFailed: number;
}

export interface NativeSockmap {
  stats(): SockmapStats;
  /** BPF_PROG_TEST_RUN of the verdict program on a packet; returns the verdict. */
  testRun(packet: Buffer): number;
  putPeer(cookie: bigint, peerCookie: bigint, flags: number): void;
  deletePeer(cookie: bigint): void;
  /** Detach the program and free the maps (idempotent). */
  close(): void;
}

export interface OriginalDst {
  family: 4 | 6;
  address: string;
  port: number;
}

/**
 * libbpf object and map operations (native/src/bpfobj.cc). Loads, map transactions
 * and dumps run on a worker thread (promises); the rest are a few syscalls each.
 * Errors carry `errno`.
 */
export interface NativeBpf {
  loadAll(object: string, progDir: string, mapDir: string, reuse: Record<string, string>): Promise<void>;
  progId(pin: string): number;
  attach(cgroup: string, attachType: string, progPin: string): void;
  detach(cgroup: string, attachType: string, prog: string | number): void;
  attachments(cgroup: string): { id: number; attachType: string; name: string }[];
  progMapIds(id: number): number[];
  mapName(id: number): string;
  pinById(kind: 'prog' | 'map', id: number, path: string): void;
  /** Keys and values must have the map's exact sizes (copied before the promise returns); stops at the first failure. */
  mapOps(ops: readonly { op: 'update' | 'delete'; map: string; key: Buffer; value?: Buffer }[]): Promise<number>;
  dump(map: string): Promise<{ key: Buffer; value: Buffer }[]>;
  dumpPerCpu(map: string): Promise<{ key: Buffer; values: Buffer[] }[]>;
}

export interface NativeAddon {
  readonly abi: number;
  /** Absent in addons built before bpfobj.cc existed. */
  readonly bpf?: NativeBpf;
  Pool: new (threads: number, onDone: PoolCompletion) => NativePool;
  Sockmap: new (objectPath: string) => NativeSockmap;
  /** The pre-NAT destination; equals the local address for a tracked, untranslated connection; null without a conntrack entry. */
  getOriginalDst(fd: number): OriginalDst | null;
  /**
   * A listening TCP socket with SO_REUSEADDR + SO_REUSEPORT (native/src/reuseport.cc),
   * for `server.listen({ fd })`. Absent in addons built before reuseport.cc. Throws (errno).
   */
  listenReusePort?(host: string, port: number, backlog: number): number;
  /**
   * Connect from `localHost:localPort` (bound with SO_REUSEADDR + SO_REUSEPORT, so it
   * may share a listener's port) on a worker thread; resolves with the connected fd
   * (for `new net.Socket({ fd })`), rejects with `errno` (ETIMEDOUT after timeoutMs).
   */
  connectFrom?(localHost: string, localPort: number, remoteHost: string, remotePort: number, timeoutMs: number): Promise<number>;
}

export interface NativeLoad {
  addon?: NativeAddon;
  addonPath?: string;
  /** Why the addon is absent (one line). */
  addonReason?: string;
  /** Path of the sockmap object when it exists. */
  sockmapObject?: string;
}

/** ABI the TypeScript side speaks (native/src/addon.cc exports `abi`). */
export const NATIVE_ABI = 1;

/** The package root: the nearest parent with our package.json (src/ and dist/src/ alike). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'edgeway') return dir;
      } catch { /* keep looking */ }
    }
    dir = dirname(dir);
  }
  return process.cwd();
}

let cached: NativeLoad | undefined;

/**
 * Find and load the addon: `$EDGEWAY_NATIVE_ADDON`, then the cmake-js build, then
 * the node-gyp build. `EDGEWAY_NATIVE=off` disables it (tests of the fallback path).
 */
export function loadNative(opts: { reload?: boolean } = {}): NativeLoad {
  if (cached && !opts.reload) return cached;
  const root = packageRoot();
  const out: NativeLoad = {};
  const obj = process.env.EDGEWAY_SOCKMAP_OBJECT ?? join(root, 'bpf', 'build', 'sockmap_verdict.bpf.o');
  if (existsSync(obj)) out.sockmapObject = obj;
  if (process.env.EDGEWAY_NATIVE === 'off') {
    out.addonReason = 'disabled by EDGEWAY_NATIVE=off';
  } else if (process.platform !== 'linux') {
    out.addonReason = 'needs Linux';
  } else {
    const candidates = [
      process.env.EDGEWAY_NATIVE_ADDON,
      join(root, 'native', 'build', 'Release', 'edgeway_native.node'),
      join(root, 'build', 'Release', 'edgeway_native.node'),
    ].filter((p): p is string => typeof p === 'string' && p.length > 0);
    const found = candidates.find((p) => existsSync(p));
    if (!found) {
      out.addonReason = 'addon not built (run scripts/build-native.sh)';
    } else {
      try {
        const req = createRequire(import.meta.url);
        const addon = req(found) as NativeAddon;
        if (addon.abi !== NATIVE_ABI) out.addonReason = `addon ABI ${String(addon.abi)} != ${NATIVE_ABI} (rebuild it)`;
        else {
          out.addon = addon;
          out.addonPath = found;
        }
      } catch (err) {
        out.addonReason = `addon failed to load: ${(err as Error).message.split('\n')[0]}`;
      }
    }
  }
  cached = out;
  return out;
}
