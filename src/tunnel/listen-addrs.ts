/**
 * This node's own multiaddrs, cached. libp2p builds them on every call (interface
 * enumeration for wildcard listeners, the address manager's merge and sort); the
 * state tick, the gauges, the relay status and the channel's relayed paths asked
 * several times a second: with the connection monitor's pings, most of an idle
 * agent's CPU (2 % of a core per agent: 100 agents filled this machine's two cores
 * doing nothing). Dropped when libp2p says its addresses changed (a reservation
 * made or lost adds or removes a circuit listener), and at most `ttlMs` old
 * otherwise: a new interface address raises no event (30 s: a few ms per rebuild,
 * so a rebuild each second was most of the tick).
 */
import type { Multiaddr } from '@multiformats/multiaddr';

export interface AddressSource {
  getMultiaddrs(): Multiaddr[];
  addEventListener(type: string, listener: () => void): void;
  removeEventListener(type: string, listener: () => void): void;
}

/** libp2p events after which the node's own addresses may differ. */
export const ADDRESS_EVENTS = ['self:peer:update', 'transport:listening', 'transport:close'] as const;

export class ListenAddrs {
  private cached?: Multiaddr[];
  private at = 0;
  private readonly drop = (): void => { this.cached = undefined; };

  constructor(private readonly node: AddressSource, private readonly ttlMs = 30_000, private readonly now: () => number = Date.now) {
    for (const e of ADDRESS_EVENTS) node.addEventListener(e, this.drop);
  }

  get(): Multiaddr[] {
    const t = this.now();
    if (!this.cached || t - this.at >= this.ttlMs) {
      this.cached = this.node.getMultiaddrs();
      this.at = t;
    }
    return this.cached;
  }

  close(): void {
    for (const e of ADDRESS_EVENTS) this.node.removeEventListener(e, this.drop);
    this.cached = undefined;
  }
}
