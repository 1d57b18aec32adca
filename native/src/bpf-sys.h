// BPF map element operations as raw bpf(2) syscalls, so the part of the addon
// that forwards sockets (edgeway_native.node) does not link libbpf: a host without
// libbpf keeps splice and still drives sockmap maps that the libbpf part loaded.
#pragma once

#include <cstdint>

namespace edgeway {

// Each returns 0, or -1 with errno set (like libbpf's bpf_map_*_elem).
int BpfMapUpdate(int map_fd, const void* key, const void* value, uint64_t flags);
int BpfMapDelete(int map_fd, const void* key);
int BpfMapLookup(int map_fd, const void* key, void* value);

}  // namespace edgeway
