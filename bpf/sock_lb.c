// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Socket-level load balancing (Cilium's socket-LB): a ClusterIP:port is
 * translated to a backend once, when the socket connects (or per datagram for
 * unconnected UDP), so the flow never goes through per-packet NAT. Replies and
 * getpeername() report the service address the application dialled.
 *
 * One object holds the eight cgroup/sock_addr programs and a sock_release
 * program that drops reverse entries of closed sockets, so they share maps; every
 * hook always lets the syscall proceed (SYS_PROCEED): a miss leaves the address
 * alone and the nftables data path handles the flow as before.
 */
#include "lib/lb.h"

SEC("cgroup/connect4")
int ew_sock4_connect(struct bpf_sock_addr *ctx)
{
	ew_xlate4(ctx);
	return SYS_PROCEED;
}

SEC("cgroup/sendmsg4")
int ew_sock4_sendmsg(struct bpf_sock_addr *ctx)
{
	ew_xlate4(ctx);
	return SYS_PROCEED;
}

SEC("cgroup/recvmsg4")
int ew_sock4_recvmsg(struct bpf_sock_addr *ctx)
{
	ew_rev4(ctx);
	return SYS_PROCEED;
}

SEC("cgroup/getpeername4")
int ew_sock4_getpeer(struct bpf_sock_addr *ctx)
{
	ew_rev4(ctx);
	return SYS_PROCEED;
}

SEC("cgroup/connect6")
int ew_sock6_connect(struct bpf_sock_addr *ctx)
{
	ew_xlate6(ctx);
	return SYS_PROCEED;
}

SEC("cgroup/sendmsg6")
int ew_sock6_sendmsg(struct bpf_sock_addr *ctx)
{
	ew_xlate6(ctx);
	return SYS_PROCEED;
}

SEC("cgroup/recvmsg6")
int ew_sock6_recvmsg(struct bpf_sock_addr *ctx)
{
	ew_rev6(ctx);
	return SYS_PROCEED;
}

SEC("cgroup/getpeername6")
int ew_sock6_getpeer(struct bpf_sock_addr *ctx)
{
	ew_rev6(ctx);
	return SYS_PROCEED;
}

SEC("cgroup/sock_release")
int ew_sock_release(struct bpf_sock *ctx)
{
	ew_release(ctx);
	return SYS_PROCEED;
}

char _license[] SEC("license") = "Dual BSD/GPL";
