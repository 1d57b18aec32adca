/**
 * The client side of the data channel to one peer: credentials from the peer
 * (over libp2p), the best path that works — LAN address of the peer's data
 * listener → hole-punched socket → blind relay — and a pool of warm EWC1
 * connections on it, so a new flow pays only its header round trip. A channel on
 * a relayed or punched path keeps trying the LAN path in the background (with
 * backoff) and moves new flows there when it works; flows already running stay
 * where they are.
 *
 * Warm connections, not a multiplexer: one EWC1 connection per flow gives each
 * flow the kernel's own TCP backpressure and half-close, no head-of-line blocking
 * between flows, and no framing or credit windows in JavaScript; the handshake
 * cost is paid off the flow's path by the pool (bench/tunnel.mjs measures the
 * new-flow time).
 */
import { setMaxListeners } from 'node:events';
import net from 'node:net';
import type { Logger } from '../../util/log.js';
import { Backoff, sleep } from '../../util/backoff.js';
import { ChannelError } from './errors.js';
import { ewcClient, type EwcHooks, type PskCredential } from './ewc-handshake.js';
import { retire, type EwcSocket } from './ewc-codec.js';

export type ChannelPath = 'lan' | 'punched' | 'relayed';

/** Upper bound of warm connections per peer (fds on both agents, pairs on a relay). */
const MAX_WARM = 64;
/** Background hole punches a relayed channel tries (after the one at set-up) before it stays relayed. */
const PUNCH_RETRIES = 2;

/** How to make connections on one path (from the manager, which knows libp2p). */
export interface PathDialer {
  readonly path: ChannelPath;
  /** A human label (address, relay) for state and logs. */
  readonly via: string;
  /** `n` new raw sockets to the peer on this path, ready for the EWC1 handshake. */
  connect(n: number, signal: AbortSignal): Promise<net.Socket[]>;
}

export interface PeerChannelOptions {
  readonly peerId: string;
  readonly nodeName: string;
  readonly warm: number;
  readonly handshakeTimeoutMs: number;
  /** Warm connections older than this are replaced (the server drops idle ones later). */
  readonly maxIdleMs: number;
  readonly logger: Logger;
  /** Credentials (and the far data port) from the peer, over libp2p. */
  hello(signal: AbortSignal): Promise<{ cred: PskCredential; dataPort: number }>;
  /** Path dialers in preference order for these credentials. */
  paths(dataPort: number, signal: AbortSignal): Promise<PathDialer[]>;
  /** A LAN path dialer when one is known (for background upgrades), else undefined. */
  lanPath(dataPort: number): Promise<PathDialer | undefined>;
  /** The hole-punch path, tried in the background while relayed (absent: no punching). */
  punchedPath?(): PathDialer;
  onChange(): void;
  /** The far side closed every warm connection (END): this channel is done; the next flow makes a new one. */
  onClosedByPeer?(): void;
  onHandshake(path: ChannelPath, ok: boolean): void;
  /** Handshake failures and rejected record streams (counted by the manager). */
  readonly hooks?: EwcHooks;
}

interface Warm {
  readonly sock: EwcSocket;
  readonly path: ChannelPath;
  readonly born: number;
  readonly onIdle: () => void;
  readonly onEnd: () => void;
}

export class PeerChannel {
  private cred?: PskCredential;
  private dataPort = 0;
  private dialer?: PathDialer;
  private pool: Warm[] = [];
  private establishing?: Promise<boolean>;
  private refilling = false;
  /**
   * Warm connections wanted: starts at `warm`, doubles (up to MAX_WARM) each time a
   * flow found the pool empty — a burst of new flows outruns a relayed refill,
   * which costs several round trips — and halves when idle ones age out unused.
   */
  private target: number;
  private upgrading = false;
  private retryAt = 0;
  private readonly backoff = new Backoff(1000, 30_000);
  // The channel's stop signal: every socket of a refill batch (up to 64) and every
  // upgrade wait listen on it at once — many listeners by design, not a leak.
  private readonly abort = unlimitedController();
  private closed = false;

  constructor(private readonly o: PeerChannelOptions) {
    this.target = o.warm;
  }

  get path(): ChannelPath | undefined {
    return this.dialer?.path;
  }

  get via(): string | undefined {
    return this.dialer?.via;
  }

  get warmCount(): number {
    return this.pool.length;
  }

  /** Up (true) or unavailable for now (false: use the libp2p path). Shared by concurrent callers. */
  ensure(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.dialer) return Promise.resolve(true);
    if (Date.now() < this.retryAt) return Promise.resolve(false);
    this.establishing ??= this.establish().finally(() => { this.establishing = undefined; });
    return this.establishing;
  }

  /**
   * Credentials, then every path at once: the first that works carries flows
   * right away; a more preferred one that answers later takes over (so an
   * unreachable LAN address costs no connect timeout before the relay is used).
   */
  private async establish(): Promise<boolean> {
    const signal = this.abort.signal;
    const log = this.o.logger;
    try {
      const { cred, dataPort } = await this.o.hello(signal);
      this.cred = cred;
      this.dataPort = dataPort;
      const dialers = await this.o.paths(dataPort, signal);
      const rank = (d: PathDialer | undefined): number => (d ? dialers.indexOf(d) : dialers.length);
      const first = await new Promise<boolean>((resolve) => {
        let pending = dialers.length;
        if (pending === 0) resolve(false);
        for (const d of dialers) {
          d.connect(1, signal).then((socks) => this.handshakeAll(socks, d.path)).then((socks) => {
            // A path that works but is less preferred than the current one is dropped.
            if (socks.length === 0 || this.closed || rank(d) >= rank(this.dialer)) { for (const x of socks) retire(x); return; }
            this.use(d, socks);
            log.info({ peer: this.o.peerId, node: this.o.nodeName, path: d.path, via: d.via }, 'data channel up');
            this.backoff.reset();
            resolve(true);
          }, (err: unknown) => {
            log.debug({ peer: this.o.peerId, path: d.path, via: d.via, err: String(err) }, 'channel path failed');
          }).finally(() => { if (--pending === 0) resolve(this.dialer !== undefined); });
        }
      });
      if (!first) throw new ChannelError('ERR_CHANNEL_NO_PATH', `no channel path to ${this.o.nodeName}`);
      return true;
    } catch (err) {
      this.retryAt = Date.now() + this.backoff.next();
      log.debug({ peer: this.o.peerId, err: String(err) }, 'data channel unavailable; flows use libp2p streams');
      return false;
    }
  }

  private async handshakeAll(socks: net.Socket[], path: ChannelPath): Promise<EwcSocket[]> {
    const cred = this.cred;
    if (!cred) { for (const s of socks) s.destroy(); return []; }
    const out = await Promise.allSettled(socks.map((s) => ewcClient(s, cred, this.o.handshakeTimeoutMs, this.o.hooks)));
    const ok: EwcSocket[] = [];
    for (const r of out) {
      this.o.onHandshake(path, r.status === 'fulfilled');
      if (r.status === 'fulfilled') ok.push(r.value);
    }
    return ok;
  }

  /** Switch to a path: its first sockets go to the pool, the old idle ones are closed. */
  private use(d: PathDialer, socks: EwcSocket[]): void {
    const old = this.pool;
    this.pool = [];
    this.dialer = d;
    for (const w of old) retire(w.sock);
    for (const s of socks) this.add(s, d.path);
    this.o.onChange();
    this.refill();
    if (d.path !== 'lan') this.scheduleUpgrade();
  }

  private add(sock: EwcSocket, path: ChannelPath): void {
    // An idle connection never receives data (the far side waits for a header):
    // reading keeps its close visible, and anything else is a broken peer.
    const onIdle = (): void => { retire(sock); };
    // An END is the far side closing it on purpose (its warm timeout, or this peer
    // closed as idle there): it is not replaced, and once the pool is empty that way
    // the channel is done and the next flow sets up a new one (fresh key, paths) —
    // refilling would only reopen what the far side just closed.
    let farEnded = false;
    const onEnd = (): void => { farEnded = true; retire(sock); };
    const w: Warm = { sock, path, born: Date.now(), onIdle, onEnd };
    sock.on('error', () => undefined);
    sock.on('data', onIdle);
    sock.on('end', onEnd);
    sock.once('close', () => {
      const i = this.pool.indexOf(w);
      if (i < 0) return;
      this.pool.splice(i, 1);
      if (!farEnded) this.refill();
      else if (this.pool.length === 0 && this.dialer) this.closedByPeer();
    });
    this.pool.push(w);
  }

  /** The far side closed every warm connection: this channel is done (nothing failed, so no backoff for the next one). */
  private closedByPeer(): void {
    this.o.logger.debug({ peer: this.o.peerId, node: this.o.nodeName, path: this.dialer?.path }, 'data channel closed by the peer; a new one at the next flow');
    this.close();
    this.o.onClosedByPeer?.();
  }

  /**
   * A connection for one flow: a warm one (no handshake) or, when the pool is
   * empty, the next one a refill or a fresh dial brings — if it comes within
   * `waitMs`. Undefined when the channel is down or slower than that: the flow
   * takes libp2p instead (a punched connection needs a punch round, seconds on a
   * loaded link, and the flow's own deadline would expire waiting for it); what
   * arrives late joins the pool for the next flow.
   */
  async take(waitMs = Infinity): Promise<EwcSocket | undefined> {
    const deadline = Date.now() + waitMs;
    let missed = false;
    for (;;) {
      const w = this.shiftWarm();
      if (w) { this.refill(); return w; }
      if (!this.dialer) return undefined;
      if (!missed) {
        missed = true;
        this.target = Math.min(MAX_WARM, this.target * 2);
        this.refill();
      }
      // A refill batch on its way is closer than a new connection (a relayed one costs several round trips).
      if (!this.refilling) break;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((r) => {
        const t = Number.isFinite(left) ? setTimeout(r, left).unref() : undefined;
        this.waiters.push(() => { clearTimeout(t); r(); });
      });
    }
    const d = this.dialer;
    if (!d) return undefined;
    const fresh = (async () => {
      try {
        const [s] = await this.handshakeAll(await d.connect(1, this.abort.signal), d.path);
        if (s) return s;
      } catch (err) {
        this.o.logger.debug({ peer: this.o.peerId, err: String(err) }, 'channel connection failed');
      }
      // Warm connections a refill brought meanwhile keep the path up.
      if (this.dialer === d && this.pool.length === 0) this.down();
      return undefined;
    })();
    const left = deadline - Date.now();
    if (!Number.isFinite(left)) return fresh;
    let timer: NodeJS.Timeout | undefined;
    const late = Symbol('late');
    const got = await Promise.race([fresh, new Promise<typeof late>((r) => { timer = setTimeout(() => r(late), Math.max(0, left)).unref(); })]);
    clearTimeout(timer);
    if (got !== late) return got;
    void fresh.then((s) => {
      if (!s) return;
      // Late: it joins the pool (within its bound) for the next flow.
      if (this.dialer === d && !this.closed && this.pool.length < Math.min(MAX_WARM, this.target)) { this.add(s, d.path); this.wake(); } else retire(s);
    });
    return undefined;
  }

  /** The next usable warm connection, detached from the pool's idle watch; stale ones are closed. */
  private shiftWarm(): EwcSocket | undefined {
    const now = Date.now();
    for (let w = this.pool.shift(); w; w = this.pool.shift()) {
      const aged = now - w.born > this.o.maxIdleMs;
      if (aged) this.target = Math.max(this.o.warm, this.target >> 1);
      if (aged || w.sock.destroyed || w.sock.readableEnded || w.path !== this.dialer?.path) { retire(w.sock); continue; }
      w.sock.off('data', w.onIdle);
      w.sock.off('end', w.onEnd);
      // Back to "not flowing, not paused": the flow's first reader starts it.
      w.sock.pause();
      return w.sock;
    }
    return undefined;
  }

  /** The path stopped working: flows use libp2p until the next attempt. */
  down(): void {
    if (!this.dialer) return;
    this.o.logger.info({ peer: this.o.peerId, node: this.o.nodeName, path: this.dialer.path }, 'data channel down');
    this.dialer = undefined;
    // END, not a bare FIN: the peer would count (and warn about) a truncated record stream.
    for (const w of this.pool.splice(0)) retire(w.sock);
    this.retryAt = Date.now() + this.backoff.next();
    this.o.onChange();
  }

  /** Top the pool up to `target`, one batch after another, until full or the path fails. */
  private refill(): void {
    if (this.refilling || this.closed || !this.dialer || this.pool.length >= this.target) return;
    const d = this.dialer;
    this.refilling = true;
    void (async () => {
      try {
        while (this.dialer === d && !this.closed && this.pool.length < this.target) {
          const socks = await this.handshakeAll(await d.connect(this.target - this.pool.length, this.abort.signal), d.path);
          if (this.dialer !== d || this.closed) { for (const s of socks) retire(s); return; }
          if (socks.length === 0) { if (this.pool.length === 0) this.down(); return; }
          for (const s of socks) this.add(s, d.path);
          this.wake();
        }
      } catch (err) {
        this.o.logger.debug({ peer: this.o.peerId, err: String(err) }, 'channel refill failed');
        // Warm connections left keep the path up: a punched path cannot refill while
        // the libp2p connection that signals punches is gone (relay down), yet its
        // direct sockets still work.
        if (this.dialer === d && this.pool.length === 0) this.down();
      } finally {
        this.refilling = false;
        this.wake();
      }
    })();
  }

  /** Flows waiting for the pool are told when it changed. */
  private waiters: (() => void)[] = [];
  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Try the LAN path (and, while relayed, a hole punch) in the background while on a slower one. Idempotent. */
  scheduleUpgrade(): void {
    if (this.upgrading || this.closed) return;
    this.upgrading = true;
    void (async () => {
      const backoff = new Backoff(1000, 30_000);
      const signal = this.abort.signal;
      // A NAT that defeats punching (symmetric) defeats it every time: give up after a few.
      let punchesLeft = PUNCH_RETRIES;
      try {
        while (!signal.aborted && this.dialer && this.dialer.path !== 'lan') {
          await sleep(backoff.next(), signal).catch(() => undefined);
          if (signal.aborted || !this.dialer) return;
          const lan = await this.o.lanPath(this.dataPort).catch(() => undefined);
          const punch = punchesLeft > 0 ? this.o.punchedPath?.() : undefined;
          const better = [lan, punch].filter((d): d is PathDialer => d !== undefined);
          let moved: PathDialer | undefined;
          for (const d of better) {
            // Punch only from a relayed channel (the dialer checks again after any running punch).
            if (d.path === 'punched' && (this.dialer?.path !== 'relayed' || punchesLeft-- <= 0)) continue;
            const socks = await this.handshakeAll(await d.connect(d.path === 'lan' ? 1 : this.o.warm, signal).catch(() => []), d.path);
            if (socks.length > 0 && this.dialer) {
              this.o.logger.info({ peer: this.o.peerId, node: this.o.nodeName, path: d.path, via: d.via }, `data channel moved to the ${d.path} path`);
              this.use(d, socks);
              moved = d;
              break;
            }
          }
          if (moved?.path === 'lan') return;
        }
      } finally {
        this.upgrading = false;
      }
    })();
  }

  close(): void {
    this.closed = true;
    this.abort.abort(new Error('channel closed'));
    this.dialer = undefined;
    // Unused warm connections close with END both ways (retire), also when the agent stops.
    for (const w of this.pool.splice(0)) retire(w.sock);
  }

  /**
   * Close for idleness: like close(), but the warm connections end with END so the
   * far side sees an orderly close (a reset counts as a truncated record stream).
   * Returns how many were open.
   */
  retireAll(): number {
    this.closed = true;
    this.abort.abort(new Error('channel closed (idle)'));
    this.dialer = undefined;
    const pool = this.pool.splice(0);
    for (const w of pool) retire(w.sock);
    return pool.length;
  }
}

/** Connect `n` sockets to host:port (all or nothing), with a timeout. */
export async function connectMany(host: string, port: number, n: number, timeoutMs: number, signal: AbortSignal): Promise<net.Socket[]> {
  const one = (): Promise<net.Socket> => new Promise((resolve, reject) => {
    const s = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
    const fail = (err: Error): void => { clearTimeout(t); signal.removeEventListener('abort', onAbort); s.destroy(); reject(err); };
    const onAbort = (): void => fail(new Error('aborted'));
    const t = setTimeout(() => fail(new Error(`connect to ${host}:${port} timed out`)), timeoutMs);
    signal.addEventListener('abort', onAbort, { once: true });
    s.once('error', fail);
    s.once('connect', () => { clearTimeout(t); signal.removeEventListener('abort', onAbort); s.off('error', fail); resolve(s); });
  });
  const r = await Promise.allSettled(Array.from({ length: n }, one));
  const ok = r.filter((x): x is PromiseFulfilledResult<net.Socket> => x.status === 'fulfilled').map((x) => x.value);
  if (ok.length === 0) throw (r[0] as PromiseRejectedResult).reason;
  return ok;
}

function unlimitedController(): AbortController {
  const c = new AbortController();
  setMaxListeners(0, c.signal);
  return c;
}
