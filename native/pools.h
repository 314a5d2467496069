// Free space in the pinned pools (entry slots, counter slots, filter slots, runs of
// ranges and of tree nodes) and the quarantine: what a replaced entry used is freed
// only after an RCU grace period, when no program that could still read it runs.
// A reclaimer thread waits for grace periods, so RPCs do not - unless a pool is
// exhausted by quarantined memory. Free of N-API.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "errors.h"

namespace iof {

// A real RCU grace period on every configuration (any CPU count, nohz_full, membarrier
// refused): the kernel follows each successful update of a map-in-map element with
// synchronize_rcu() (kernel/bpf/syscall.c maybe_wait_bpf_programs(), 4.20+, unchanged
// through 7.x). Our programs (fmod_ret, fentry, tp_btf, kprobe) are not sleepable: they
// run under rcu_read_lock() (trampolines' __bpf_prog_enter, trace_call_bpf,
// bpf_trace_run), which synchronize_rcu() waits out even when preempted (PREEMPT_RCU).
class RcuGrace {
public:
  RcuGrace(); // creates the two maps; throws Error if the kernel refuses
  ~RcuGrace();
  RcuGrace(const RcuGrace &) = delete;
  RcuGrace &operator=(const RcuGrace &) = delete;
  // Returns after a grace period; throws Error if it could not wait for one.
  void wait();

private:
  int inner_ = -1, outer_ = -1;
};

class Pools {
public:
  enum class Kind { Entry, Counter, FilterSlot, RangeRun, NodeRun };
  // Waits for a grace period or throws (RcuGrace::wait; the unit harness passes its own).
  using Grace = std::function<void()>;

  explicit Pools(Grace grace);
  ~Pools();
  Pools(const Pools &) = delete;
  Pools &operator=(const Pools &) = delete;

  // One lock for the pools and for the table built on them.
  std::mutex &mutex() { return mu_; }

  // Everything not marked used is free; whatever an earlier owner quarantined is
  // free after the grace period this waits for. Called before start().
  void rebuild(const std::vector<bool> &entries, const std::vector<bool> &counters, const std::vector<bool> &filters,
               const std::vector<bool> &ranges, const std::vector<bool> &nodes);
  void start();

  // A slot or run, waiting out a grace period if quarantined memory is all there is.
  // `what` names the pool in the ENOSPC error.
  uint32_t take(Kind k, uint32_t len, const char *what, std::unique_lock<std::mutex> &lk);
  // Back at once: it was never published.
  void give_now(Kind k, uint32_t off, uint32_t len = 1);
  // Back after a grace period: a running program may still read it.
  void quarantine(Kind k, uint32_t off, uint32_t len = 1);

  // A grace period, counted; throws as Grace does.
  void grace();
  uint64_t graces(); // grace periods completed, for tests and status

private:
  struct Quarantined {
    Kind kind;
    uint32_t off, len;
    uint64_t gen;
  };
  const Grace grace_;
  std::mutex mu_;
  std::condition_variable work_, freed_;
  std::thread reclaimer_;
  bool stop_ = false;
  uint64_t gen_ = 1, freed_gen_ = 0;
  std::atomic<uint64_t> graces_{0};
  std::unique_ptr<Error> failed_; // the reclaimer could not wait: quarantined memory is never freed
  std::vector<Quarantined> quarantine_;
  std::vector<uint32_t> free_entries_, free_counters_, free_filters_;
  std::map<uint32_t, uint32_t> free_ranges_, free_nodes_; // offset -> length

  void reclaim_loop();
  uint32_t take_now(Kind k, uint32_t len, const char *what);
  static void give_run(std::map<uint32_t, uint32_t> &free, uint32_t off, uint32_t len);
};

} // namespace iof
