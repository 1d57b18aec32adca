// libbpf-backed object and map operations for the socket-LB data plane
// (src/dataplane/ebpf/libbpf-backend.ts): load and pin an object, attach to a
// cgroup, query attachments, and read or write pinned maps. Every call is a few
// syscalls on the calling thread; every fd opened here is closed before return.
#pragma once

#include <napi.h>

namespace edgeway {

// Sets `exports.bpf` to an object with the functions of BpfBackend.
void RegisterBpfObj(Napi::Env env, Napi::Object exports);

}  // namespace edgeway
