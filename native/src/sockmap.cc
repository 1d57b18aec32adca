#include "sockmap.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <vector>

namespace edgeway {

namespace {

constexpr uint32_t kPeerActive = 1;
constexpr uint32_t kAbi = 1;

int Cookie(int fd, uint64_t* out) {
  socklen_t len = sizeof(*out);
  if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, out, &len) != 0) return -errno;
  return 0;
}

std::runtime_error Fail(const std::string& step, int err) {
  return std::runtime_error("sockmap: " + step + ": " + strerror(err < 0 ? -err : err));
}

}  // namespace

Sockmap::Sockmap(const std::string& object_path) {
  libbpf_set_print(nullptr);  // libbpf's own chatter goes nowhere; errors are returned.
  obj_ = bpf_object__open_file(object_path.c_str(), nullptr);
  if (!obj_) {
    int err = errno;
    obj_ = nullptr;
    throw Fail("open " + object_path, err);
  }
  int err = bpf_object__load(obj_);
  if (err) {
    Close();
    throw Fail("load", err);
  }
  bpf_program* prog = bpf_object__find_program_by_name(obj_, "ew_sockmap_verdict");
  socks_fd_ = bpf_object__find_map_fd_by_name(obj_, "ew_socks");
  redir_fd_ = bpf_object__find_map_fd_by_name(obj_, "ew_redir");
  peers_fd_ = bpf_object__find_map_fd_by_name(obj_, "ew_peers");
  stats_fd_ = bpf_object__find_map_fd_by_name(obj_, "ew_stats");
  if (!prog || socks_fd_ < 0 || redir_fd_ < 0 || peers_fd_ < 0 || stats_fd_ < 0) {
    Close();
    throw Fail("object lacks ew_sockmap_verdict or its maps", ENOENT);
  }
  prog_fd_ = bpf_program__fd(prog);
  // Attached to the map, not to a netns or cgroup: it sees only sockets we insert.
  if (bpf_prog_attach(prog_fd_, socks_fd_, BPF_SK_SKB_STREAM_VERDICT, 0) != 0) {
    int e = errno;
    Close();
    throw Fail("attach stream verdict", e);
  }
  attached_ = true;
}

Sockmap::~Sockmap() { Close(); }

void Sockmap::Close() {
  if (attached_) {
    bpf_prog_detach2(prog_fd_, socks_fd_, BPF_SK_SKB_STREAM_VERDICT);
    attached_ = false;
  }
  if (obj_) {
    bpf_object__close(obj_);  // closes every map and program fd it owns
    obj_ = nullptr;
  }
  prog_fd_ = socks_fd_ = redir_fd_ = peers_fd_ = stats_fd_ = -1;
}

int Sockmap::Link(int fd_a, int fd_b, uint64_t* cookie_a, uint64_t* cookie_b) {
  if (!obj_) return -EBADF;
  uint64_t ca = 0, cb = 0;
  int err = Cookie(fd_a, &ca);
  if (!err) err = Cookie(fd_b, &cb);
  if (err) return err;
  SockPeer pa{cb, 0, kPeerActive, kAbi};
  SockPeer pb{ca, 0, kPeerActive, kAbi};
  uint32_t va = static_cast<uint32_t>(fd_a), vb = static_cast<uint32_t>(fd_b);
  // Order matters (see bpf/sockmap_verdict.c): counters, targets, then verdict.
  int step = 0;
  if (bpf_map_update_elem(peers_fd_, &ca, &pa, BPF_NOEXIST)) goto fail;
  step = 1;
  if (bpf_map_update_elem(peers_fd_, &cb, &pb, BPF_NOEXIST)) goto fail;
  step = 2;
  if (bpf_map_update_elem(redir_fd_, &ca, &vb, BPF_NOEXIST)) goto fail;
  step = 3;
  if (bpf_map_update_elem(redir_fd_, &cb, &va, BPF_NOEXIST)) goto fail;
  step = 4;
  if (bpf_map_update_elem(socks_fd_, &ca, &va, BPF_NOEXIST)) goto fail;
  step = 5;
  if (bpf_map_update_elem(socks_fd_, &cb, &vb, BPF_NOEXIST)) goto fail;
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
  if (step > 4) bpf_map_delete_elem(socks_fd_, &ca);
  if (step > 3) bpf_map_delete_elem(redir_fd_, &cb);
  if (step > 2) bpf_map_delete_elem(redir_fd_, &ca);
  if (step > 1) bpf_map_delete_elem(peers_fd_, &cb);
  if (step > 0) bpf_map_delete_elem(peers_fd_, &ca);
  return err;
}

void Sockmap::Unlink(uint64_t ca, uint64_t cb) {
  if (!obj_) return;
  bpf_map_delete_elem(socks_fd_, &ca);
  bpf_map_delete_elem(socks_fd_, &cb);
  bpf_map_delete_elem(redir_fd_, &ca);
  bpf_map_delete_elem(redir_fd_, &cb);
  bpf_map_delete_elem(peers_fd_, &ca);
  bpf_map_delete_elem(peers_fd_, &cb);
}

uint64_t Sockmap::Bytes(uint64_t cookie) const {
  SockPeer p{};
  if (!obj_ || bpf_map_lookup_elem(peers_fd_, &cookie, &p) != 0) return 0;
  return p.bytes;
}

SockmapStats Sockmap::Stats() const {
  SockmapStats sum{};
  if (!obj_) return sum;
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return sum;
  std::vector<SockmapStats> per(static_cast<size_t>(ncpu));
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(stats_fd_, &zero, per.data()) != 0) return sum;
  for (const auto& s : per) {
    sum.redirected_pkts += s.redirected_pkts;
    sum.redirected_bytes += s.redirected_bytes;
    sum.passed_pkts += s.passed_pkts;
    sum.fin_dropped += s.fin_dropped;
    sum.redirect_failed += s.redirect_failed;
  }
  return sum;
}

int Sockmap::TestRun(const void* data, uint32_t len, uint32_t* retval) const {
  if (!obj_) return -EBADF;
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = data, .data_size_in = len, .repeat = 1);
  if (bpf_prog_test_run_opts(prog_fd_, &opts) != 0) return -errno;
  *retval = opts.retval;
  return 0;
}

int Sockmap::PutPeer(uint64_t cookie, const SockPeer& peer) {
  if (!obj_) return -EBADF;
  return bpf_map_update_elem(peers_fd_, &cookie, &peer, BPF_ANY) ? -errno : 0;
}

int Sockmap::DeletePeer(uint64_t cookie) {
  if (!obj_) return -EBADF;
  return bpf_map_delete_elem(peers_fd_, &cookie) ? -errno : 0;
}

}  // namespace edgeway
