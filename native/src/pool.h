// A small fixed pool of epoll threads that serve every forwarded pair: splice(2)
// through two pipes, the EWC1 record pump (aead-pump.h: plaintext ↔ AES-GCM
// records), or (for sockmap pairs) waiting for the end of each direction while the
// kernel moves the bytes. No thread per connection.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace edgeway {

class SockmapLink;
struct AeadKeys;

struct Completion {
  uint64_t id;
  uint64_t bytes_ab;  // a → b
  uint64_t bytes_ba;  // b → a
  int err;            // 0, or a positive errno; ECANCELED when cancelled
  const char* where;  // step that failed (static string), or nullptr
};

using CompletionFn = std::function<void(const Completion&)>;

class Worker;

class Pool {
 public:
  // `done` is called on a worker thread, exactly once per pair.
  Pool(int threads, CompletionFn done);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Socket ownership (every kind): the pool dup()s both fds and from then on owns
  // the sockets. The caller closes its own fds right after a successful call (a
  // plain close(), never shutdown()), so a pair costs two fds (+ two pipes for
  // splice). The pool closes its fds when the pair ends: normally on success, with
  // SO_LINGER {1, 0} (RST, never a FIN) on an error, and on a cancel normally for
  // splice / sockmap and with a reset for the record pump (it never sent END).
  // On failure (0 returned, *err set) nothing changed: the caller's fds are as
  // they were and the pool kept nothing.
  //
  // Forwards between two connected TCP sockets with splice. Returns the pair id.
  uint64_t Splice(int fd_a, int fd_b, int pipe_size, int* err);
  // Links the pair into `sockmap` and watches it until both directions ended; the
  // pair is unlinked when it ends (the sockets stay in the map while any fd holds
  // them).
  uint64_t SockmapPair(std::shared_ptr<SockmapLink> sockmap, int fd_a, int fd_b, int* err);
  // Forwards between a plaintext socket and an EWC1 record stream. bytes_ab counts
  // plaintext plain → cipher, bytes_ba cipher → plain (ENOTSUP when OpenSSL could
  // not be resolved).
  uint64_t AeadPair(int fd_plain, int fd_cipher, std::unique_ptr<AeadKeys> keys, int* err);
  // Stops forwarding the pair; its completion reports ECANCELED.
  void Cancel(uint64_t id);
  // Stops every thread; pairs still running complete with ECANCELED. Idempotent.
  void Close();
  int active() const { return active_.load(); }

 private:
  friend class Worker;
  uint64_t Submit(struct PairSpec spec, int* err);
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<uint64_t> next_{1};
  std::atomic<int> active_{0};
  CompletionFn done_;
  bool closed_ = false;
  std::mutex close_mu_;
};

}  // namespace edgeway
