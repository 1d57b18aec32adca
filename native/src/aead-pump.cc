#include "aead-pump.h"

#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>

namespace edgeway {

namespace {

// Records one pair may move each way before yielding to the thread's other pairs.
constexpr int kBudget = 32;

inline uint32_t Be32(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

inline bool Again(int e) { return e == EAGAIN || e == EWOULDBLOCK || e == EINTR; }

}  // namespace

AeadKeys::~AeadKeys() {
  Cleanse(tx_key, sizeof(tx_key));
  Cleanse(tx_iv, sizeof(tx_iv));
  Cleanse(rx_key, sizeof(rx_key));
  Cleanse(rx_iv, sizeof(rx_iv));
  if (!rx_initial.empty()) Cleanse(rx_initial.data(), rx_initial.size());
}

AeadPump::AeadPump(int fd_plain, int fd_cipher, std::unique_ptr<AeadKeys> keys)
    : plain_(fd_plain), cipher_(fd_cipher), keys_(std::move(keys)) {}

AeadPump::~AeadPump() {
  if (evp_) {
    if (tx_.ctx) evp_->ctx_free(tx_.ctx);  // EVP_CIPHER_CTX_free cleanses the key schedule
    if (rx_.ctx) evp_->ctx_free(rx_.ctx);
  }
  // Plaintext may sit in the buffers: wipe them too.
  if (tx_.buf) Cleanse(tx_.buf.get(), kEwcMaxRecord);
  if (rx_.buf) Cleanse(rx_.buf.get(), kEwcMaxRecord);
}

int AeadPump::Init() {
  evp_ = LoadEvp(nullptr);
  if (!evp_) return ENOTSUP;
  tx_.ctx = evp_->ctx_new();
  rx_.ctx = evp_->ctx_new();
  if (!tx_.ctx || !rx_.ctx) return ENOMEM;
  // The key schedule is set up once per direction; each record only sets its nonce.
  if (evp_->encrypt_init(tx_.ctx, evp_->aes_128_gcm(), nullptr, nullptr, nullptr) != 1 ||
      evp_->ctrl(tx_.ctx, kEvpCtrlSetIvLen, 12, nullptr) != 1 ||
      evp_->encrypt_init(tx_.ctx, nullptr, nullptr, keys_->tx_key, nullptr) != 1)
    return EINVAL;
  if (evp_->decrypt_init(rx_.ctx, evp_->aes_128_gcm(), nullptr, nullptr, nullptr) != 1 ||
      evp_->ctrl(rx_.ctx, kEvpCtrlSetIvLen, 12, nullptr) != 1 ||
      evp_->decrypt_init(rx_.ctx, nullptr, nullptr, keys_->rx_key, nullptr) != 1)
    return EINVAL;
  Cleanse(keys_->tx_key, sizeof(keys_->tx_key));  // the contexts hold the schedules now
  Cleanse(keys_->rx_key, sizeof(keys_->rx_key));
  // Each record leaves in one send(), so segments are full-sized but for a record's
  // tail; with Nagle that tail would wait for the ACK of what went before while the
  // receiver cannot release any of the record without it (a delayed-ACK stall).
  int one = 1;
  setsockopt(cipher_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  tx_.buf.reset(new unsigned char[kEwcMaxRecord]);
  rx_.buf.reset(new unsigned char[kEwcMaxRecord]);
  return 0;
}

void AeadPump::Nonce(const unsigned char* iv, uint64_t seq, unsigned char out[12]) const {
  memcpy(out, iv, 12);
  for (int i = 0; i < 8; i++) out[4 + i] ^= (unsigned char)(seq >> (56 - 8 * i));
}

// Seals the plaintext at buf+4 (plain_len bytes) into a whole record in place.
int AeadPump::Seal(size_t plain_len) {
  if (keys_->tx_seq == UINT64_MAX) return Fail(EOVERFLOW, "tx seq");
  unsigned char* b = tx_.buf.get();
  uint32_t n = uint32_t(plain_len + kEwcTag);
  b[0] = (unsigned char)(n >> 24), b[1] = (unsigned char)(n >> 16), b[2] = (unsigned char)(n >> 8), b[3] = (unsigned char)n;
  unsigned char nonce[12];
  Nonce(keys_->tx_iv, keys_->tx_seq++, nonce);
  int len = 0, fin = 0;
  if (evp_->encrypt_init(tx_.ctx, nullptr, nullptr, nullptr, nonce) != 1 ||
      evp_->encrypt_update(tx_.ctx, nullptr, &len, b, int(kEwcHeader)) != 1 ||
      (plain_len && evp_->encrypt_update(tx_.ctx, b + kEwcHeader, &len, b + kEwcHeader, int(plain_len)) != 1) ||
      evp_->encrypt_final(tx_.ctx, b + kEwcHeader + plain_len, &fin) != 1 ||
      evp_->ctrl(tx_.ctx, kEvpCtrlGetTag, int(kEwcTag), b + kEwcHeader + plain_len) != 1)
    return Fail(EIO, "encrypt");
  tx_.len = kEwcHeader + n;
  tx_.off = 0;
  return 0;
}

// Opens the complete record of length 4 + n at the start of the receive window in
// place; its plaintext is usable only when this returns 0.
int AeadPump::Open(size_t n) {
  if (keys_->rx_seq == UINT64_MAX) return Fail(EOVERFLOW, "rx seq");
  unsigned char* b = rx_.buf.get() + rx_.start;
  unsigned char nonce[12];
  Nonce(keys_->rx_iv, keys_->rx_seq++, nonce);
  size_t clen = n - kEwcTag;
  int len = 0, fin = 0;
  if (evp_->decrypt_init(rx_.ctx, nullptr, nullptr, nullptr, nonce) != 1 ||
      evp_->decrypt_update(rx_.ctx, nullptr, &len, b, int(kEwcHeader)) != 1 ||
      (clen && evp_->decrypt_update(rx_.ctx, b + kEwcHeader, &len, b + kEwcHeader, int(clen)) != 1) ||
      evp_->ctrl(rx_.ctx, kEvpCtrlSetTag, int(kEwcTag), b + kEwcHeader + clen) != 1)
    return Fail(EIO, "decrypt");
  if (evp_->decrypt_final(rx_.ctx, b + kEwcHeader + clen, &fin) != 1) return Fail(EBADMSG, "record tag");
  return 0;
}

int AeadPump::StepTx(bool* progress) {
  if (tx_.shut) return 0;
  if (tx_.off == tx_.len) {
    if (tx_.eof) {
      // END is out: the peer's EOF follows it (nothing may follow END).
      if (shutdown(cipher_, SHUT_WR) != 0 && errno != ENOTCONN) return Fail(errno, "shutdown cipher");
      tx_.shut = true;
      *progress = true;
      return 0;
    }
    ssize_t r = recv(plain_, tx_.buf.get() + kEwcHeader, kEwcMaxPlain, 0);
    if (r < 0) return Again(errno) ? 0 : Fail(errno, "read plain");
    if (r == 0) tx_.eof = true;  // seal END: the authenticated half-close
    if (int e = Seal(size_t(r))) return e;
    *progress = true;
  }
  ssize_t w = send(cipher_, tx_.buf.get() + tx_.off, tx_.len - tx_.off, MSG_NOSIGNAL);
  if (w < 0) return Again(errno) ? 0 : Fail(errno, "write cipher");
  tx_.off += size_t(w);
  *progress = true;
  if (tx_.off == tx_.len) {
    tx_.bytes += tx_.len - kEwcHeader - kEwcTag;
    if (!tx_.eof) tx_.off = tx_.len = 0;
  }
  return 0;
}

int AeadPump::StepRx(bool* progress) {
  if (rx_.ended) return 0;
  unsigned char* b = rx_.buf.get();
  if (rx_.rec) {
    // A verified record: write its plaintext before reading anything more.
    size_t plen = rx_.rec - kEwcHeader - kEwcTag;
    if (rx_.plain_off < plen) {
      ssize_t w = send(plain_, b + rx_.start + kEwcHeader + rx_.plain_off, plen - rx_.plain_off, MSG_NOSIGNAL);
      if (w < 0) return Again(errno) ? 0 : Fail(errno, "write plain");
      rx_.plain_off += size_t(w);
      rx_.bytes += uint64_t(w);
      *progress = true;
      if (rx_.plain_off < plen) return 0;
    }
    rx_.start += rx_.rec;
    rx_.have -= rx_.rec;
    if (rx_.have == 0) rx_.start = 0;
    rx_.rec = rx_.plain_off = 0;
    *progress = true;
  }
  if (rx_.end && rx_.have > 0) return Fail(EBADMSG, "bytes after END");
  size_t need = kEwcHeader;
  if (rx_.have >= kEwcHeader) {
    uint32_t n = Be32(b + rx_.start);
    if (n < kEwcTag || n > kEwcTag + kEwcMaxPlain) return Fail(EBADMSG, "record length");
    need = kEwcHeader + n;
    if (rx_.have >= need) {
      if (int e = Open(n)) return e;
      rx_.rec = need;
      *progress = true;
      if (n == kEwcTag) {
        // END: the sender half-closed; pass the half-close on.
        rx_.end = true;
        if (shutdown(plain_, SHUT_WR) != 0 && errno != ENOTCONN) return Fail(errno, "shutdown plain");
      }
      return 0;
    }
  }
  // The current record is incomplete: make room for all of it, then read.
  if (rx_.start + need > kEwcMaxRecord) {
    memmove(b, b + rx_.start, rx_.have);
    rx_.start = 0;
  }
  size_t space = kEwcMaxRecord - rx_.start - rx_.have;
  std::vector<unsigned char>& init = keys_->rx_initial;
  if (rx_.initial_off < init.size()) {
    size_t k = std::min(space, init.size() - rx_.initial_off);
    memcpy(b + rx_.start + rx_.have, init.data() + rx_.initial_off, k);
    rx_.initial_off += k;
    rx_.have += k;
    *progress = true;
    return 0;
  }
  ssize_t r = recv(cipher_, b + rx_.start + rx_.have, space, 0);
  if (r < 0) return Again(errno) ? 0 : Fail(errno, "read cipher");
  *progress = true;
  if (r == 0) {
    if (!rx_.end) return Fail(EBADMSG, "truncated (EOF without END)");
    rx_.ended = true;
    return 0;
  }
  if (rx_.end) return Fail(EBADMSG, "bytes after END");
  rx_.have += size_t(r);
  return 0;
}

int AeadPump::Step() {
  for (int budget = kBudget; budget > 0; budget--) {
    bool progress = false;
    if (int e = StepTx(&progress)) return e;
    if (int e = StepRx(&progress)) return e;
    if (done() || !progress) return 0;
  }
  return 1;
}

}  // namespace edgeway
