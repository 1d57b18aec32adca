#include "bpf-sys.h"

#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

namespace edgeway {

namespace {

int MapElem(int cmd, int map_fd, const void* key, const void* value, uint64_t flags) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof(attr));  // the kernel rejects non-zero unused fields
  attr.map_fd = uint32_t(map_fd);
  attr.key = uint64_t(uintptr_t(key));
  attr.value = uint64_t(uintptr_t(value));
  attr.flags = flags;
  return int(syscall(__NR_bpf, cmd, &attr, sizeof(attr)));
}

}  // namespace

int BpfMapUpdate(int map_fd, const void* key, const void* value, uint64_t flags) {
  return MapElem(BPF_MAP_UPDATE_ELEM, map_fd, key, value, flags);
}

int BpfMapDelete(int map_fd, const void* key) { return MapElem(BPF_MAP_DELETE_ELEM, map_fd, key, nullptr, 0); }

int BpfMapLookup(int map_fd, const void* key, void* value) { return MapElem(BPF_MAP_LOOKUP_ELEM, map_fd, key, value, 0); }

}  // namespace edgeway
