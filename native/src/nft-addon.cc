// edgeway_nft.node — nftables in-process through libnftables: the same JSON
// transactions the agent would pipe to `nft -j -f`, without starting a process
// (~0.1 ms instead of 15–40 ms for a one-element change). A separate addon so
// that a host without libnftables1 keeps splice and libbpf (src/dataplane/
// nftables/native-nft.ts loads it on its own and falls back to the `nft` CLI).
// Glue only: the transactions and error classification live in TypeScript.
//
//   new NftContext(netnsPath?: string)
//   ctx.run(commands: string, json: boolean) → Promise<{ ok, output, error }>
//   ctx.close()
//
// nft_run_cmd_from_buffer blocks (it waits for the kernel's netlink answers), so
// it runs on a libuv worker (Napi::AsyncWorker). libnftables is not documented
// as thread safe and keeps some state per process (xtables, gmp), so every call
// in the process holds one lock: calls are serialized whatever JS does.
#include <napi.h>
#include <nftables/libnftables.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <memory>
#include <mutex>
#include <string>

#include "napi-util.h"

namespace edgeway {

namespace {

std::mutex g_nft_lock;

// One libnftables context (created lazily, on the worker, inside the target
// network namespace) plus the namespace it works in. Shared by the JS object and
// every worker in flight, so close() or GC while a call runs frees nothing early.
class NftCtx {
 public:
  explicit NftCtx(int netns_fd) : netns_fd_(netns_fd) {}
  ~NftCtx() {
    std::lock_guard<std::mutex> lock(g_nft_lock);
    if (ctx_) nft_ctx_free(ctx_);
    if (netns_fd_ >= 0) close(netns_fd_);
  }
  NftCtx(const NftCtx&) = delete;
  NftCtx& operator=(const NftCtx&) = delete;

  // Runs one command buffer (nft script, or JSON when `json`: the JSON flag makes
  // libnftables try the JSON parser first and print listings as JSON). Returns
  // false with `sys` set when the call could not be made at all (setns, ctx);
  // otherwise true, with rc/out/err from libnftables.
  bool Run(const std::string& cmd, bool json, int* rc, std::string* out, std::string* err, std::string* sys) {
    std::lock_guard<std::mutex> lock(g_nft_lock);
    int back = -1;
    if (netns_fd_ >= 0) {
      // A test or benchmark namespace: enter it for this call only (setns moves
      // this thread alone; the worker thread is returned as it was found).
      back = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
      if (back < 0) return SysError(sys, "open /proc/thread-self/ns/net");
      if (setns(netns_fd_, CLONE_NEWNET) < 0) {
        int e = errno;
        close(back);
        errno = e;
        return SysError(sys, "setns");
      }
    }
    bool made = true;
    if (!ctx_) {
      ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
      if (!ctx_ || nft_ctx_buffer_output(ctx_) != 0 || nft_ctx_buffer_error(ctx_) != 0) {
        if (ctx_) nft_ctx_free(ctx_);
        ctx_ = nullptr;
        *sys = "nft_ctx_new failed";
        made = false;
      }
    }
    if (made) {
      nft_ctx_output_set_flags(ctx_, json ? NFT_CTX_OUTPUT_JSON : 0);
      *rc = nft_run_cmd_from_buffer(ctx_, cmd.c_str());
      // Reading a buffer also rewinds it: the next call starts empty.
      const char* o = nft_ctx_get_output_buffer(ctx_);
      const char* e = nft_ctx_get_error_buffer(ctx_);
      out->assign(o ? o : "");
      err->assign(e ? e : "");
      // A full apply makes nft allocate ~3 KB per element (450 MB at 50k
      // services) and glibc keeps the freed heap: the agent stayed at +95 MiB
      // RSS after one 10k apply. Hand large freed heaps back to the system.
      if (cmd.size() > (1u << 20)) malloc_trim(0);
    }
    if (back >= 0) {
      // Cannot fail in practice (we hold the fd and just had the privilege to
      // leave); a worker left in a test namespace would be worse than stopping.
      if (setns(back, CLONE_NEWNET) < 0) {
        fprintf(stderr, "edgeway_nft: cannot return a worker thread to its network namespace: %s\n", strerror(errno));
        abort();
      }
      close(back);
    }
    return made;
  }

 private:
  static bool SysError(std::string* sys, const char* what) {
    *sys = std::string(what) + ": " + strerror(errno);
    return false;
  }

  nft_ctx* ctx_ = nullptr;
  int netns_fd_;
};

class RunWorker : public Napi::AsyncWorker {
 public:
  RunWorker(Napi::Env env, std::shared_ptr<NftCtx> ctx, std::string cmd, bool json)
      : Napi::AsyncWorker(env, "edgeway:nft"), deferred_(Napi::Promise::Deferred::New(env)), ctx_(std::move(ctx)),
        cmd_(std::move(cmd)), json_(json) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override {
    std::string sys;
    if (!ctx_->Run(cmd_, json_, &rc_, &out_, &err_, &sys)) SetError(sys);
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("ok", Napi::Boolean::New(env, rc_ == 0));
    r.Set("output", Napi::String::New(env, out_));
    r.Set("error", Napi::String::New(env, err_));
    deferred_.Resolve(r);
  }

  void OnError(const Napi::Error& e) override {
    Napi::Error err = Napi::Error::New(Env(), e.Message());
    err.Set("code", Napi::String::New(Env(), "ERR_NATIVE_NFT"));
    deferred_.Reject(err.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<NftCtx> ctx_;
  std::string cmd_;
  bool json_;
  int rc_ = -1;
  std::string out_, err_;
};

class NftContextWrap : public Napi::ObjectWrap<NftContextWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NftContext",
                       {InstanceMethod("run", &NftContextWrap::RunJs), InstanceMethod("close", &NftContextWrap::CloseJs)});
  }

  // new NftContext(netnsPath?: string): the namespace is opened now (a bad path
  // fails here, with errno), entered only around each call.
  explicit NftContextWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NftContextWrap>(info) {
    int fd = -1;
    if (info.Length() > 0 && !info[0].IsUndefined() && !info[0].IsNull()) {
      if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "netns path must be a string");
      std::string path = info[0].As<Napi::String>().Utf8Value();
      fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) throw ErrnoError(info.Env(), errno, "open " + path);
    }
    ctx_ = std::make_shared<NftCtx>(fd);
  }

 private:
  // run(commands: string, json: boolean) → Promise<{ ok, output, error }>
  Napi::Value RunJs(const Napi::CallbackInfo& info) {
    if (!ctx_) throw Napi::Error::New(info.Env(), "NftContext is closed");
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsBoolean())
      throw Napi::TypeError::New(info.Env(), "run(commands: string, json: boolean)");
    auto* w = new RunWorker(info.Env(), ctx_, info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Boolean>().Value());
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  // Drops this object's share; calls in flight finish with theirs.
  Napi::Value CloseJs(const Napi::CallbackInfo& info) {
    ctx_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<NftCtx> ctx_;
};

}  // namespace

Napi::Object InitNft(Napi::Env env, Napi::Object exports) {
  exports.Set("NftContext", NftContextWrap::Init(env));
  exports.Set("abi", Napi::Number::New(env, kAddonAbi));
  return exports;
}

}  // namespace edgeway

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return edgeway::InitNft(env, exports); }

NODE_API_MODULE(edgeway_nft, InitModule)
