// libbpf side of the addon, free of N-API: probing the kernel, attaching and pinning
// the program, adopting pins, and composing filters into the pinned maps. Every
// failure is an iof::Error carrying an errno-style code and a sentence for people.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

extern "C" {
#include "iofilter.h"
}

namespace iof {

struct Error : std::runtime_error {
  std::string code; // "EPERM", "ENOSPC", "ENOTSUP", ...
  int err;          // errno, 0 when not from a system call
  enum Kind { System, Range, Type } kind;
  Error(std::string code, int err, const std::string &msg, Kind kind = System)
      : std::runtime_error(msg), code(std::move(code)), err(err), kind(kind) {}
};

// Programs in bpf/iofilter.bpf.c, by mode, in the order they are tried.
struct Hook {
  const char *mode;    // "fmod_ret" | "kprobe" | "observe"
  const char *prog;    // program name in the object
  const char *section; // "fmod_ret/should_fail_bio", ...
};
const std::vector<Hook> &hooks();

struct ModeCap {
  std::string mode, hook, reason;
  bool available = false;
};

struct Caps {
  std::string release, lockdown;
  bool btf = false;
  std::vector<ModeCap> modes;
};

Caps probe();

// An attached program as seen through its pins. Fresh attaches and adoptions end
// up here alike: attach pins, then adopts its own pins.
struct Pinned {
  std::string pin_dir, mode, hook, prog;
  int disks_fd = -1, counters_fd = -1, state_fd = -1, link_fd = -1;
  uint32_t prog_id = 0, link_id = 0, disks_id = 0, counters_id = 0, state_id = 0;
  uint32_t max_disks = 0, nr_slots = 0;
  bool adopted = false;
  ~Pinned();
  void close_fds();
};

// Attaches in `mode` ("auto", "fmod_ret", "kprobe", "observe") and pins under pin_dir;
// adopts instead when pins already exist there.
std::unique_ptr<Pinned> attach(const std::string &mode, const std::string &pin_dir, uint32_t max_disks);
// nullptr when pin_dir holds no pins.
std::unique_ptr<Pinned> adopt(const std::string &pin_dir);
// Unpins everything and removes pin_dir; the program detaches once no fd holds it.
void detach(Pinned &p);

// Empty programs on the same hooks, for benchmarks.
struct EmptyProg {
  void *skel = nullptr;
  void *link = nullptr;
  uint32_t prog_id = 0;
  ~EmptyProg();
};
std::unique_ptr<EmptyProg> attach_empty(const std::string &hook);

// ---- filters -------------------------------------------------------------

struct RangeSpec {
  uint64_t start, end;
  uint32_t ops;
};

struct FilterSpec {
  iof_dev device, disk;
  uint64_t offset = 0, size = 0;
  std::vector<RangeSpec> ranges; // empty: whole device with whole_ops
  uint32_t whole_ops = IOF_OP_ALL;
  uint64_t ttl_ms = 0;
  double probability = 1.0;
  uint64_t max_failures = 0;
};

struct RangeInfo {
  uint64_t start, end, matched, failed;
  uint32_t ops;
};

struct FilterInfo {
  iof_dev device, disk;
  uint64_t offset, size;
  bool whole;
  std::vector<RangeInfo> ranges;
  std::optional<uint64_t> remaining_ms;
  double probability;
  uint64_t max_failures, failures;
};

// Filters in the pinned maps. One instance per handle; a mutex serialises writers
// within the process (the agent is the only writer across processes).
class Table {
public:
  explicit Table(Pinned &p);
  FilterInfo put(const FilterSpec &spec);
  std::optional<FilterInfo> get(iof_dev dev);
  bool remove(iof_dev dev);
  std::vector<FilterInfo> list();
  uint32_t reap_expired();

private:
  Pinned &p_;
  std::mutex mu_;
  std::vector<bool> used_; // counter slots in use

  void rebuild_slots();
  bool find(iof_dev dev, iof_dev &disk, iof_disk &entry, uint32_t &fi);
  FilterInfo info(const iof_disk &d, uint32_t fi, uint64_t now);
  void write_entry(const iof_dev &disk, const iof_disk *entry, bool existed);
  void publish_state(const iof_dev *adding);
  std::vector<uint32_t> alloc_slots(size_t n);
  void free_slots_of(const iof_disk &d, uint32_t fi);
};

uint64_t boottime_ns();
uint32_t prob_to_u32(double p);
double u32_to_prob(uint32_t v);

} // namespace iof
