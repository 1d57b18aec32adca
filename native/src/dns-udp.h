// UDP sockets for the node-local DNS server's worker threads (src/dns/workers.ts):
// each worker serves its own socket on the same address and port, and the kernel
// spreads queries across them (SO_REUSEPORT). Node's dgram can only ask for
// SO_REUSEPORT from 22.12 / 23.1 on; on older versions the socket is made here and
// handed to dgram (`socket.bind({ fd })`). No policy.
#pragma once

#include <napi.h>

namespace edgeway {

// Sets `exports.udpReusePort(host, port) → fd` (bound, nonblocking, close-on-exec).
void RegisterDnsUdp(Napi::Env env, Napi::Object exports);

}  // namespace edgeway
