#include "pool.h"

#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <linux/tcp.h>  // tcp_info with tcpi_bytes_acked (glibc's lacks it)
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cstdio>
#include <cstdlib>

#include <algorithm>
#include <unordered_map>
#include <utility>

#include "aead-pump.h"
#include "sockmap-link.h"

namespace edgeway {

namespace {

constexpr int kMaxEvents = 256;
// Chunks one direction may move before yielding to other pairs of the thread.
constexpr int kBudget = 32;
// Sockmap end-of-direction checks back off from 1 ms to this (never busy-poll).
constexpr int kMaxCheckMs = 50;

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

int SocketError(int fd) {
  int e = 0;
  socklen_t len = sizeof(e);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) return errno;
  return e;
}

// Bytes ever written into a TCP socket's send queue: acked + still queued. Valid
// until we send FIN (which takes a sequence number).
bool WrittenBytes(int fd, uint64_t* out) {
  tcp_info ti{};
  socklen_t len = sizeof(ti);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return false;
  int outq = 0;
  if (ioctl(fd, SIOCOUTQ, &outq) != 0) return false;
  *out = ti.tcpi_bytes_acked + uint64_t(outq);
  return true;
}

// Bytes received in sequence on a TCP socket (excludes the FIN).
bool ReceivedBytes(int fd, uint64_t* out) {
  tcp_info ti{};
  socklen_t len = sizeof(ti);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return false;
  *out = ti.tcpi_bytes_received;
  return true;
}

// Bytes of `fd` consumed by user space before it was linked: received minus still
// queued, read until stable so a segment arriving in between cannot skew it.
uint64_t ConsumedBefore(int fd) {
  for (int i = 0; i < 8; i++) {
    uint64_t r1 = 0, r2 = 0;
    int inq = 0;
    if (!ReceivedBytes(fd, &r1) || ioctl(fd, FIONREAD, &inq) != 0 || !ReceivedBytes(fd, &r2)) return 0;
    if (r1 == r2) return r1 >= uint64_t(inq) ? r1 - uint64_t(inq) : 0;
  }
  return 0;
}

}  // namespace

enum class Kind { kSplice, kSockmap, kAead };

struct PairSpec {
  Kind kind;
  int fd[2];  // dup'ed, owned by the pair (closed by Finish, or by Submit when it fails)
  int pipe_size;
  std::shared_ptr<SockmapLink> sockmap;
  uint64_t cookie[2];
  uint64_t consumed[2];  // sockmap: bytes user space had read before linking
  uint64_t written[2];   // sockmap: WrittenBytes() before linking (SYN, earlier writes)
  std::unique_ptr<AeadKeys> aead_keys;  // aead: fd[0] plain, fd[1] cipher
};

struct Dir {
  int src = -1, dst = -1;
  int pipe[2] = {-1, -1};
  size_t in_pipe = 0;
  size_t cap = 0;
  uint64_t bytes = 0;
  bool eof = false;   // src reached EOF
  bool shut = false;  // dst write side shut
};

struct Pair {
  uint64_t id;
  Kind kind;
  int fd[2];
  Dir d[2];  // d[0]: fd[0] → fd[1]; d[1]: fd[1] → fd[0]
  std::shared_ptr<SockmapLink> sockmap;
  uint64_t cookie[2] = {0, 0};
  uint64_t consumed[2] = {0, 0};
  uint64_t written[2] = {0, 0};
  bool rdhup[2] = {false, false};
  int64_t next_check = 0;  // sockmap: when to look again (0: no check pending)
  int check_ms = 1;
  bool queued = false;     // in the worker's `again` list
  std::unique_ptr<AeadPump> aead;  // kAead: fd[0] plain, fd[1] cipher
};

struct Command {
  enum { kAdd, kCancel, kStop } op;
  PairSpec spec;
  uint64_t id;
};

class Worker {
 public:
  Worker(Pool* pool, int index) : pool_(pool), index_(index) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    ev_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u64 = 0;  // id 0 is the wake-up eventfd
    epoll_ctl(ep_, EPOLL_CTL_ADD, ev_, &e);
    thread_ = std::thread([this] { Run(); });
  }

  ~Worker() {
    Post(Command{Command::kStop, {}, 0});
    if (thread_.joinable()) thread_.join();
    close(ep_);
    close(ev_);
  }

  void Post(Command c) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      inbox_.push_back(std::move(c));
    }
    uint64_t one = 1;
    ssize_t n = write(ev_, &one, sizeof(one));
    (void)n;
  }

 private:
  void Run() {
    epoll_event events[kMaxEvents];
    bool running = true;
    while (running) {
      int timeout = -1;
      if (!again_.empty()) {
        timeout = 0;
      } else {
        int64_t next = 0;
        for (auto& kv : pairs_) {
          int64_t t = kv.second->next_check;
          if (t && (!next || t < next)) next = t;
        }
        if (next) timeout = int(std::max<int64_t>(0, next - NowMs()));
      }
      int trim_in = MaybeTrim();
      if (trim_in >= 0 && (timeout < 0 || trim_in < timeout)) timeout = trim_in;
      int n = epoll_wait(ep_, events, kMaxEvents, timeout);
      if (n < 0 && errno != EINTR) break;
      for (int i = 0; i < n; i++) {
        uint64_t key = events[i].data.u64;
        if (key == 0) {
          uint64_t v;
          ssize_t r = read(ev_, &v, sizeof(v));
          (void)r;
          running = Drain();
          continue;
        }
        auto it = pairs_.find(key >> 1);
        if (it == pairs_.end()) continue;
        OnEvent(it->second.get(), int(key & 1), events[i].events);
      }
      // Pairs that used their budget get another turn after everyone else.
      std::vector<uint64_t> again;
      again.swap(again_);
      for (uint64_t id : again) {
        auto it = pairs_.find(id);
        if (it == pairs_.end()) continue;
        it->second->queued = false;
        Pump(it->second.get());
      }
      if (!pairs_.empty()) RunChecks();
    }
    // Stop: every pair left completes as cancelled.
    std::vector<uint64_t> ids;
    for (auto& kv : pairs_) ids.push_back(kv.first);
    for (uint64_t id : ids) Finish(pairs_[id].get(), ECANCELED, "stop");
  }

  // Returns false on stop.
  bool Drain() {
    std::vector<Command> cmds;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cmds.swap(inbox_);
    }
    bool running = true;
    for (auto& c : cmds) {
      if (c.op == Command::kStop) {
        running = false;
      } else if (c.op == Command::kCancel) {
        auto it = pairs_.find(c.id);
        if (it != pairs_.end()) Finish(it->second.get(), ECANCELED, "cancel");
      } else {
        Add(c.id, std::move(c.spec));
      }
    }
    return running;
  }

  void Add(uint64_t id, PairSpec spec) {
    auto p = std::make_unique<Pair>();
    p->id = id;
    p->kind = spec.kind;
    p->fd[0] = spec.fd[0];
    p->fd[1] = spec.fd[1];
    p->sockmap = std::move(spec.sockmap);
    p->cookie[0] = spec.cookie[0];
    p->cookie[1] = spec.cookie[1];
    p->consumed[0] = spec.consumed[0];
    p->consumed[1] = spec.consumed[1];
    p->written[0] = spec.written[0];
    p->written[1] = spec.written[1];
    Pair* raw = p.get();
    pairs_.emplace(id, std::move(p));
    if (raw->kind == Kind::kAead) {
      raw->aead = std::make_unique<AeadPump>(raw->fd[0], raw->fd[1], std::move(spec.aead_keys));
      if (int e = raw->aead->Init()) return Finish(raw, e, "aead init");
    }
    if (raw->kind == Kind::kSplice) {
      for (int s = 0; s < 2; s++) {
        Dir& d = raw->d[s];
        d.src = raw->fd[s];
        d.dst = raw->fd[1 - s];
        if (pipe2(d.pipe, O_CLOEXEC | O_NONBLOCK) != 0) return Finish(raw, errno, "pipe");
        int got = -1;
        if (spec.pipe_size > 0) got = fcntl(d.pipe[1], F_SETPIPE_SZ, spec.pipe_size);
        if (got < 0) got = fcntl(d.pipe[1], F_GETPIPE_SZ);
        d.cap = size_t(got > 0 ? got : 65536);
      }
    }
    for (int s = 0; s < 2; s++) {
      epoll_event e{};
      // Edge-triggered: each event is handled until EAGAIN; HUP/ERR can then
      // never spin the thread.
      e.events = EPOLLRDHUP | EPOLLET | (raw->kind != Kind::kSockmap ? (EPOLLIN | EPOLLOUT) : 0);
      e.data.u64 = (id << 1) | uint64_t(s);
      if (epoll_ctl(ep_, EPOLL_CTL_ADD, raw->fd[s], &e) != 0) return Finish(raw, errno, "epoll_ctl");
    }
    if (raw->kind != Kind::kSockmap) Pump(raw);
  }

  void OnEvent(Pair* p, int side, uint32_t ev) {
    if (ev & EPOLLERR) {
      int e = SocketError(p->fd[side]);
      if (e) return Finish(p, e, "socket");
    }
    if (p->kind != Kind::kSockmap) return Pump(p);
    if (ev & (EPOLLRDHUP | EPOLLHUP)) {
      p->rdhup[side] = true;
      p->check_ms = 1;
      p->next_check = NowMs();
    }
  }

  // Moves what can be moved in both directions without blocking.
  void Pump(Pair* p) {
    if (p->kind == Kind::kAead) {
      int r = p->aead->Step();
      if (r < 0) return Finish(p, -r, p->aead->where());
      if (r == 1 && !p->queued) {
        p->queued = true;
        again_.push_back(p->id);
      }
      if (p->aead->done()) Finish(p, 0, nullptr);
      return;
    }
    for (int s = 0; s < 2; s++) {
      int r = PumpDir(p, p->d[s]);
      if (r < 0) return Finish(p, -r, s == 0 ? "splice a->b" : "splice b->a");
      if (r == 1 && !p->queued) {
        p->queued = true;
        again_.push_back(p->id);
      }
    }
    if (p->d[0].shut && p->d[1].shut) Finish(p, 0, nullptr);
  }

  // 0: blocked or done, 1: budget used up, -errno: failed.
  static int PumpDir(Pair*, Dir& d) {
    for (int budget = kBudget; budget > 0; budget--) {
      bool progress = false;
      if (d.in_pipe > 0) {
        ssize_t n = splice(d.pipe[0], nullptr, d.dst, nullptr, d.in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
          d.in_pipe -= size_t(n);
          d.bytes += uint64_t(n);
          progress = true;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          return -errno;
        }
      }
      if (!d.eof && d.in_pipe < d.cap) {
        ssize_t n = splice(d.src, nullptr, d.pipe[1], nullptr, d.cap - d.in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
          d.in_pipe += size_t(n);
          progress = true;
        } else if (n == 0) {
          d.eof = true;
          progress = true;
        } else if (errno != EAGAIN && errno != EINTR) {
          return -errno;
        }
      }
      if (d.eof && d.in_pipe == 0 && !d.shut) {
        // Half-close: the peer's FIN goes on; the other direction keeps running.
        if (shutdown(d.dst, SHUT_WR) != 0 && errno != ENOTCONN) return -errno;
        d.shut = true;
      }
      if (!progress || d.shut) return 0;
    }
    return 1;
  }

  void RunChecks() {
    int64_t now = NowMs();
    std::vector<Pair*> due;
    for (auto& kv : pairs_) {
      Pair* p = kv.second.get();
      if (p->next_check && p->next_check <= now) due.push_back(p);
    }
    for (Pair* p : due) CheckSockmap(p);
  }

  // A sockmap direction src → dst ends when src saw FIN, every byte src received
  // went through the verdict (the verdict may run after the FIN is seen; after the
  // FIN, tcpi_bytes_received counts it as one byte), and every
  // redirected byte reached dst's send queue; only then is dst's write side shut
  // (earlier would cut bytes still in the psock backlog).
  void CheckSockmap(Pair* p) {
    bool pending = false;
    for (int s = 0; s < 2; s++) {
      Dir& d = p->d[s];
      if (d.shut || !p->rdhup[s]) continue;
      int src = p->fd[s], dst = p->fd[1 - s];
      uint64_t written = 0, received = 0;
      uint64_t redirected = p->sockmap->Bytes(p->cookie[s]);
      bool drained = ReceivedBytes(src, &received) && redirected + p->consumed[s] + 1 >= received &&
                     WrittenBytes(dst, &written) && written >= redirected + p->written[1 - s];
      if (!drained) {
        pending = true;
        continue;
      }
      d.bytes = redirected;
      if (shutdown(dst, SHUT_WR) != 0 && errno != ENOTCONN) return Finish(p, errno, "shutdown");
      d.shut = true;
    }
    if (p->d[0].shut && p->d[1].shut) return Finish(p, 0, nullptr);
    if (pending) {
      p->next_check = NowMs() + p->check_ms;
      p->check_ms = std::min(p->check_ms * 2, kMaxCheckMs);
    } else {
      p->next_check = 0;
    }
  }

  void Finish(Pair* p, int err, const char* where) {
    Completion c{p->id, 0, 0, err, where};
    if (p->kind == Kind::kSockmap && p->sockmap) {
      for (int s = 0; s < 2; s++) {
        if (!p->d[s].shut) p->d[s].bytes = p->sockmap->Bytes(p->cookie[s]);
      }
      p->sockmap->Unlink(p->cookie[0], p->cookie[1]);
    }
    c.bytes_ab = p->d[0].bytes;
    c.bytes_ba = p->d[1].bytes;
    if (p->aead) {
      c.bytes_ab = p->aead->bytes_tx();
      c.bytes_ba = p->aead->bytes_rx();
    }
    // The pair holds the only fds left of both sockets (Node closed its copies at
    // the hand-over), so this close is the last one and decides what the peers see.
    // A failed pair must not look like a clean end: SO_LINGER {1, 0} turns the close
    // into a RST instead of a FIN that would pass a cut stream for a whole one. A
    // cancelled record stream resets too (it never sent END); a cancelled splice or
    // sockmap pair closes normally.
    const bool reset = err != 0 && (p->kind == Kind::kAead || err != ECANCELED);
    for (int s = 0; s < 2; s++) {
      if (reset && p->fd[s] >= 0) {
        linger l{1, 0};
        setsockopt(p->fd[s], SOL_SOCKET, SO_LINGER, &l, sizeof(l));
      }
      if (p->fd[s] >= 0) {
        epoll_ctl(ep_, EPOLL_CTL_DEL, p->fd[s], nullptr);
        close(p->fd[s]);
      }
      for (int k = 0; k < 2; k++) {
        if (p->d[s].pipe[k] >= 0) close(p->d[s].pipe[k]);
      }
    }
    uint64_t id = p->id;
    auto node = pairs_.extract(id);  // keeps *p alive until this returns
    freed_++;
    pool_->active_--;
    pool_->done_(c);
  }

  Pool* pool_;
  int index_;
  int ep_ = -1;
  int ev_ = -1;
  std::thread thread_;
  std::mutex mu_;
  std::vector<Command> inbox_;
  std::unordered_map<uint64_t, std::unique_ptr<Pair>> pairs_;
  std::vector<uint64_t> again_;
  // Pairs finished since the heap was last trimmed, and when that was.
  uint64_t freed_ = 0;
  int64_t trimmed_at_ = 0;

  /**
   * Give freed pair buffers back to the kernel. A record pump holds two 64 KiB
   * buffers, below malloc's mmap threshold, so they live in the worker's arena and
   * glibc keeps them after free(): 9,000 flows that each moved a record left the
   * agent at 1.5 GiB RSS after every flow had ended (bench/soak). At most once a
   * second, when pairs ended; returns the ms until a trim is due (-1: none).
   */
  int MaybeTrim() {
    if (freed_ == 0) return -1;
    int64_t now = NowMs();
    int64_t due = trimmed_at_ + 1000;
    if (now < due) return int(due - now);
    malloc_trim(0);
    freed_ = 0;
    trimmed_at_ = now;
    return -1;
  }
};

Pool::Pool(int threads, CompletionFn done) : done_(std::move(done)) {
  threads = std::max(1, std::min(threads, 64));
  for (int i = 0; i < threads; i++) workers_.push_back(std::make_unique<Worker>(this, i));
}

Pool::~Pool() { Close(); }

void Pool::Close() {
  std::lock_guard<std::mutex> lock(close_mu_);
  if (closed_) return;
  closed_ = true;
  workers_.clear();  // each destructor stops and joins its thread
}

uint64_t Pool::Submit(PairSpec spec, int* err) {
  if (closed_ || workers_.empty()) {
    // The pair owns its fds from the dup on: nobody else would close them.
    if (spec.sockmap) spec.sockmap->Unlink(spec.cookie[0], spec.cookie[1]);
    for (int fd : spec.fd) {
      if (fd >= 0) close(fd);
    }
    *err = EBADF;
    return 0;
  }
  uint64_t id = next_++;
  active_++;
  Worker* w = workers_[id % workers_.size()].get();
  w->Post(Command{Command::kAdd, std::move(spec), id});
  return id;
}

// The pool's own fds of both sockets: the caller closes its copies right after a
// successful hand-over (close(), never shutdown(): that would end the shared
// socket), so a forwarded pair costs exactly these two (+ the pipes of splice).
static int DupPair(int fd_a, int fd_b, int out[2]) {
  out[0] = fcntl(fd_a, F_DUPFD_CLOEXEC, 0);
  if (out[0] < 0) return errno;
  out[1] = fcntl(fd_b, F_DUPFD_CLOEXEC, 0);
  if (out[1] < 0) {
    int e = errno;
    close(out[0]);
    return e;
  }
  return 0;
}

uint64_t Pool::Splice(int fd_a, int fd_b, int pipe_size, int* err) {
  PairSpec spec{Kind::kSplice, {-1, -1}, pipe_size, nullptr, {0, 0}, {0, 0}, {0, 0}, nullptr};
  if ((*err = DupPair(fd_a, fd_b, spec.fd)) != 0) return 0;
  uint64_t id = Submit(std::move(spec), err);
  return id;
}

uint64_t Pool::SockmapPair(std::shared_ptr<SockmapLink> sockmap, int fd_a, int fd_b, int* err) {
  PairSpec spec{Kind::kSockmap, {-1, -1}, 0, sockmap, {0, 0}, {ConsumedBefore(fd_a), ConsumedBefore(fd_b)}, {0, 0}, nullptr};
  WrittenBytes(fd_a, &spec.written[0]);
  WrittenBytes(fd_b, &spec.written[1]);
  int r = sockmap->Link(fd_a, fd_b, &spec.cookie[0], &spec.cookie[1]);
  if (r < 0) {
    *err = -r;
    return 0;
  }
  if ((*err = DupPair(fd_a, fd_b, spec.fd)) != 0) {
    sockmap->Unlink(spec.cookie[0], spec.cookie[1]);
    return 0;
  }
  return Submit(std::move(spec), err);
}

uint64_t Pool::AeadPair(int fd_plain, int fd_cipher, std::unique_ptr<AeadKeys> keys, int* err) {
  if (!LoadEvp(nullptr)) {
    *err = ENOTSUP;
    return 0;
  }
  PairSpec spec{Kind::kAead, {-1, -1}, 0, nullptr, {0, 0}, {0, 0}, {0, 0}, std::move(keys)};
  if ((*err = DupPair(fd_plain, fd_cipher, spec.fd)) != 0) return 0;
  return Submit(std::move(spec), err);
}

void Pool::Cancel(uint64_t id) {
  if (closed_ || workers_.empty() || id == 0) return;
  workers_[id % workers_.size()]->Post(Command{Command::kCancel, {}, id});
}

}  // namespace edgeway
