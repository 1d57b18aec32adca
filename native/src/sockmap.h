// Loads the sockmap BPF object (bpf/sockmap_verdict.c) with libbpf and links
// proxied socket pairs into its maps. Glue only: which pairs to link is decided in
// TypeScript.
#pragma once

#include <cstdint>
#include <string>

struct bpf_object;

namespace edgeway {

// Mirrors struct ew_sock_peer in bpf/lib/sockmap.h (EW_SOCKMAP_ABI 1).
struct SockPeer {
  uint64_t peer_cookie;
  uint64_t bytes;
  uint32_t flags;
  uint32_t abi;
};
static_assert(sizeof(SockPeer) == 24, "ew_sock_peer layout");

struct SockmapStats {
  uint64_t redirected_pkts;
  uint64_t redirected_bytes;
  uint64_t passed_pkts;
  uint64_t fin_dropped;
  uint64_t redirect_failed;
};

class Sockmap {
 public:
  // Opens, loads and attaches; throws std::runtime_error with the failing step.
  explicit Sockmap(const std::string& object_path);
  ~Sockmap();
  Sockmap(const Sockmap&) = delete;
  Sockmap& operator=(const Sockmap&) = delete;

  // Links a pair; returns 0 or -errno (everything undone on failure).
  int Link(int fd_a, int fd_b, uint64_t* cookie_a, uint64_t* cookie_b);
  // Unlinks a pair (idempotent). Verdict first, then targets, then counters.
  void Unlink(uint64_t cookie_a, uint64_t cookie_b);
  // Bytes redirected out of the peer of the socket with this cookie.
  uint64_t Bytes(uint64_t cookie) const;
  SockmapStats Stats() const;
  // BPF_PROG_TEST_RUN of the verdict program on `data`; returns retval or -errno.
  int TestRun(const void* data, uint32_t len, uint32_t* retval) const;
  // Test hook: writes a peer entry directly (key, value).
  int PutPeer(uint64_t cookie, const SockPeer& peer);
  int DeletePeer(uint64_t cookie);
  // Detaches the program and frees every map; safe to call twice.
  void Close();

 private:
  bpf_object* obj_ = nullptr;
  int prog_fd_ = -1;
  int socks_fd_ = -1;
  int redir_fd_ = -1;
  int peers_fd_ = -1;
  int stats_fd_ = -1;
  bool attached_ = false;
};

}  // namespace edgeway
