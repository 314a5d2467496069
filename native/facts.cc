// Kernel facts: release and config, lockdown, the BTF facts the program needs before
// load, and feature probes (a raw program with a fetch-add) for what modes need.
#include "facts.h"
#include "linkinfo.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/utsname.h>
#include <unistd.h>
#include <zlib.h>

extern "C" {
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <linux/bpf.h>
}

namespace iof {

static std::string read_file(const std::string &path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool KernelFacts::config_off(const char *opt) const {
  auto it = config.find(opt);
  return it != config.end() && it->second == "n";
}

bool KernelFacts::config_missing(const char *opt) const {
  auto it = config.find(opt);
  return !config.empty() && (it == config.end() || it->second == "n");
}

// CONFIG_* of the running kernel, from /proc/config.gz, /boot/config-<release> or, where
// Debian's 7.x packages put it (nothing in /boot), /lib/modules/<release>/config.
static std::map<std::string, std::string> kconfig(const std::string &release) {
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
    text = read_file("/boot/config-" + release);
  if (text.empty())
    text = read_file("/lib/modules/" + release + "/config");
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
  auto on = [&](const char *k) {
    auto it = cfg.find(k);
    return it != cfg.end() && it->second == "y";
  };
  if (on("CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY"))
    return "confidentiality";
  if (on("CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY"))
    return "integrity";
  if (cfg.count("CONFIG_SECURITY_LOCKDOWN_LSM") && cfg.at("CONFIG_SECURITY_LOCKDOWN_LSM") != "y")
    return "none";
  return "unknown";
}

// Addresses of `names` in /proc/kallsyms, in one pass; an absent symbol is left out,
// a hidden address (kptr_restrict, no CAP_SYSLOG) reads 0.
static std::map<std::string, unsigned long long> symbol_addresses(const std::vector<std::string> &names) {
  std::map<std::string, unsigned long long> out;
  std::ifstream f("/proc/kallsyms");
  std::string line;
  while (out.size() < names.size() && std::getline(f, line)) {
    auto sp = line.rfind(' ');
    if (sp == std::string::npos)
      continue;
    for (const std::string &n : names)
      if (line.compare(sp + 1, std::string::npos, n) == 0 && !out.count(n))
        out[n] = strtoull(line.c_str(), nullptr, 16);
  }
  return out;
}

bool has_symbol(const char *name) {
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

static int enum_value(const struct btf *btf, const char *name) {
  for (unsigned id = 1; id < btf__type_cnt(btf); id++) {
    const struct btf_type *t = btf__type_by_id(btf, id);
    if (!btf_is_enum(t))
      continue;
    const struct btf_enum *e = btf_enum(t);
    for (unsigned i = 0; i < btf_vlen(t); i++, e++)
      if (strcmp(btf__name_by_offset(btf, e->name_off), name) == 0)
        return e->val;
  }
  return -1;
}

// Arguments of a tracepoint, from its btf_trace_<name> typedef (a pointer to a
// function whose first parameter is the tracepoint's void *data).
static int tp_args(const struct btf *btf, const char *tp) {
  std::string name = std::string("btf_trace_") + tp;
  int id = btf__find_by_name_kind(btf, name.c_str(), BTF_KIND_TYPEDEF);
  if (id < 0)
    return 0;
  const struct btf_type *t = btf__type_by_id(btf, btf__type_by_id(btf, id)->type);
  if (!t || !btf_is_ptr(t))
    return 0;
  t = btf__type_by_id(btf, t->type);
  if (!t || !btf_is_func_proto(t))
    return 0;
  return int(btf_vlen(t)) - 1;
}

// Whether the verifier takes an atomic fetch-add (5.12+, commit 5ca419f2864a).
static bool probe_fetch_atomics() {
  struct bpf_insn insns[] = {
      {BPF_ST | BPF_MEM | BPF_DW, BPF_REG_10, 0, -8, 0},                               // *(u64 *)(r10 - 8) = 0
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_1, 0, 0, 1},                               // r1 = 1
      {BPF_STX | BPF_ATOMIC | BPF_DW, BPF_REG_10, BPF_REG_1, -8, BPF_ADD | BPF_FETCH}, // r1 = atomic_fetch_add(...)
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0},                               // r0 = 0
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  int fd = bpf_prog_load(BPF_PROG_TYPE_SOCKET_FILTER, nullptr, "GPL", insns, sizeof(insns) / sizeof(insns[0]), nullptr);
  if (fd < 0)
    return false;
  close(fd);
  return true;
}

static bool cgroup2_mounted() {
  std::ifstream f("/proc/self/mountinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.find(" - cgroup2 ") != std::string::npos)
      return true;
  return false;
}

KernelFacts read_facts() {
  KernelFacts k;
  struct utsname u;
  uname(&u);
  k.release = u.release;
  int maj = 0, min = 0;
  sscanf(u.release, "%d.%d", &maj, &min);
  k.version = maj * 1000 + min;
  k.config = kconfig(k.release);
  k.lockdown = lockdown(k.config);
  k.btf = access("/sys/kernel/btf/vmlinux", R_OK) == 0;
  bool blkcg = false, mod_nop = false;
  if (struct btf *vmlinux = btf__load_vmlinux_btf()) {
    k.bio_remapped_bit = enum_value(vmlinux, "BIO_REMAPPED");
    k.bio_chain_bit = enum_value(vmlinux, "BIO_CHAIN");
    k.bio_trace_bit = enum_value(vmlinux, "BIO_TRACE_COMPLETION");
    k.tp_queue_args = tp_args(vmlinux, "block_bio_queue");
    // struct bpf_perf_link: 5.15 (commit b89fbfbb854c "bpf: Implement minimal BPF perf link")
    k.perf_link = btf__find_by_name_kind(vmlinux, "bpf_perf_link", BTF_KIND_STRUCT) > 0;
    // per-program miss counter: 5.12 (commit 9ed9e9ba2337 "bpf: Count the number of times recursion was prevented")
    k.recursion_misses = btf__find_by_name_kind(vmlinux, "bpf_prog_inc_misses_counter", BTF_KIND_FUNC) > 0;
    k.link_missed = kernel_reports_link_missed(vmlinux);
    blkcg = btf__find_by_name_kind(vmlinux, "blkcg_gq", BTF_KIND_STRUCT) > 0;
    mod_nop = enum_value(vmlinux, "BPF_MOD_NOP") >= 0;
    btf__free(vmlinux);
  }
  // ftrace's jmp tag: the config says; without it, BPF_MOD_NOP (ae4a3160d19c, same 6.19
  // series; absent from 6.12's BTF, present in 7.2's); without BTF, any release after 6.12
  auto jmp = k.config.find("CONFIG_DYNAMIC_FTRACE_WITH_JMP");
  if (jmp != k.config.end())
    k.ftrace_jmp_tag = jmp->second == "y";
  else if (k.config.empty())
    k.ftrace_jmp_tag = k.btf ? mod_nop : k.version > 6012;
  if (k.ftrace_jmp_tag)
    k.ftrace_callbacks = symbol_addresses({"kprobe_ftrace_handler", "arch_ftrace_ops_list_func"});
  k.fetch_atomics = probe_fetch_atomics();
  k.cgroups = blkcg && cgroup2_mounted();
  if (!k.fetch_atomics)
    k.notes.push_back("no BPF atomic fetch-add (Linux 5.12+): max-failures filters are refused on " + k.release);
  if (!k.perf_link)
    k.notes.push_back("no BPF perf links (Linux 5.15+): kprobe mode cannot be pinned, its filters end with the agent");
  if (!blkcg)
    k.notes.push_back("kernel without blkcg (CONFIG_BLK_CGROUP): cgroup-scoped filters cannot work");
  else if (!k.cgroups)
    k.notes.push_back("no cgroup v2 mount: cgroup-scoped filters cannot work");
  auto list = k.ftrace_callbacks.find("arch_ftrace_ops_list_func");
  if (list != k.ftrace_callbacks.end() && (list->second & 1))
    k.notes.push_back("this kernel oopses on any function traced by two ftrace users at once (its ftrace list "
                      "function is at an odd address, read as a jmp tag): with fmod_ret attached, no kprobe or "
                      "function tracer may be put on should_fail_bio");
  return k;
}

/*
 * Why kprobe mode crashed the 7.2 test kernel (README "kprobe mode on 7.x"). Since 6.19
 * (0c3772a8db1f "x86/ftrace: Implement DYNAMIC_FTRACE_WITH_JMP"), x86's
 * ftrace_call_replace() patches a target with bit 0 set in as `jmp target & ~1`, assuming
 * aligned functions. Not only BPF trampolines go through it: a re-registered kprobe
 * ftrace_ops gets its trampoline's call rewritten (arch_ftrace_update_trampoline), two
 * ftrace users on one function make the shared caller call the list function
 * (ftrace_update_ftrace_func). Where functions may sit at odd addresses (-Os with GCC < 14
 * ignores -falign-functions), ftrace then jumps into the last byte of the function before:
 * on the test kernel a `ret` popping pt_regs->r15 (NX fault), or `ff 0f` (write to the
 * traced ip). Measured: the first kprobe of a boot works, every later one oopses on its
 * first bio, even an empty program; 6.12 has odd addresses but no tag; the same 7.2 built
 * -O2 (aligned) is fine. So: refuse when ftrace may tag and a callback is odd or hidden,
 * from facts alone, as a crash under panic_on_oops takes the host down.
 */
std::string kprobe_override_hazard(const KernelFacts &k) {
  // kprobes not on ftrace (int3) never have ftrace patch a callback in
  if (!k.ftrace_jmp_tag || !k.ftrace_callbacks.count("kprobe_ftrace_handler"))
    return "";
  static const char *tag =
      "this kernel's ftrace reads bit 0 of a call target as \"jmp\" (CONFIG_DYNAMIC_FTRACE_WITH_JMP)";
  // the kprobe's own callback first: it alone is enough to crash
  static const std::pair<const char *, const char *> callbacks[] = {
      {"kprobe_ftrace_handler", "from the second kprobe registration of a boot on"},
      {"arch_ftrace_ops_list_func", "whenever another ftrace user shares should_fail_bio"},
  };
  for (const auto &[name, when] : callbacks) {
    auto it = k.ftrace_callbacks.find(name);
    if (it != k.ftrace_callbacks.end() && (it->second & 1)) {
      char hex[24];
      snprintf(hex, sizeof(hex), "%llx", it->second);
      return std::string("refused, a kprobe on should_fail_bio would crash this kernel: ") + tag + " and " + name +
             " is at an odd address (" + hex +
             "; functions unaligned, as e.g. -Os builds with GCC < 14 leave them), so " +
             "ftrace jumps into the byte before it and every bio oopses " + when + "; use fmod_ret";
    }
  }
  auto cfg = [&](const char *opt) {
    auto it = k.config.find(opt);
    return it == k.config.end() ? std::string() : it->second;
  };
  bool aligned = cfg("CONFIG_CC_HAS_SANE_FUNCTION_ALIGNMENT") == "y" || cfg("CONFIG_CC_OPTIMIZE_FOR_SIZE") == "n";
  bool hidden = false;
  for (const auto &[name, addr] : k.ftrace_callbacks)
    hidden = hidden || addr == 0;
  if (hidden && !aligned)
    return std::string("refused, a crash cannot be ruled out: ") + tag +
           ", and /proc/kallsyms hides the addresses of its ftrace callbacks (kptr_restrict): if one is odd, a kprobe "
           "on should_fail_bio oopses on every bio; use fmod_ret";
  return "";
}

std::string grace_period_method(const KernelFacts &) {
  return "synchronize_rcu (the kernel's wait after an array-of-maps update)";
}

} // namespace iof
