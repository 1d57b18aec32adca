#include "reuseport.h"

#include "napi-util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <memory>
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

// An integer argument; fractions, NaN and values past int32 are a TypeError (they
// used to be truncated: 0.5 became port 0).
int IntArg(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), usage);
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= -2147483648.0 && d <= 2147483647.0) || d != double(int(d))) throw Napi::TypeError::New(info.Env(), usage);
  return int(d);
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
// on any failure it is closed here.
//
// Environment teardown (the process exits, or a worker ends, with a connect still
// pending): Node deletes the threadsafe function in its own cleanup hook, and a
// thread calling it afterwards aborted the process (uv_mutex_lock on freed memory;
// found as "connectFrom with local port 0 aborts" — any pending connect did). So
// each job registers a cleanup hook *after* creating its threadsafe function (hooks
// run last-in first-out: ours runs first) that cancels the connect through an
// eventfd and joins the thread; a thread that sees `closing` closes its fd and never
// touches the threadsafe function. The thread is joined by Settle otherwise: no
// thread outlives its environment.
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
  napi_env env = nullptr;
  int cancel_fd = -1;  // eventfd: written by the cleanup hook
  std::atomic<bool> closing{false};
  bool hooked = false;
  std::thread thread;

  ConnectJob(const sockaddr_storage& l, socklen_t ll, const sockaddr_storage& r, socklen_t rl, int t, Napi::Env e)
      : local(l), remote(r), llen(ll), rlen(rl), timeout_ms(t), deferred(Napi::Promise::Deferred::New(e)), env(e) {}
  ~ConnectJob() {
    if (thread.joinable()) thread.join();
    if (cancel_fd >= 0) close(cancel_fd);
  }
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
    pollfd p[2] = {{fd, POLLOUT, 0}, {j->cancel_fd, POLLIN, 0}};
    int r = poll(p, 2, int(left));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return fail(errno, "poll");
    if (p[1].revents) return fail(ECANCELED, "connect");
    if (r == 0) continue;  // the deadline check above ends the loop
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
    if (soerr != 0) return fail(soerr, "connect");
    j->fd = fd;
    return;
  }
}

// The environment is going away: stop the connect and wait for the thread, which
// then closes its fd without calling into the (soon deleted) threadsafe function.
// The job itself is freed by Settle if it still runs, else left (teardown only).
void CleanupConnect(void* arg) {
  auto* j = static_cast<ConnectJob*>(arg);
  j->hooked = false;  // Node drops the hook after running it
  j->closing = true;
  uint64_t one = 1;
  ssize_t n = write(j->cancel_fd, &one, sizeof(one));
  (void)n;
  if (j->thread.joinable()) j->thread.join();
}

// Runs on the JS thread, and possibly while the environment is being torn down,
// when no value can be created: an exception must never leave this callback then
// (node-addon-api rethrows it, that fails too, and the second throw ends in
// std::terminate). Whatever cannot be handed to JS is closed here.
void Settle(Napi::Env env, Napi::Function, ConnectJob* j) {
  std::unique_ptr<ConnectJob> owned(j);
  if (j->hooked) napi_remove_env_cleanup_hook(j->env, CleanupConnect, j);
  j->hooked = false;
  if (j->thread.joinable()) j->thread.join();  // it only has Release() left to do
  bool delivered = false;
  if (env != nullptr) {
    try {
      if (j->err != 0) {
        j->deferred.Reject(SockErrno(env, j->err, j->what).Value());
      } else {
        j->deferred.Resolve(Napi::Number::New(env, j->fd));
        delivered = true;
      }
    } catch (const Napi::Error&) {
      // The environment is terminating: nobody is left to take the result.
    }
  }
  if (!delivered && j->fd >= 0) close(j->fd);
}

// connectFrom(localHost, localPort, remoteHost, remotePort, timeoutMs) → Promise<fd>
// localPort 0 binds an ephemeral port.
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
  if (rport == 0 || !ParseAddr(rhost, rport, AF_INET, &remote, &rlen)) throw Napi::TypeError::New(env, "connectFrom: bad remote address " + rhost + " port " + std::to_string(rport));
  if (!ParseAddr(lhost, lport, remote.ss_family, &local, &llen)) throw Napi::TypeError::New(env, "connectFrom: bad local address " + lhost + " port " + std::to_string(lport));
  if (local.ss_family != remote.ss_family) throw SockErrno(env, EAFNOSUPPORT, "connect");
  auto job = std::make_unique<ConnectJob>(local, llen, remote, rlen, timeout, env);
  job->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (job->cancel_fd < 0) throw SockErrno(env, errno, "eventfd");
  Napi::Promise p = job->deferred.Promise();
  auto tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "edgeway-connect-from", 0, 1);
  // A pending connect does not hold the process: a stopping agent abandons its punch.
  tsfn.Unref(env);
  // After the threadsafe function: this hook runs before Node's hook deletes it.
  if (napi_add_env_cleanup_hook(env, CleanupConnect, job.get()) != napi_ok) {
    tsfn.Release();
    throw Napi::Error::New(env, "napi_add_env_cleanup_hook failed");
  }
  job->hooked = true;
  ConnectJob* j = job.release();  // owned by Settle from here on
  j->thread = std::thread([j, tsfn]() mutable {
    RunConnect(j);
    if (j->closing || tsfn.BlockingCall(j, Settle) != napi_ok) {
      // The environment is shutting down: nobody will take the fd. The job stays
      // for the cleanup hook that is joining this thread (freed with the process).
      if (j->fd >= 0) close(j->fd);
      j->fd = -1;
      return;
    }
    tsfn.Release();
  });
  return p;
}

}  // namespace

void RegisterReusePort(Napi::Env env, Napi::Object exports) {
  exports.Set("listenReusePort", Napi::Function::New(env, ListenReusePortJs));
  exports.Set("connectFrom", Napi::Function::New(env, ConnectFromJs));
}

}  // namespace edgeway
