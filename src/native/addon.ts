/**
 * Loads the optional native addons (native/, built by scripts/build-native.sh) and
 * the sockmap BPF object, each feature-detected on its own: `edgeway_native.node`
 * (syscalls only: splice pool, sockmap links, SO_ORIGINAL_DST) and
 * `edgeway_bpf.node` (links libbpf: the sockmap object, socket-LB objects and maps),
 * so a host where libbpf cannot be loaded keeps splice. Nothing here throws when a
 * piece is missing: `loadNative()` says what is there and why not.
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
  /** Link the pair into the sockmap's maps; throws (errno EOPNOTSUPP, …) when the kernel refuses. */
  sockmap(link: NativeSockmapLink, fdA: number, fdB: number): number;
  /**
   * Forward between a plaintext TCP socket and an EWC1 record stream on another TCP
   * socket (native/src/aead-pump.cc). Keys and rxInitial are copied (the caller may
   * wipe its own). Completion: bytesAB = plaintext plain → cipher, bytesBA = cipher →
   * plain, errno EBADMSG on authentication / framing errors. Throws TypeError on bad
   * arguments, an errno Error (ENOTSUP without OpenSSL) when it cannot start.
   * Absent in addons built before the record pump.
   */
  aeadPair?(fdPlain: number, fdCipher: number, p: AeadPairParams): number;
  cancel(id: number): void;
  close(): void;
  readonly active: number;
}

/** Keys (16 B), iv bases (12 B) and next sequence numbers (0 … 2^53 - 1) per direction. */
export interface AeadPairParams {
  txKey: Buffer;
  txIv: Buffer;
  txSeq: number;
  rxKey: Buffer;
  rxIv: Buffer;
  rxSeq: number;
  /** Cipher bytes JS already read from fdCipher (processed before reading it). */
  rxInitial?: Buffer;
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
  /** The map fds a `SockmapLink` duplicates (-1 each after close). */
  mapFds(): { socks: number; redir: number; peers: number };
  /** Detach the program and free the maps (idempotent). */
  close(): void;
}

/** edgeway_native.node's handle on a loaded sockmap's maps (its own fd duplicates). */
export interface NativeSockmapLink {
  /** Drop the duplicates; pairs already linked keep the maps until they end. */
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

/** See NativeAddon.UdpBatch. */
export interface NativeUdpBatch {
  /** Send one datagram to a 32-byte address copied from the `addrs` slots; bytes sent or -errno. */
  sendTo(data: Uint8Array, addr: Uint8Array): number;
  close(): void;
  /** Bound address, and replies dropped because the socket buffer was full. */
  address(): { address: string; port: number; family: string; dropped: number };
}

/** edgeway_native.node: needs only syscalls (no libbpf). */
export interface NativeAddon {
  readonly abi: number;
  /** Why `Pool.aeadPair` cannot work in this process (Node's OpenSSL not resolvable), or null; absent in older builds. */
  readonly aeadReason?: string | null;
  Pool: new (threads: number, onDone: PoolCompletion) => NativePool;
  SockmapLink: new (socksFd: number, redirFd: number, peersFd: number) => NativeSockmapLink;
  /** The pre-NAT destination; equals the local address for a tracked, untranslated connection; null without a conntrack entry. */
  getOriginalDst(fd: number): OriginalDst | null;
  /**
   * A listening TCP socket with SO_REUSEADDR + SO_REUSEPORT (native/src/reuseport.cc),
   * for `server.listen({ fd })`. Absent in addons built before reuseport.cc. Throws (errno).
   */
  listenReusePort?(host: string, port: number, backlog: number): number;
  /**
   * A bound UDP socket with SO_REUSEPORT (native/src/dns-udp.cc) for
   * `dgram.bind({ fd })`: DNS worker threads on Node < 22.12. Absent in addons
   * built before dns-udp.cc. Throws (errno).
   */
  udpReusePort?(host: string, port: number, reuse?: boolean): number;
  /**
   * A UDP socket served in batches (recvmmsg → one `onBatch(n)` call → sendmmsg),
   * watched on the calling thread's loop; owns `fd` (native/src/dns-udp.cc). Absent
   * when the addon was built without libuv's header.
   */
  UdpBatch?: new (fd: number, batch: number, slot: number, input: ArrayBufferLike, output: ArrayBufferLike, lens: ArrayBufferLike, addrs: ArrayBufferLike, onBatch: (n: number) => void) => NativeUdpBatch;
  /**
   * Connect from `localHost:localPort` (bound with SO_REUSEADDR + SO_REUSEPORT, so it
   * may share a listener's port) on a worker thread; resolves with the connected fd
   * (for `new net.Socket({ fd })`), rejects with `errno` (ETIMEDOUT after timeoutMs).
   */
  connectFrom?(localHost: string, localPort: number, remoteHost: string, remotePort: number, timeoutMs: number): Promise<number>;
}

/** edgeway_bpf.node: links libbpf. */
export interface BpfAddon {
  readonly abi: number;
  Sockmap: new (objectPath: string) => NativeSockmap;
  bpf: NativeBpf;
}

export interface NativeLoad {
  /** edgeway_native.node (splice, sockmap links, original destination). */
  addon?: NativeAddon;
  addonPath?: string;
  /** Why edgeway_native.node is absent (one line). */
  addonReason?: string;
  /** edgeway_bpf.node (libbpf: sockmap object, socket-LB). */
  bpf?: BpfAddon;
  bpfPath?: string;
  /** Why edgeway_bpf.node is absent (one line). */
  bpfReason?: string;
  /** Path of the sockmap object when it exists. */
  sockmapObject?: string;
}

/**
 * ABI the TypeScript side speaks (native/src/napi-util.h kAddonAbi; both addons export `abi`).
 * 3: the pool owns a forwarded pair's sockets (native-forwarders.ts closes Node's fds at
 * the hand-over); an ABI 2 pool would end a failed pair with FIN where a reset is due.
 */
export const NATIVE_ABI = 3;

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

type Loaded<T> = { ok: T; path: string } | { reason: string };

/**
 * One addon file: the first existing candidate, loaded and ABI-checked. A build
 * directory from `EDGEWAY_NATIVE_BUILD` (e.g. native/build-asan) comes first, then
 * the cmake-js build, then the node-gyp build.
 */
function loadOne<T extends { abi?: unknown }>(file: string, override: string | undefined, root: string): Loaded<T> {
  const dirs = [process.env.EDGEWAY_NATIVE_BUILD, join(root, 'native', 'build'), join(root, 'build')];
  const candidates = [override, ...dirs.map((d) => (d ? join(d, 'Release', file) : undefined))]
    .filter((p): p is string => typeof p === 'string' && p.length > 0);
  const found = candidates.find((p) => existsSync(p));
  if (!found) return { reason: `${file} not built (run scripts/build-native.sh)` };
  try {
    const mod = createRequire(import.meta.url)(found) as T;
    if (mod.abi !== NATIVE_ABI) return { reason: `${file} ABI ${String(mod.abi)} != ${NATIVE_ABI} (rebuild it)` };
    return { ok: mod, path: found };
  } catch (err) {
    return { reason: `${file} failed to load: ${(err as Error).message.split('\n')[0]}` };
  }
}

/**
 * Find and load both addons, each on its own (`EDGEWAY_NATIVE_ADDON` /
 * `EDGEWAY_BPF_ADDON` name a file, `EDGEWAY_NATIVE_BUILD` a build directory).
 * `EDGEWAY_NATIVE=off` disables both, `EDGEWAY_NATIVE_BPF=off` only the libbpf one
 * (tests of the fallback paths).
 */
export function loadNative(opts: { reload?: boolean } = {}): NativeLoad {
  if (cached && !opts.reload) return cached;
  const root = packageRoot();
  const out: NativeLoad = {};
  const obj = process.env.EDGEWAY_SOCKMAP_OBJECT ?? join(root, 'bpf', 'build', 'sockmap_verdict.bpf.o');
  if (existsSync(obj)) out.sockmapObject = obj;
  const off = process.env.EDGEWAY_NATIVE === 'off' ? 'disabled by EDGEWAY_NATIVE=off' : process.platform !== 'linux' ? 'needs Linux' : undefined;
  const native = off ? { reason: off } : loadOne<NativeAddon>('edgeway_native.node', process.env.EDGEWAY_NATIVE_ADDON, root);
  if ('ok' in native) {
    out.addon = native.ok;
    out.addonPath = native.path;
  } else out.addonReason = native.reason;
  const bpfOff = off ?? (process.env.EDGEWAY_NATIVE_BPF === 'off' ? 'disabled by EDGEWAY_NATIVE_BPF=off' : undefined);
  const bpf = bpfOff ? { reason: bpfOff } : loadOne<BpfAddon>('edgeway_bpf.node', process.env.EDGEWAY_BPF_ADDON, root);
  if ('ok' in bpf) {
    out.bpf = bpf.ok;
    out.bpfPath = bpf.path;
  } else out.bpfReason = bpf.reason;
  cached = out;
  return out;
}
