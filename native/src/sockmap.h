// Loads the sockmap BPF object (bpf/sockmap_verdict.c) with libbpf and attaches
// its stream verdict to the socket map. Part of edgeway_bpf.node (links libbpf);
// pairs are linked into the maps by edgeway_native.node (sockmap-link.h) through
// the map fds this object hands out. Glue only: which pairs to link is decided in
// TypeScript.
#pragma once

#include <cstdint>
#include <string>

#include "sockmap-link.h"

struct bpf_object;

namespace edgeway {

struct SockmapStats {
  uint64_t redirected_pkts;
  uint64_t redirected_bytes;
  uint64_t passed_pkts;
  uint64_t fin_dropped;
  uint64_t redirect_failed;
};

struct SockmapFds {
  int socks, redir, peers;
};

class Sockmap {
 public:
  // Opens, loads and attaches; throws std::runtime_error with the failing step.
  explicit Sockmap(const std::string& object_path);
  ~Sockmap();
  Sockmap(const Sockmap&) = delete;
  Sockmap& operator=(const Sockmap&) = delete;

  // The map fds a SockmapLink duplicates (-1 after Close()).
  SockmapFds Fds() const { return {socks_fd_, redir_fd_, peers_fd_}; }
  SockmapStats Stats() const;
  // BPF_PROG_TEST_RUN of the verdict program on `data`; returns retval or -errno.
  int TestRun(const void* data, uint32_t len, uint32_t* retval) const;
  // Test hook: writes a peer entry directly (key, value).
  int PutPeer(uint64_t cookie, const SockPeer& peer);
  int DeletePeer(uint64_t cookie);
  // Detaches the program and frees every map this object holds; safe to call twice.
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
