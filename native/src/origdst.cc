#include "origdst.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace edgeway {

namespace {

int V4(int fd, OrigDst* out) {
  sockaddr_in sa{};
  socklen_t len = sizeof(sa);
  if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &sa, &len) != 0) return -errno;
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &sa.sin_addr, buf, sizeof(buf));
  out->family = 4;
  out->address = buf;
  out->port = ntohs(sa.sin_port);
  return 0;
}

int V6(int fd, OrigDst* out) {
  sockaddr_in6 sa{};
  socklen_t len = sizeof(sa);
  if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &sa, &len) != 0) return -errno;
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, &sa.sin6_addr, buf, sizeof(buf));
  out->family = 6;
  out->address = buf;
  out->port = ntohs(sa.sin6_port);
  return 0;
}

}  // namespace

int GetOriginalDst(int fd, OrigDst* out) {
  sockaddr_storage local{};
  socklen_t len = sizeof(local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) return -errno;
  if (local.ss_family == AF_INET) return V4(fd, out);
  if (local.ss_family != AF_INET6) return -EAFNOSUPPORT;
  // A dual-stack listener accepts IPv4 clients as v4-mapped IPv6 sockets, whose
  // conntrack entry is IPv4: ask the IPv6 table first, then the IPv4 one.
  int err = V6(fd, out);
  if (err == 0) return 0;
  return V4(fd, out) == 0 ? 0 : err;
}

}  // namespace edgeway
