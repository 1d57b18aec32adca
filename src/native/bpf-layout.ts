/**
 * TypeScript mirror of the sockmap map layouts in bpf/lib/sockmap.h, field by
 * field (test/dataplane/bpf-layout.test.ts checks sizes and offsets against the
 * compiled object's BTF). Bump SOCKMAP_ABI with any change on either side.
 */

export const SOCKMAP_ABI = 1;
/** EW_SOCKMAP_MAX_SOCKS: entries of ew_socks / ew_redir / ew_peers. */
export const SOCKMAP_MAX_SOCKS = 65_536;
/** EW_PEER_F_ACTIVE */
export const PEER_F_ACTIVE = 1;

export interface FieldLayout {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
}

export interface StructLayout {
  readonly name: string;
  readonly size: number;
  readonly fields: readonly FieldLayout[];
}

/** struct ew_sock_peer: value of ew_peers, keyed by the receiving socket's cookie (u64). */
export const SOCK_PEER_LAYOUT: StructLayout = {
  name: 'ew_sock_peer',
  size: 24,
  fields: [
    { name: 'peer_cookie', offset: 0, size: 8 },
    { name: 'bytes', offset: 8, size: 8 },
    { name: 'flags', offset: 16, size: 4 },
    { name: 'abi', offset: 20, size: 4 },
  ],
};

/** struct ew_sockmap_stats: per-CPU value of ew_stats[0]. */
export const SOCKMAP_STATS_LAYOUT: StructLayout = {
  name: 'ew_sockmap_stats',
  size: 40,
  fields: [
    { name: 'redirected_pkts', offset: 0, size: 8 },
    { name: 'redirected_bytes', offset: 8, size: 8 },
    { name: 'passed_pkts', offset: 16, size: 8 },
    { name: 'fin_dropped', offset: 24, size: 8 },
    { name: 'redirect_failed', offset: 32, size: 8 },
  ],
};

export interface SockPeer {
  peerCookie: bigint;
  bytes: bigint;
  flags: number;
  abi: number;
}

/** Encode an ew_sock_peer value (little-endian host order, as on x86-64/arm64). */
export function encodeSockPeer(p: SockPeer): Buffer {
  const b = Buffer.alloc(SOCK_PEER_LAYOUT.size);
  b.writeBigUInt64LE(p.peerCookie, 0);
  b.writeBigUInt64LE(p.bytes, 8);
  b.writeUInt32LE(p.flags, 16);
  b.writeUInt32LE(p.abi, 20);
  return b;
}

export function decodeSockPeer(b: Buffer): SockPeer {
  if (b.length < SOCK_PEER_LAYOUT.size) throw new RangeError(`ew_sock_peer needs ${SOCK_PEER_LAYOUT.size} bytes, got ${b.length}`);
  return { peerCookie: b.readBigUInt64LE(0), bytes: b.readBigUInt64LE(8), flags: b.readUInt32LE(16), abi: b.readUInt32LE(20) };
}
