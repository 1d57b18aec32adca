// SPDX-License-Identifier: Apache-2.0
/*
 * Connection-rate load generator and responder for bench/ebpf.mjs.
 *   connrate server PORT THREADS
 *       THREADS SO_REUSEPORT listeners: accept, read 1 byte, write 1 byte, wait for
 *       the client to close.
 *   connrate client HOST PORT THREADS SECONDS
 *       THREADS blocking loops of socket/connect/write 1/read 1/close(RST) for
 *       SECONDS; prints {"conns":N,"errors":E,"rate":R,"p50_us":X,"p99_us":Y}
 *       where latency = connect() start to the first reply byte, plus
 *       "cpu_us": the client's user+system CPU time. The output-path costs of
 *       a connect (hooks, conntrack, NAT) run in the client's syscalls, so CPU per
 *       connection compares modes even when a busy box makes rates noisy.
 *   connrate udpconnect HOST PORT N
 *       N × socket/connect/close of a UDP socket (no packet leaves): the cost of
 *       the connect() path alone, i.e. of the socket-LB hook; prints the fastest
 *       and the median 1000-op batch as {"min_ns":X,"median_ns":Y} per op.
 * The client closes with SO_LINGER 0 (RST) so no side keeps TIME_WAIT and the
 * NAT case's conntrack entries expire quickly; every mode pays the same.
 * C rather than Node so the generator is not the bottleneck on 2 cores.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKETS 100000 /* 1 µs buckets up to 100 ms */

static struct sockaddr_storage target;
static socklen_t target_len;
static double stop_at;
static int port;

struct result {
	unsigned long conns, errors;
	unsigned int *hist;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *client(void *arg)
{
	struct result *r = arg;
	struct linger lg = { 1, 0 };
	char b = 'x';
	int one = 1;

	while (now() < stop_at) {
		double t0 = now();
		int fd = socket(target.ss_family, SOCK_STREAM, 0);
		if (fd < 0) { r->errors++; continue; }
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, (struct sockaddr *)&target, target_len) < 0 || write(fd, &b, 1) != 1 || read(fd, &b, 1) != 1) {
			r->errors++;
			close(fd);
			continue;
		}
		unsigned long us = (unsigned long)((now() - t0) * 1e6);
		r->hist[us < BUCKETS ? us : BUCKETS - 1]++;
		r->conns++;
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
	}
	return NULL;
}

static void *server(void *arg)
{
	(void)arg;
	int one = 1;
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_ANY_INIT };
	int ls = socket(AF_INET6, SOCK_STREAM, 0);
	int zero = 0;
	setsockopt(ls, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(ls, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 4096) < 0) { perror("listen"); exit(1); }
	for (;;) {
		int fd = accept(ls, NULL, NULL);
		char b;
		if (fd < 0) continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (read(fd, &b, 1) == 1 && write(fd, &b, 1) == 1)
			while (read(fd, &b, 1) > 0) {}
		close(fd);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "server")) {
		port = atoi(argv[2]);
		int n = atoi(argv[3]);
		pthread_t t;
		for (int i = 0; i < n; i++) pthread_create(&t, NULL, server, NULL);
		printf("listening %d\n", port);
		fflush(stdout);
		pause();
		return 0;
	}
	int udp = argc >= 5 && !strcmp(argv[1], "udpconnect");
	if (!udp && (argc < 6 || strcmp(argv[1], "client"))) {
		fprintf(stderr, "usage: connrate server PORT THREADS | client HOST PORT THREADS SECONDS | udpconnect HOST PORT N\n");
		return 2;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)&target;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&target;
	memset(&target, 0, sizeof(target));
	if (inet_pton(AF_INET, argv[2], &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET; s4->sin_port = htons(atoi(argv[3])); target_len = sizeof(*s4);
	} else if (inet_pton(AF_INET6, argv[2], &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6; s6->sin6_port = htons(atoi(argv[3])); target_len = sizeof(*s6);
	} else { fprintf(stderr, "bad host\n"); return 2; }
	int n = atoi(argv[4]);
	if (udp) {
		/* Batches of 1000; the fastest batch is the uncontended cost (other load
		 * on a shared box only ever adds time), the median the typical one. */
		int batches = n / 1000 > 0 ? n / 1000 : 1;
		double *per = calloc(batches, sizeof(double));
		for (int b = 0; b < batches; b++) {
			double u0 = now();
			for (int i = 0; i < 1000; i++) {
				int fd = socket(target.ss_family, SOCK_DGRAM, 0);
				if (fd < 0 || connect(fd, (struct sockaddr *)&target, target_len) < 0) { perror("udp connect"); return 1; }
				close(fd);
			}
			per[b] = (now() - u0) * 1e6; /* ns per op */
		}
		for (int i = 1; i < batches; i++) for (int j = i; j > 0 && per[j - 1] > per[j]; j--) { double t = per[j]; per[j] = per[j - 1]; per[j - 1] = t; }
		printf("{\"min_ns\":%.1f,\"median_ns\":%.1f}\n", per[0], per[batches / 2]);
		return 0;
	}
	double secs = atof(argv[5]);
	pthread_t *th = calloc(n, sizeof(*th));
	struct result *res = calloc(n, sizeof(*res));
	double t0 = now();
	stop_at = t0 + secs;
	for (int i = 0; i < n; i++) { res[i].hist = calloc(BUCKETS, sizeof(unsigned int)); pthread_create(&th[i], NULL, client, &res[i]); }
	unsigned long conns = 0, errors = 0;
	unsigned int *hist = calloc(BUCKETS, sizeof(unsigned int));
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		conns += res[i].conns; errors += res[i].errors;
		for (int j = 0; j < BUCKETS; j++) hist[j] += res[i].hist[j];
	}
	double el = now() - t0;
	unsigned long acc = 0; long p50 = -1, p99 = -1;
	for (int j = 0; j < BUCKETS; j++) {
		acc += hist[j];
		if (p50 < 0 && acc * 100 >= conns * 50) p50 = j;
		if (p99 < 0 && acc * 100 >= conns * 99) p99 = j;
	}
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec;
	printf("{\"conns\":%lu,\"errors\":%lu,\"rate\":%.1f,\"p50_us\":%ld,\"p99_us\":%ld,\"cpu_us\":%.0f}\n", conns, errors, conns / el, p50, p99, cpu);
	return 0;
}
