// edgeway_native.node — bindings that need no libbpf: Pool (splice / sockmap /
// EWC1 record pump forwarding on epoll threads), SockmapLink (the maps of a sockmap object loaded
// by edgeway_bpf.node, driven with raw bpf(2) syscalls), getOriginalDst(fd) and the
// shared-port sockets of hole punching (reuseport.cc).
// Glue only — policy lives in src/native/. New syscall-only bindings go here (add
// the source to EDGEWAY_NATIVE_SOURCES in CMakeLists.txt and to binding.gyp).
#include <napi.h>
#include <string.h>

#include <memory>
#include <stdexcept>

#if EDGEWAY_SANITIZE
#include <sanitizer/lsan_interface.h>
#endif

#include "aead-pump.h"
#include "evp.h"
#include "napi-util.h"
#include "origdst.h"
#include "pool.h"
#include "reuseport.h"
#include "sockmap-link.h"

namespace edgeway {

// Per Node environment (main thread and each worker thread load the addon into
// their own environment); node-addon-api deletes it when that environment ends.
struct AddonData {
  Napi::FunctionReference sockmap_link_ctor;
};

class SockmapLinkWrap : public Napi::ObjectWrap<SockmapLinkWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "SockmapLink", {InstanceMethod("close", &SockmapLinkWrap::CloseJs)});
  }

  // new SockmapLink(socksFd, redirFd, peersFd): duplicates the fds.
  explicit SockmapLinkWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SockmapLinkWrap>(info) {
    int socks = FdArg(info, 0), redir = FdArg(info, 1), peers = FdArg(info, 2);
    try {
      link_ = std::make_shared<SockmapLink>(socks, redir, peers);
    } catch (const std::runtime_error& e) {
      Napi::Error err = Napi::Error::New(info.Env(), e.what());
      err.Set("code", Napi::String::New(info.Env(), "ERR_NATIVE_SOCKMAP_LOAD"));
      throw err;
    }
  }

  // Null after close(); pairs already linked keep their own reference.
  std::shared_ptr<SockmapLink> link() const { return link_; }

 private:
  Napi::Value CloseJs(const Napi::CallbackInfo& info) {
    link_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<SockmapLink> link_;
};

class PoolWrap : public Napi::ObjectWrap<PoolWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Pool",
                       {InstanceMethod("splice", &PoolWrap::SpliceJs), InstanceMethod("sockmap", &PoolWrap::SockmapJs),
                        InstanceMethod("aeadPair", &PoolWrap::AeadPairJs),
                        InstanceMethod("cancel", &PoolWrap::CancelJs), InstanceMethod("close", &PoolWrap::CloseJs),
                        InstanceAccessor("active", &PoolWrap::ActiveJs, nullptr)});
  }

  // new Pool(threads, onDone(id, bytesAB, bytesBA, errno, where))
  explicit PoolWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PoolWrap>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsFunction())
      throw Napi::TypeError::New(env, "Pool(threads, onDone)");
    state_ = std::make_shared<State>();
    state_->tsfn = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "edgeway-native-pool", 0, 1);
    state_->tsfn.Unref(env);  // only pairs in flight keep the event loop alive
    // The completion path holds the shared state, never `this`: calls still queued
    // in the threadsafe function may run after this object is collected.
    std::shared_ptr<State> st = state_;
    pool_ = std::make_unique<Pool>(info[0].As<Napi::Number>().Int32Value(), [st](const Completion& c) {
      auto* copy = new Completion(c);
      napi_status status = st->tsfn.NonBlockingCall(copy, [st](Napi::Env env, Napi::Function fn, Completion* done) {
        std::unique_ptr<Completion> owned(done);
        // A completion still queued when the environment is torn down (a worker
        // terminated with pairs in flight) arrives without env/function, only to be
        // freed; creating values then would throw out of this callback (abort).
        if (env == nullptr || fn.IsEmpty()) return;
        try {
          Napi::Value where = done->where ? Napi::Value(Napi::String::New(env, done->where)) : env.Null();
          if (st->inflight > 0 && --st->inflight == 0) st->tsfn.Unref(env);
          fn.Call({Napi::Number::New(env, double(done->id)), Napi::Number::New(env, double(done->bytes_ab)),
                   Napi::Number::New(env, double(done->bytes_ba)), Napi::Number::New(env, done->err), where});
        } catch (const Napi::Error& e) {
          // The JS callback threw, or the environment is terminating (values cannot
          // be created): hand what there is back to Node instead of unwinding out of
          // this callback (std::terminate). napi_throw may fail while terminating.
          napi_value v = e.Value();
          if (v != nullptr) napi_throw(env, v);
        }
      });
      if (status != napi_ok) delete copy;
    });
    // The threads must stop before the environment goes away even when this object
    // is never collected. Registered with the plain N-API call and `this` as data:
    // at teardown the hook may run before or after the finalizer, and
    // node-addon-api's Env::CleanupHook frees its own data when the hook runs, so a
    // later Remove() in the destructor freed it twice (heap corruption at exit).
    // Here the hook clears `hooked_`, and the destructor removes the hook only
    // while it has not run: either order is safe.
    if (napi_add_env_cleanup_hook(env, &PoolWrap::CleanupHook, this) != napi_ok)
      throw Napi::Error::New(env, "napi_add_env_cleanup_hook failed");
    hooked_ = true;
  }

  ~PoolWrap() override {
    if (hooked_) napi_remove_env_cleanup_hook(env_, &PoolWrap::CleanupHook, this);
    hooked_ = false;
    Shutdown();
  }

 private:
  struct State {
    Napi::ThreadSafeFunction tsfn;
    int inflight = 0;  // main thread only
  };

  static void CleanupHook(void* arg) {
    auto* self = static_cast<PoolWrap*>(arg);
    self->hooked_ = false;  // Node drops the hook after running it
    self->Shutdown();
  }

  void Started(Napi::Env env) {
    if (state_->inflight++ == 0) state_->tsfn.Ref(env);
  }

  void Shutdown() {
    if (!pool_) return;
    pool_->Close();  // joins the threads: no completion is produced after this
    pool_.reset();
    state_->tsfn.Release();
  }

  void CheckOpen(Napi::Env env) {
    if (!pool_) throw Napi::Error::New(env, "pool is closed");
  }

  // splice(fdA, fdB, pipeSize) → id
  Napi::Value SpliceJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    int a = FdArg(info, 0), b = FdArg(info, 1);
    int pipe_size = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : 0;
    int err = 0;
    uint64_t id = pool_->Splice(a, b, pipe_size, &err);
    if (!id) throw ErrnoError(env, err, "splice");
    Started(env);
    return Napi::Number::New(env, double(id));
  }

  // sockmap(link, fdA, fdB) → id; throws (errno EOPNOTSUPP etc.) when linking fails.
  Napi::Value SockmapJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    AddonData* data = env.GetInstanceData<AddonData>();
    if (info.Length() < 3 || !info[0].IsObject() || !data || !info[0].As<Napi::Object>().InstanceOf(data->sockmap_link_ctor.Value()))
      throw Napi::TypeError::New(env, "sockmap(link: SockmapLink, fdA, fdB)");
    std::shared_ptr<SockmapLink> link = SockmapLinkWrap::Unwrap(info[0].As<Napi::Object>())->link();
    if (!link) throw Napi::Error::New(env, "sockmap link is closed");
    int a = FdArg(info, 1), b = FdArg(info, 2);
    int err = 0;
    uint64_t id = pool_->SockmapPair(link, a, b, &err);
    if (!id) throw ErrnoError(env, err, "sockmap link");
    Started(env);
    return Napi::Number::New(env, double(id));
  }

  // aeadPair(fdPlain, fdCipher, {txKey, txIv, txSeq, rxKey, rxIv, rxSeq, rxInitial?}) → id.
  // TypeError on bad arguments; an errno Error (ENOTSUP without OpenSSL) otherwise.
  Napi::Value AeadPairJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    int plain = FdArg(info, 0), cipher = FdArg(info, 1);
    if (info.Length() < 3 || !info[2].IsObject())
      throw Napi::TypeError::New(env, "aeadPair(fdPlain, fdCipher, {txKey, txIv, txSeq, rxKey, rxIv, rxSeq, rxInitial?})");
    Napi::Object o = info[2].As<Napi::Object>();
    auto keys = std::make_unique<AeadKeys>();
    CopyBytes(env, o, "txKey", keys->tx_key, sizeof(keys->tx_key));
    CopyBytes(env, o, "txIv", keys->tx_iv, sizeof(keys->tx_iv));
    CopyBytes(env, o, "rxKey", keys->rx_key, sizeof(keys->rx_key));
    CopyBytes(env, o, "rxIv", keys->rx_iv, sizeof(keys->rx_iv));
    keys->tx_seq = SeqArg(env, o, "txSeq");
    keys->rx_seq = SeqArg(env, o, "rxSeq");
    Napi::Value initial = o.Get("rxInitial");
    if (!initial.IsUndefined() && !initial.IsNull()) {
      if (!initial.IsBuffer()) throw Napi::TypeError::New(env, "rxInitial must be a Buffer");
      auto buf = initial.As<Napi::Buffer<unsigned char>>();
      // Bounded: Node never buffers more than a few records' worth of a paused socket.
      if (buf.Length() > kMaxRxInitial) throw Napi::TypeError::New(env, "rxInitial is larger than 4 MiB");
      keys->rx_initial.assign(buf.Data(), buf.Data() + buf.Length());
    }
    int err = 0;
    uint64_t id = pool_->AeadPair(plain, cipher, std::move(keys), &err);
    if (!id) throw ErrnoError(env, err, "aeadPair");
    Started(env);
    return Napi::Number::New(env, double(id));
  }

  static constexpr size_t kMaxRxInitial = 4u << 20;

  static void CopyBytes(Napi::Env env, Napi::Object o, const char* name, unsigned char* out, size_t len) {
    Napi::Value v = o.Get(name);
    if (!v.IsBuffer() || v.As<Napi::Buffer<unsigned char>>().Length() != len)
      throw Napi::TypeError::New(env, std::string(name) + " must be a Buffer of " + std::to_string(len) + " bytes");
    memcpy(out, v.As<Napi::Buffer<unsigned char>>().Data(), len);
  }

  static uint64_t SeqArg(Napi::Env env, Napi::Object o, const char* name) {
    Napi::Value v = o.Get(name);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    // Integers a JS number holds exactly (0 … 2^53 - 1).
    if (!(d >= 0 && d <= 9007199254740991.0) || d != double(uint64_t(d)))
      throw Napi::TypeError::New(env, std::string(name) + " must be an integer in 0 … 2^53 - 1");
    return uint64_t(d);
  }

  Napi::Value CancelJs(const Napi::CallbackInfo& info) {
    if (pool_ && info.Length() > 0 && info[0].IsNumber()) pool_->Cancel(uint64_t(info[0].As<Napi::Number>().Int64Value()));
    return info.Env().Undefined();
  }

  Napi::Value CloseJs(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  Napi::Value ActiveJs(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), pool_ ? pool_->active() : 0);
  }

  napi_env env_;
  std::shared_ptr<State> state_;
  std::unique_ptr<Pool> pool_;
  bool hooked_ = false;
};

Napi::Value GetOriginalDstJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OrigDst d;
  int r = GetOriginalDst(FdArg(info, 0), &d);
  if (r == -ENOENT) return env.Null();
  if (r < 0) throw ErrnoError(env, -r, "getOriginalDst");
  Napi::Object o = Napi::Object::New(env);
  o.Set("family", d.family);
  o.Set("address", d.address);
  o.Set("port", d.port);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Function link = SockmapLinkWrap::Init(env);
  auto* data = new AddonData();
  data->sockmap_link_ctor = Napi::Persistent(link);
  env.SetInstanceData(data);
  exports.Set("SockmapLink", link);
  exports.Set("Pool", PoolWrap::Init(env));
  exports.Set("getOriginalDst", Napi::Function::New(env, GetOriginalDstJs));
  RegisterReusePort(env, exports);
  // Why Pool.aeadPair cannot work here (OpenSSL not resolvable), or null.
  const char* why = nullptr;
  exports.Set("aeadReason", LoadEvp(&why) ? env.Null() : Napi::Value(Napi::String::New(env, why)));
  exports.Set("abi", Napi::Number::New(env, kAddonAbi));
#if EDGEWAY_SANITIZE
  // Sanitizer builds only: LeakSanitizer does not run at Node's exit, so tests ask
  // for a check themselves (the report names the leaking frames; Node's own
  // allocations show up too and are told apart by the caller).
  exports.Set("leakCheck", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                return Napi::Boolean::New(info.Env(), __lsan_do_recoverable_leak_check() != 0);
              }));
#endif
  return exports;
}

}  // namespace edgeway

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return edgeway::Init(env, exports); }

NODE_API_MODULE(edgeway_native, InitModule)
