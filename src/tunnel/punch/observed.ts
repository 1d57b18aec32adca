/**
 * This node's addresses as other nodes see them: the IP in identify's
 * `observedAddr` on every direct (non-relayed) connection. Observations made by a
 * relay come first — a relay sits outside our NAT, so it sees the NAT's public side
 * (a test NAT's 10.x uplink included). The port is not taken from here: the
 * punch uses the data port, which Linux masquerade keeps when it is free.
 */
import type { IdentifyResult } from '@libp2p/interface';
import type { TunnelLibp2p } from '../node.js';
import { isCircuit } from '../addrs.js';
import { punchCandidates, tcpMultiaddrIp } from './plan.js';

interface Observation {
  fromRelay: boolean;
  at: number;
}

export interface ObservedAddressesOptions {
  /** True for relay peer ids (their observations rank first). */
  isRelay?: (peerId: string) => boolean;
  /** Forget an observation not repeated for this long (default 10 min). */
  ttlMs?: number;
}

export class ObservedAddresses {
  private readonly seen = new Map<string, Observation>();
  private node: TunnelLibp2p | undefined;
  private readonly onIdentify = (evt: CustomEvent<IdentifyResult>): void => {
    const r = evt.detail;
    if (!r.observedAddr || r.connection.limits !== undefined || isCircuit(r.connection.remoteAddr)) return;
    const ip = tcpMultiaddrIp(r.observedAddr.toString());
    if (ip) this.record(ip, this.o.isRelay?.(r.peerId.toString()) ?? false);
  };

  constructor(private readonly o: ObservedAddressesOptions = {}) {}

  attach(node: TunnelLibp2p): void {
    this.detach();
    this.node = node;
    node.addEventListener('peer:identify', this.onIdentify);
  }

  detach(): void {
    this.node?.removeEventListener('peer:identify', this.onIdentify);
    this.node = undefined;
  }

  /** Note that a peer saw us at `ip` (idempotent; a relay's word is kept). */
  record(ip: string, fromRelay: boolean, now = Date.now()): void {
    const old = this.seen.get(ip);
    this.seen.set(ip, { fromRelay: fromRelay || (old?.fromRelay ?? false), at: now });
  }

  /** Candidate IPs for a peer to dial: relay-observed first, newest first within each. */
  list(now = Date.now()): string[] {
    const ttl = this.o.ttlMs ?? 600_000;
    for (const [ip, o] of this.seen) if (now - o.at > ttl) this.seen.delete(ip);
    const sorted = [...this.seen].sort(([, a], [, b]) => Number(b.fromRelay) - Number(a.fromRelay) || b.at - a.at);
    return punchCandidates(sorted.map(([ip]) => ip));
  }
}
