// Pin dir lock, pinning, adoption and unpinning.
#include "pins.h"

#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <sstream>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "errors.h"

extern "C" {
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/magic.h>
#include "iofilter.h"
}

namespace iof {

const char *const MAP_PINS[] = {"index", "entries", "ranges", "nodes",  "counters", "fstats",
                                "meta",  "state",   "seen",   "events", nullptr};

// ---- the lock -----------------------------------------------------------------

static void ensure_dir(const std::string &dir) {
  struct statfs st;
  if (dir.rfind("/sys/fs/bpf", 0) == 0 && statfs("/sys/fs/bpf", &st) == 0 && st.f_type != BPF_FS_MAGIC) {
    if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") != 0)
      sysfail(errno, "mounting bpffs at /sys/fs/bpf");
  }
  for (size_t pos = 1; pos != std::string::npos;) {
    pos = dir.find('/', pos + 1);
    std::string part = dir.substr(0, pos);
    if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST)
      sysfail(errno, "creating pin dir " + part);
  }
  if (statfs(dir.c_str(), &st) != 0)
    sysfail(errno, "checking pin dir " + dir);
  if (st.f_type != BPF_FS_MAGIC)
    range_error("pin dir " + dir + " is not on a bpf filesystem (use a path under /sys/fs/bpf)", "EINVAL");
}

// The pid holding a flock on (dev, ino), from /proc/locks; 0 if not visible.
static long lock_holder(dev_t dev, ino_t ino) {
  std::ifstream f("/proc/locks");
  std::string line;
  char want[64];
  snprintf(want, sizeof(want), "%02x:%02x:%lu", major(dev), minor(dev), (unsigned long)ino);
  while (std::getline(f, line)) {
    // 1: FLOCK  ADVISORY  WRITE 1234 00:1f:5678 0 EOF
    std::istringstream in(line);
    std::string n, type, adv, rw, id;
    long pid = 0;
    in >> n >> type >> adv >> rw >> pid >> id;
    if (type == "FLOCK" && id == want)
      return pid;
  }
  return 0;
}

PinDirLock::PinDirLock(const std::string &dir) : dir_(dir) {
  if (dir.empty() || dir[0] != '/')
    range_error("pin dir must be an absolute path, got '" + dir + "'", "EINVAL");
  ensure_dir(dir);
  fd_ = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd_ < 0)
    sysfail(errno, "opening pin dir " + dir);
  if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    struct stat st = {};
    fstat(fd_, &st);
    ::close(fd_);
    fd_ = -1;
    if (err != EWOULDBLOCK)
      sysfail(err, "locking pin dir " + dir);
    long pid = lock_holder(st.st_dev, st.st_ino);
    throw Error("EBUSY", EBUSY,
                "pin dir " + dir + " is in use by " +
                    (pid > 0 ? "pid " + std::to_string(pid) : std::string("another process (pid not visible here)")) +
                    ": one iofilter agent per pin dir (stop it, or use another --pin-dir)");
  }
}

PinDirLock::~PinDirLock() { release(); }

void PinDirLock::release() {
  if (fd_ < 0)
    return;
  rmdir(dir_.c_str()); // only succeeds when empty: pins in force stay
  ::close(fd_);
  fd_ = -1;
}

// ---- maps ---------------------------------------------------------------------

void MapView::close() {
  if (mem)
    munmap(mem, len);
  mem = nullptr;
  if (fd >= 0)
    ::close(fd);
  fd = -1;
}

static void open_map(MapView &m, int fd, const std::string &name, bool mmapable) {
  m.fd = fd;
  bpf_map_info mi = {};
  uint32_t len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(fd, &mi, &len))
    sysfail(errno, "reading info of map " + name);
  m.id = mi.id;
  m.value_size = mi.value_size;
  m.max_entries = mi.max_entries;
  if (!mmapable)
    return;
  if (!(mi.map_flags & BPF_F_MMAPABLE))
    throw Error("EINVAL", EINVAL, "map " + name + " is not mmapable: pins from an incompatible iofilter version");
  long page = sysconf(_SC_PAGESIZE);
  m.len = ((size_t(m.value_size + 7) & ~size_t(7)) * m.max_entries + page - 1) / page * page;
  m.mem = mmap(nullptr, m.len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m.mem == MAP_FAILED) {
    m.mem = nullptr;
    sysfail(errno, "mapping map " + name);
  }
}

Pinned::~Pinned() { close(); }

void Pinned::close() {
  for (MapView *m : {&index, &entries, &ranges, &nodes, &counters, &fstats, &meta, &state, &seen, &events})
    m->close();
  if (link_fd >= 0)
    ::close(link_fd);
  if (prog_fd >= 0)
    ::close(prog_fd);
  link_fd = prog_fd = -1;
  live.reset();
}

static MapView *view(Pinned &p, const char *name) {
  static const char *const order[] = {"index",  "entries", "ranges", "nodes", "counters",
                                      "fstats", "meta",    "state",  "seen",  "events"};
  MapView *views[] = {&p.index,  &p.entries, &p.ranges, &p.nodes, &p.counters,
                      &p.fstats, &p.meta,    &p.state,  &p.seen,  &p.events};
  for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
    if (!strcmp(order[i], name))
      return views[i];
  return nullptr;
}

// Value sizes this build expects: pins of another layout are refused, not misread.
static uint32_t expected_value_size(const char *name) {
  if (!strcmp(name, "index"))
    return sizeof(__u64);
  if (!strcmp(name, "entries"))
    return sizeof(iof_entry);
  if (!strcmp(name, "ranges"))
    return sizeof(iof_range);
  if (!strcmp(name, "nodes"))
    return sizeof(iof_node);
  if (!strcmp(name, "counters"))
    return sizeof(iof_counter);
  if (!strcmp(name, "fstats"))
    return sizeof(iof_fstats);
  if (!strcmp(name, "meta"))
    return sizeof(iof_meta);
  if (!strcmp(name, "state"))
    return sizeof(iof_state);
  if (!strcmp(name, "seen"))
    return sizeof(iof_seen);
  return 0;
}

static void open_maps(Pinned &p, const std::function<int(const char *)> &fd_of) {
  for (const char *const *n = MAP_PINS; *n; n++) {
    int fd = fd_of(*n);
    bool mm = strcmp(*n, "seen") && strcmp(*n, "events");
    open_map(*view(p, *n), fd, *n, mm);
    uint32_t want = expected_value_size(*n);
    if (want && view(p, *n)->value_size != want)
      throw Error("EINVAL", EINVAL,
                  "pins in " + p.pin_dir + " come from an incompatible iofilter version (" + *n + " value size " +
                      std::to_string(view(p, *n)->value_size) + ", expected " + std::to_string(want) +
                      "): detach with that version first");
  }
  // index value size; entries: buckets - 1 is the mask the program was loaded with
  p.sizes.max_disks = (p.entries.max_entries - 2) / 2;
  p.sizes.max_ranges = (p.ranges.max_entries - 16) / 2;
  p.sizes.max_filters = (p.fstats.max_entries - 4) / 2;
}

static void link_info(Pinned &p) {
  bpf_link_info li = {};
  uint32_t len = sizeof(li);
  if (bpf_obj_get_info_by_fd(p.link_fd, &li, &len))
    sysfail(errno, "reading info of the link in " + p.pin_dir);
  p.link_id = li.id;
  p.prog_id = li.prog_id;
  p.prog_fd = bpf_prog_get_fd_by_id(p.prog_id);
}

static std::string link_pin_name(const std::string &dir) {
  DIR *d = opendir(dir.c_str());
  if (!d)
    return "";
  std::string found;
  while (dirent *e = readdir(d))
    if (strncmp(e->d_name, "link_", 5) == 0)
      found = e->d_name;
  closedir(d);
  return found;
}

bool has_pins(const std::string &dir) {
  if (!link_pin_name(dir).empty())
    return true;
  for (const char *const *n = MAP_PINS; *n; n++)
    if (access((dir + "/" + *n).c_str(), F_OK) == 0)
      return true;
  return false;
}

static void set_mode(Pinned &p) {
  for (const Hook &h : hooks())
    if (p.prog == h.prog) {
      p.mode = h.mode;
      p.hook = h.section;
    }
  if (p.mode.empty())
    throw Error("EINVAL", EINVAL, "pin " + p.pin_dir + "/link_" + p.prog + " is not an iofilter program");
}

std::unique_ptr<Pinned> adopt_pins(PinDirLock &lock) {
  const std::string &dir = lock.dir();
  if (!has_pins(dir))
    return nullptr;
  auto p = std::make_unique<Pinned>();
  p->pin_dir = dir;
  p->adopted = true;
  std::string link = link_pin_name(dir);
  if (link.empty())
    throw Error("ENOENT", ENOENT, "incomplete pins in " + dir + ": no link_* pin (detach, or remove the directory)");
  auto get = [&](const std::string &name) {
    int fd = bpf_obj_get((dir + "/" + name).c_str());
    if (fd < 0)
      throw Error(errname(errno), errno,
                  "incomplete pins in " + dir + ": " + name + ": " + strerr(errno) +
                      " (detach, or remove the directory, to start clean)");
    return fd;
  };
  p->prog = link.substr(5);
  set_mode(*p);
  open_maps(*p, [&](const char *n) { return get(n); });
  p->link_fd = get(link);
  link_info(*p);
  return p;
}

std::unique_ptr<Pinned> pin(std::unique_ptr<Loaded> l, PinDirLock &lock, const Sizes &s) {
  const std::string &dir = lock.dir();
  auto p = std::make_unique<Pinned>();
  p->pin_dir = dir;
  p->prog = l->hook->prog;
  p->sizes = s;
  set_mode(*p);
  bpf_object *obj = l->obj;
  std::string link_name = "link_" + p->prog;
  libbpf_clear();
  if (bpf_link__pin(l->link, (dir + "/" + link_name).c_str()) != 0) {
    int err = errno;
    // a kprobe attached through perf_event_open without a BPF perf link (< 5.15)
    // has no pinnable fd: keep it alive here instead; it ends with this process
    if (strcmp(p->mode.c_str(), "kprobe") != 0)
      fail(err, "pinning " + dir + "/" + link_name);
    p->pinned = false;
    open_maps(*p, [&](const char *n) {
      return dup(bpf_map__fd(bpf_object__find_map_by_name(obj, (std::string("iof_") + n).c_str())));
    });
    p->prog_fd = dup(bpf_program__fd(bpf_object__find_program_by_name(obj, p->prog.c_str())));
    bpf_prog_info pi = {};
    uint32_t len = sizeof(pi);
    if (!bpf_obj_get_info_by_fd(p->prog_fd, &pi, &len))
      p->prog_id = pi.id;
    p->live = std::move(l);
    return p;
  }
  for (const char *const *n = MAP_PINS; *n; n++) {
    std::string path = dir + "/" + *n;
    if (bpf_map__pin(bpf_object__find_map_by_name(obj, (std::string("iof_") + *n).c_str()), path.c_str()) != 0) {
      int err = errno;
      unlink((dir + "/" + link_name).c_str());
      for (const char *const *m = MAP_PINS; m != n; m++)
        unlink((dir + "/" + *m).c_str());
      fail(err, "pinning " + path);
    }
  }
  // the pins now hold the program attached; our handles go with `l`
  auto adopted = adopt_pins(lock);
  adopted->adopted = false;
  return adopted;
}

// Unlinks `path` only if it pins the object with `id`: never someone else's pin.
static void unpin_if_ours(const std::string &path, uint32_t id, bool is_link) {
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0)
    return;
  uint32_t got = 0;
  if (is_link) {
    bpf_link_info li = {};
    uint32_t len = sizeof(li);
    if (!bpf_obj_get_info_by_fd(fd, &li, &len))
      got = li.id;
  } else {
    bpf_map_info mi = {};
    uint32_t len = sizeof(mi);
    if (!bpf_obj_get_info_by_fd(fd, &mi, &len))
      got = mi.id;
  }
  ::close(fd);
  if (got && got == id)
    unlink(path.c_str());
}

void unpin(Pinned &p) {
  if (p.pinned) {
    unpin_if_ours(p.pin_dir + "/link_" + p.prog, p.link_id, true);
    for (const char *const *n = MAP_PINS; *n; n++)
      unpin_if_ours(p.pin_dir + "/" + *n, view(p, *n)->id, false);
  }
  p.close();
}

} // namespace iof
