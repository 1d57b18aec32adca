#include "dns-udp.h"

#include "napi-util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#ifdef EDGEWAY_HAVE_UV
#include <uv.h>
#endif

namespace edgeway {

namespace {

// udpReusePort(host, port, reuse = true) → fd. Port 0 picks a free port (read it back from the
// dgram socket); the other workers then bind that port number.
Napi::Value UdpReusePortJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "udpReusePort(host: string, port: number)";
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) throw Napi::TypeError::New(env, usage);
  std::string host = info[0].As<Napi::String>().Utf8Value();
  int port = info[1].As<Napi::Number>().Int32Value();
  if (port < 0 || port > 65535) throw Napi::TypeError::New(env, "udpReusePort: port out of range");
  sockaddr_storage local;
  memset(&local, 0, sizeof(local));
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&local);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&local);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(uint16_t(port));
    len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(uint16_t(port));
    len = sizeof(sockaddr_in6);
  } else {
    throw Napi::TypeError::New(env, "udpReusePort: not a numeric address: " + host);
  }
  int fd = socket(local.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
  if (fd < 0) throw ErrnoError(env, errno, "socket");
  // reuse = false: an exclusive socket (a single server must not silently share its port).
  bool reuse = info.Length() < 3 || !info[2].IsBoolean() || info[2].As<Napi::Boolean>().Value();
  int one = 1;
  // IPV6_V6ONLY is left at the system default, as dgram's udp6 does (a configured
  // [::] listener then takes v4-mapped clients too; replies go to the same sockaddr_in6).
  if ((reuse && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
      bind(fd, reinterpret_cast<sockaddr*>(&local), len) < 0) {
    int err = errno;
    close(fd);
    Napi::Error e = ErrnoError(env, err, "bind");
    e.Set("syscall", Napi::String::New(env, "bind"));
    throw e;
  }
  return Napi::Number::New(env, fd);
}


#ifdef EDGEWAY_HAVE_UV
// A UDP socket served in batches: recvmmsg fills up to `batch` slots of `in`,
// one JS call answers them all (writing replies into the same slots of `out` and
// their lengths into `lens`), one sendmmsg sends the replies to the senders. This
// replaces dgram's per-datagram path (a Buffer, an rinfo object and a JS call per
// query, one syscall per receive and per send), which is most of the DNS server's
// cost. The socket is watched with uv_poll on the calling thread's loop (the main
// thread or a DNS worker thread). Memory layout, shared with JS:
//   in, out: batch × slot bytes;  lens: Int32 × (2·batch + 1) (in lengths, then out
//   lengths; -1 in = truncated, 0 out = no reply; last: replies the kernel refused
//   so far, wrapping);  addrs: batch × 32 bytes (the
//   sender's sockaddr_in / sockaddr_in6, for replies sent later with sendTo).
class UdpBatchWrap : public Napi::ObjectWrap<UdpBatchWrap> {
 public:
  static constexpr int kAddrSlot = 32;

  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "UdpBatch", {InstanceMethod("sendTo", &UdpBatchWrap::SendToJs), InstanceMethod("close", &UdpBatchWrap::CloseJs),
                                         InstanceMethod("address", &UdpBatchWrap::AddressJs)});
  }

  // new UdpBatch(fd, batch, slot, in, out, lens, addrs, onBatch(n))
  explicit UdpBatchWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdpBatchWrap>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    const char* usage = "UdpBatch(fd, batch, slot, in: ArrayBuffer, out: ArrayBuffer, lens: ArrayBuffer, addrs: ArrayBuffer, onBatch)";
    if (info.Length() < 8 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsArrayBuffer() ||
        !info[4].IsArrayBuffer() || !info[5].IsArrayBuffer() || !info[6].IsArrayBuffer() || !info[7].IsFunction())
      throw Napi::TypeError::New(env, usage);
    fd_ = FdArg(info, 0);
    batch_ = info[1].As<Napi::Number>().Int32Value();
    slot_ = info[2].As<Napi::Number>().Int32Value();
    if (batch_ < 1 || batch_ > 1024 || slot_ < 512 || slot_ > 65536) throw Napi::RangeError::New(env, "UdpBatch: batch 1..1024, slot 512..65536");
    auto in = info[3].As<Napi::ArrayBuffer>(), out = info[4].As<Napi::ArrayBuffer>(), lens = info[5].As<Napi::ArrayBuffer>(), addrs = info[6].As<Napi::ArrayBuffer>();
    size_t bytes = size_t(batch_) * size_t(slot_);
    if (in.ByteLength() < bytes || out.ByteLength() < bytes || lens.ByteLength() < size_t(batch_) * 8 + 4 || addrs.ByteLength() < size_t(batch_) * kAddrSlot)
      throw Napi::RangeError::New(env, "UdpBatch: buffers too small");
    // The references keep the memory alive; the pointers stay valid (not resizable, never detached by us).
    in_ref_ = Napi::Persistent(in);
    out_ref_ = Napi::Persistent(out);
    lens_ref_ = Napi::Persistent(lens);
    addrs_ref_ = Napi::Persistent(addrs);
    in_ = static_cast<uint8_t*>(in.Data());
    out_ = static_cast<uint8_t*>(out.Data());
    lens_ = static_cast<int32_t*>(lens.Data());
    addrs_ = static_cast<uint8_t*>(addrs.Data());
    cb_ = Napi::Persistent(info[7].As<Napi::Function>());
    ctx_ = std::make_unique<Napi::AsyncContext>(env, "edgeway.dns.udpBatch");
    msgs_.resize(batch_);
    iov_.resize(batch_);
    uv_loop_s* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) throw Napi::Error::New(env, "UdpBatch: no event loop");
    poll_ = new uv_poll_t;
    poll_->data = this;
    int err = uv_poll_init(loop, poll_, fd_);
    if (err == 0) err = uv_poll_start(poll_, UV_READABLE, &UdpBatchWrap::OnPoll);
    if (err != 0) {
      delete poll_;
      poll_ = nullptr;
      throw Napi::Error::New(env, std::string("UdpBatch: uv_poll: ") + uv_strerror(err));
    }
    // Same teardown rule as the Pool: the hook clears `hooked_`, the destructor
    // removes it only while it has not run (either order at exit is safe).
    if (napi_add_env_cleanup_hook(env, &UdpBatchWrap::CleanupHook, this) == napi_ok) hooked_ = true;
  }

  ~UdpBatchWrap() override {
    if (hooked_) napi_remove_env_cleanup_hook(env_, &UdpBatchWrap::CleanupHook, this);
    hooked_ = false;
    Close();
  }

 private:
  static void CleanupHook(void* arg) {
    auto* self = static_cast<UdpBatchWrap*>(arg);
    self->hooked_ = false;
    self->Close();
  }

  // Stops polling and closes the socket; idempotent. The poll handle is freed by libuv's close callback.
  void Close() {
    if (poll_ != nullptr) {
      poll_->data = nullptr;
      uv_poll_stop(poll_);
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      poll_ = nullptr;
    }
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

  static void OnPoll(uv_poll_t* h, int status, int /*events*/) {
    auto* self = static_cast<UdpBatchWrap*>(h->data);
    if (self == nullptr || status < 0) return;
    self->Drain();
  }

  // At most kRounds full batches per wakeup, so other handles on this loop (TCP,
  // timers, upstream sockets) get their turn under a flood.
  void Drain() {
    static constexpr int kRounds = 8;
    Napi::HandleScope scope(env_);
    for (int round = 0; round < kRounds && fd_ >= 0; round++) {
      for (int i = 0; i < batch_; i++) {
        iov_[i].iov_base = in_ + size_t(i) * slot_;
        iov_[i].iov_len = size_t(slot_);
        msghdr& m = msgs_[i].msg_hdr;
        memset(&m, 0, sizeof(m));
        m.msg_name = addrs_ + size_t(i) * kAddrSlot;
        m.msg_namelen = sizeof(sockaddr_in6);
        m.msg_iov = &iov_[i];
        m.msg_iovlen = 1;
      }
      int n = recvmmsg(fd_, msgs_.data(), unsigned(batch_), MSG_DONTWAIT, nullptr);
      if (n <= 0) return;  // EAGAIN (drained) or an error the next wakeup reports again
      for (int i = 0; i < n; i++) {
        lens_[i] = (msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) ? -1 : int32_t(msgs_[i].msg_len);
        lens_[batch_ + i] = 0;
      }
      try {
        cb_.MakeCallback(Value(), {Napi::Number::New(env_, n)}, *ctx_);
      } catch (const Napi::Error&) {
        // The JS side never throws by contract; if it did, its replies are dropped.
        return;
      }
      if (fd_ < 0) return;  // closed from the callback
      int m = 0;
      for (int i = 0; i < n; i++) {
        int32_t len = lens_[batch_ + i];
        if (len <= 0 || len > slot_) continue;
        iov_[m].iov_base = out_ + size_t(i) * slot_;
        iov_[m].iov_len = size_t(len);
        msghdr& h = msgs_[m].msg_hdr;
        memset(&h, 0, sizeof(h));
        h.msg_name = addrs_ + size_t(i) * kAddrSlot;
        h.msg_namelen = reinterpret_cast<sockaddr*>(h.msg_name)->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
        h.msg_iov = &iov_[m];
        h.msg_iovlen = 1;
        m++;
      }
      // A reply the socket buffer cannot take now is lost like any UDP datagram
      // (the client retries); sendmmsg stops at the first failure, so skip past it.
      for (int sent = 0; sent < m;) {
        int k = sendmmsg(fd_, msgs_.data() + sent, unsigned(m - sent), MSG_DONTWAIT);
        if (k <= 0) { if (k < 0 && errno == EINTR) continue; sent++; dropped_++; continue; }
        sent += k;
      }
      lens_[2 * batch_] = int32_t(uint32_t(dropped_));
      if (n < batch_) return;
    }
  }

  // sendTo(data: Uint8Array, addr: Uint8Array (32 bytes from `addrs`)) → bytes sent, or -errno
  Napi::Value SendToJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsTypedArray()) throw Napi::TypeError::New(env, "sendTo(data: Uint8Array, addr: Uint8Array)");
    auto data = info[0].As<Napi::Uint8Array>();
    auto addr = info[1].As<Napi::Uint8Array>();
    if (addr.ByteLength() < size_t(kAddrSlot)) throw Napi::RangeError::New(env, "sendTo: address must be 32 bytes");
    if (fd_ < 0) return Napi::Number::New(env, -EBADF);
    auto* sa = reinterpret_cast<const sockaddr*>(addr.Data());
    socklen_t len = sa->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    ssize_t r = sendto(fd_, data.Data(), data.ByteLength(), MSG_DONTWAIT, sa, len);
    if (r < 0) dropped_++;
    return Napi::Number::New(env, r < 0 ? -errno : double(r));
  }

  Napi::Value CloseJs(const Napi::CallbackInfo& info) {
    if (hooked_) napi_remove_env_cleanup_hook(env_, &UdpBatchWrap::CleanupHook, this);
    hooked_ = false;
    Close();
    return info.Env().Undefined();
  }

  // address() → { address, port, family } of the bound socket.
  Napi::Value AddressJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (fd_ < 0 || getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) < 0) throw ErrnoError(env, fd_ < 0 ? EBADF : errno, "getsockname");
    char host[INET6_ADDRSTRLEN] = {0};
    int port = 0;
    if (ss.ss_family == AF_INET6) {
      auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
      inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
      port = ntohs(v6->sin6_port);
    } else {
      auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
      inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
      port = ntohs(v4->sin_port);
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("address", host);
    o.Set("port", port);
    o.Set("family", ss.ss_family == AF_INET6 ? "IPv6" : "IPv4");
    o.Set("dropped", double(dropped_));
    return o;
  }

  napi_env env_;
  int fd_ = -1;
  int batch_ = 0;
  int slot_ = 0;
  uint8_t* in_ = nullptr;
  uint8_t* out_ = nullptr;
  int32_t* lens_ = nullptr;
  uint8_t* addrs_ = nullptr;
  Napi::Reference<Napi::ArrayBuffer> in_ref_, out_ref_, lens_ref_, addrs_ref_;
  Napi::FunctionReference cb_;
  std::unique_ptr<Napi::AsyncContext> ctx_;
  std::vector<mmsghdr> msgs_;
  std::vector<iovec> iov_;
  uv_poll_t* poll_ = nullptr;
  bool hooked_ = false;
  uint64_t dropped_ = 0;
};
#endif  // EDGEWAY_HAVE_UV

}  // namespace

void RegisterDnsUdp(Napi::Env env, Napi::Object exports) {
  exports.Set("udpReusePort", Napi::Function::New(env, UdpReusePortJs));
#ifdef EDGEWAY_HAVE_UV
  exports.Set("UdpBatch", UdpBatchWrap::Init(env));
#endif
}

}  // namespace edgeway
