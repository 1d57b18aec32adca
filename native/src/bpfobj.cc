#include "bpfobj.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <string.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

namespace edgeway {

namespace {

// Owns one fd; closes it on scope exit.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) close(fd_);
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  int get() const { return fd_; }
  int Take() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

Napi::Error Errno(Napi::Env env, int err, const std::string& what) {
  if (err < 0) err = -err;
  Napi::Error e = Napi::Error::New(env, what + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("code", Napi::String::New(env, "ERR_NATIVE_ERRNO"));
  return e;
}

std::string Str(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

uint32_t U32(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  return info[i].As<Napi::Number>().Uint32Value();
}

Fd OpenPin(Napi::Env env, const std::string& path) {
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) throw Errno(env, errno, "bpf_obj_get " + path);
  return Fd(fd);
}

// A loaded program or map by kernel id.
Fd ById(Napi::Env env, bool prog, uint32_t id) {
  int fd = prog ? bpf_prog_get_fd_by_id(id) : bpf_map_get_fd_by_id(id);
  if (fd < 0) throw Errno(env, errno, std::string(prog ? "program" : "map") + " id " + std::to_string(id));
  return Fd(fd);
}

// Attach type names are libbpf's (the same strings bpftool prints).
bpf_attach_type AttachType(Napi::Env env, const std::string& name) {
  for (int t = 0; t < __MAX_BPF_ATTACH_TYPE; t++) {
    const char* s = libbpf_bpf_attach_type_str(static_cast<bpf_attach_type>(t));
    if (s && name == s) return static_cast<bpf_attach_type>(t);
  }
  throw Napi::TypeError::New(env, "unknown attach type " + name);
}

Fd OpenCgroup(Napi::Env env, const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw Errno(env, errno, "open " + path);
  return Fd(fd);
}

bpf_prog_info ProgInfo(Napi::Env env, int fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len)) throw Errno(env, errno, "BPF_OBJ_GET_INFO_BY_FD (prog)");
  return info;
}

bpf_map_info MapInfo(Napi::Env env, int fd) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len)) throw Errno(env, errno, "BPF_OBJ_GET_INFO_BY_FD (map)");
  return info;
}

// The kernel keeps 15 characters of a program name; the full one is the name of
// its first BTF function (what bpftool shows).
std::string ProgName(int fd, const bpf_prog_info& info) {
  std::string name(info.name);
  if (name.size() < BPF_OBJ_NAME_LEN - 1 || !info.btf_id || !info.nr_func_info) return name;
  bpf_func_info fi{};
  bpf_prog_info again{};
  again.nr_func_info = 1;
  again.func_info_rec_size = sizeof(fi);
  again.func_info = reinterpret_cast<uintptr_t>(&fi);
  uint32_t len = sizeof(again);
  if (bpf_obj_get_info_by_fd(fd, &again, &len)) return name;
  btf* b = btf__load_from_kernel_by_id(info.btf_id);
  if (!b) return name;
  const btf_type* t = btf__type_by_id(b, fi.type_id);
  if (t) {
    const char* full = btf__name_by_offset(b, t->name_off);
    if (full && *full) name = full;
  }
  btf__free(b);
  return name;
}

// loadAll(object, progDir, mapDir, reuse: { [mapName]: pinPath })
Napi::Value LoadAll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string object = Str(info, 0, "object"), prog_dir = Str(info, 1, "progDir"), map_dir = Str(info, 2, "mapDir");
  std::map<std::string, std::string> reuse;
  if (info.Length() > 3 && info[3].IsObject()) {
    Napi::Object o = info[3].As<Napi::Object>();
    Napi::Array keys = o.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); i++) {
      std::string k = keys.Get(i).As<Napi::String>().Utf8Value();
      reuse[k] = o.Get(k).As<Napi::String>().Utf8Value();
    }
  }
  libbpf_set_print(nullptr);
  bpf_object* obj = bpf_object__open_file(object.c_str(), nullptr);
  if (!obj) throw Errno(env, errno, "open " + object);
  auto fail = [&](int err, const std::string& what) {
    bpf_object__close(obj);
    return Errno(env, err, what);
  };
  bpf_map* m;
  bpf_object__for_each_map(m, obj) {
    auto it = reuse.find(bpf_map__name(m));
    if (it == reuse.end()) continue;
    int fd = bpf_obj_get(it->second.c_str());
    if (fd < 0) throw fail(errno, "bpf_obj_get " + it->second);
    int err = bpf_map__reuse_fd(m, fd);  // dups fd
    close(fd);
    if (err) throw fail(err, std::string("reuse map ") + bpf_map__name(m));
  }
  int err = bpf_object__load(obj);
  if (err) throw fail(err, "load " + object);
  err = bpf_object__pin_maps(obj, map_dir.c_str());
  if (err) throw fail(err, "pin maps under " + map_dir);
  err = bpf_object__pin_programs(obj, prog_dir.c_str());
  if (err) {
    bpf_object__unpin_maps(obj, map_dir.c_str());
    throw fail(err, "pin programs under " + prog_dir);
  }
  bpf_object__close(obj);  // the pins hold programs and maps
  return env.Undefined();
}

Napi::Value ProgId(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Fd fd = OpenPin(env, Str(info, 0, "pin"));
  return Napi::Number::New(env, ProgInfo(env, fd.get()).id);
}

// attach(cgroup, attachType, progPin): BPF_PROG_ATTACH with BPF_F_ALLOW_MULTI.
Napi::Value Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string cg = Str(info, 0, "cgroup"), type = Str(info, 1, "attachType"), pin = Str(info, 2, "progPin");
  bpf_attach_type t = AttachType(env, type);
  Fd cgfd = OpenCgroup(env, cg);
  Fd prog = OpenPin(env, pin);
  if (bpf_prog_attach(prog.get(), cgfd.get(), t, BPF_F_ALLOW_MULTI)) throw Errno(env, errno, "attach " + type + " to " + cg);
  return env.Undefined();
}

// detach(cgroup, attachType, progPin | progId)
Napi::Value Detach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string cg = Str(info, 0, "cgroup"), type = Str(info, 1, "attachType");
  bpf_attach_type t = AttachType(env, type);
  Fd cgfd = OpenCgroup(env, cg);
  Fd prog = info.Length() > 2 && info[2].IsNumber() ? ById(env, true, info[2].As<Napi::Number>().Uint32Value())
                                                     : OpenPin(env, Str(info, 2, "prog"));
  if (bpf_prog_detach2(prog.get(), cgfd.get(), t)) throw Errno(env, errno, "detach " + type + " from " + cg);
  return env.Undefined();
}

// attachments(cgroup) → [{ id, attachType, name }], programs attached to this cgroup itself.
Napi::Value Attachments(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string cg = Str(info, 0, "cgroup");
  Fd cgfd = OpenCgroup(env, cg);
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  for (int t = 0; t < __MAX_BPF_ATTACH_TYPE; t++) {
    const char* tname = libbpf_bpf_attach_type_str(static_cast<bpf_attach_type>(t));
    if (!tname) continue;
    std::vector<uint32_t> ids(64);
    uint32_t cnt = 0;
    for (;;) {
      cnt = uint32_t(ids.size());
      if (bpf_prog_query(cgfd.get(), static_cast<bpf_attach_type>(t), 0, nullptr, ids.data(), &cnt) == 0) break;
      if (errno == ENOSPC && cnt > ids.size()) {
        ids.resize(cnt);  // grows once to the size the kernel reported
        continue;
      }
      cnt = 0;  // not a cgroup attach type (EINVAL) or nothing there
      break;
    }
    for (uint32_t i = 0; i < cnt; i++) {
      int fd = bpf_prog_get_fd_by_id(ids[i]);
      if (fd < 0) continue;  // detached meanwhile
      Fd prog(fd);
      bpf_prog_info pi = ProgInfo(env, prog.get());
      Napi::Object row = Napi::Object::New(env);
      row.Set("id", pi.id);
      row.Set("attachType", tname);
      row.Set("name", ProgName(prog.get(), pi));
      out.Set(n++, row);
    }
  }
  return out;
}

Napi::Value ProgMapIds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Fd prog = ById(env, true, U32(info, 0, "id"));
  bpf_prog_info pi = ProgInfo(env, prog.get());
  std::vector<uint32_t> ids(pi.nr_map_ids);
  Napi::Array out = Napi::Array::New(env);
  if (ids.empty()) return out;
  bpf_prog_info again{};
  again.nr_map_ids = uint32_t(ids.size());
  again.map_ids = reinterpret_cast<uintptr_t>(ids.data());
  uint32_t len = sizeof(again);
  if (bpf_obj_get_info_by_fd(prog.get(), &again, &len)) throw Errno(env, errno, "BPF_OBJ_GET_INFO_BY_FD (map ids)");
  for (uint32_t i = 0; i < again.nr_map_ids && i < ids.size(); i++) out.Set(i, ids[i]);
  return out;
}

Napi::Value MapName(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Fd map = ById(env, false, U32(info, 0, "id"));
  return Napi::String::New(env, MapInfo(env, map.get()).name);
}

// pinById('prog' | 'map', id, path)
Napi::Value PinById(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string kind = Str(info, 0, "kind"), path = Str(info, 2, "path");
  uint32_t id = U32(info, 1, "id");
  Fd obj = ById(env, kind == "prog", id);
  if (bpf_obj_pin(obj.get(), path.c_str())) throw Errno(env, errno, "pin " + path);
  return env.Undefined();
}

// Pinned map fds opened once per call and closed when it returns.
class MapFds {
 public:
  explicit MapFds(Napi::Env env) : env_(env) {}
  ~MapFds() {
    for (auto& e : maps_) close(e.second.fd);
  }
  struct Map {
    int fd;
    uint32_t key_size, value_size;
  };
  const Map& Get(const std::string& path) {
    auto it = maps_.find(path);
    if (it != maps_.end()) return it->second;
    int fd = bpf_obj_get(path.c_str());
    if (fd < 0) throw Errno(env_, errno, "bpf_obj_get " + path);
    Fd owned(fd);
    bpf_map_info mi = MapInfo(env_, fd);
    const Map& m = maps_[path] = Map{fd, mi.key_size, mi.value_size};
    (void)owned.Take();  // kept open until the call returns
    return m;
  }

 private:
  Napi::Env env_;
  std::map<std::string, Map> maps_;
};

// mapOps([{ op: 'update' | 'delete', map, key, value? }]) in order; throws at the
// first failure (later operations are not applied).
Napi::Value MapOps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "mapOps(ops[])");
  Napi::Array ops = info[0].As<Napi::Array>();
  MapFds fds(env);
  for (uint32_t i = 0; i < ops.Length(); i++) {
    Napi::Object o = ops.Get(i).As<Napi::Object>();
    std::string op = o.Get("op").As<Napi::String>().Utf8Value();
    std::string path = o.Get("map").As<Napi::String>().Utf8Value();
    Napi::Value kv = o.Get("key");
    if (!kv.IsBuffer()) throw Napi::TypeError::New(env, "op " + std::to_string(i) + ": key must be a Buffer");
    auto key = kv.As<Napi::Buffer<uint8_t>>();
    const MapFds::Map& m = fds.Get(path);
    int fd = m.fd;
    // The kernel reads exactly key_size/value_size bytes: never past a Buffer.
    if (key.Length() != m.key_size) throw Napi::RangeError::New(env, "op " + std::to_string(i) + ": key is " + std::to_string(key.Length()) + " bytes, " + path + " wants " + std::to_string(m.key_size));
    int r;
    if (op == "update") {
      Napi::Value vv = o.Get("value");
      if (!vv.IsBuffer()) throw Napi::TypeError::New(env, "op " + std::to_string(i) + ": value must be a Buffer");
      auto value = vv.As<Napi::Buffer<uint8_t>>();
      if (value.Length() != m.value_size) throw Napi::RangeError::New(env, "op " + std::to_string(i) + ": value is " + std::to_string(value.Length()) + " bytes, " + path + " wants " + std::to_string(m.value_size));
      r = bpf_map_update_elem(fd, key.Data(), value.Data(), BPF_ANY);
    } else if (op == "delete") {
      r = bpf_map_delete_elem(fd, key.Data());
    } else {
      throw Napi::TypeError::New(env, "op " + std::to_string(i) + ": unknown op " + op);
    }
    if (r) throw Errno(env, errno, "op " + std::to_string(i) + " " + op + " " + path);
  }
  return Napi::Number::New(env, ops.Length());
}

Napi::Value DumpImpl(const Napi::CallbackInfo& info, bool percpu) {
  Napi::Env env = info.Env();
  std::string path = Str(info, 0, "map");
  Fd map = OpenPin(env, path);
  bpf_map_info mi = MapInfo(env, map.get());
  size_t vsize = mi.value_size;
  int ncpu = 1;
  if (percpu) {
    ncpu = libbpf_num_possible_cpus();
    if (ncpu <= 0) throw Errno(env, -ncpu, "possible CPUs");
    vsize = ((mi.value_size + 7) / 8) * 8 * size_t(ncpu);
  }
  std::vector<uint8_t> key(mi.key_size), next(mi.key_size), value(vsize);
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  void* prev = nullptr;
  // Bounded by the map's entries; a concurrent delete restarts nothing (the kernel
  // returns the first key when `prev` is gone), the cap guards that case.
  for (uint64_t guard = 0; guard <= uint64_t(mi.max_entries) * 2; guard++) {
    if (bpf_map_get_next_key(map.get(), prev, next.data())) {
      if (errno == ENOENT) break;
      throw Errno(env, errno, "get_next_key " + path);
    }
    key.swap(next);
    prev = key.data();
    if (bpf_map_lookup_elem(map.get(), key.data(), value.data())) {
      if (errno == ENOENT) continue;  // deleted between the two calls
      throw Errno(env, errno, "lookup " + path);
    }
    Napi::Object row = Napi::Object::New(env);
    row.Set("key", Napi::Buffer<uint8_t>::Copy(env, key.data(), key.size()));
    if (percpu) {
      size_t stride = ((mi.value_size + 7) / 8) * 8;
      Napi::Array values = Napi::Array::New(env, size_t(ncpu));
      for (int c = 0; c < ncpu; c++) values.Set(uint32_t(c), Napi::Buffer<uint8_t>::Copy(env, value.data() + stride * size_t(c), mi.value_size));
      row.Set("values", values);
    } else {
      row.Set("value", Napi::Buffer<uint8_t>::Copy(env, value.data(), mi.value_size));
    }
    out.Set(n++, row);
  }
  return out;
}

Napi::Value Dump(const Napi::CallbackInfo& info) { return DumpImpl(info, false); }
Napi::Value DumpPerCpu(const Napi::CallbackInfo& info) { return DumpImpl(info, true); }

}  // namespace

void RegisterBpfObj(Napi::Env env, Napi::Object exports) {
  Napi::Object bpf = Napi::Object::New(env);
  bpf.Set("loadAll", Napi::Function::New(env, LoadAll, "loadAll"));
  bpf.Set("progId", Napi::Function::New(env, ProgId, "progId"));
  bpf.Set("attach", Napi::Function::New(env, Attach, "attach"));
  bpf.Set("detach", Napi::Function::New(env, Detach, "detach"));
  bpf.Set("attachments", Napi::Function::New(env, Attachments, "attachments"));
  bpf.Set("progMapIds", Napi::Function::New(env, ProgMapIds, "progMapIds"));
  bpf.Set("mapName", Napi::Function::New(env, MapName, "mapName"));
  bpf.Set("pinById", Napi::Function::New(env, PinById, "pinById"));
  bpf.Set("mapOps", Napi::Function::New(env, MapOps, "mapOps"));
  bpf.Set("dump", Napi::Function::New(env, Dump, "dump"));
  bpf.Set("dumpPerCpu", Napi::Function::New(env, DumpPerCpu, "dumpPerCpu"));
  exports.Set("bpf", bpf);
}

}  // namespace edgeway
