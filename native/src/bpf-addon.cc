// edgeway_bpf.node — bindings that link libbpf: Sockmap (loads and attaches the
// sockmap verdict object; its map fds go to edgeway_native.node's SockmapLink) and
// bpf.* (bpfobj.cc, the socket-LB object and map operations). Loaded and
// feature-detected apart from edgeway_native.node, so a host without libbpf keeps
// splice. Glue only — policy lives in src/native/ and src/dataplane/ebpf/.
#include <napi.h>

#include <memory>
#include <stdexcept>

#include "bpfobj.h"
#include "napi-util.h"
#include "sockmap.h"

namespace edgeway {

class SockmapWrap : public Napi::ObjectWrap<SockmapWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Sockmap",
                       {InstanceMethod("stats", &SockmapWrap::StatsJs), InstanceMethod("testRun", &SockmapWrap::TestRunJs),
                        InstanceMethod("putPeer", &SockmapWrap::PutPeerJs),
                        InstanceMethod("deletePeer", &SockmapWrap::DeletePeerJs),
                        InstanceMethod("mapFds", &SockmapWrap::MapFdsJs), InstanceMethod("close", &SockmapWrap::CloseJs)});
  }

  explicit SockmapWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SockmapWrap>(info) {
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "object path required");
    try {
      sockmap_ = std::make_unique<Sockmap>(info[0].As<Napi::String>().Utf8Value());
    } catch (const std::runtime_error& e) {
      Napi::Error err = Napi::Error::New(info.Env(), e.what());
      err.Set("code", Napi::String::New(info.Env(), "ERR_NATIVE_SOCKMAP_LOAD"));
      throw err;
    }
  }

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

  static uint64_t Cookie(const Napi::CallbackInfo& info, size_t i) {
    if (info.Length() <= i || !info[i].IsBigInt()) throw Napi::TypeError::New(info.Env(), "cookie must be a bigint");
    bool lossless = false;
    return info[i].As<Napi::BigInt>().Uint64Value(&lossless);
  }

  // putPeer(cookie: bigint, peerCookie: bigint, flags: number)
  Napi::Value PutPeerJs(const Napi::CallbackInfo& info) {
    uint64_t cookie = Cookie(info, 0), peer = Cookie(info, 1);
    if (info.Length() < 3 || !info[2].IsNumber()) throw Napi::TypeError::New(info.Env(), "flags must be a number");
    SockPeer p{peer, 0, info[2].As<Napi::Number>().Uint32Value(), 1};
    int r = sockmap_->PutPeer(cookie, p);
    if (r < 0) throw ErrnoError(info.Env(), -r, "putPeer");
    return info.Env().Undefined();
  }

  Napi::Value DeletePeerJs(const Napi::CallbackInfo& info) {
    sockmap_->DeletePeer(Cookie(info, 0));
    return info.Env().Undefined();
  }

  // mapFds() → { socks, redir, peers } for edgeway_native.node's SockmapLink (which
  // duplicates them); -1 each after close().
  Napi::Value MapFdsJs(const Napi::CallbackInfo& info) {
    SockmapFds f = sockmap_->Fds();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("socks", f.socks);
    o.Set("redir", f.redir);
    o.Set("peers", f.peers);
    return o;
  }

  Napi::Value CloseJs(const Napi::CallbackInfo& info) {
    sockmap_->Close();
    return info.Env().Undefined();
  }

  std::unique_ptr<Sockmap> sockmap_;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Sockmap", SockmapWrap::Init(env));
  RegisterBpfObj(env, exports);
  exports.Set("abi", Napi::Number::New(env, kAddonAbi));
  return exports;
}

}  // namespace edgeway

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return edgeway::Init(env, exports); }

NODE_API_MODULE(edgeway_bpf, InitModule)
