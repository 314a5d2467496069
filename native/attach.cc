// Mode choice and attach, with the self-test as the last step of each attempt.
#include "attach.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <unistd.h>
#include <vector>

#include "errors.h"

namespace iof {

// Compiler clones of should_fail_bio in /proc/kallsyms ("should_fail_bio.constprop.0"):
// what a kernel has when it has no should_fail_bio of its own to attach to.
static std::vector<std::string> should_fail_bio_clones() {
  std::ifstream f("/proc/kallsyms");
  std::vector<std::string> out;
  std::string addr, type, name;
  const std::string prefix = "should_fail_bio.";
  while (f >> addr >> type >> name) {
    if (name.compare(0, prefix.size(), prefix) == 0 && std::find(out.begin(), out.end(), name) == out.end())
      out.push_back(name);
    f.ignore(std::numeric_limits<std::streamsize>::max(), '\n'); // a module's "[mod]" column
  }
  return out;
}

// What the kernel has instead of a should_fail_bio BPF can attach to.
static std::string no_should_fail_bio() {
  std::vector<std::string> clones = should_fail_bio_clones();
  if (clones.empty())
    return "should_fail_bio is not in this kernel's symbols (compiled out or inlined into its callers)";
  std::string names;
  for (const std::string &c : clones)
    names += (names.empty() ? "" : ", ") + c;
  return "this kernel has no should_fail_bio to attach to, only the compiler clone" +
         std::string(clones.size() > 1 ? "s " : " ") + names +
         " (no BTF, not on the error-injection list): its callers use the clone, which BPF cannot hook by name";
}

// A sentence on why hook `h` is unavailable, from the error and what the kernel tells.
// What the kernel was built without comes first (it rules the mode out whatever the
// function), then what it has instead of should_fail_bio (Debian's 6.1: no error
// injection, and only a compiler clone; trixie's 6.12: neither).
static std::string why_not(const Hook &h, const Error &e, const KernelFacts &k) {
  bool on_should_fail_bio = strstr(h.section, "should_fail_bio") != nullptr;
  std::string absent = on_should_fail_bio && !has_symbol("should_fail_bio") ? no_should_fail_bio() : "";
  std::string built;
  if (!strcmp(h.mode, "fmod_ret") && k.config_missing("CONFIG_FUNCTION_ERROR_INJECTION"))
    built = "kernel built without CONFIG_FUNCTION_ERROR_INJECTION: should_fail_bio's return value cannot be modified";
  if (!strcmp(h.mode, "kprobe")) {
    if (k.config_off("CONFIG_KPROBES") || access("/sys/bus/event_source/devices/kprobe", F_OK) != 0)
      built = "kprobes unavailable: kernel built without CONFIG_KPROBES";
    else if (k.config_missing("CONFIG_BPF_KPROBE_OVERRIDE"))
      built = "kernel built without CONFIG_BPF_KPROBE_OVERRIDE (no bpf_override_return)";
    else if (k.config_missing("CONFIG_FUNCTION_ERROR_INJECTION"))
      built = "kernel built without CONFIG_FUNCTION_ERROR_INJECTION: should_fail_bio cannot be overridden";
  }
  if (!built.empty())
    return absent.empty() ? built : built + "; besides, " + absent;
  if (!absent.empty())
    return absent;
  if (e.err == EPERM && k.lockdown != "none" && k.lockdown != "unknown")
    return std::string(h.section) + " refused by kernel lockdown (" + k.lockdown + "): " + e.what();
  return e.what();
}

// Reasons a hook must not even be tried on this kernel.
static std::string refused(const Hook &h, const KernelFacts &k) {
  if (!strcmp(h.mode, "kprobe"))
    return kprobe_override_hazard(k);
  return "";
}

// A hook whose self-test could not run (no scratch device could be made): observe on
// should_fail_bio is dropped for the block_bio_queue tracepoint, which every submitted
// bio passes and no compiler can inline away (a kernel may call should_fail_bio for
// only some bios: Debian's 7.2.13 for split remainders alone). Any other hook is kept,
// said to be unproven in its result (Status shows it so), never as passed.
static bool kept_unproven(const Hook &h, SelfTestResult &st) {
  if (!strcmp(h.mode, "observe") && strstr(h.section, "should_fail_bio")) {
    st.detail += ": not kept unproven (a kernel may call should_fail_bio for only some bios; "
                 "the block_bio_queue tracepoint is tried instead)";
    return false;
  }
  if (!strcmp(h.mode, "observe"))
    st.detail += ": kept, UNPROVEN: " + std::string(h.section) +
                 " is the block layer's tracepoint for every submitted bio, but no I/O has shown it fires here";
  else
    st.detail += ": kept, UNPROVEN: nothing has shown that " + std::string(h.section) +
                 " sees every bio on this kernel; make a loop device possible (the loop module, /dev) to prove it";
  return true;
}

Caps probe() {
  Caps caps;
  caps.facts = read_facts();
  const KernelFacts &k = caps.facts;
  Sizes tiny;
  tiny.max_disks = 1;
  tiny.max_ranges = 16;
  tiny.max_filters = 4;
  for (const char *mode : {"fmod_ret", "kprobe", "observe"}) {
    ModeCap m;
    m.mode = mode;
    for (const Hook *h : candidates(mode, k)) {
      if (m.hook.empty())
        m.hook = h->section;
      std::string why = refused(*h, k);
      if (why.empty()) {
        Loaded l;
        try {
          // loading and briefly attaching proves the kernel takes it; with no
          // filter in its maps the program does nothing meanwhile
          load(l, *h, k, tiny, false);
          attach(l);
          if (!m.reason.empty())
            m.reason = "uses " + std::string(h->section) + " because " + m.reason;
          m.available = true;
          m.hook = h->section;
          break;
        } catch (const Error &e) {
          why = why_not(*h, e, k);
        }
      }
      m.reason += (m.reason.empty() ? "" : "; ") + std::string(h->section) + ": " + why;
    }
    if (!m.available && m.reason.empty())
      m.reason = "no hook for this mode on this kernel";
    if (m.available && !strcmp(mode, "kprobe") && !k.perf_link)
      m.reason = "not pinnable here (no BPF perf links before 5.15): kprobe filters end when the agent exits";
    caps.modes.push_back(m);
  }
  return caps;
}

static Attached with_table(std::unique_ptr<Pinned> p, const KernelFacts &k) {
  Attached a;
  a.facts = k;
  a.table = std::make_unique<Table>(*p, k);
  a.pinned = std::move(p);
  return a;
}

Attached adopt(PinDirLock &lock) {
  KernelFacts k = read_facts();
  auto p = adopt_pins(lock);
  if (!p) {
    Attached none;
    none.facts = k;
    return none;
  }
  return with_table(std::move(p), k);
}

Attached attach(const AttachOpts &o, PinDirLock &lock) {
  if (o.mode != "auto" && o.mode != "fmod_ret" && o.mode != "kprobe" && o.mode != "observe")
    range_error("unknown mode '" + o.mode + "' (auto, fmod_ret, kprobe, observe)", "EINVAL");
  if (o.sizes.max_disks == 0 || o.sizes.max_disks > (1u << 20))
    range_error("maxDisks must be 1..1048576, got " + std::to_string(o.sizes.max_disks), "EINVAL");
  if (o.sizes.max_ranges < 16 || o.sizes.max_ranges > (1u << 24))
    range_error("maxRangesTotal must be 16..16777216, got " + std::to_string(o.sizes.max_ranges), "EINVAL");
  if (o.sizes.max_filters < 4 || o.sizes.max_filters > (1u << 20))
    range_error("maxFiltersTotal must be 4..1048576, got " + std::to_string(o.sizes.max_filters), "EINVAL");
  if (Attached a = adopt(lock); a.pinned)
    return a;

  KernelFacts k = read_facts();
  // test-only: a program that never fires, to prove the self-test catches a dead hook
  bool dead = getenv("IOFILTER_TEST_DEAD_HOOK") && !strcmp(getenv("IOFILTER_TEST_DEAD_HOOK"), "1");
  std::map<std::string, std::string> reasons;
  std::string all;
  for (const Hook *h : candidates(o.mode, k)) {
    std::string why = refused(*h, k);
    if (why.empty()) {
      try {
        auto l = std::make_unique<Loaded>();
        load(*l, *h, k, o.sizes, dead);
        attach(*l);
        Attached a = with_table(pin(std::move(l), lock, o.sizes), k);
        if (!o.self_test)
          return a;
        bool enforcing = strcmp(h->mode, "observe") != 0;
        SelfTestResult st = self_test(*a.table, enforcing);
        if (st.passed) {
          a.self_test = st;
          return a;
        }
        if (!st.ran && kept_unproven(*h, st)) {
          a.self_test = st;
          return a;
        }
        why = st.detail;
        detach(a);
      } catch (const Error &e) {
        why = why_not(*h, e, k);
      }
    }
    std::string &r = reasons[h->mode];
    r += (r.empty() ? "" : "; ") + std::string(h->section) + ": " + why;
    all += (all.empty() ? "" : "; ") + std::string(h->section) + ": " + why;
  }
  Error e("ENOTSUP", ENOTSUP,
          o.mode == "auto" ? "no enforcing mode works on this kernel (" + all +
                                 "); `observe` mode counts what would fail without failing it"
                           : "mode " + o.mode + " is not available on this kernel: " + all);
  e.reasons = reasons;
  throw e;
}

void detach(Attached &a) {
  a.table.reset();
  if (a.pinned)
    unpin(*a.pinned);
  a.pinned.reset();
}

} // namespace iof
