/**
 * Pure decisions of a punch, made once: which of the peer's addresses to try,
 * how long to wait before dialling.
 */
import { isIP } from 'node:net';

/** The most addresses tried per attempt (each is a connect, and a thread, per port pair). */
export const MAX_CANDIDATES = 3;

/**
 * Addresses worth a SYN: literal IPs only, never loopback, unspecified, multicast or
 * link-local (they cannot be another node's public side), deduplicated, in the order
 * given (the peer sorts its own best first), at most MAX_CANDIDATES. Private ranges
 * stay: a NAT's uplink may well be 10.x (DCUtR drops those; we must not).
 */
export function punchCandidates(addrs: readonly unknown[]): string[] {
  const out: string[] = [];
  for (const a of addrs) {
    if (typeof a !== 'string' || out.includes(a)) continue;
    const fam = isIP(a);
    if (fam === 4) {
      const [o1, o2] = a.split('.').map(Number) as [number, number];
      if (o1 === 0 || o1 === 127 || o1 >= 224 || (o1 === 169 && o2 === 254)) continue;
    } else if (fam === 6) {
      const l = a.toLowerCase();
      if (l === '::' || l === '::1' || l.startsWith('fe80:') || l.startsWith('ff') || l.startsWith('::ffff:')) continue;
    } else continue;
    out.push(a);
    if (out.length === MAX_CANDIDATES) break;
  }
  return out;
}

/**
 * DCUtR's timing (libp2p/specs relay/DCUtR.md, js-libp2p @libp2p/dcutr): the
 * initiator measures the round trip of CONNECT → CONNECT over the relayed
 * connection, sends SYNC and dials after half of it, when SYNC has just reached
 * the responder, who dials on receipt. Capped: a relayed RTT of seconds means a
 * sick relay, and SYN retransmission covers the rest.
 */
export function syncDelayMs(rttMs: number): number {
  if (!Number.isFinite(rttMs) || rttMs < 0) return 0;
  return Math.min(Math.round(rttMs / 2), 1000);
}

/** The IP of a TCP multiaddr string (`/ip4/A/tcp/P…`, `/ip6/A/tcp/P…`), or undefined. */
export function tcpMultiaddrIp(ma: string): string | undefined {
  const m = /^\/ip([46])\/([^/]+)\/tcp\/\d+/.exec(ma);
  return m && isIP(m[2]!) === Number(m[1]) ? m[2] : undefined;
}
