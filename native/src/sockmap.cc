#include "sockmap.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <stdexcept>
#include <vector>

namespace edgeway {

namespace {

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
