/**
 * The one place that decides whether a peer is idle: per peer, the flows open now
 * (both directions, every carrier: libp2p streams, data channel connections, and
 * flows the addon's record pump carries) and when the last one began or ended.
 * A peer with an open flow is never idle, however long that flow lives; one with
 * none is idle once `idleMs` passed since its last flow (or since it was first
 * seen, for a connection that never carried one).
 *
 * Pure bookkeeping with an injected clock: the reaper (peer-idle.ts) acts on it.
 */
export class PeerActivity {
  private readonly peers = new Map<string, { open: number; last: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  private entry(peer: string): { open: number; last: number } {
    let e = this.peers.get(peer);
    if (!e) this.peers.set(peer, (e = { open: 0, last: this.now() }));
    return e;
  }

  /** A flow with `peer` began; the returned function ends it (idempotent: safe from several close paths). */
  hold(peer: string): () => void {
    const e = this.entry(peer);
    e.open++;
    e.last = this.now();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      // The entry may have been forgotten (peer closed) and made again meanwhile.
      const cur = this.entry(peer);
      cur.open = Math.max(0, cur.open - 1);
      cur.last = this.now();
    };
  }

  /** The peer was seen (a new connection): its idle time starts now unless a flow is open. */
  seen(peer: string): void {
    const e = this.entry(peer);
    e.last = Math.max(e.last, this.now());
  }

  openFlows(peer: string): number {
    return this.peers.get(peer)?.open ?? 0;
  }

  /** No open flow and none for `idleMs`. A peer never seen starts its idle time now (false). */
  isIdle(peer: string, idleMs: number): boolean {
    const e = this.entry(peer);
    return e.open === 0 && this.now() - e.last >= idleMs;
  }

  /** Drop a closed peer's record (flows still open keep counting through their hold). */
  forget(peer: string): void {
    const e = this.peers.get(peer);
    if (e && e.open === 0) this.peers.delete(peer);
  }
}
