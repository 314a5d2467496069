// libbpf side: probe what this kernel can do, attach + pin (open -> set rodata ->
// load -> attach), adopt existing pins, detach. No N-API here; see addon.cc.
#include "kernel.h"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <map>
#include <sstream>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <zlib.h>

extern "C" {
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/magic.h>
#include "empty.skel.h"
#include "iofilter.skel.h"
}

namespace iof {

const std::vector<Hook> &hooks() {
  static const std::vector<Hook> h = {
      {"fmod_ret", "iofilter_fmod_ret", "fmod_ret/should_fail_bio"},
      {"kprobe", "iofilter_kprobe", "kprobe/should_fail_bio"},
      {"observe", "iofilter_observe_fentry", "fentry/should_fail_bio"},
      {"observe", "iofilter_observe_tp", "tp_btf/block_bio_queue"},
  };
  return h;
}

// ---- libbpf messages ------------------------------------------------------
// libbpf's print hook is process-wide; keep its last warning per thread so a
// failure can say what libbpf saw, and stay quiet otherwise (IOFILTER_DEBUG=1 prints).
static thread_local std::string t_libbpf_last;

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args) {
  char buf[1024];
  va_list copy;
  va_copy(copy, args);
  vsnprintf(buf, sizeof(buf), fmt, copy);
  va_end(copy);
  if (level != LIBBPF_DEBUG) {
    std::string line(buf);
    while (!line.empty() && (line.back() == '\n' || line.back() == ' '))
      line.pop_back();
    if (!line.empty())
      t_libbpf_last = line;
  }
  if (getenv("IOFILTER_DEBUG"))
    fputs(buf, stderr);
  return 0;
}

static struct Init {
  Init() { libbpf_set_print(libbpf_print); }
} init_once;

static std::string errname(int err) {
  static const std::map<int, const char *> names = {
      {EPERM, "EPERM"},   {ENOENT, "ENOENT"}, {EINVAL, "EINVAL"},   {ENOSPC, "ENOSPC"},
      {E2BIG, "E2BIG"},   {ENOMEM, "ENOMEM"}, {EACCES, "EACCES"},   {EEXIST, "EEXIST"},
      {EBUSY, "EBUSY"},   {ENOTSUP, "ENOTSUP"}, {ESRCH, "ESRCH"},   {EBADF, "EBADF"},
      {ENODEV, "ENODEV"}, {ENOTDIR, "ENOTDIR"}, {EFAULT, "EFAULT"}, {ENOSYS, "ENOSYS"},
      {524, "ENOTSUPP"},
  };
  auto it = names.find(err);
  return it == names.end() ? "E" + std::to_string(err) : it->second;
}

static std::string strerr(int err) {
  if (err == 524)
    return "operation not supported by the kernel (ENOTSUPP)";
  return strerror(err);
}

[[noreturn]] static void fail(int err, const std::string &what) {
  std::string msg = what + ": " + strerr(err);
  if (!t_libbpf_last.empty())
    msg += " (libbpf: " + t_libbpf_last + ")";
  throw Error(errname(err), err, msg);
}

// ---- facts about this kernel ---------------------------------------------

static std::string read_file(const std::string &path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

static std::string release() {
  struct utsname u;
  uname(&u);
  return u.release;
}

// CONFIG_* of the running kernel, from /proc/config.gz or /boot/config-<release>.
static std::map<std::string, std::string> kconfig() {
  std::map<std::string, std::string> out;
  std::string text;
  if (gzFile gz = gzopen("/proc/config.gz", "rb")) {
    char buf[65536];
    int n;
    while ((n = gzread(gz, buf, sizeof(buf))) > 0)
      text.append(buf, n);
    gzclose(gz);
  }
  if (text.empty())
    text = read_file("/boot/config-" + release());
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("CONFIG_", 0) == 0) {
      auto eq = line.find('=');
      if (eq != std::string::npos)
        out[line.substr(0, eq)] = line.substr(eq + 1);
    } else if (line.rfind("# CONFIG_", 0) == 0) {
      auto sp = line.find(' ', 2);
      out[line.substr(2, sp - 2)] = "n";
    }
  }
  return out;
}

static std::string lockdown(const std::map<std::string, std::string> &cfg) {
  std::string s = read_file("/sys/kernel/security/lockdown");
  auto a = s.find('['), b = s.find(']');
  if (a != std::string::npos && b != std::string::npos)
    return s.substr(a + 1, b - a - 1);
  // securityfs not mounted: the build-time policy still tells
  if (cfg.count("CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY") && cfg.at("CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY") == "y")
    return "confidentiality";
  if (cfg.count("CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY") && cfg.at("CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY") == "y")
    return "integrity";
  if (cfg.count("CONFIG_SECURITY_LOCKDOWN_LSM") && cfg.at("CONFIG_SECURITY_LOCKDOWN_LSM") != "y")
    return "none";
  return "unknown";
}

static bool has_symbol(const char *name) {
  std::ifstream f("/proc/kallsyms");
  std::string line;
  std::string want = std::string(" ") + name;
  while (std::getline(f, line)) {
    auto sp = line.rfind(' ');
    if (sp != std::string::npos && line.compare(sp, std::string::npos, want) == 0)
      return true;
  }
  return false;
}

static int bio_remapped_bit() {
  struct btf *vmlinux = btf__load_vmlinux_btf();
  if (!vmlinux)
    return -1;
  int bit = -1;
  for (unsigned id = 1; id < btf__type_cnt(vmlinux) && bit < 0; id++) {
    const struct btf_type *t = btf__type_by_id(vmlinux, id);
    if (!btf_is_enum(t))
      continue;
    const struct btf_enum *e = btf_enum(t);
    for (unsigned i = 0; i < btf_vlen(t); i++, e++) {
      if (strcmp(btf__name_by_offset(vmlinux, e->name_off), "BIO_REMAPPED") == 0) {
        bit = e->val;
        break;
      }
    }
  }
  btf__free(vmlinux);
  return bit;
}

// ---- loading one program ---------------------------------------------------

struct Loaded {
  iofilter_bpf *skel = nullptr;
  bpf_link *link = nullptr;
  const Hook *hook = nullptr;
  ~Loaded() {
    bpf_link__destroy(link);
    iofilter_bpf__destroy(skel);
  }
};

static void load_and_attach(Loaded &l, const Hook &h, uint32_t max_disks) {
  t_libbpf_last.clear();
  l.hook = &h;
  l.skel = iofilter_bpf__open();
  if (!l.skel)
    fail(errno, "opening the BPF object");
  l.skel->rodata->bio_remapped_bit = bio_remapped_bit();
  bpf_map__set_max_entries(l.skel->maps.iof_disks, max_disks);
  bpf_map__set_max_entries(l.skel->maps.iof_counters, max_disks * IOF_SLOTS_PER_DISK);
  bpf_program *prog, *chosen = nullptr;
  bpf_object__for_each_program(prog, l.skel->obj) {
    bool me = strcmp(bpf_program__name(prog), h.prog) == 0;
    bpf_program__set_autoload(prog, me);
    if (me)
      chosen = prog;
  }
  int err = iofilter_bpf__load(l.skel);
  if (err)
    fail(-err, std::string("loading ") + h.section);
  l.link = bpf_program__attach(chosen);
  if (!l.link)
    fail(errno, std::string("attaching ") + h.section);
}

// A sentence on why `h` is unavailable, from the error and what the kernel tells.
static std::string why_not(const Hook &h, const Error &e, const std::map<std::string, std::string> &cfg,
                           const std::string &ld) {
  auto off = [&](const char *opt) {
    auto it = cfg.find(opt);
    return it != cfg.end() && it->second == "n";
  };
  auto missing = [&](const char *opt) {
    auto it = cfg.find(opt);
    return !cfg.empty() && (it == cfg.end() || it->second == "n");
  };
  bool on_should_fail_bio = strstr(h.section, "should_fail_bio") != nullptr;
  if (on_should_fail_bio && !has_symbol("should_fail_bio"))
    return "should_fail_bio is not in this kernel (compiled out or inlined)";
  if (!strcmp(h.mode, "fmod_ret") && missing("CONFIG_FUNCTION_ERROR_INJECTION"))
    return "kernel built without CONFIG_FUNCTION_ERROR_INJECTION: should_fail_bio's return value cannot be modified";
  if (!strcmp(h.mode, "kprobe")) {
    if (off("CONFIG_KPROBES") || access("/sys/bus/event_source/devices/kprobe", F_OK) != 0)
      return "kprobes unavailable: kernel built without CONFIG_KPROBES";
    if (missing("CONFIG_BPF_KPROBE_OVERRIDE"))
      return "kernel built without CONFIG_BPF_KPROBE_OVERRIDE (no bpf_override_return)";
    if (missing("CONFIG_FUNCTION_ERROR_INJECTION"))
      return "kernel built without CONFIG_FUNCTION_ERROR_INJECTION: should_fail_bio cannot be overridden";
  }
  if (e.err == EPERM && ld != "none" && ld != "unknown")
    return std::string(h.section) + " refused by kernel lockdown (" + ld + "): " + e.what();
  return e.what();
}

// ---- pins -------------------------------------------------------------------

// bpffs refuses names with a dot (EPERM), hence link_<prog>.
static const char *PIN_DISKS = "disks", *PIN_COUNTERS = "counters", *PIN_STATE = "state";

static void ensure_bpffs(const std::string &pin_dir) {
  struct statfs st;
  if (statfs("/sys/fs/bpf", &st) == 0 && st.f_type != BPF_FS_MAGIC) {
    if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") != 0)
      fail(errno, "mounting bpffs at /sys/fs/bpf");
  }
  // mkdir -p
  for (size_t pos = 1; pos != std::string::npos;) {
    pos = pin_dir.find('/', pos + 1);
    std::string part = pin_dir.substr(0, pos);
    if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST)
      fail(errno, "creating pin dir " + part);
  }
  if (statfs(pin_dir.c_str(), &st) != 0)
    fail(errno, "checking pin dir " + pin_dir);
  if (st.f_type != BPF_FS_MAGIC)
    throw Error("EINVAL", EINVAL, "pin dir " + pin_dir + " is not on a bpf filesystem (use a path under /sys/fs/bpf)",
                Error::Range);
}

static std::string link_pin_name(const std::string &pin_dir) {
  DIR *d = opendir(pin_dir.c_str());
  if (!d)
    return "";
  std::string found;
  while (dirent *e = readdir(d)) {
    if (strncmp(e->d_name, "link_", 5) == 0)
      found = e->d_name;
  }
  closedir(d);
  return found;
}

static void unpin_all(const std::string &pin_dir) {
  for (const char *n : {PIN_DISKS, PIN_COUNTERS, PIN_STATE})
    unlink((pin_dir + "/" + n).c_str());
  for (std::string l; !(l = link_pin_name(pin_dir)).empty();)
    if (unlink((pin_dir + "/" + l).c_str()) != 0)
      break;
  rmdir(pin_dir.c_str());
}

Pinned::~Pinned() { close_fds(); }

void Pinned::close_fds() {
  for (int *fd : {&disks_fd, &counters_fd, &state_fd, &link_fd}) {
    if (*fd >= 0)
      close(*fd);
    *fd = -1;
  }
}

std::unique_ptr<Pinned> adopt(const std::string &pin_dir) {
  std::string link = link_pin_name(pin_dir);
  bool any = !link.empty();
  for (const char *n : {PIN_DISKS, PIN_COUNTERS, PIN_STATE})
    any = any || access((pin_dir + "/" + n).c_str(), F_OK) == 0;
  if (!any)
    return nullptr;

  auto p = std::make_unique<Pinned>();
  p->pin_dir = pin_dir;
  p->adopted = true;
  auto get = [&](const std::string &name) {
    int fd = bpf_obj_get((pin_dir + "/" + name).c_str());
    if (fd < 0)
      throw Error(errname(errno), errno,
                  "incomplete pins in " + pin_dir + ": " + name + ": " + strerr(errno) +
                      " (detach, or remove the directory, to start clean)");
    return fd;
  };
  if (link.empty())
    throw Error("ENOENT", ENOENT, "incomplete pins in " + pin_dir + ": no link_* pin (detach, or remove the directory)");
  p->disks_fd = get(PIN_DISKS);
  p->counters_fd = get(PIN_COUNTERS);
  p->state_fd = get(PIN_STATE);
  p->link_fd = get(link);
  p->prog = link.substr(5);
  for (const Hook &h : hooks())
    if (p->prog == h.prog) {
      p->mode = h.mode;
      p->hook = h.section;
    }
  if (p->mode.empty())
    throw Error("EINVAL", EINVAL, "pin " + pin_dir + "/" + link + " is not an iofilter program");

  auto info = [&](int fd, const std::string &name, auto &out) {
    out = {};
    uint32_t len = sizeof(out);
    if (bpf_obj_get_info_by_fd(fd, &out, &len))
      fail(errno, "reading info of " + pin_dir + "/" + name);
  };
  bpf_map_info mi;
  info(p->disks_fd, PIN_DISKS, mi);
  if (mi.value_size != sizeof(iof_disk) || mi.key_size != sizeof(iof_dev))
    throw Error("EINVAL", EINVAL, "pins in " + pin_dir + " come from an incompatible iofilter version (value size " +
                                      std::to_string(mi.value_size) + ", expected " + std::to_string(sizeof(iof_disk)) +
                                      "): detach with that version first");
  p->disks_id = mi.id;
  p->max_disks = mi.max_entries;
  info(p->counters_fd, PIN_COUNTERS, mi);
  p->counters_id = mi.id;
  p->nr_slots = mi.max_entries;
  info(p->state_fd, PIN_STATE, mi);
  if (mi.value_size != sizeof(iof_state))
    throw Error("EINVAL", EINVAL, "pins in " + pin_dir + " come from an incompatible iofilter version (state size " +
                                      std::to_string(mi.value_size) + "): detach with that version first");
  p->state_id = mi.id;
  bpf_link_info li;
  info(p->link_fd, link, li);
  p->link_id = li.id;
  p->prog_id = li.prog_id;
  return p;
}

static std::vector<const Hook *> candidates(const std::string &mode) {
  std::vector<const Hook *> out;
  for (const Hook &h : hooks()) {
    if (mode == h.mode || (mode == "auto" && (!strcmp(h.mode, "fmod_ret") || !strcmp(h.mode, "kprobe"))))
      out.push_back(&h);
  }
  return out;
}

std::unique_ptr<Pinned> attach(const std::string &mode, const std::string &pin_dir, uint32_t max_disks) {
  auto c = candidates(mode);
  if (c.empty())
    throw Error("EINVAL", EINVAL, "unknown mode '" + mode + "' (auto, fmod_ret, kprobe, observe)", Error::Range);
  if (max_disks == 0 || max_disks > (1u << 20))
    throw Error("EINVAL", EINVAL, "maxDisks must be 1..1048576, got " + std::to_string(max_disks), Error::Range);
  ensure_bpffs(pin_dir);
  if (auto p = adopt(pin_dir))
    return p;

  auto cfg = kconfig();
  std::string ld = lockdown(cfg), reasons;
  for (const Hook *h : c) {
    Loaded l;
    try {
      load_and_attach(l, *h, max_disks);
    } catch (const Error &e) {
      reasons += std::string(reasons.empty() ? "" : "; ") + h->section + ": " + why_not(*h, e, cfg, ld);
      continue;
    }
    std::pair<std::string, int> pins[] = {
        {PIN_DISKS, bpf_map__fd(l.skel->maps.iof_disks)},
        {PIN_COUNTERS, bpf_map__fd(l.skel->maps.iof_counters)},
        {PIN_STATE, bpf_map__fd(l.skel->maps.iof_state)},
        {"link_" + std::string(h->prog), bpf_link__fd(l.link)},
    };
    for (auto &[name, fd] : pins) {
      if (bpf_obj_pin(fd, (pin_dir + "/" + name).c_str()) != 0) {
        int err = errno;
        unpin_all(pin_dir);
        fail(err, "pinning " + pin_dir + "/" + name);
      }
    }
    // the pins now hold the program attached; destroying our handles leaves it be
    auto p = adopt(pin_dir);
    p->adopted = false;
    return p;
  }
  rmdir(pin_dir.c_str());
  std::string msg = mode == "auto" ? "no enforcing mode works on this kernel (" + reasons +
                                         "); `observe` mode counts what would fail without failing it"
                                   : "mode " + mode + " is not available on this kernel: " + reasons;
  throw Error("ENOTSUP", ENOTSUP, msg);
}

void detach(Pinned &p) {
  std::string dir = p.pin_dir;
  p.close_fds();
  unpin_all(dir);
  if (access(dir.c_str(), F_OK) == 0)
    throw Error("ENOTEMPTY", ENOTEMPTY, "detached, but " + dir + " still holds files that iofilter did not create");
}

Caps probe() {
  Caps caps;
  auto cfg = kconfig();
  caps.release = release();
  caps.btf = access("/sys/kernel/btf/vmlinux", R_OK) == 0;
  caps.lockdown = lockdown(cfg);
  std::map<std::string, ModeCap> by_mode;
  for (const Hook &h : hooks()) {
    ModeCap &m = by_mode[h.mode];
    m.mode = h.mode;
    if (m.available)
      continue;
    Loaded l;
    try {
      load_and_attach(l, h, 1);
      m.available = true;
      if (!m.reason.empty())
        m.reason = "used " + std::string(h.section) + " because " + m.reason;
      m.hook = h.section;
    } catch (const Error &e) {
      std::string why = std::string(h.section) + ": " + why_not(h, e, cfg, caps.lockdown);
      m.reason += (m.reason.empty() ? "" : "; ") + why;
      if (m.hook.empty())
        m.hook = h.section;
    }
  }
  for (const char *mode : {"fmod_ret", "kprobe", "observe"})
    caps.modes.push_back(by_mode[mode]);
  return caps;
}

// ---- empty programs (benchmarks) ---------------------------------------------

EmptyProg::~EmptyProg() {
  bpf_link__destroy(static_cast<bpf_link *>(link));
  empty_bpf__destroy(static_cast<empty_bpf *>(skel));
}

std::unique_ptr<EmptyProg> attach_empty(const std::string &hook) {
  static const std::map<std::string, const char *> progs = {
      {"fmod_ret/should_fail_bio", "empty_fmod_ret"},
      {"kprobe/should_fail_bio", "empty_kprobe"},
      {"fentry/should_fail_bio", "empty_observe_fentry"},
      {"tp_btf/block_bio_queue", "empty_observe_tp"},
  };
  auto it = progs.find(hook);
  if (it == progs.end())
    throw Error("EINVAL", EINVAL, "unknown hook '" + hook + "'", Error::Range);
  t_libbpf_last.clear();
  auto e = std::make_unique<EmptyProg>();
  auto *skel = empty_bpf__open();
  if (!skel)
    fail(errno, "opening the empty BPF object");
  e->skel = skel;
  bpf_program *prog, *chosen = nullptr;
  bpf_object__for_each_program(prog, skel->obj) {
    bool me = strcmp(bpf_program__name(prog), it->second) == 0;
    bpf_program__set_autoload(prog, me);
    if (me)
      chosen = prog;
  }
  if (int err = empty_bpf__load(skel))
    fail(-err, "loading empty " + hook);
  e->link = bpf_program__attach(chosen);
  if (!e->link)
    fail(errno, "attaching empty " + hook);
  bpf_prog_info pi = {};
  uint32_t len = sizeof(pi);
  if (!bpf_obj_get_info_by_fd(bpf_program__fd(chosen), &pi, &len))
    e->prog_id = pi.id;
  return e;
}

} // namespace iof
