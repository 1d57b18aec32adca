// Links proxied socket pairs into the maps of a loaded sockmap object (loaded by
// the libbpf part, sockmap.h) with raw bpf(2) syscalls. Holds its own duplicates
// of the map fds, so the maps outlive the object that loaded them for as long as
// pairs still need unlinking.
#pragma once

#include <cstdint>

namespace edgeway {

// Mirrors struct ew_sock_peer in bpf/lib/sockmap.h (EW_SOCKMAP_ABI 1).
struct SockPeer {
  uint64_t peer_cookie;
  uint64_t bytes;
  uint32_t flags;
  uint32_t abi;
};
static_assert(sizeof(SockPeer) == 24, "ew_sock_peer layout");

class SockmapLink {
 public:
  // Duplicates the three map fds; throws std::runtime_error when it cannot.
  SockmapLink(int socks_fd, int redir_fd, int peers_fd);
  ~SockmapLink();
  SockmapLink(const SockmapLink&) = delete;
  SockmapLink& operator=(const SockmapLink&) = delete;

  // Links a pair; returns 0 or -errno (everything undone on failure).
  int Link(int fd_a, int fd_b, uint64_t* cookie_a, uint64_t* cookie_b);
  // Unlinks a pair (idempotent). Verdict first, then targets, then counters.
  void Unlink(uint64_t cookie_a, uint64_t cookie_b);
  // Bytes redirected out of the peer of the socket with this cookie.
  uint64_t Bytes(uint64_t cookie) const;

 private:
  void CloseFds();
  int socks_fd_ = -1;
  int redir_fd_ = -1;
  int peers_fd_ = -1;
};

}  // namespace edgeway
