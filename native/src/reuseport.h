// Sockets for TCP hole punching (src/tunnel/punch/): a listener and outgoing
// connections that share one local port (SO_REUSEADDR + SO_REUSEPORT), which
// Node's `net` cannot make (it cannot bind before connect). The fds are handed to
// Node (`server.listen({ fd })`, `new net.Socket({ fd })`). No libbpf, no policy.
#pragma once

#include <napi.h>

namespace edgeway {

// Sets `exports.listenReusePort(host, port, backlog) → fd` and
// `exports.connectFrom(localHost, localPort, remoteHost, remotePort, timeoutMs) → Promise<fd>`.
void RegisterReusePort(Napi::Env env, Napi::Object exports);

}  // namespace edgeway
