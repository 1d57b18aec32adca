/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Map layouts shared by every socket-LB entry point. Versioned: any change to a
 * struct below bumps EW_SOCK_LB_ABI, the `_v<N>` suffix of map names and the
 * TypeScript mirror in src/dataplane/ebpf/layout.ts (a unit test compares that
 * mirror to this object's BTF, field by field).
 *
 * Service entries follow Cilium's slot scheme: slot 0 of (vip, port, proto) is the
 * master entry (backend count, flags, revision); slots 1..count name backend ids.
 * Writers fill backends and slots first and publish the master entry last, so a
 * connect() never sees a count larger than the slots that exist.
 */
#ifndef EW_LAYOUT_H
#define EW_LAYOUT_H

#include <linux/types.h>

#define EW_SOCK_LB_ABI 1

/* ew_svc_v1.flags */
#define EW_SVC_F_AFFINITY (1 << 0) /* ClientIP affinity, timeout in affinity_timeout */

struct ew_svc4_key_v1 {
	__be32 vip;
	__be16 dport;
	__u8 proto; /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 pad;
	__u16 slot; /* 0 = master entry */
	__u16 pad2;
};

struct ew_svc6_key_v1 {
	__u32 vip[4]; /* network byte order */
	__be16 dport;
	__u8 proto;
	__u8 pad;
	__u16 slot;
	__u16 pad2;
};

struct ew_svc_v1 {
	__u32 backend_id; /* slot > 0: backend id; slot 0: unused */
	__u16 count;      /* slot 0: number of backend slots */
	__u16 flags;      /* slot 0: EW_SVC_F_* */
	__u32 revision;   /* slot 0: bumped on every change of this service */
	__u32 svc_id;     /* stable per service port: affinity and reverse NAT */
	__u32 affinity_timeout; /* seconds */
	__u32 pad;
};

struct ew_backend4_v1 {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 flags;
};

struct ew_backend6_v1 {
	__u32 addr[4];
	__be16 port;
	__u8 proto;
	__u8 flags;
};

/* ClientIP affinity. At connect() the source address is not chosen yet, so the
 * client is identified by its network namespace cookie (like Cilium). */
struct ew_affinity_key_v1 {
	__u64 netns_cookie;
	__u32 svc_id;
	__u32 pad;
};

struct ew_affinity_v1 {
	__u32 backend_id;
	__u32 pad;
	__u64 last_used_ns; /* bpf_ktime_get_ns() */
};

/* Reverse translation for getpeername and unconnected UDP replies, keyed by the
 * socket cookie and the backend address the socket talks to. */
struct ew_rev4_key_v1 {
	__u64 cookie;
	__be32 addr;
	__be16 port;
	__u16 pad;
};

struct ew_rev4_v1 {
	__be32 vip;
	__be16 port;
	__u16 pad;
	__u32 svc_id;
};

struct ew_rev6_key_v1 {
	__u64 cookie;
	__u32 addr[4];
	__be16 port;
	__u16 pad;
	__u32 pad2;
};

struct ew_rev6_v1 {
	__u32 vip[4];
	__be16 port;
	__u16 pad;
	__u32 svc_id;
};

/* Indices of the per-CPU counter array ew_stats_v1. */
enum ew_stat {
	EW_STAT_TRANSLATED = 0,   /* connect/sendmsg rewritten to a backend */
	EW_STAT_NO_BACKEND = 1,   /* service found, backend missing: left to nftables */
	EW_STAT_AFFINITY_HIT = 2, /* backend taken from the affinity map */
	EW_STAT_REV_HIT = 3,      /* getpeername/recvmsg restored the service address */
	EW_STAT_MAX = 4,
};

#endif
