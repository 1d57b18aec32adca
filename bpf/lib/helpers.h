/* Small helpers shared by every program. */
#ifndef EDGEWAY_BPF_LIB_HELPERS_H
#define EDGEWAY_BPF_LIB_HELPERS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define EW_INLINE static __always_inline

/* Adds v to *p atomically (the same counter may be hit from two CPUs). */
EW_INLINE void ew_add(__u64 *p, __u64 v)
{
	__sync_fetch_and_add(p, v);
}

#endif
