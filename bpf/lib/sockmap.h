/* Map layouts shared by the sockmap programs and user space.
 *
 * Versioned: any change to a struct below bumps EW_SOCKMAP_ABI and is mirrored
 * field by field in src/dataplane/native/bpf-layout.ts (a test compares both against
 * this object's BTF).
 */
#ifndef EDGEWAY_BPF_LIB_SOCKMAP_H
#define EDGEWAY_BPF_LIB_SOCKMAP_H

#include <linux/types.h>

#define EW_SOCKMAP_ABI 1
#define EW_SOCKMAP_MAX_SOCKS 65536

/* Value of ew_peers, keyed by the socket cookie of the socket that receives. */
struct ew_sock_peer {
	__u64 peer_cookie;   /* cookie of the socket the bytes are sent out of */
	__u64 bytes;         /* payload bytes redirected so far (atomic add) */
	__u32 flags;         /* EW_PEER_F_* */
	__u32 abi;           /* EW_SOCKMAP_ABI of the writer */
};

#define EW_PEER_F_ACTIVE 1u

/* Per-CPU counters, one slot (index 0). */
struct ew_sockmap_stats {
	__u64 redirected_pkts;
	__u64 redirected_bytes;
	__u64 passed_pkts;     /* no peer known: left to the socket's owner */
	__u64 fin_dropped;     /* zero-length skbs (bare FIN) dropped, see sockmap_verdict.c */
	__u64 redirect_failed; /* peer not in the sockhash */
};

#endif
