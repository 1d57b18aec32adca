/**
 * splice, sockmap and EWC1 record pump (aead-forwarder.ts) forwarders on the addon's
 * epoll thread pool. Socket ownership: the pool dup()s both fds of a pair and owns
 * the sockets from then on; Node's copies are closed right after a successful
 * hand-over (net.Socket.destroy(): a plain close() of Node's fd, which neither shuts
 * the shared socket down nor resets it), so a forwarded pair costs the process two
 * fds (+ two pipes for splice) instead of four. The pool itself ends the sockets:
 * a FIN on success, a RST on an error (SO_LINGER 0), on a cancel as documented in
 * native/src/pool.h.
 */
import { constants as osConstants } from 'node:os';
import type net from 'node:net';
import type { AeadPairParams, BpfAddon, NativeAddon, NativePool, NativeSockmap, NativeSockmapLink } from './addon.js';
import { ForwardCancelledError, ForwardError, HandoverError } from './errors.js';
import { readEnded, socketFd, type ForwardOptions, type ForwardResult, type Forwarder } from './forwarder.js';

const ECANCELED = osConstants.errno.ECANCELED;
const errnoNames = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v, k]));

type EngineKind = 'splice' | 'sockmap' | 'aead';

interface Pending {
  kind: EngineKind;
  resolve: (r: ForwardResult) => void;
  reject: (e: Error) => void;
  cleanup: () => void;
}

export interface NativeEngineOptions {
  /** epoll threads serving every pair (default 2: this machine's core count). */
  threads?: number;
  /** Pipe size per direction for splice (F_SETPIPE_SZ; default 1 MiB). */
  pipeSize?: number;
}

/** One pool of epoll threads shared by the splice and sockmap forwarders. */
export class NativeEngine {
  private readonly pool: NativePool;
  private readonly pending = new Map<number, Pending>();
  readonly pipeSize: number;
  sockmap?: NativeSockmap;
  private link?: NativeSockmapLink;

  constructor(readonly addon: NativeAddon, opts: NativeEngineOptions = {}) {
    this.pipeSize = opts.pipeSize ?? 1 << 20;
    this.pool = new addon.Pool(opts.threads ?? 2, (id, ab, ba, errno, where) => this.done(id, ab, ba, errno, where));
  }

  /**
   * Load the sockmap object with the libbpf addon and hand its maps to this pool
   * (edgeway_native.node links pairs with raw syscalls); throws (with the failing
   * step) when the kernel refuses.
   */
  enableSockmap(objectPath: string, bpf: BpfAddon): void {
    if (this.sockmap) return;
    const sockmap = new bpf.Sockmap(objectPath);
    try {
      const fds = sockmap.mapFds();
      this.link = new this.addon.SockmapLink(fds.socks, fds.redir, fds.peers);
    } catch (err) {
      sockmap.close();
      throw err;
    }
    this.sockmap = sockmap;
  }

  get active(): number {
    return this.pending.size;
  }

  /** Why the EWC1 record pump is not usable with this addon, or undefined. */
  get aeadReason(): string | undefined {
    if (typeof this.pool.aeadPair !== 'function') return 'addon built without the record pump (rebuild it)';
    return this.addon.aeadReason ?? undefined;
  }

  async start(kind: 'splice' | 'sockmap', client: net.Socket, upstream: net.Socket, opts: ForwardOptions): Promise<ForwardResult> {
    if (kind === 'sockmap' && !this.link) throw new HandoverError(kind, 'sockmap not loaded');
    takeOver(kind, client, false);
    takeOver(kind, upstream, false);
    return this.submit(kind, client, upstream, opts, (a, b) => (kind === 'splice' ? this.pool.splice(a, b, this.pipeSize) : this.pool.sockmap(this.link!, a, b)));
  }

  /**
   * `plain` ↔ EWC1 records on `cipher` (see aead-forwarder.ts for the preconditions).
   * `cipher` may have had its FIN consumed by Node: EOF stays readable for the pump.
   */
  async startAead(plain: net.Socket, cipher: net.Socket, params: AeadPairParams, opts: ForwardOptions): Promise<ForwardResult> {
    const why = this.aeadReason;
    if (why) throw new HandoverError('aead', why);
    takeOver('aead', plain, false);
    takeOver('aead', cipher, true);
    return this.submit('aead', plain, cipher, opts, (a, b) => this.pool.aeadPair!(a, b, params));
  }

  private submit(kind: EngineKind, client: net.Socket, upstream: net.Socket, opts: ForwardOptions, begin: (fdA: number, fdB: number) => number): Promise<ForwardResult> {
    const fdA = socketFd(client);
    const fdB = socketFd(upstream);
    if (fdA === undefined || fdB === undefined) throw new HandoverError(kind, 'socket has no file descriptor');
    let id: number;
    try {
      id = begin(fdA, fdB);
    } catch (err) {
      // Bad keys or parameters are the caller's bug, not a refused hand-over.
      if (err instanceof TypeError) throw err;
      // The pool's dup()s need two fds: at the fd limit this is where a flow is
      // refused (EMFILE), and callers count it as such (src/proxy isFdExhausted).
      const n = (err as { errno?: unknown }).errno;
      const errno = typeof n === 'number' ? errnoNames.get(n) : undefined;
      throw new HandoverError(kind, `${kind} hand-over failed: ${(err as Error).message}`, { cause: err, ...(errno ? { errno } : {}) });
    }
    // The pool owns both sockets now. Node's fds go at once (close only: the pool's
    // copies keep the connections open); their 'close' events fire now, not when the
    // flow ends. Read what you need of a socket (remoteAddress, …) before forward().
    client.destroy();
    upstream.destroy();
    return new Promise<ForwardResult>((resolve, reject) => {
      const onAbort = (): void => this.pool.cancel(id);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        kind, resolve, reject,
        cleanup: () => opts.signal?.removeEventListener('abort', onAbort),
      });
      if (opts.signal?.aborted) onAbort();
    });
  }

  /** A pair ended; the pool has closed (or reset) its sockets already. */
  private done(id: number, ab: number, ba: number, errno: number, where: string | null): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    p.cleanup();
    const bytesIn = ab;
    const bytesOut = ba;
    if (errno === 0) {
      p.resolve({ kind: p.kind, bytesIn, bytesOut });
    } else if (errno === ECANCELED) {
      p.reject(new ForwardCancelledError(p.kind, bytesIn, bytesOut));
    } else {
      const name = errnoNames.get(errno) ?? `errno ${errno}`;
      p.reject(new ForwardError(p.kind, `${p.kind} ${where ?? ''}: ${name}`, bytesIn, bytesOut, name));
    }
  }

  /** Cancel every pair, stop the threads, detach the BPF program. Idempotent. */
  close(): void {
    this.pool.close();
    this.link?.close();
    this.link = undefined;
    this.sockmap?.close();
    this.sockmap = undefined;
  }
}

/** Stop Node reading a socket: pause() alone does not stop libuv, it keeps reading up to the highWaterMark. */
export function stopReading(sock: net.Socket): void {
  sock.pause();
  const h = (sock as unknown as { _handle?: { reading?: boolean; readStop?: () => number } })._handle;
  if (h?.reading) {
    h.reading = false;
    h.readStop?.();
  }
}

/**
 * Make sure Node will not read a socket again, and has not read from it (bytes it
 * holds would be lost to the native side): stop libuv reading if it had started,
 * then refuse a socket with buffered bytes, a consumed FIN (unless `finOk`: a read
 * of a TCP socket after its FIN returns EOF again) or writes still queued. Callers
 * that follow the forwarder.ts preconditions always pass.
 */
function takeOver(kind: string, sock: net.Socket, finOk: boolean): void {
  if (sock.destroyed) throw new HandoverError(kind, 'socket already destroyed');
  stopReading(sock);
  if (sock.readableLength > 0) throw new HandoverError(kind, 'Node already read bytes from the socket (accept with pauseOnConnect, pause upstream before connect)');
  if (!finOk && readEnded(sock)) throw new HandoverError(kind, 'Node already consumed a FIN');
  if (sock.writableLength > 0) throw new HandoverError(kind, 'socket has unsent writes queued in Node');
  if (kind === 'aead' && sock.writableEnded) throw new HandoverError(kind, 'socket write side already ended in Node');
}

export class SpliceForwarder implements Forwarder {
  readonly kind = 'splice' as const;
  constructor(private readonly engine: NativeEngine) {}
  forward(client: net.Socket, upstream: net.Socket, opts: ForwardOptions = {}): Promise<ForwardResult> {
    return this.engine.start('splice', client, upstream, opts);
  }
}

export class SockmapForwarder implements Forwarder {
  readonly kind = 'sockmap' as const;
  constructor(private readonly engine: NativeEngine) {}
  forward(client: net.Socket, upstream: net.Socket, opts: ForwardOptions = {}): Promise<ForwardResult> {
    return this.engine.start('sockmap', client, upstream, opts);
  }
}
