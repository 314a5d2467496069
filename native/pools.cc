// Slots, runs, and the grace-period reclaimer.
#include "pools.h"

#include <chrono>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errors.h"

namespace iof {

Pools::Pools(bool membarrier, bool timed) : membarrier_(membarrier), timed_(timed) {}

Pools::~Pools() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  work_.notify_all();
  freed_.notify_all();
  if (reclaimer_.joinable())
    reclaimer_.join();
}

void Pools::start() {
  reclaimer_ = std::thread([this] { reclaim_loop(); });
}

void Pools::rebuild(const std::vector<bool> &entries, const std::vector<bool> &counters,
                    const std::vector<bool> &filters, const std::vector<bool> &ranges, const std::vector<bool> &nodes) {
  grace();
  auto slots = [](const std::vector<bool> &used, std::vector<uint32_t> &free) {
    free.clear();
    for (uint32_t i = uint32_t(used.size()); i-- > 0;)
      if (!used[i])
        free.push_back(i); // popped from the back: low slots first
  };
  auto runs = [](const std::vector<bool> &used, std::map<uint32_t, uint32_t> &free) {
    free.clear();
    for (uint32_t i = 0; i < used.size();) {
      if (used[i]) {
        i++;
        continue;
      }
      uint32_t j = i;
      while (j < used.size() && !used[j])
        j++;
      free[i] = j - i;
      i = j;
    }
  };
  slots(entries, free_entries_);
  slots(counters, free_counters_);
  slots(filters, free_filters_);
  runs(ranges, free_ranges_);
  runs(nodes, free_nodes_);
}

void Pools::grace() {
  if (membarrier_)
    syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0);
  // without membarrier, or on one CPU (where it returns at once although a program
  // may be preempted), fall back to time: a program run takes microseconds
  if (timed_)
    std::this_thread::sleep_for(std::chrono::seconds(1));
}

void Pools::reclaim_loop() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_) {
    work_.wait(lk, [&] { return stop_ || !quarantine_.empty(); });
    if (stop_)
      break;
    uint64_t g = gen_++;
    lk.unlock();
    grace();
    lk.lock();
    std::vector<Quarantined> keep;
    for (const Quarantined &q : quarantine_) {
      if (q.gen <= g)
        give_now(q.kind, q.off, q.len);
      else
        keep.push_back(q);
    }
    quarantine_.swap(keep);
    freed_gen_ = g;
    freed_.notify_all();
  }
}

void Pools::quarantine(Kind k, uint32_t off, uint32_t len) {
  quarantine_.push_back({k, off, len, gen_});
  work_.notify_all();
}

void Pools::give_now(Kind k, uint32_t off, uint32_t len) {
  switch (k) {
  case Kind::Entry:
    free_entries_.push_back(off);
    break;
  case Kind::Counter:
    free_counters_.push_back(off);
    break;
  case Kind::FilterSlot:
    free_filters_.push_back(off);
    break;
  case Kind::RangeRun:
    give_run(free_ranges_, off, len);
    break;
  case Kind::NodeRun:
    give_run(free_nodes_, off, len);
    break;
  }
}

void Pools::give_run(std::map<uint32_t, uint32_t> &free, uint32_t off, uint32_t len) {
  if (len == 0)
    return;
  auto next = free.lower_bound(off);
  if (next != free.end() && off + len == next->first) { // merge with the run after
    len += next->second;
    next = free.erase(next);
  }
  if (next != free.begin()) { // and with the run before
    auto prev = std::prev(next);
    if (prev->first + prev->second == off) {
      prev->second += len;
      return;
    }
  }
  free[off] = len;
}

uint32_t Pools::take_now(Kind k, uint32_t len, const char *what) {
  auto slot = [&](std::vector<uint32_t> &free) {
    if (free.empty())
      exhausted(std::string(what) + " exhausted");
    uint32_t s = free.back();
    free.pop_back();
    return s;
  };
  auto run = [&](std::map<uint32_t, uint32_t> &free) -> uint32_t {
    if (len == 0)
      return 0;
    for (auto it = free.begin(); it != free.end(); ++it) {
      if (it->second < len)
        continue;
      uint32_t off = it->first, left = it->second - len;
      free.erase(it);
      if (left)
        free[off + len] = left;
      return off;
    }
    exhausted(std::string(what) + " exhausted (no free run of " + std::to_string(len) + ")");
  };
  switch (k) {
  case Kind::Entry:
    return slot(free_entries_);
  case Kind::Counter:
    return slot(free_counters_);
  case Kind::FilterSlot:
    return slot(free_filters_);
  case Kind::RangeRun:
    return run(free_ranges_);
  case Kind::NodeRun:
    return run(free_nodes_);
  }
  return 0;
}

uint32_t Pools::take(Kind k, uint32_t len, const char *what, std::unique_lock<std::mutex> &lk) {
  try {
    return take_now(k, len, what);
  } catch (const Error &e) {
    if (e.code != "ENOSPC" || quarantine_.empty())
      throw;
  }
  // replaced memory still waits for a grace period: wait for it and take it back
  uint64_t target = gen_;
  work_.notify_all();
  freed_.wait(lk, [&] { return stop_ || freed_gen_ >= target; });
  return take_now(k, len, what);
}

} // namespace iof
