/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Service lookup and backend choice for the socket-LB hooks. All helpers are
 * static __always_inline: the hooks stay single functions for the verifier and
 * no BPF-to-BPF calls are needed.
 */
#ifndef EW_LB_H
#define EW_LB_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.h"

#define SYS_REJECT 0
#define SYS_PROCEED 1
#define NSEC_PER_SEC 1000000000ULL

static __always_inline bool ew_proto_ok(__u32 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP;
}

/* Affinity: the backend this netns used last for this service, if still fresh. */
static __always_inline __u32 ew_affinity_get(void *ctx, const struct ew_svc_v1 *svc)
{
	struct ew_affinity_key_v1 key = {
		.netns_cookie = bpf_get_netns_cookie(ctx),
		.svc_id = svc->svc_id,
	};
	struct ew_affinity_v1 *val = bpf_map_lookup_elem(&ew_aff_v1, &key);

	if (!val)
		return 0;
	if (bpf_ktime_get_ns() - val->last_used_ns > (__u64)svc->affinity_timeout * NSEC_PER_SEC)
		return 0;
	return val->backend_id;
}

static __always_inline void ew_affinity_put(void *ctx, const struct ew_svc_v1 *svc, __u32 backend_id)
{
	struct ew_affinity_key_v1 key = {
		.netns_cookie = bpf_get_netns_cookie(ctx),
		.svc_id = svc->svc_id,
	};
	struct ew_affinity_v1 val = {
		.backend_id = backend_id,
		.last_used_ns = bpf_ktime_get_ns(),
	};

	bpf_map_update_elem(&ew_aff_v1, &key, &val, BPF_ANY);
}

/* Random slot in 1..count. */
static __always_inline __u16 ew_pick_slot(const struct ew_svc_v1 *svc)
{
	return (__u16)(bpf_get_prandom_u32() % svc->count) + 1;
}

/*
 * Find the backend for a service key (slot 0 = master entry): the affine one when
 * the service asks for ClientIP affinity and it is still fresh and present,
 * otherwise a random slot. Shared by both families: after inlining, the map
 * arguments are constants, as the verifier wants. `*slot` aliases the key's slot
 * field. Returns the backend value (struct ew_backend{4,6}_v1) or NULL.
 */
static __always_inline void *ew_select(void *ctx, void *svc_map, void *key, __u16 *slot,
				       void *be_map, struct ew_svc_v1 **svc_out)
{
	struct ew_svc_v1 *svc, *sv;
	void *be = NULL;
	__u32 backend_id = 0;
	bool affine;

	svc = bpf_map_lookup_elem(svc_map, key);
	if (!svc)
		return NULL;
	*svc_out = svc;
	if (svc->count == 0) {
		/* No kernel-capable backend: the packet path (nftables) decides. */
		ew_count(EW_STAT_NO_BACKEND);
		return NULL;
	}
	affine = svc->flags & EW_SVC_F_AFFINITY;
	if (affine) {
		backend_id = ew_affinity_get(ctx, svc);
		if (backend_id) {
			be = bpf_map_lookup_elem(be_map, &backend_id);
			if (be)
				ew_count(EW_STAT_AFFINITY_HIT);
		}
	}
	if (!be) {
		*slot = ew_pick_slot(svc);
		sv = bpf_map_lookup_elem(svc_map, key);
		*slot = 0;
		if (sv) {
			backend_id = sv->backend_id;
			be = bpf_map_lookup_elem(be_map, &backend_id);
		}
		if (!be) {
			ew_count(EW_STAT_NO_BACKEND);
			return NULL;
		}
	}
	if (affine)
		ew_affinity_put(ctx, svc, backend_id);
	return be;
}

/*
 * Choose a backend for the v4 service vip:ctx->user_port and record the reverse
 * entry for the socket. The caller writes the address (user_ip4, or the last word
 * of a v4-mapped user_ip6).
 */
static __always_inline struct ew_backend4_v1 *ew_xlate4_core(struct bpf_sock_addr *ctx, __be32 vip)
{
	struct ew_svc4_key_v1 key = {
		.vip = vip,
		.dport = (__be16)ctx->user_port,
		.proto = (__u8)ctx->protocol,
	};
	struct ew_svc_v1 *svc = NULL;
	struct ew_backend4_v1 *be;

	if (!ew_proto_ok(ctx->protocol))
		return NULL;
	be = ew_select(ctx, &ew_svc4_v1, &key, &key.slot, &ew_be4_v1, &svc);
	if (!be || !svc)
		return NULL;

	struct ew_rev4_key_v1 rkey = {
		.cookie = bpf_get_socket_cookie(ctx),
		.addr = be->addr,
		.port = be->port,
	};
	struct ew_rev4_v1 rval = {
		.vip = key.vip,
		.port = key.dport,
		.svc_id = svc->svc_id,
	};
	bpf_map_update_elem(&ew_rev4_v1, &rkey, &rval, BPF_ANY);
	ew_count(EW_STAT_TRANSLATED);
	return be;
}

static __always_inline void ew_xlate4(struct bpf_sock_addr *ctx)
{
	struct ew_backend4_v1 *be = ew_xlate4_core(ctx, ctx->user_ip4);

	if (!be)
		return;
	ctx->user_ip4 = be->addr;
	ctx->user_port = (__u32)be->port;
}

/* The service address behind a v4 peer of this socket, if we translated it. */
static __always_inline struct ew_rev4_v1 *ew_rev4_core(struct bpf_sock_addr *ctx, __be32 addr)
{
	struct ew_rev4_key_v1 rkey = {
		.cookie = bpf_get_socket_cookie(ctx),
		.addr = addr,
		.port = (__be16)ctx->user_port,
	};
	struct ew_rev4_v1 *rval;

	if (!ew_proto_ok(ctx->protocol))
		return NULL;
	rval = bpf_map_lookup_elem(&ew_rev4_v1, &rkey);
	if (rval)
		ew_count(EW_STAT_REV_HIT);
	return rval;
}

/* Restore the service address a socket dialled (getpeername, recvmsg). */
static __always_inline void ew_rev4(struct bpf_sock_addr *ctx)
{
	struct ew_rev4_v1 *rval = ew_rev4_core(ctx, ctx->user_ip4);

	if (!rval)
		return;
	ctx->user_ip4 = rval->vip;
	ctx->user_port = (__u32)rval->port;
}

/* ::ffff:a.b.c.d — a dual-stack (AF_INET6) socket talking IPv4. */
static __always_inline bool ew_v4mapped(const struct bpf_sock_addr *ctx)
{
	return ctx->user_ip6[0] == 0 && ctx->user_ip6[1] == 0 && ctx->user_ip6[2] == bpf_htonl(0xffff);
}

static __always_inline bool ew_xlate6(struct bpf_sock_addr *ctx)
{
	struct ew_svc6_key_v1 key = {
		.dport = (__be16)ctx->user_port,
		.proto = (__u8)ctx->protocol,
	};
	struct ew_svc_v1 *svc = NULL;
	struct ew_backend6_v1 *be;

	if (!ew_proto_ok(ctx->protocol))
		return false;
	if (ew_v4mapped(ctx)) {
		/* v4 services serve dual-stack sockets too (as Cilium does). */
		struct ew_backend4_v1 *be4 = ew_xlate4_core(ctx, ctx->user_ip6[3]);

		if (!be4)
			return false;
		ctx->user_ip6[3] = be4->addr;
		ctx->user_port = (__u32)be4->port;
		return true;
	}
	/* user_ip6 must be read as 4-byte words (verifier rule). */
	key.vip[0] = ctx->user_ip6[0];
	key.vip[1] = ctx->user_ip6[1];
	key.vip[2] = ctx->user_ip6[2];
	key.vip[3] = ctx->user_ip6[3];
	be = ew_select(ctx, &ew_svc6_v1, &key, &key.slot, &ew_be6_v1, &svc);
	if (!be || !svc)
		return false;

	struct ew_rev6_key_v1 rkey = {
		.cookie = bpf_get_socket_cookie(ctx),
		.addr = { be->addr[0], be->addr[1], be->addr[2], be->addr[3] },
		.port = be->port,
	};
	struct ew_rev6_v1 rval = {
		.vip = { key.vip[0], key.vip[1], key.vip[2], key.vip[3] },
		.port = key.dport,
		.svc_id = svc->svc_id,
	};
	bpf_map_update_elem(&ew_rev6_v1, &rkey, &rval, BPF_ANY);

	ctx->user_ip6[0] = be->addr[0];
	ctx->user_ip6[1] = be->addr[1];
	ctx->user_ip6[2] = be->addr[2];
	ctx->user_ip6[3] = be->addr[3];
	ctx->user_port = (__u32)be->port;
	ew_count(EW_STAT_TRANSLATED);
	return true;
}

static __always_inline void ew_rev6(struct bpf_sock_addr *ctx)
{
	struct ew_rev6_key_v1 rkey = {
		.cookie = bpf_get_socket_cookie(ctx),
		.port = (__be16)ctx->user_port,
	};
	struct ew_rev6_v1 *rval;

	if (!ew_proto_ok(ctx->protocol))
		return;
	if (ew_v4mapped(ctx)) {
		struct ew_rev4_v1 *rval4 = ew_rev4_core(ctx, ctx->user_ip6[3]);

		if (!rval4)
			return;
		ctx->user_ip6[3] = rval4->vip;
		ctx->user_port = (__u32)rval4->port;
		return;
	}
	rkey.addr[0] = ctx->user_ip6[0];
	rkey.addr[1] = ctx->user_ip6[1];
	rkey.addr[2] = ctx->user_ip6[2];
	rkey.addr[3] = ctx->user_ip6[3];
	rval = bpf_map_lookup_elem(&ew_rev6_v1, &rkey);
	if (!rval)
		return;
	ctx->user_ip6[0] = rval->vip[0];
	ctx->user_ip6[1] = rval->vip[1];
	ctx->user_ip6[2] = rval->vip[2];
	ctx->user_ip6[3] = rval->vip[3];
	ctx->user_port = (__u32)rval->port;
	ew_count(EW_STAT_REV_HIT);
}

/*
 * A connected socket is going away: drop its reverse entry now instead of
 * waiting for LRU eviction (which would otherwise churn the map at high connect
 * rates). Unconnected UDP entries (one per destination) are left to the LRU.
 */
static __always_inline void ew_release(struct bpf_sock *sk)
{
	/* 4-byte load: kernels before 5.18 reject 2-byte loads of dst_port; the be16
	 * port sits in the first two bytes either way. */
	__be16 dport = (__be16)*(volatile __u32 *)&sk->dst_port;

	if (!ew_proto_ok(sk->protocol))
		return;
	if (sk->family == 2 /* AF_INET */) {
		struct ew_rev4_key_v1 k = {
			.cookie = bpf_get_socket_cookie(sk),
			.addr = sk->dst_ip4,
			.port = dport,
		};
		bpf_map_delete_elem(&ew_rev4_v1, &k);
	} else if (sk->family == 10 /* AF_INET6 */ && sk->dst_ip6[0] == 0 && sk->dst_ip6[1] == 0 &&
		   sk->dst_ip6[2] == bpf_htonl(0xffff)) {
		struct ew_rev4_key_v1 k = {
			.cookie = bpf_get_socket_cookie(sk),
			.addr = sk->dst_ip6[3],
			.port = dport,
		};
		bpf_map_delete_elem(&ew_rev4_v1, &k);
	} else if (sk->family == 10 /* AF_INET6 */) {
		struct ew_rev6_key_v1 k = {
			.cookie = bpf_get_socket_cookie(sk),
			.addr = { sk->dst_ip6[0], sk->dst_ip6[1], sk->dst_ip6[2], sk->dst_ip6[3] },
			.port = dport,
		};
		bpf_map_delete_elem(&ew_rev6_v1, &k);
	}
}

#endif
