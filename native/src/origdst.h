#pragma once
#include <string>

namespace edgeway {

struct OrigDst {
  int family;  // 4 or 6
  std::string address;
  int port;
};

// The destination a connection had before nft/iptables REDIRECT or DNAT
// (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST). Returns 0 or -errno (-ENOENT: the
// connection was not translated).
int GetOriginalDst(int fd, OrigDst* out);

}  // namespace edgeway
