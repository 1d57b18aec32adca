#include "bpfobj.h"

#include "napi-util.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <string.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <memory>
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

Napi::Error Errno(Napi::Env env, int err, const std::string& what) { return ErrnoError(env, err, what); }

// Work that runs on a libuv worker thread (no JS there): it returns 0 or an errno
// and says what failed; the promise resolves with `done(env)` or rejects with the
// errno text.
class Task : public Napi::AsyncWorker {
 public:
  using Work = std::function<int(std::string* what)>;
  using Done = std::function<Napi::Value(Napi::Env)>;
  static Napi::Promise Run(Napi::Env env, Work work, Done done) {
    auto* t = new Task(env, std::move(work), std::move(done));  // deleted by node-addon-api after OnOK/OnError
    Napi::Promise p = t->deferred_.Promise();
    t->Queue();
    return p;
  }

 private:
  Task(Napi::Env env, Work work, Done done)
      : Napi::AsyncWorker(env, "edgeway-bpf"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), done_(std::move(done)) {}
  void Execute() override {
    err_ = work_(&what_);
    if (err_) SetError(what_);
  }
  void OnOK() override { deferred_.Resolve(done_(Env())); }
  void OnError(const Napi::Error&) override { deferred_.Reject(Errno(Env(), err_ == 0 ? EINVAL : err_, what_).Value()); }

  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  int err_ = 0;
  std::string what_;
};

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

// Loads and pins on a worker thread (the verifier takes tens of ms).
int LoadAllWork(const std::string& object, const std::string& prog_dir, const std::string& map_dir,
                const std::map<std::string, std::string>& reuse, std::string* what) {
  libbpf_set_print(nullptr);
  bpf_object* obj = bpf_object__open_file(object.c_str(), nullptr);
  if (!obj) {
    *what = "open " + object;
    return errno;
  }
  auto fail = [&](int err, const std::string& w) {
    bpf_object__close(obj);
    *what = w;
    return err < 0 ? -err : err;
  };
  bpf_map* m;
  bpf_object__for_each_map(m, obj) {
    auto it = reuse.find(bpf_map__name(m));
    if (it == reuse.end()) continue;
    int fd = bpf_obj_get(it->second.c_str());
    if (fd < 0) return fail(errno, "bpf_obj_get " + it->second);
    int err = bpf_map__reuse_fd(m, fd);  // dups fd
    close(fd);
    if (err) return fail(err, std::string("reuse map ") + bpf_map__name(m));
  }
  int err = bpf_object__load(obj);
  if (err) return fail(err, "load " + object);
  err = bpf_object__pin_maps(obj, map_dir.c_str());
  if (err) return fail(err, "pin maps under " + map_dir);
  err = bpf_object__pin_programs(obj, prog_dir.c_str());
  if (err) {
    bpf_object__unpin_maps(obj, map_dir.c_str());
    return fail(err, "pin programs under " + prog_dir);
  }
  bpf_object__close(obj);  // the pins hold programs and maps
  return 0;
}

// loadAll(object, progDir, mapDir, reuse: { [mapName]: pinPath }) → Promise<void>
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
  return Task::Run(
      env, [=](std::string* what) { return LoadAllWork(object, prog_dir, map_dir, reuse, what); },
      [](Napi::Env e) { return e.Undefined(); });
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

// Pinned map fds opened once per call and closed when it returns (worker thread).
class MapFds {
 public:
  ~MapFds() {
    for (auto& e : maps_) close(e.second.fd);
  }
  struct Map {
    int fd;
    uint32_t key_size, value_size;
  };
  // nullptr with *err/*what set on failure.
  const Map* Get(const std::string& path, int* err, std::string* what) {
    auto it = maps_.find(path);
    if (it != maps_.end()) return &it->second;
    int fd = bpf_obj_get(path.c_str());
    if (fd < 0) {
      *err = errno;
      *what = "bpf_obj_get " + path;
      return nullptr;
    }
    bpf_map_info mi{};
    uint32_t len = sizeof(mi);
    if (bpf_obj_get_info_by_fd(fd, &mi, &len)) {
      *err = errno;
      *what = "BPF_OBJ_GET_INFO_BY_FD " + path;
      close(fd);
      return nullptr;
    }
    return &(maps_[path] = Map{fd, mi.key_size, mi.value_size});
  }

 private:
  std::map<std::string, Map> maps_;
};

struct MapOp {
  bool update;
  std::string path;
  std::vector<uint8_t> key, value;
};

int MapOpsWork(const std::vector<MapOp>& ops, std::string* what) {
  MapFds fds;
  for (size_t i = 0; i < ops.size(); i++) {
    const MapOp& o = ops[i];
    int err = 0;
    const MapFds::Map* m = fds.Get(o.path, &err, what);
    if (!m) return err;
    std::string where = "op " + std::to_string(i) + (o.update ? " update " : " delete ") + o.path;
    // The kernel reads exactly key_size/value_size bytes: never past a buffer.
    if (o.key.size() != m->key_size || (o.update && o.value.size() != m->value_size)) {
      *what = where + ": key/value of " + std::to_string(o.key.size()) + "/" + std::to_string(o.value.size()) + " bytes, the map wants " +
              std::to_string(m->key_size) + "/" + std::to_string(m->value_size);
      return EINVAL;
    }
    int r = o.update ? bpf_map_update_elem(m->fd, o.key.data(), o.value.data(), BPF_ANY) : bpf_map_delete_elem(m->fd, o.key.data());
    if (r) {
      *what = where;
      return errno;
    }
  }
  return 0;
}

// mapOps([{ op: 'update' | 'delete', map, key, value? }]) → Promise<number>, in
// order on a worker thread; rejects at the first failure (later operations are
// not applied). Keys and values are copied first, so callers may reuse buffers.
Napi::Value MapOps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "mapOps(ops[])");
  Napi::Array arr = info[0].As<Napi::Array>();
  auto ops = std::make_shared<std::vector<MapOp>>();
  ops->reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Object o = arr.Get(i).As<Napi::Object>();
    std::string op = o.Get("op").As<Napi::String>().Utf8Value();
    if (op != "update" && op != "delete") throw Napi::TypeError::New(env, "op " + std::to_string(i) + ": unknown op " + op);
    Napi::Value kv = o.Get("key");
    Napi::Value vv = o.Get("value");
    if (!kv.IsBuffer() || (op == "update" && !vv.IsBuffer()))
      throw Napi::TypeError::New(env, "op " + std::to_string(i) + ": key (and value of an update) must be Buffers");
    auto key = kv.As<Napi::Buffer<uint8_t>>();
    MapOp m{op == "update", o.Get("map").As<Napi::String>().Utf8Value(), std::vector<uint8_t>(key.Data(), key.Data() + key.Length()), {}};
    if (m.update) {
      auto value = vv.As<Napi::Buffer<uint8_t>>();
      m.value.assign(value.Data(), value.Data() + value.Length());
    }
    ops->push_back(std::move(m));
  }
  uint32_t n = arr.Length();
  return Task::Run(
      env, [ops](std::string* what) { return MapOpsWork(*ops, what); }, [n](Napi::Env e) { return Napi::Number::New(e, n); });
}

struct DumpResult {
  uint32_t value_size = 0;
  int ncpu = 1;
  size_t stride = 0;
  std::vector<std::pair<std::vector<uint8_t>, std::vector<uint8_t>>> rows;
};

int DumpWork(const std::string& path, bool percpu, DumpResult* out, std::string* what) {
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) {
    *what = "bpf_obj_get " + path;
    return errno;
  }
  Fd map(fd);
  bpf_map_info mi{};
  uint32_t len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(fd, &mi, &len)) {
    *what = "BPF_OBJ_GET_INFO_BY_FD " + path;
    return errno;
  }
  out->value_size = mi.value_size;
  out->stride = mi.value_size;
  if (percpu) {
    out->ncpu = libbpf_num_possible_cpus();
    if (out->ncpu <= 0) {
      *what = "possible CPUs";
      return -out->ncpu;
    }
    out->stride = ((mi.value_size + 7) / 8) * 8;  // per-CPU values are 8-byte aligned
  }
  std::vector<uint8_t> key(mi.key_size), next(mi.key_size), value(out->stride * size_t(out->ncpu));
  void* prev = nullptr;
  // Bounded: a key deleted under us makes the kernel restart from the first key,
  // so cap the walk at twice the map's capacity.
  for (uint64_t guard = 0; guard <= uint64_t(mi.max_entries) * 2; guard++) {
    if (bpf_map_get_next_key(fd, prev, next.data())) {
      if (errno == ENOENT) break;
      *what = "get_next_key " + path;
      return errno;
    }
    key.swap(next);
    prev = key.data();
    if (bpf_map_lookup_elem(fd, key.data(), value.data())) {
      if (errno == ENOENT) continue;  // deleted between the two calls
      *what = "lookup " + path;
      return errno;
    }
    out->rows.emplace_back(key, value);
  }
  return 0;
}

// dump(map) → Promise<{ key, value }[]>; dumpPerCpu(map) → Promise<{ key, values[] }[]>.
Napi::Value DumpImpl(const Napi::CallbackInfo& info, bool percpu) {
  std::string path = Str(info, 0, "map");
  auto res = std::make_shared<DumpResult>();
  return Task::Run(
      info.Env(), [=](std::string* what) { return DumpWork(path, percpu, res.get(), what); },
      [res, percpu](Napi::Env env) -> Napi::Value {
        Napi::Array out = Napi::Array::New(env, res->rows.size());
        uint32_t n = 0;
        for (const auto& [key, value] : res->rows) {
          Napi::Object row = Napi::Object::New(env);
          row.Set("key", Napi::Buffer<uint8_t>::Copy(env, key.data(), key.size()));
          if (percpu) {
            Napi::Array values = Napi::Array::New(env, size_t(res->ncpu));
            for (int c = 0; c < res->ncpu; c++)
              values.Set(uint32_t(c), Napi::Buffer<uint8_t>::Copy(env, value.data() + res->stride * size_t(c), res->value_size));
            row.Set("values", values);
          } else {
            row.Set("value", Napi::Buffer<uint8_t>::Copy(env, value.data(), res->value_size));
          }
          out.Set(n++, row);
        }
        return out;
      });
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
