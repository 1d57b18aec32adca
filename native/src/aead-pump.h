// The EWC1 record pump of one connection (src/tunnel/channel's record layer):
// plaintext TCP socket ↔ AES-128-GCM records on another TCP socket. Driven by the
// pool's epoll threads (pool.cc) like a splice pair: nonblocking, edge-triggered,
// at most one record buffered per direction.
//
// Record = u32 BE n | ciphertext | tag (n includes the 16-byte tag), AAD = the
// header, 16 <= n <= 16 + 65536; nonce = iv with its last 8 bytes XORed with the
// record's seq (u64 BE); n == 16 is END (authenticated half-close).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "evp.h"

namespace edgeway {

constexpr size_t kEwcHeader = 4;
constexpr size_t kEwcTag = 16;
constexpr size_t kEwcMaxPlain = 65536;
constexpr size_t kEwcMaxRecord = kEwcHeader + kEwcMaxPlain + kEwcTag;

struct AeadKeys {
  unsigned char tx_key[16];
  unsigned char tx_iv[12];
  uint64_t tx_seq = 0;
  unsigned char rx_key[16];
  unsigned char rx_iv[12];
  uint64_t rx_seq = 0;
  std::vector<unsigned char> rx_initial;  // cipher bytes read by JS before the hand-over
  AeadKeys() = default;
  AeadKeys(const AeadKeys&) = delete;
  AeadKeys& operator=(const AeadKeys&) = delete;
  ~AeadKeys();
};

class AeadPump {
 public:
  // Does not own the fds. Keys are copied and the copy wiped on destruction.
  AeadPump(int fd_plain, int fd_cipher, std::unique_ptr<AeadKeys> keys);
  ~AeadPump();
  AeadPump(const AeadPump&) = delete;
  AeadPump& operator=(const AeadPump&) = delete;

  // 0 or an errno (ENOTSUP when OpenSSL is unavailable).
  int Init();
  // Moves what can be moved both ways. 0: waiting for epoll, 1: budget used up
  // (call again), -errno: failed (EBADMSG for authentication/framing errors).
  int Step();
  bool done() const { return tx_.shut && rx_.ended; }
  uint64_t bytes_tx() const { return tx_.bytes; }
  uint64_t bytes_rx() const { return rx_.bytes; }
  const char* where() const { return where_; }

 private:
  struct Tx {  // plain → cipher
    EvpCtx* ctx = nullptr;
    std::unique_ptr<unsigned char[]> buf;
    size_t len = 0, off = 0;  // record bytes in buf / already written
    bool eof = false;         // plain reached EOF; END queued
    bool shut = false;        // END written and cipher's write side shut
    uint64_t bytes = 0;
  };
  struct Rx {  // cipher → plain
    EvpCtx* ctx = nullptr;
    std::unique_ptr<unsigned char[]> buf;
    size_t start = 0;         // the current record starts here in buf
    size_t have = 0;          // bytes from start on (the current record first, then the start of the next)
    size_t rec = 0;           // length of the current record once complete and verified (0: none)
    size_t plain_off = 0;     // plaintext of the current record already written
    size_t initial_off = 0;   // consumed part of keys_->rx_initial
    bool end = false;         // END verified
    bool ended = false;       // END verified and cipher EOF seen
    uint64_t bytes = 0;
  };

  int StepTx(bool* progress);
  int StepRx(bool* progress);
  int Seal(size_t plain_len);
  int Open(size_t n);
  void Nonce(const unsigned char* iv, uint64_t seq, unsigned char out[12]) const;
  int Fail(int err, const char* where) {
    where_ = where;
    return -err;
  }

  const Evp* evp_ = nullptr;
  int plain_, cipher_;
  std::unique_ptr<AeadKeys> keys_;
  Tx tx_;
  Rx rx_;
  const char* where_ = nullptr;
};

}  // namespace edgeway
