// Small helpers shared by both addons (edgeway_native.node, edgeway_bpf.node).
#pragma once

#include <napi.h>
#include <string.h>

#include <string>

namespace edgeway {

// ABI the TypeScript loader expects from each addon (src/native/addon.ts).
// 3: the Pool owns a pair's sockets (JS closes its fds at the hand-over and relies
// on the pool to reset them on an error); a 2 build would end failed pairs with FIN.
constexpr int kAddonAbi = 3;

// An Error with `errno` and code ERR_NATIVE_ERRNO; `err` may be negative.
inline Napi::Error ErrnoError(Napi::Env env, int err, const std::string& what) {
  if (err < 0) err = -err;
  Napi::Error e = Napi::Error::New(env, what + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("code", Napi::String::New(env, "ERR_NATIVE_ERRNO"));
  return e;
}

inline int FdArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "fd must be a number");
  int fd = info[i].As<Napi::Number>().Int32Value();
  if (fd < 0) throw Napi::TypeError::New(info.Env(), "fd must be >= 0");
  return fd;
}

}  // namespace edgeway
