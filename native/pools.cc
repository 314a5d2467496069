// Slots, runs, and the grace-period reclaimer.
#include "pools.h"

#include <algorithm>
#include <cerrno>
#include <unistd.h>

extern "C" {
#include <bpf/bpf.h>
}

#include "errors.h"

namespace iof {

RcuGrace::RcuGrace() {
  inner_ = bpf_map_create(BPF_MAP_TYPE_ARRAY, "iof_grace_in", 4, 4, 1, nullptr);
  if (inner_ < 0)
    sysfail(errno, "cannot wait for RCU grace periods: creating an array map");
  LIBBPF_OPTS(bpf_map_create_opts, o, .inner_map_fd = uint32_t(inner_));
  outer_ = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "iof_grace", 4, 4, 1, &o);
  if (outer_ < 0) {
    int err = errno;
    close(inner_);
    sysfail(err, "cannot wait for RCU grace periods: creating an array-of-maps map");
  }
}

RcuGrace::~RcuGrace() {
  close(outer_);
  close(inner_);
}

void RcuGrace::wait() {
  uint32_t key = 0, fd = uint32_t(inner_);
  // only a successful update is followed by synchronize_rcu() on every kernel (6.8+)
  if (bpf_map_update_elem(outer_, &key, &fd, BPF_ANY))
    sysfail(errno, "cannot wait for an RCU grace period (update of an array-of-maps element)");
}

Pools::Pools(Grace grace) : grace_(std::move(grace)) {}

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
  grace_();
  graces_++;
}

uint64_t Pools::graces() { return graces_; }

// Rounds run as long as anything is quarantined, whoever waits: a round stamped g frees
// everything quarantined before it began, and a waiter never needs work only it could create.
void Pools::reclaim_loop() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_) {
    work_.wait(lk, [&] { return stop_ || !quarantine_.empty(); });
    if (stop_)
      break;
    uint64_t g = gen_++;
    lk.unlock();
    std::unique_ptr<Error> err;
    try {
      grace();
    } catch (const Error &e) {
      err = std::make_unique<Error>(e);
    } catch (const std::exception &e) {
      err = std::make_unique<Error>("EIO", EIO, e.what());
    }
    lk.lock();
    if (err) { // no grace period, no freeing: what is quarantined stays so
      failed_ = std::move(err);
      freed_.notify_all();
      break;
    }
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

// Waiting unlocks `lk` in the middle of a change (publish(), compose()). That is safe
// because Table operations never overlap (the JS thread; attach's self-test on a
// worker before JS holds the table): while one waits, only the reclaimer takes the
// mutex, and it touches nothing but the free lists and the quarantine, so the
// caller's decomposed entry, bucket and taken-but-unpublished slots stay valid.
uint32_t Pools::take(Kind k, uint32_t len, const char *what, std::unique_lock<std::mutex> &lk) {
  for (;;) {
    try {
      return take_now(k, len, what);
    } catch (const Error &e) {
      if (e.code != "ENOSPC" || quarantine_.empty())
        throw;
    }
    if (failed_)
      throw Error(failed_->code, failed_->err,
                  std::string(what) + " exhausted: replaced memory cannot be freed, " + failed_->what());
    // replaced memory waits for a grace period: wait for the round that frees all of
    // it (the newest stamp quarantined), not for one that may never start
    uint64_t target = 0;
    for (const Quarantined &q : quarantine_)
      target = std::max(target, q.gen);
    work_.notify_all();
    freed_.wait(lk, [&] { return stop_ || failed_ || freed_gen_ >= target; });
    if (stop_)
      exhausted(std::string(what) + " exhausted: the pools are shutting down");
    // all of it is free now, unless the grace failed: try again (once more at most,
    // as nothing else quarantines while this thread waits)
  }
}

} // namespace iof
