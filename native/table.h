// The filter table: composing a disk's entry (filters, overlap layers, search trees)
// into the pinned maps and publishing it atomically; counter and stats slots; the
// quarantine that keeps replaced memory until no running program can hold it.
// Free of N-API; addon.cc converts types around it.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "facts.h"
#include "pins.h"
#include "pools.h"

extern "C" {
#include "iofilter.h"
}

namespace iof {

// The longest TTL: 1e13 ms (317 years) in nanoseconds plus CLOCK_BOOTTIME must fit
// the program's u64 expiry, with 267 years of uptime to spare.
constexpr uint64_t MAX_TTL_MS = 10000000000000ull;

struct RangeSpec {
  uint64_t start, end; // in the named device's own sectors, inclusive
  uint32_t ops;        // IOF_OP_*
};

struct CgroupScope {
  uint64_t id = 0; // 0: none
  uint32_t level = 0;
};

struct FilterMeta {
  std::string file, cgroup_path;
  uint32_t from_pid = 0;
};

struct FilterSpec {
  iof_dev device{}, disk{};
  uint64_t offset = 0, size = 0;
  std::vector<RangeSpec> ranges; // empty: the whole device with whole_ops
  uint32_t whole_ops = IOF_OP_ALL;
  uint64_t ttl_ms = 0;
  double probability = 1.0;
  uint64_t max_failures = 0;
  CgroupScope cgroup;
  uint32_t events_per_sec = 1000;
  bool events_spared = false;
  bool selftest = false; // the attach-time self-test's private filter: hidden from list()
  uint64_t diskseq = 0;  // the disk's medium (5.15+ diskseq) it is bound to; 0: not bound
  FilterMeta meta;
};

struct RangeInfo {
  uint64_t start, end, matched, failed;
  uint32_t ops;
};

struct FilterInfo {
  uint32_t id = 0;
  iof_dev device{}, disk{};
  uint64_t offset = 0, size = 0;
  bool whole = false;
  std::vector<RangeInfo> ranges;
  std::optional<uint64_t> remaining_ms;
  double probability = 1;
  uint64_t max_failures = 0, failures = 0;
  uint64_t matched_ios = 0, failed_ios = 0, events_dropped = 0;
  CgroupScope cgroup;
  uint32_t events_per_sec = 0;
  bool events_spared = false;
  uint64_t diskseq = 0;
  FilterMeta meta;
};

// Which filters an operation is about.
struct FilterKey {
  enum Kind { Scope, AllScopes, Id } kind = Scope;
  iof_dev device{};
  uint64_t cgroup_id = 0; // Scope: 0 = the unscoped filter
  uint32_t id = 0;
  bool selftest = false; // the self-test's private filter, invisible otherwise
};

class Table {
public:
  Table(Pinned &p, const KernelFacts &k);
  Table(const Table &) = delete;
  Table &operator=(const Table &) = delete;

  // Creates or replaces the filter of (device, cgroup). Bad input throws, changes nothing.
  FilterInfo put(const FilterSpec &spec);
  std::optional<FilterInfo> get(const FilterKey &key);
  uint32_t remove(const FilterKey &key);
  uint32_t clear();
  std::vector<FilterInfo> list();
  uint32_t reap_expired();
  uint64_t truncated();
  uint64_t events_lost();

private:
  // A filter as composed from (or into) a disk entry.
  struct Composed {
    iof_filter f;
    std::vector<iof_range> ranges; // in the order the user gave them (range.index)
  };
  using Lock = std::unique_lock<std::mutex>;

  Pinned &p_;
  const bool fetch_atomics_;
  const std::string release_;
  RcuGrace rcu_; // before pools_, which waits with it
  Pools pools_;
  uint32_t next_id_ = 1;

  // publish.cc: the index, entries and their publication
  void rebuild();
  template <typename F> void for_each_entry(F fn);
  int64_t bucket_of(const iof_dev &disk);
  const iof_entry *entry_of(const iof_dev &disk);
  std::vector<Composed> decompose(const iof_entry &e);
  void publish(const iof_dev &disk, const std::vector<Composed> &filters, Lock &lk);
  void retire_entry(const iof_entry &e, uint32_t slot);
  void retire_filter(const Composed &c);
  std::vector<iof_dev> disks_where(const std::function<bool(const iof_filter &)> &pred);
  // table.cc
  Composed compose(const FilterSpec &s, Lock &lk);
  uint32_t remove_where(const std::function<bool(const iof_filter &)> &gone);
  FilterInfo info(const iof_dev &disk, const Composed &c, uint64_t now);
};

uint64_t boottime_ns();
uint32_t prob_to_u32(double p);
double u32_to_prob(uint32_t v);

} // namespace iof
