/**
 * Large-buffer reads for TCP flows between two Node sockets (`onread` with a
 * caller-owned buffer): one 256 KiB read per syscall instead of Node's 64 KiB
 * chunk allocated per read, and no Readable-stream bookkeeping per chunk. On this
 * machine this halves the proxy's CPU per GB moved.
 *
 * The buffer is reused for every read, so a chunk must be out of it before the next
 * read: after `write()`, if the destination still holds bytes (`writableLength > 0`:
 * the kernel send buffer was full and libuv keeps a pointer into our buffer), the
 * callback returns false, which stops reading until that write has completed. That
 * is also the flow's backpressure.
 *
 * Buffers come from a bounded pool (memory stays bounded whatever the number of
 * flows); a flow that finds the pool empty uses ordinary stream reads.
 *
 * Accepted sockets cannot take `onread` (net.Server has no such option), so the
 * paused socket's handle is moved into a new Socket that has it (`adoptWithBuffer`),
 * before anything was read from it.
 */
import net from 'node:net';
import type { Writable } from 'node:stream';

export class BufferPool {
  private readonly free: Buffer[] = [];
  private made = 0;
  constructor(readonly size: number, readonly max: number) {}

  take(): Buffer | undefined {
    const b = this.free.pop();
    if (b) return b;
    if (this.made >= this.max) return undefined;
    this.made++;
    return Buffer.allocUnsafe(this.size);
  }

  give(b: Buffer): void {
    if (this.free.length < this.max) this.free.push(b);
  }

  /** Buffers lent out now. */
  get inUse(): number {
    return this.made - this.free.length;
  }
}

/** Where a fast reader's bytes go; set by the pump once both sides exist. */
export class ReadSink {
  dst: Writable | undefined;
  count: (n: number) => void = () => undefined;
  /** Bytes read before `dst` was set (copied: the buffer is reused). */
  early: Buffer[] = [];
  /**
   * Hand `dst` a copy of each chunk instead of a view of the reused buffer: set
   * for tunnel streams, which keep written chunks by reference below the write
   * callback (in the encrypted connection's queue) until the socket takes them.
   */
  copyChunks = false;
  private waiting = false;

  /** The `onread` option for `src`'s socket (src known lazily: the socket is built with it). */
  onread(buffer: Buffer, src: () => net.Socket | undefined): net.OnReadOpts {
    // Resume only from a write's completion callback and only once the destination
    // holds nothing of ours: 'drain' is not enough, Node emits it only after a
    // write() that returned false, and a small chunk left pending returns true.
    // One bound callback for every write (no closure per chunk); a late callback
    // of an earlier write sees writableLength > 0 while a later one is pending.
    const written = (): void => {
      if (this.waiting && this.dst && this.dst.writableLength === 0) {
        this.waiting = false;
        src()?.resume();
      }
    };
    return {
      buffer,
      callback: (n: number, buf: Uint8Array): boolean => {
        const dst = this.dst;
        if (!dst) {
          this.early.push(Buffer.from(buf.subarray(0, n)));
          return true;
        }
        this.count(n);
        dst.write(this.copyChunks ? Buffer.from(buf.subarray(0, n)) : buf.subarray(0, n), written);
        if (dst.writableLength === 0) return true;
        // libuv still points into `buffer`: no more reads until the bytes are out.
        this.waiting = true;
        return false;
      },
    };
  }

  /** Set the destination and deliver what arrived before it. */
  attach(dst: Writable, count: (n: number) => void): void {
    this.dst = dst;
    this.count = count;
    for (const b of this.early) { count(b.length); dst.write(b); }
    this.early = [];
  }
}

interface HandleOwner { _handle: unknown }

/**
 * Rebuild a paused accepted socket around its handle with `onread`. Returns
 * undefined (and leaves `sock` as it is) when that cannot be done safely.
 */
export function adoptWithBuffer(sock: net.Socket, onread: net.OnReadOpts): net.Socket | undefined {
  const owner = sock as unknown as HandleOwner;
  const handle = owner._handle;
  if (!handle || sock.readableLength > 0 || sock.destroyed) return undefined;
  // pauseOnCreate (what pauseOnConnect does for accepted sockets): nothing is read,
  // and no EOF is turned into an 'end' nobody listens to yet, until the pump resumes it.
  const opts = { handle, allowHalfOpen: true, onread, pauseOnCreate: true } as net.SocketConstructorOpts;
  const next = new net.Socket(opts);
  owner._handle = null;
  sock.destroy(); // no handle any more: only the JS object goes
  return next;
}
