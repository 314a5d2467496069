// What the running kernel is and can do, read once per probe/attach: release,
// config, lockdown, BTF facts the program needs before load (anonymous enum values,
// tracepoint arity) and the BPF features modes depend on. Free of N-API.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace iof {

struct KernelFacts {
  std::string release;
  int version = 0;                           // major * 1000 + minor, e.g. 6001 for 6.1.x
  std::map<std::string, std::string> config; // CONFIG_* of the running kernel, if readable
  std::string lockdown;                      // none, integrity, confidentiality, unknown
  bool btf = false;
  int bio_remapped_bit = -1; // BIO_REMAPPED (5.11+), -1 when absent
  int bio_chain_bit = -1;    // BIO_CHAIN
  int bio_trace_bit = -1;    // BIO_TRACE_COMPLETION
  int tp_queue_args = 0;     // block_bio_queue's arguments: 1 (bio), 2 (q, bio), 0 unknown
  bool fetch_atomics = false;
  bool perf_link = false;        // BPF perf links (5.15+): pinnable kprobe links
  bool recursion_misses = false; // bpf_prog_info.recursion_misses (5.12+)
  bool link_missed = false;      // bpf_link_info.perf_event.kprobe.missed (6.7+): linkinfo.h
  bool cgroups = false;          // cgroup v2 mounted, blkcg in the kernel
  // ftrace reads bit 0 of a call target as "jmp, not call" (CONFIG_DYNAMIC_FTRACE_WITH_JMP,
  // x86-64, 6.19+), or may: the config is unreadable and BTF or the version says so
  bool ftrace_jmp_tag = false;
  // ftrace callbacks a kprobe makes ftrace patch in, by name: address from /proc/kallsyms,
  // 0 when hidden (kptr_restrict); read only when ftrace_jmp_tag
  std::map<std::string, unsigned long long> ftrace_callbacks;
  std::vector<std::string> notes;

  bool config_off(const char *opt) const;     // known and not set
  bool config_missing(const char *opt) const; // config known, option not =y/=m
};

KernelFacts read_facts();

bool has_symbol(const char *name);

// Why a kprobe on should_fail_bio would crash this kernel (or cannot be ruled out),
// or "": decided from facts alone, nothing attached (evidence: the comment in facts.cc).
std::string kprobe_override_hazard(const KernelFacts &k);

// How replaced memory waits for programs still running, for Status.
std::string grace_period_method(const KernelFacts &k);

} // namespace iof
