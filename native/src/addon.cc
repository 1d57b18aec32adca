// JavaScript bindings: Pool (splice / sockmap forwarding on epoll threads),
// Sockmap (the BPF object), getOriginalDst(fd), bpf.* (bpfobj.cc), listenReusePort/connectFrom
// (reuseport.cc). Glue only — policy lives in
// src/dataplane/native/.
#include <napi.h>
#include <string.h>

#include <functional>
#include <memory>
#include <stdexcept>

#include "bpfobj.h"
#include "origdst.h"
#include "pool.h"
#include "reuseport.h"
#include "sockmap.h"

namespace edgeway {

namespace {

Napi::Error ErrnoError(Napi::Env env, int err, const std::string& what) {
  Napi::Error e = Napi::Error::New(env, what + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("code", Napi::String::New(env, "ERR_NATIVE_ERRNO"));
  return e;
}

int FdArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "fd must be a number");
  int fd = info[i].As<Napi::Number>().Int32Value();
  if (fd < 0) throw Napi::TypeError::New(info.Env(), "fd must be >= 0");
  return fd;
}

}  // namespace

class SockmapWrap : public Napi::ObjectWrap<SockmapWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Sockmap",
                       {InstanceMethod("stats", &SockmapWrap::StatsJs), InstanceMethod("testRun", &SockmapWrap::TestRunJs),
                        InstanceMethod("putPeer", &SockmapWrap::PutPeerJs),
                        InstanceMethod("deletePeer", &SockmapWrap::DeletePeerJs),
                        InstanceMethod("close", &SockmapWrap::CloseJs)});
  }

  explicit SockmapWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SockmapWrap>(info) {
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "object path required");
    try {
      sockmap_ = std::make_shared<Sockmap>(info[0].As<Napi::String>().Utf8Value());
    } catch (const std::runtime_error& e) {
      Napi::Error err = Napi::Error::New(info.Env(), e.what());
      err.Set("code", Napi::String::New(info.Env(), "ERR_NATIVE_SOCKMAP_LOAD"));
      throw err;
    }
  }

  std::shared_ptr<Sockmap> sockmap() const { return sockmap_; }

 private:
  Napi::Value StatsJs(const Napi::CallbackInfo& info) {
    SockmapStats s = sockmap_->Stats();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("redirectedPkts", double(s.redirected_pkts));
    o.Set("redirectedBytes", double(s.redirected_bytes));
    o.Set("passedPkts", double(s.passed_pkts));
    o.Set("finDropped", double(s.fin_dropped));
    o.Set("redirectFailed", double(s.redirect_failed));
    return o;
  }

  Napi::Value TestRunJs(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsBuffer()) throw Napi::TypeError::New(info.Env(), "buffer required");
    auto buf = info[0].As<Napi::Buffer<uint8_t>>();
    uint32_t ret = 0;
    int r = sockmap_->TestRun(buf.Data(), uint32_t(buf.Length()), &ret);
    if (r < 0) throw ErrnoError(info.Env(), -r, "BPF_PROG_TEST_RUN");
    return Napi::Number::New(info.Env(), ret);
  }

  // putPeer(cookie: bigint, peerCookie: bigint, flags: number)
  Napi::Value PutPeerJs(const Napi::CallbackInfo& info) {
    bool lossless = false;
    uint64_t cookie = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
    uint64_t peer = info[1].As<Napi::BigInt>().Uint64Value(&lossless);
    SockPeer p{peer, 0, info[2].As<Napi::Number>().Uint32Value(), 1};
    int r = sockmap_->PutPeer(cookie, p);
    if (r < 0) throw ErrnoError(info.Env(), -r, "putPeer");
    return info.Env().Undefined();
  }

  Napi::Value DeletePeerJs(const Napi::CallbackInfo& info) {
    bool lossless = false;
    sockmap_->DeletePeer(info[0].As<Napi::BigInt>().Uint64Value(&lossless));
    return info.Env().Undefined();
  }

  Napi::Value CloseJs(const Napi::CallbackInfo& info) {
    sockmap_->Close();
    return info.Env().Undefined();
  }

  std::shared_ptr<Sockmap> sockmap_;
};

static Napi::FunctionReference* g_sockmap_ctor = nullptr;

class PoolWrap : public Napi::ObjectWrap<PoolWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Pool",
                       {InstanceMethod("splice", &PoolWrap::SpliceJs), InstanceMethod("sockmap", &PoolWrap::SockmapJs),
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
        Napi::Value where = done->where ? Napi::Value(Napi::String::New(env, done->where)) : env.Null();
        if (st->inflight > 0 && --st->inflight == 0) st->tsfn.Unref(env);
        fn.Call({Napi::Number::New(env, double(done->id)), Napi::Number::New(env, double(done->bytes_ab)),
                 Napi::Number::New(env, double(done->bytes_ba)), Napi::Number::New(env, done->err), where});
        delete done;
      });
      if (status != napi_ok) delete copy;
    });
    hook_ = env.AddCleanupHook(std::function<void()>([this]() { Shutdown(); }));
    hooked_ = true;
  }

  ~PoolWrap() override {
    if (hooked_) hook_.Remove(env_);
    Shutdown();
  }

 private:
  struct State {
    Napi::ThreadSafeFunction tsfn;
    int inflight = 0;  // main thread only
  };

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

  // sockmap(sockmap, fdA, fdB) → id; throws (errno EOPNOTSUPP etc.) when linking fails.
  Napi::Value SockmapJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    if (info.Length() < 3 || !info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(g_sockmap_ctor->Value()))
      throw Napi::TypeError::New(env, "sockmap(sockmap, fdA, fdB)");
    SockmapWrap* sm = SockmapWrap::Unwrap(info[0].As<Napi::Object>());
    int a = FdArg(info, 1), b = FdArg(info, 2);
    int err = 0;
    uint64_t id = pool_->SockmapPair(sm->sockmap(), a, b, &err);
    if (!id) throw ErrnoError(env, err, "sockmap link");
    Started(env);
    return Napi::Number::New(env, double(id));
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

  Napi::Env env_;
  std::shared_ptr<State> state_;
  std::unique_ptr<Pool> pool_;
  Napi::Env::CleanupHook<std::function<void()>> hook_;
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
  Napi::Function sockmap = SockmapWrap::Init(env);
  g_sockmap_ctor = new Napi::FunctionReference(Napi::Persistent(sockmap));
  exports.Set("Sockmap", sockmap);
  exports.Set("Pool", PoolWrap::Init(env));
  exports.Set("getOriginalDst", Napi::Function::New(env, GetOriginalDstJs));
  RegisterBpfObj(env, exports);
  RegisterReusePort(env, exports);
  exports.Set("abi", Napi::Number::New(env, 1));
  return exports;
}

}  // namespace edgeway

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return edgeway::Init(env, exports); }

NODE_API_MODULE(edgeway_native, InitModule)
