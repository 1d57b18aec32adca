#include "sockmap-link.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <string>

#include "bpf-sys.h"

namespace edgeway {

namespace {

constexpr uint32_t kPeerActive = 1;
constexpr uint32_t kAbi = 1;

int Cookie(int fd, uint64_t* out) {
  socklen_t len = sizeof(*out);
  if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, out, &len) != 0) return -errno;
  return 0;
}

int Dup(int fd) {
  int d = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
  if (d < 0) throw std::runtime_error(std::string("sockmap link: dup map fd: ") + strerror(fd >= 0 ? errno : EBADF));
  return d;
}

}  // namespace

SockmapLink::SockmapLink(int socks_fd, int redir_fd, int peers_fd) {
  try {
    socks_fd_ = Dup(socks_fd);
    redir_fd_ = Dup(redir_fd);
    peers_fd_ = Dup(peers_fd);
  } catch (...) {
    CloseFds();  // the destructor does not run for a constructor that threw
    throw;
  }
}

SockmapLink::~SockmapLink() { CloseFds(); }

void SockmapLink::CloseFds() {
  for (int* fd : {&socks_fd_, &redir_fd_, &peers_fd_}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
}

int SockmapLink::Link(int fd_a, int fd_b, uint64_t* cookie_a, uint64_t* cookie_b) {
  uint64_t ca = 0, cb = 0;
  int err = Cookie(fd_a, &ca);
  if (!err) err = Cookie(fd_b, &cb);
  if (err) return err;
  SockPeer pa{cb, 0, kPeerActive, kAbi};
  SockPeer pb{ca, 0, kPeerActive, kAbi};
  uint32_t va = static_cast<uint32_t>(fd_a), vb = static_cast<uint32_t>(fd_b);
  // Order matters (see bpf/sockmap_verdict.c): counters, targets, then verdict.
  int step = 0;
  if (BpfMapUpdate(peers_fd_, &ca, &pa, BPF_NOEXIST)) goto fail;
  step = 1;
  if (BpfMapUpdate(peers_fd_, &cb, &pb, BPF_NOEXIST)) goto fail;
  step = 2;
  if (BpfMapUpdate(redir_fd_, &ca, &vb, BPF_NOEXIST)) goto fail;
  step = 3;
  if (BpfMapUpdate(redir_fd_, &cb, &va, BPF_NOEXIST)) goto fail;
  step = 4;
  if (BpfMapUpdate(socks_fd_, &ca, &va, BPF_NOEXIST)) goto fail;
  step = 5;
  if (BpfMapUpdate(socks_fd_, &cb, &vb, BPF_NOEXIST)) goto fail;
  {
    // Bytes queued before the insert only move once the receive path is poked;
    // SO_RCVLOWAT re-runs data_ready, which now is the verdict.
    int one = 1;
    setsockopt(fd_a, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
    setsockopt(fd_b, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
  }
  *cookie_a = ca;
  *cookie_b = cb;
  return 0;
fail:
  err = -errno;
  if (step > 4) BpfMapDelete(socks_fd_, &ca);
  if (step > 3) BpfMapDelete(redir_fd_, &cb);
  if (step > 2) BpfMapDelete(redir_fd_, &ca);
  if (step > 1) BpfMapDelete(peers_fd_, &cb);
  if (step > 0) BpfMapDelete(peers_fd_, &ca);
  return err;
}

void SockmapLink::Unlink(uint64_t ca, uint64_t cb) {
  BpfMapDelete(socks_fd_, &ca);
  BpfMapDelete(socks_fd_, &cb);
  BpfMapDelete(redir_fd_, &ca);
  BpfMapDelete(redir_fd_, &cb);
  BpfMapDelete(peers_fd_, &ca);
  BpfMapDelete(peers_fd_, &cb);
}

uint64_t SockmapLink::Bytes(uint64_t cookie) const {
  SockPeer p{};
  if (BpfMapLookup(peers_fd_, &cookie, &p) != 0) return 0;
  return p.bytes;
}

}  // namespace edgeway
