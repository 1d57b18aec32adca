/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Map definitions (BTF-defined). Sizes are upper bounds; the agent counts entries. */
#ifndef EW_MAPS_H
#define EW_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "layout.h"

#define EW_SVC_MAX 65536
#define EW_BACKEND_MAX 65536
#define EW_AFFINITY_MAX 65536
#define EW_REV_MAX 262144

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ew_svc4_key_v1);
	__type(value, struct ew_svc_v1);
	__uint(max_entries, EW_SVC_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ew_svc4_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ew_svc6_key_v1);
	__type(value, struct ew_svc_v1);
	__uint(max_entries, EW_SVC_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ew_svc6_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct ew_backend4_v1);
	__uint(max_entries, EW_BACKEND_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ew_be4_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct ew_backend6_v1);
	__uint(max_entries, EW_BACKEND_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ew_be6_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ew_affinity_key_v1);
	__type(value, struct ew_affinity_v1);
	__uint(max_entries, EW_AFFINITY_MAX);
} ew_aff_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ew_rev4_key_v1);
	__type(value, struct ew_rev4_v1);
	__uint(max_entries, EW_REV_MAX);
} ew_rev4_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ew_rev6_key_v1);
	__type(value, struct ew_rev6_v1);
	__uint(max_entries, EW_REV_MAX);
} ew_rev6_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, EW_STAT_MAX);
} ew_stats_v1 SEC(".maps");

static __always_inline void ew_count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&ew_stats_v1, &idx);

	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

#endif
