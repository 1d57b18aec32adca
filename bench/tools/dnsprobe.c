// SPDX-License-Identifier: Apache-2.0
/*
 * DNS latency probe for bench/dns.mjs: UDP queries paced at a fixed offered rate,
 * each one timed with CLOCK_MONOTONIC from its sendto() to its answer.
 *   dnsprobe HOST PORT RATE SECONDS FILE [SOCKETS]
 *       FILE: one query a line, "NAME TYPE" (dnsperf's format; TYPE A, AAAA,
 *       SRV, PTR or TXT), sent in turn. SOCKETS (default 8) client sockets, used
 *       round robin, so SO_REUSEPORT servers spread the load as with dnsperf -c.
 *       Prints one JSON line: {"sent","answered","lost","late","errors",
 *       "mismatched","rate","p50_us","p90_us","p99_us","p999_us","max_us"}.
 * Pacing follows an absolute schedule (query i is due at start + i/RATE): a
 * client that fell behind sends the overdue queries at once and counts each
 * one sent more than 1 ms after its slot as "late", so a slow client shows
 * up instead of silently lowering the offered load. Latency runs from the
 * actual send, so "late" also says how far to trust the percentiles.
 * An answer counts when its ID is outstanding on the socket it came back on and
 * its question matches the query's; anything else is "mismatched". "errors" =
 * answers with an rcode other than NOERROR. Queries unanswered 2 s after the
 * last send are "lost".
 * dnsperf 2.10 prints no latency distribution (only -v per-query lines, whose
 * printing sits in its receive path); a C client so the generator is not the
 * bottleneck on 2 cores.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKETS 1000000 /* 1 µs buckets up to 1 s; slower answers land in the last */
#define MAXSOCK 64
#define SLOTS 65536    /* one per DNS ID */

struct query {
	unsigned char wire[300];
	int len; /* whole query */
	int qlen; /* question section (name + type + class) */
};

struct slot {
	uint64_t sent_ns; /* 0: free */
	int sock;
	int query;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int qtype(const char *t)
{
	if (!strcasecmp(t, "A")) return 1;
	if (!strcasecmp(t, "AAAA")) return 28;
	if (!strcasecmp(t, "SRV")) return 33;
	if (!strcasecmp(t, "PTR")) return 12;
	if (!strcasecmp(t, "TXT")) return 16;
	return -1;
}

/* Wire form of a query with ID 0, RD set, no EDNS (as dnsperf -e is off). */
static int build(struct query *q, const char *name, int type)
{
	unsigned char *p = q->wire;
	memset(p, 0, 12);
	p[2] = 0x01; /* RD */
	p[5] = 1;    /* QDCOUNT */
	int off = 12;
	const char *s = name;
	while (*s) {
		const char *dot = strchr(s, '.');
		int l = dot ? (int)(dot - s) : (int)strlen(s);
		if (l == 0 || l > 63 || off + l + 1 > 255 + 12) return -1;
		p[off++] = (unsigned char)l;
		memcpy(p + off, s, (size_t)l);
		off += l;
		s += l;
		if (*s == '.') s++;
	}
	p[off++] = 0;
	p[off++] = (unsigned char)(type >> 8);
	p[off++] = (unsigned char)type;
	p[off++] = 0;
	p[off++] = 1; /* IN */
	q->len = off;
	q->qlen = off - 12;
	return 0;
}

static struct query *load(const char *file, int *n)
{
	FILE *f = fopen(file, "r");
	if (!f) { perror(file); return NULL; }
	int cap = 1024, cnt = 0;
	struct query *qs = malloc(sizeof *qs * (size_t)cap);
	char line[512], name[300], type[16];
	while (qs && fgets(line, sizeof line, f)) {
		if (sscanf(line, "%299s %15s", name, type) != 2) continue;
		int t = qtype(type);
		if (t < 0) { fprintf(stderr, "unknown type %s\n", type); continue; }
		if (cnt == cap) {
			cap *= 2;
			struct query *more = realloc(qs, sizeof *qs * (size_t)cap);
			if (!more) { free(qs); qs = NULL; break; }
			qs = more;
		}
		size_t nl = strlen(name);
		if (nl > 1 && name[nl - 1] == '.') name[nl - 1] = 0;
		if (build(&qs[cnt], name, t) == 0) cnt++;
	}
	fclose(f);
	*n = cnt;
	return qs;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: dnsprobe HOST PORT RATE SECONDS FILE [SOCKETS]\n");
		return 2;
	}
	double rate = atof(argv[3]), seconds = atof(argv[4]);
	int nsock = argc > 6 ? atoi(argv[6]) : 8;
	if (rate <= 0 || seconds <= 0 || nsock < 1 || nsock > MAXSOCK) { fprintf(stderr, "bad RATE, SECONDS or SOCKETS\n"); return 2; }
	int nq = 0;
	struct query *qs = load(argv[5], &nq);
	if (!qs || nq == 0) { fprintf(stderr, "no queries in %s\n", argv[5]); return 2; }

	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
	if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) { fprintf(stderr, "bad HOST %s\n", argv[1]); return 2; }
	struct pollfd pfd[MAXSOCK];
	for (int i = 0; i < nsock; i++) {
		int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof to) < 0) { perror("socket"); return 1; }
		int big = 4 << 20;
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
		pfd[i] = (struct pollfd){ .fd = fd, .events = POLLIN };
	}
	/* Wake-ups on time: the default 50 µs timer slack is a whole slot at 20k qps. */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);

	static struct slot slots[SLOTS];
	unsigned int *hist = calloc(BUCKETS, sizeof *hist);
	if (!hist) return 1;
	uint64_t total = (uint64_t)(rate * seconds);
	double interval = 1e9 / rate;
	uint64_t sent = 0, answered = 0, late = 0, errors = 0, mismatched = 0, max_ns = 0;
	uint64_t start = now_ns(), last_send = start, drain_until = 0;
	unsigned char buf[4096];

	for (;;) {
		uint64_t t = now_ns();
		while (sent < total) {
			uint64_t due = start + (uint64_t)((double)sent * interval);
			if (due > t) break;
			uint16_t id = (uint16_t)sent; /* a slot still pending 65536 queries later is lost */
			struct slot *sl = &slots[id];
			struct query *q = &qs[sent % (uint64_t)nq];
			q->wire[0] = (unsigned char)(id >> 8);
			q->wire[1] = (unsigned char)id;
			int s = (int)(sent % (uint64_t)nsock);
			uint64_t ts = now_ns();
			if (send(pfd[s].fd, q->wire, (size_t)q->len, 0) < 0) {
				if (errno == EAGAIN || errno == ENOBUFS) break; /* retry this one on the next turn */
				perror("send");
				return 1;
			}
			if (ts - due > 1000000) late++;
			*sl = (struct slot){ .sent_ns = ts, .sock = s, .query = (int)(sent % (uint64_t)nq) };
			sent++;
			t = last_send = ts;
		}
		if (sent == total && !drain_until) drain_until = now_ns() + 2000000000ull;
		if (drain_until && (answered + errors >= sent || now_ns() >= drain_until)) break;

		/* Sleep until the next query is due (or an answer comes). */
		uint64_t wake = sent < total ? start + (uint64_t)((double)sent * interval) : drain_until;
		t = now_ns();
		struct timespec tmo = { 0, 0 };
		if (wake > t) tmo = (struct timespec){ .tv_sec = (time_t)((wake - t) / 1000000000ull), .tv_nsec = (long)((wake - t) % 1000000000ull) };
		if (ppoll(pfd, (nfds_t)nsock, &tmo, NULL) <= 0) continue;
		for (int s = 0; s < nsock; s++) {
			if (!(pfd[s].revents & POLLIN)) continue;
			for (;;) {
				ssize_t n = recv(pfd[s].fd, buf, sizeof buf, 0);
				if (n < 0) break; /* EAGAIN (or ECONNREFUSED: counted as lost) */
				uint64_t rt = now_ns();
				if (n < 12) { mismatched++; continue; }
				uint16_t id = (uint16_t)(buf[0] << 8 | buf[1]);
				struct slot *sl = &slots[id];
				struct query *q = sl->sent_ns ? &qs[sl->query] : NULL;
				if (!q || sl->sock != s || !(buf[2] & 0x80) || n < 12 + q->qlen || memcmp(buf + 12, q->wire + 12, (size_t)q->qlen) != 0) {
					mismatched++;
					continue;
				}
				uint64_t lat = rt - sl->sent_ns;
				sl->sent_ns = 0;
				if ((buf[3] & 0x0f) != 0) { errors++; continue; }
				answered++;
				if (lat > max_ns) max_ns = lat;
				uint64_t b = lat / 1000;
				hist[b < BUCKETS ? b : BUCKETS - 1]++;
			}
		}
	}
	double elapsed = (double)(last_send - start) / 1e9;
	uint64_t marks[4] = { answered * 50 / 100, answered * 90 / 100, answered * 99 / 100, answered * 999 / 1000 };
	long pct[4] = { -1, -1, -1, -1 };
	uint64_t acc = 0;
	for (int b = 0; b < BUCKETS; b++) {
		acc += hist[b];
		for (int k = 0; k < 4; k++) if (pct[k] < 0 && answered && acc > marks[k]) pct[k] = b;
	}
	printf("{\"sent\":%llu,\"answered\":%llu,\"lost\":%llu,\"late\":%llu,\"errors\":%llu,\"mismatched\":%llu,\"rate\":%.0f,"
	       "\"p50_us\":%ld,\"p90_us\":%ld,\"p99_us\":%ld,\"p999_us\":%ld,\"max_us\":%llu}\n",
	       (unsigned long long)sent, (unsigned long long)answered, (unsigned long long)(sent - answered - errors),
	       (unsigned long long)late, (unsigned long long)errors, (unsigned long long)mismatched, elapsed > 0 ? (double)sent / elapsed : 0.0,
	       pct[0], pct[1], pct[2], pct[3], (unsigned long long)(max_ns / 1000));
	return 0;
}
