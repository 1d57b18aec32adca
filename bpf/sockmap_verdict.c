/* sk_skb/stream_verdict: moves bytes received on a proxied socket straight out of
 * its peer socket, inside the kernel (no copy to user space).
 *
 * User space (native/src/sockmap.cc) links a proxied pair (a, b) in three steps:
 *   1. ew_peers[cookie(a)] = { cookie(b), ACTIVE } and the reverse (byte counters);
 *   2. ew_redir[cookie(a)] = b and ew_redir[cookie(b)] = a: redirect targets, keyed
 *      by the cookie of the socket that *receives*. No program is attached to this
 *      map, so inserting into it changes nothing on the receive path yet;
 *   3. ew_socks[cookie(x)] = x for both: this map carries the verdict program.
 * Because every target is in ew_redir before either socket gets the verdict, a byte
 * that arrives while the pair is being linked is never dropped for a missing peer.
 * Sockets without an ACTIVE peer entry are passed to their owner untouched.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lib/helpers.h"
#include "lib/sockmap.h"

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, EW_SOCKMAP_MAX_SOCKS);
	__type(key, __u64);
	__type(value, __u32);
} ew_socks SEC(".maps");

/* Redirect targets keyed by the receiving socket's cookie (see above). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, EW_SOCKMAP_MAX_SOCKS);
	__type(key, __u64);
	__type(value, __u32);
} ew_redir SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EW_SOCKMAP_MAX_SOCKS);
	__type(key, __u64);
	__type(value, struct ew_sock_peer);
} ew_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_sockmap_stats);
} ew_stats SEC(".maps");

SEC("sk_skb/stream_verdict")
int ew_sockmap_verdict(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct ew_sockmap_stats *st = bpf_map_lookup_elem(&ew_stats, &zero);
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct ew_sock_peer *peer = bpf_map_lookup_elem(&ew_peers, &cookie);

	if (!peer || !(peer->flags & EW_PEER_F_ACTIVE)) {
		if (st)
			st->passed_pkts++;
		return SK_PASS;
	}
	/* A bare FIN reaches the verdict as a zero-length skb. Redirected, the peer
	 * socket's sender sees EPIPE; user space propagates the half-close itself
	 * once the queued bytes are out (sockmap.cc). */
	if (skb->len == 0) {
		if (st)
			st->fin_dropped++;
		return SK_DROP;
	}
	ew_add(&peer->bytes, skb->len);
	if (st) {
		st->redirected_pkts++;
		st->redirected_bytes += skb->len;
	}
	/* flags 0: out of the peer's egress (BPF_F_INGRESS would queue it for reading). */
	long verdict = bpf_sk_redirect_hash(skb, &ew_redir, &cookie, 0);
	if (verdict != SK_PASS && st)
		st->redirect_failed++;
	return verdict;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
