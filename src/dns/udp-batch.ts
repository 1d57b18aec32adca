/**
 * A UDP listen socket served in batches through the native addon (UdpBatch in
 * native/src/dns-udp.cc): recvmmsg fills up to BATCH slots, one JS call answers
 * them all into the reply slots, one sendmmsg sends the replies. Measured here,
 * dgram's per-datagram path (a Buffer, an rinfo object and a JS call per query,
 * a syscall per receive and per send) was most of the DNS server's CPU time.
 * Replies that are not ready at once (forwarded names) go out later with sendTo
 * to the sender's address, copied from its slot.
 */
import type { NativeUdpBatch, NativeAddon } from '../native/addon.js';

/** Datagrams per recvmmsg/sendmmsg. */
const BATCH = 64;
/** Bytes per slot: the largest query we accept and the largest UDP answer we send (udpLimit). */
const SLOT = 4096;
const ADDR = 32;

/** What a batched server needs from the addon. */
export type BatchAddon = Required<Pick<NativeAddon, 'UdpBatch' | 'udpReusePort'>>;

/** The batch pieces of a loaded addon, or undefined (absent, or built without them). */
export function batchAddon(addon: NativeAddon | undefined): { readonly addon: BatchAddon } | undefined {
  if (!addon?.UdpBatch || !addon.udpReusePort) return undefined;
  return { addon: { UdpBatch: addon.UdpBatch, udpReusePort: addon.udpReusePort.bind(addon) } };
}

export type UdpAnswer = Buffer | Promise<Buffer | undefined> | undefined;

export interface BatchedUdpOptions {
  readonly addon: Required<Pick<NativeAddon, 'UdpBatch'>>;
  /** A bound UDP socket (addon udpReusePort); owned from here on. */
  readonly fd: number;
  /** Answer one query (the server's handle()); the buffer is only valid during the call. */
  readonly answer: (msg: Buffer) => UdpAnswer;
  /** A datagram larger than a slot (hostile: queries are small). */
  readonly oversize: () => void;
  /** Replies the kernel did not take (socket buffer full): lost like any UDP datagram, counted. */
  readonly sendFailed: (count: number) => void;
  readonly onLateError: (err: unknown) => void;
}

/** Same surface as the dgram socket where DnsServer uses it (address, close). */
export class BatchedUdp {
  private readonly native: NativeUdpBatch;
  private readonly inBuf = Buffer.alloc(BATCH * SLOT);
  private readonly outBuf = Buffer.alloc(BATCH * SLOT);
  /** In lengths, out lengths, then the native count of refused replies. */
  private readonly lens = new Int32Array(BATCH * 2 + 1);
  private refused = 0;
  private readonly addrs = Buffer.alloc(BATCH * ADDR);
  private closed = false;

  constructor(private readonly opts: BatchedUdpOptions) {
    this.native = new opts.addon.UdpBatch(opts.fd, BATCH, SLOT, this.inBuf.buffer, this.outBuf.buffer, this.lens.buffer, this.addrs.buffer, (n: number) => this.onBatch(n));
  }

  address(): { address: string; port: number; family: string } {
    return this.native.address();
  }

  close(cb?: () => void): void {
    if (!this.closed) {
      this.closed = true;
      this.native.close();
    }
    cb?.();
  }

  private onBatch(n: number): void {
    const { lens, inBuf, outBuf } = this;
    // Refusals of the previous batch's sendmmsg (and of late replies), counted now.
    const refused = lens[BATCH * 2]!;
    if (refused !== this.refused) { this.opts.sendFailed((refused - this.refused) >>> 0); this.refused = refused; }
    for (let i = 0; i < n; i++) {
      const len = lens[i]!;
      if (len < 0) { this.opts.oversize(); continue; }
      const r = this.opts.answer(inBuf.subarray(i * SLOT, i * SLOT + len));
      if (r === undefined) continue;
      if (r instanceof Promise) {
        // The slot is reused by the next batch: keep the sender's address.
        const addr = Buffer.from(this.addrs.subarray(i * ADDR, (i + 1) * ADDR));
        r.then((out) => { if (out && !this.closed) this.native.sendTo(out, addr); }, this.opts.onLateError);
        continue;
      }
      if (r.length <= SLOT) {
        r.copy(outBuf, i * SLOT);
        lens[BATCH + i] = r.length;
      } else if (!this.closed) {
        // Error answers echo a question up to the query size limit plus OPT: rare, send alone.
        this.native.sendTo(r, this.addrs.subarray(i * ADDR, (i + 1) * ADDR));
      }
    }
  }
}
