// One loader path for the real and the empty program; the verifier's own last lines
// become the reason a mode is unavailable.
#include "loader.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>

#include "errors.h"

extern "C" {
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "empty.skel.h"
#include "iofilter.h"
#include "iofilter.skel.h"
#include "iofilter_nofetch.skel.h"
}

namespace iof {

const std::vector<Hook> &hooks() {
  static const std::vector<Hook> h = {
      {"fmod_ret", "iofilter_fmod_ret", "fmod_ret/should_fail_bio"},
      {"kprobe", "iofilter_kprobe", "kprobe/should_fail_bio"},
      {"observe", "iofilter_observe_fentry", "fentry/should_fail_bio"},
      {"observe", "iofilter_observe_tp", "tp_btf/block_bio_queue"},
      {"observe", "iofilter_observe_tp_old", "tp_btf/block_bio_queue"},
  };
  return h;
}

std::vector<const Hook *> candidates(const std::string &mode, const KernelFacts &k) {
  std::vector<const Hook *> out;
  for (const Hook &h : hooks()) {
    bool enforcing = !strcmp(h.mode, "fmod_ret") || !strcmp(h.mode, "kprobe");
    if (!(mode == h.mode || (mode == "auto" && enforcing)))
      continue;
    // block_bio_queue's arguments: (bio) since 5.11, (q, bio) before; unknown: try both
    if (!strcmp(h.prog, "iofilter_observe_tp") && k.tp_queue_args == 2)
      continue;
    if (!strcmp(h.prog, "iofilter_observe_tp_old") && k.tp_queue_args != 2)
      continue;
    out.push_back(&h);
  }
  return out;
}

static uint32_t pow2_at_least(uint32_t n) {
  uint32_t p = 1;
  while (p < n)
    p <<= 1;
  return p;
}

uint32_t Sizes::buckets() const { return pow2_at_least(4 * max_disks); }
// each pool holds its live content plus a quarantined copy of it (a replaced version
// waits for a grace period), plus room for the self-test
uint32_t Sizes::entries() const { return 2 * max_disks + 2; }
uint32_t Sizes::range_slots() const { return 2 * max_ranges + 16; }
uint32_t Sizes::node_slots() const { return 2 * (max_ranges / 8 + max_disks * IOF_MAX_LAYERS) + 16; }
uint32_t Sizes::filter_slots() const { return 2 * max_filters + 4; }

Loaded::~Loaded() {
  bpf_link__destroy(link);
  if (destroy)
    destroy(skel);
}

// The last non-empty lines of a verifier log: what a user on an unknown kernel needs.
static std::string log_tail(const std::string &log, int lines) {
  std::vector<std::string> out;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty())
      out.push_back(line);
  std::string s;
  for (size_t i = out.size() > size_t(lines) ? out.size() - lines : 0; i < out.size(); i++)
    s += (s.empty() ? "" : " / ") + out[i];
  return s;
}

static bpf_program *choose(bpf_object *obj, const char *prog) {
  bpf_program *p, *chosen = nullptr;
  bpf_object__for_each_program(p, obj) {
    bool me = strcmp(bpf_program__name(p), prog) == 0;
    bpf_program__set_autoload(p, me);
    if (me)
      chosen = p;
  }
  return chosen;
}

// Loads the object with only `prog` autoloaded; on failure the error carries the
// verifier's last lines.
static bpf_program *load_one(bpf_object *obj, const char *prog, const std::string &what) {
  bpf_program *chosen = choose(obj, prog);
  if (!chosen)
    throw Error("ENOENT", ENOENT, what + ": no program " + prog + " in the object");
  std::vector<char> log(4 << 20);
  bpf_program__set_log_buf(chosen, log.data(), log.size());
  // IOFILTER_VERIFIER_STATS=1: the verifier's statistics (instructions processed, per
  // program and subprogram) on stderr, to measure the budget on each kernel
  bool stats = getenv("IOFILTER_VERIFIER_STATS") != nullptr;
  if (stats)
    bpf_program__set_log_level(chosen, 4 /* BPF_LOG_STATS */);
  libbpf_clear();
  int loaded = bpf_object__load(obj);
  if (stats && !loaded)
    fprintf(stderr, "%s verifier: %s\n", what.c_str(),
            log_tail(std::string(log.data(), strnlen(log.data(), log.size())), 8).c_str());
  if (int err = loaded) {
    std::string tail = log_tail(std::string(log.data(), strnlen(log.data(), log.size())), 3);
    std::string msg = "loading " + what + ": " + strerr(-err);
    if (!tail.empty())
      msg += " (verifier: " + tail + ")";
    else if (!libbpf_last().empty())
      msg += " (libbpf: " + libbpf_last() + ")";
    throw Error(errname(-err), -err, msg);
  }
  return chosen;
}

bpf_link *load_attach_one(bpf_object *obj, const char *prog, const std::string &what) {
  bpf_program *p = load_one(obj, prog, what);
  libbpf_clear();
  bpf_link *link = bpf_program__attach(p);
  if (!link)
    fail(errno, "attaching " + what);
  return link;
}

// Both objects have the same rodata and maps: one template sets them.
template <typename Skel>
static void open_skel(Loaded &l, Skel *(*open)(), void (*destroy)(Skel *), const KernelFacts &k, const Sizes &s,
                      bool test_dead) {
  Skel *skel = open();
  if (!skel)
    fail(errno, "opening the BPF object");
  l.skel = skel;
  l.obj = skel->obj;
  l.destroy = reinterpret_cast<void (*)(void *)>(destroy);
  auto *ro = skel->rodata;
  ro->bio_remapped_bit = k.bio_remapped_bit;
  ro->bio_chain_bit = k.bio_chain_bit;
  ro->bio_trace_bit = k.bio_trace_bit;
  ro->iof_index_mask = s.buckets() - 1;
  ro->iof_test_dead = test_dead;
  bpf_map__set_max_entries(skel->maps.iof_index, s.buckets());
  bpf_map__set_max_entries(skel->maps.iof_entries, s.entries());
  bpf_map__set_max_entries(skel->maps.iof_ranges, s.range_slots());
  bpf_map__set_max_entries(skel->maps.iof_counters, s.range_slots());
  bpf_map__set_max_entries(skel->maps.iof_nodes, s.node_slots());
  bpf_map__set_max_entries(skel->maps.iof_fstats, s.filter_slots());
  bpf_map__set_max_entries(skel->maps.iof_meta, s.filter_slots());
  // iof_seen (an LRU) keeps up to ~256 free or just-inserted records per CPU out of its
  // global list, where eviction happens: 512 per CPU leaves at least half of them
  // there, so a record is evicted only after that many newer ones, not while its
  // bio's split remainder is being resubmitted
  int ncpus = libbpf_num_possible_cpus();
  bpf_map__set_max_entries(skel->maps.iof_seen, std::max(4096u, 512u * uint32_t(ncpus > 0 ? ncpus : 1)));
}

void load(Loaded &l, const Hook &h, const KernelFacts &k, const Sizes &s, bool test_dead) {
  libbpf_clear();
  l.hook = &h;
  if (k.fetch_atomics)
    open_skel(l, iofilter_bpf__open, iofilter_bpf__destroy, k, s, test_dead);
  else
    open_skel(l, iofilter_nofetch_bpf__open, iofilter_nofetch_bpf__destroy, k, s, test_dead);
  load_one(l.obj, h.prog, h.section);
}

void attach(Loaded &l) {
  libbpf_clear();
  bpf_program *p = bpf_object__find_program_by_name(l.obj, l.hook->prog);
  l.link = bpf_program__attach(p);
  if (!l.link)
    fail(errno, std::string("attaching ") + l.hook->section);
}

// ---- empty programs (benchmarks) ---------------------------------------------

EmptyProg::~EmptyProg() {
  bpf_link__destroy(link);
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
    range_error("unknown hook '" + hook + "'", "EINVAL");
  if (hook.rfind("kprobe/", 0) == 0) // even an empty kprobe crashes where kprobes are unsafe
    if (std::string why = kprobe_override_hazard(read_facts()); !why.empty())
      throw Error("ENOTSUP", ENOTSUP, "empty " + hook + ": " + why);
  libbpf_clear();
  auto e = std::make_unique<EmptyProg>();
  auto *skel = empty_bpf__open();
  if (!skel)
    fail(errno, "opening the empty BPF object");
  e->skel = skel;
  e->link = load_attach_one(skel->obj, it->second, "empty " + hook);
  bpf_prog_info pi = {};
  uint32_t len = sizeof(pi);
  if (!bpf_obj_get_info_by_fd(bpf_program__fd(bpf_object__find_program_by_name(skel->obj, it->second)), &pi, &len))
    e->prog_id = pi.id;
  return e;
}

} // namespace iof
