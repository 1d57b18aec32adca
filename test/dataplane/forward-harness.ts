/**
 * A client → proxy → backend chain on loopback for forwarder tests and benches:
 * the proxy accepts with pauseOnConnect, dials the backend paused, and hands both
 * sockets to the forwarder under test. Every socket and server is closed by close().
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { connectPaused, type ForwardResult, type Forwarder } from '../../src/native/forwarder.js';

export type BackendHandler = (sock: net.Socket) => void;

export class ForwardHarness {
  backend!: net.Server;
  proxy!: net.Server;
  /** Handler for the next backend connections (set per test). */
  onBackend: BackendHandler = (s) => s.pipe(s);
  /** AbortSignal handed to the next forward() calls (cancellation tests). */
  signal?: AbortSignal;
  /** forward() results, in accept order. */
  readonly results: Promise<ForwardResult>[] = [];
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly forwarder: Forwarder) {}

  async start(): Promise<void> {
    this.backend = net.createServer({ allowHalfOpen: true }, (s) => { this.track(s); this.onBackend(s); });
    this.proxy = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) => {
      this.track(client);
      const r = connectPaused({ host: '127.0.0.1', port: (this.backend.address() as net.AddressInfo).port })
        .then((up) => { this.track(up); return this.forwarder.forward(client, up, this.signal ? { signal: this.signal } : {}); }, (err: Error) => { client.destroy(); throw err; });
      r.catch(() => undefined);
      this.results.push(r);
    });
    await new Promise<void>((r) => this.backend.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, r));
    await new Promise<void>((r) => this.proxy.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, r));
  }

  get port(): number {
    return (this.proxy.address() as net.AddressInfo).port;
  }

  connect(): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port: this.port, allowHalfOpen: true });
      this.track(s);
      s.once('connect', () => { s.off('error', reject); resolve(s); });
      s.once('error', reject);
    });
  }

  private track(s: net.Socket): void {
    this.sockets.add(s);
    s.on('error', () => undefined); // asserted where it matters; never crash the run
    s.once('close', () => this.sockets.delete(s));
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all([this.proxy, this.backend].map((srv) => new Promise<void>((r) => (srv ? srv.close(() => r()) : r()))));
  }
}

/** A random source: slices of a 4 MiB random pool at random offsets (cheap for 256 MiB). */
const pool = randomBytes(4 << 20);
export function* randomChunks(total: number, chunk = 256 << 10): Generator<Buffer> {
  let left = total;
  while (left > 0) {
    const n = Math.min(left, 1 + Math.floor(Math.random() * chunk));
    const off = Math.floor(Math.random() * (pool.length - n));
    left -= n;
    yield pool.subarray(off, off + n);
  }
}

/** Write `total` random bytes with backpressure, then end(); resolves with their sha256. */
export function sendRandom(sock: net.Socket, total: number, opts: { end?: boolean } = {}): Promise<string> {
  const h = createHash('sha256');
  const it = randomChunks(total);
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    const pump = (): void => {
      for (let r = it.next(); !r.done; r = it.next()) {
        h.update(r.value);
        if (!sock.write(r.value)) { sock.once('drain', pump); return; }
      }
      if (opts.end ?? true) sock.end();
      sock.off('error', reject);
      resolve(h.digest('hex'));
    };
    pump();
  });
}

/** Read until 'end'; resolves with byte count and sha256. */
export function receiveAll(sock: net.Socket): Promise<{ bytes: number; sha256: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  return new Promise((resolve, reject) => {
    sock.on('data', (d: Buffer) => { bytes += d.length; h.update(d); });
    sock.once('end', () => resolve({ bytes, sha256: h.digest('hex') }));
    sock.once('error', reject);
  });
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Open fds and pipes of this process. */
export function fdCounts(): { fds: number; pipes: number } {
  let fds = 0;
  let pipes = 0;
  for (const name of readdirSync('/proc/self/fd')) {
    fds++;
    try { if (readlinkSync(`/proc/self/fd/${name}`).startsWith('pipe:')) pipes++; } catch { /* closed meanwhile */ }
  }
  return { fds, pipes };
}

/** Resolve when cond() holds, or reject after timeoutMs (polling, bounded). */
export async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timeout waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => { t = setTimeout(() => reject(new Error(`timeout: ${what}`)), ms); }),
  ]);
}
