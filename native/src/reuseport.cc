#include "reuseport.h"

#include "napi-util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <string>
#include <thread>

namespace edgeway {

namespace {

Napi::Error SockErrno(Napi::Env env, int err, const std::string& what) {
  Napi::Error e = ErrnoError(env, err, what);
  e.Set("syscall", Napi::String::New(env, what));
  return e;
}

// A numeric IPv4 or IPv6 address and a port. `like` picks the family of an
// unspecified address ("" = any) so a wildcard local side matches the remote.
bool ParseAddr(const std::string& host, int port, int like, sockaddr_storage* out, socklen_t* len) {
  memset(out, 0, sizeof(*out));
  if (port < 0 || port > 65535) return false;
  std::string h = host;
  if (h.empty()) h = like == AF_INET6 ? "::" : "0.0.0.0";
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  if (inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(uint16_t(port));
    *len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(uint16_t(port));
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

// A nonblocking, close-on-exec TCP socket bound to `local` with SO_REUSEADDR +
// SO_REUSEPORT (both are needed: REUSEPORT lets the listener and the outgoing
// sockets share the port, REUSEADDR lets a bind succeed while an earlier punch
// socket of the same port lingers in TIME_WAIT). Returns the fd or -errno.
int BoundSocket(const sockaddr_storage& local, socklen_t len) {
  int fd = socket(local.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) return -errno;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
      bind(fd, reinterpret_cast<const sockaddr*>(&local), len) < 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

int64_t NowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (info.Length() <= i || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), usage);
  return info[i].As<Napi::String>().Utf8Value();
}

int IntArg(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), usage);
  return info[i].As<Napi::Number>().Int32Value();
}

// listenReusePort(host, port, backlog) → fd (listening, nonblocking).
Napi::Value ListenReusePortJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "listenReusePort(host: string, port: number, backlog: number)";
  std::string host = StringArg(info, 0, usage);
  int port = IntArg(info, 1, usage);
  int backlog = IntArg(info, 2, usage);
  sockaddr_storage local;
  socklen_t len = 0;
  if (!ParseAddr(host, port, AF_INET, &local, &len)) throw Napi::TypeError::New(env, "listenReusePort: not a numeric address/port: " + host);
  int fd = BoundSocket(local, len);
  if (fd < 0) throw SockErrno(env, -fd, "bind");
  if (listen(fd, backlog > 0 ? backlog : 511) < 0) {
    int err = errno;
    close(fd);
    throw SockErrno(env, err, "listen");
  }
  return Napi::Number::New(env, fd);
}

// One pending connect. It runs on a thread of its own, not on libuv's pool: a punch
// holds several connects open for seconds (until the peer's SYN arrives or the
// deadline), and on the 4-thread pool that would stall fs and dns.lookup for the
// whole process. The thread does a nonblocking connect, then poll() for POLLOUT
// until the deadline (a simultaneous open may need a SYN retransmission or two),
// and settles the promise through a threadsafe function (unref'd: a pending
// connect does not keep the process alive). The fd reaches JS only when connected;
// on any failure, or when the environment is gone, it is closed here.
struct ConnectJob {
  sockaddr_storage local;
  sockaddr_storage remote;
  socklen_t llen;
  socklen_t rlen;
  int timeout_ms;
  int fd = -1;
  int err = 0;
  const char* what = "";
  Napi::Promise::Deferred deferred;
};

void RunConnect(ConnectJob* j) {
  int fd = BoundSocket(j->local, j->llen);
  if (fd < 0) {
    j->err = -fd;
    j->what = "bind";
    return;
  }
  auto fail = [&](int err, const char* what) {
    close(fd);
    j->err = err;
    j->what = what;
  };
  if (connect(fd, reinterpret_cast<const sockaddr*>(&j->remote), j->rlen) == 0) {
    j->fd = fd;
    return;
  }
  if (errno != EINPROGRESS) return fail(errno, "connect");
  const int64_t deadline = NowMs() + j->timeout_ms;
  for (;;) {
    int64_t left = deadline - NowMs();
    if (left <= 0) return fail(ETIMEDOUT, "connect");
    pollfd p{fd, POLLOUT, 0};
    int r = poll(&p, 1, int(left));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return fail(errno, "poll");
    if (r == 0) continue;  // the deadline check above ends the loop
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
    if (soerr != 0) return fail(soerr, "connect");
    j->fd = fd;
    return;
  }
}

void Settle(Napi::Env env, Napi::Function, ConnectJob* j) {
  if (j->err != 0) j->deferred.Reject(SockErrno(env, j->err, j->what).Value());
  else j->deferred.Resolve(Napi::Number::New(env, j->fd));
  delete j;
}

// connectFrom(localHost, localPort, remoteHost, remotePort, timeoutMs) → Promise<fd>
Napi::Value ConnectFromJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "connectFrom(localHost: string, localPort: number, remoteHost: string, remotePort: number, timeoutMs: number)";
  std::string lhost = StringArg(info, 0, usage);
  int lport = IntArg(info, 1, usage);
  std::string rhost = StringArg(info, 2, usage);
  int rport = IntArg(info, 3, usage);
  int timeout = IntArg(info, 4, usage);
  if (timeout <= 0 || timeout > 120000) throw Napi::RangeError::New(env, "connectFrom: timeoutMs must be in 1..120000");
  sockaddr_storage remote, local;
  socklen_t rlen = 0, llen = 0;
  if (rport == 0 || !ParseAddr(rhost, rport, AF_INET, &remote, &rlen)) throw Napi::TypeError::New(env, "connectFrom: bad remote address " + rhost);
  if (!ParseAddr(lhost, lport, remote.ss_family, &local, &llen)) throw Napi::TypeError::New(env, "connectFrom: bad local address " + lhost);
  if (local.ss_family != remote.ss_family) throw SockErrno(env, EAFNOSUPPORT, "connect");
  auto* job = new ConnectJob{local, remote, llen, rlen, timeout, -1, 0, "", Napi::Promise::Deferred::New(env)};
  Napi::Promise p = job->deferred.Promise();
  auto tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "edgeway-connect-from", 0, 1);
  // A pending connect does not hold the process: a stopping agent abandons its punch
  // (the thread finds the environment gone and closes the fd).
  tsfn.Unref(env);
  std::thread([job, tsfn]() mutable {
    RunConnect(job);
    if (tsfn.BlockingCall(job, Settle) != napi_ok) {
      // The environment is shutting down: nobody will take the fd.
      if (job->fd >= 0) close(job->fd);
      delete job;
    }
    tsfn.Release();
  }).detach();
  return p;
}

}  // namespace

void RegisterReusePort(Napi::Env env, Napi::Object exports) {
  exports.Set("listenReusePort", Napi::Function::New(env, ListenReusePortJs));
  exports.Set("connectFrom", Napi::Function::New(env, ConnectFromJs));
}

}  // namespace edgeway
