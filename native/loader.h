// Loading one program: open the skeleton -> set rodata and map sizes -> autoload
// exactly one program -> load (keeping the verifier's log) -> attach. The real
// program and the benchmarks' empty one go through the same path. Free of N-API.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "facts.h"

struct bpf_object;
struct bpf_program;
struct bpf_link;

namespace iof {

// Programs in bpf/iofilter.bpf.c, by mode, in the order they are tried.
struct Hook {
  const char *mode;    // "fmod_ret" | "kprobe" | "observe"
  const char *prog;    // program name in the object
  const char *section; // "fmod_ret/should_fail_bio", ...
};
const std::vector<Hook> &hooks();
// The hooks of `mode` ("auto": the enforcing ones) this kernel could run, in order.
std::vector<const Hook *> candidates(const std::string &mode, const KernelFacts &k);

// How many elements each pool holds (bpf_map__set_max_entries before load).
struct Sizes {
  uint32_t max_disks = 1024;
  uint32_t max_ranges = 65536; // over all disks
  uint32_t max_filters = 4096; // over all disks
  uint32_t buckets() const;    // index buckets: a power of two >= 4 * max_disks
  uint32_t entries() const;    // disk entries, live and quarantined
  uint32_t range_slots() const;
  uint32_t node_slots() const;
  uint32_t filter_slots() const;
};

// One loaded (and maybe attached) program with its object: iofilter, or iofilter_nofetch
// on kernels without BPF fetch atomics. Destroying it detaches the program unless its
// link was pinned.
struct Loaded {
  bpf_object *obj = nullptr;
  void (*destroy)(void *) = nullptr;
  void *skel = nullptr;
  bpf_link *link = nullptr;
  const Hook *hook = nullptr;
  Loaded() = default;
  Loaded(const Loaded &) = delete;
  Loaded &operator=(const Loaded &) = delete;
  ~Loaded();
};

// Loads hook `h` of the iofilter object with this kernel's facts and these sizes.
// Failures carry the verifier's last lines. `test_dead`: a program that never
// fires (the self-test's own test).
void load(Loaded &l, const Hook &h, const KernelFacts &k, const Sizes &s, bool test_dead);
void attach(Loaded &l);

// Opens, loads and attaches `prog` of `obj` (autoloading nothing else); what both
// objects share. Returns the attached link.
bpf_link *load_attach_one(bpf_object *obj, const char *prog, const std::string &what);

// Empty programs on the same hooks, for benchmarks.
struct EmptyProg {
  void *skel = nullptr;
  bpf_link *link = nullptr;
  uint32_t prog_id = 0;
  ~EmptyProg();
};
std::unique_ptr<EmptyProg> attach_empty(const std::string &hook);

} // namespace iof
