/**
 * Idle peer connections close (`tunnel.peerIdleMs`): peers are dialled on demand by
 * their first flow and, without this, stay connected for ever — a node that once
 * talked to every other would hold a full mesh. Every tick, each peer that holds
 * something (libp2p connections, this node's warm channel pool towards it, its warm
 * channel connections here) and that PeerActivity calls idle is closed; the next
 * flow dials again (LAN → punched → relayed, as for a first flow). Relays (and the
 * rendezvous they serve) are never candidates: the caller leaves them out.
 */
import type { Counter } from 'prom-client';
import type { Logger } from '../util/log.js';
import type { PeerActivity } from './peer-activity.js';

/** What one idle close released (0 and 0: there was nothing left to close, not counted). */
export interface IdleCloseResult {
  readonly connections: number;
  readonly warm: number;
}

export interface PeerIdleReaperOptions {
  readonly idleMs: number;
  readonly activity: PeerActivity;
  /** Non-relay peers holding a connection, a channel or warm connections (peer id strings). */
  candidates(): string[];
  close(peer: string): Promise<IdleCloseResult>;
  nodeNameOf(peer: string): string | undefined;
  readonly closes: Counter;
  readonly logger: Logger;
}

/** Ticks often enough that a peer closes within ~¼ of idleMs after its time, rarely enough to cost nothing. */
export function reaperTickMs(idleMs: number): number {
  return Math.max(50, Math.min(10_000, Math.floor(idleMs / 4)));
}

export class PeerIdleReaper {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;

  constructor(private readonly o: PeerIdleReaperOptions) {}

  /** Idempotent; idleMs 0 = never close (no timer). */
  start(): void {
    if (this.timer || this.o.idleMs <= 0) return;
    this.timer = setInterval(() => { this.running ??= this.sweep().finally(() => { this.running = undefined; }); }, reaperTickMs(this.o.idleMs));
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One pass: close every idle candidate. Never throws (a failed close is logged and tried next tick). */
  async sweep(): Promise<void> {
    const { activity, idleMs } = this.o;
    for (const peer of this.o.candidates()) {
      if (!activity.isIdle(peer, idleMs)) continue;
      try {
        const r = await this.o.close(peer);
        // A flow may have begun while the close ran: it dials again, and its hold keeps the record.
        activity.forget(peer);
        if (r.connections === 0 && r.warm === 0) continue;
        this.o.closes.inc();
        const node = this.o.nodeNameOf(peer);
        this.o.logger.info({ peer, ...(node ? { node } : {}), idleMs, connections: r.connections, warm: r.warm }, 'idle peer connection closed');
      } catch (err) {
        this.o.logger.warn({ peer, err: String(err) }, 'cannot close an idle peer connection');
      }
    }
  }
}
