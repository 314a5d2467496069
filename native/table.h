// The filter table: composing a disk's entry (filters, overlap layers, search trees)
// into the pinned maps and publishing it atomically; counter and stats slots; the
// quarantine that keeps replaced memory until no running program can hold it.
// Free of N-API; addon.cc converts types around it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "facts.h"
#include "pins.h"

extern "C" {
#include "iofilter.h"
}

namespace iof {

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
  ~Table();
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
  enum class Kind { Entry, Counter, FilterSlot, RangeRun, NodeRun };
  struct Quarantined {
    Kind kind;
    uint32_t off, len;
    uint64_t gen;
  };

  Pinned &p_;
  const bool fetch_atomics_;
  const std::string release_;
  const bool timed_grace_, membarrier_;
  std::mutex mu_;
  std::condition_variable work_, freed_;
  std::thread reclaimer_;
  bool stop_ = false;
  uint64_t gen_ = 1, freed_gen_ = 0;
  std::vector<Quarantined> quarantine_;
  std::vector<uint32_t> free_entries_, free_counters_, free_filters_;
  std::map<uint32_t, uint32_t> free_ranges_, free_nodes_; // runs: offset -> length
  uint32_t next_id_ = 1;

  void rebuild();
  void reclaim_loop();
  void grace();
  void wait_reclaimed(std::unique_lock<std::mutex> &lk);
  void quarantine(Kind k, uint32_t off, uint32_t len);
  void release_now(const Quarantined &q);
  template <typename F> auto with_retry(std::unique_lock<std::mutex> &lk, F alloc) -> decltype(alloc());
  uint32_t take_slot(std::vector<uint32_t> &free, const char *what);
  uint32_t take_run(std::map<uint32_t, uint32_t> &free, uint32_t len, const char *what);
  static void give_run(std::map<uint32_t, uint32_t> &free, uint32_t off, uint32_t len);

  int64_t bucket_of(const iof_dev &disk);
  const iof_entry *entry_of(const iof_dev &disk);
  std::vector<Composed> decompose(const iof_entry &e);
  void publish(const iof_dev &disk, std::vector<Composed> filters, std::unique_lock<std::mutex> &lk);
  void retire_entry(const iof_entry &e, uint32_t slot);
  void retire_filter(const Composed &c);
  FilterInfo info(const iof_dev &disk, const Composed &c, uint64_t now);
  template <typename F> void for_each_entry(F fn);
};

uint64_t boottime_ns();
uint32_t prob_to_u32(double p);
double u32_to_prob(uint32_t v);

} // namespace iof
