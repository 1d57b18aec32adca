#include "dns-udp.h"

#include "napi-util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace edgeway {

namespace {

// udpReusePort(host, port) → fd. Port 0 picks a free port (read it back from the
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
  int one = 1;
  // v6-only like dgram's udp6 with ipv6Only: a v6 listen address never takes v4 traffic.
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
      (local.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
      bind(fd, reinterpret_cast<sockaddr*>(&local), len) < 0) {
    int err = errno;
    close(fd);
    Napi::Error e = ErrnoError(env, err, "bind");
    e.Set("syscall", Napi::String::New(env, "bind"));
    throw e;
  }
  return Napi::Number::New(env, fd);
}

}  // namespace

void RegisterDnsUdp(Napi::Env env, Napi::Object exports) {
  exports.Set("udpReusePort", Napi::Function::New(env, UdpReusePortJs));
}

}  // namespace edgeway
