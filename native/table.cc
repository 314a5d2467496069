// The filter table. One design decision carries the concurrency guarantees (see
// bpf/iofilter.h): a published entry, its ranges and tree nodes are never written
// again. A change composes the disk's new entry in free slots of the mmapped pools,
// then switches the disk's index word with one release store; when put()/remove()
// return, every I/O that enters the program afterwards reads the new entry. What the
// old entry used (its slot, runs, and the counters and stats of replaced filters) is
// quarantined; a reclaimer thread waits for an RCU grace period (membarrier
// MEMBARRIER_CMD_GLOBAL, which is synchronize_rcu) and only then frees it, so a
// program still running on another CPU, or preempted, never sees it reused. RPCs do
// not wait for grace periods, except when a pool is exhausted by quarantined memory.
#include "table.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fstream>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errors.h"
#include "layout.h"

namespace iof {

// CLOCK_BOOTTIME as the program sees it (bpf_ktime_get_boot_ns): clock_gettime adds
// the offset of our time namespace, if any (/proc/self/timens_offsets), so remove it.
static int64_t timens_boot_offset() {
  std::ifstream f("/proc/self/timens_offsets");
  std::string clock;
  long long sec, nsec;
  while (f >> clock >> sec >> nsec)
    if (clock == "boottime" || clock == "7") // older kernels print the clock id
      return sec * 1000000000ll + nsec;
  return 0;
}

uint64_t boottime_ns() {
  timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec - timens_boot_offset();
}

// p in (0,1] -> threshold on a uniform u32; 0 encodes "always".
uint32_t prob_to_u32(double p) {
  if (p >= 1.0)
    return 0;
  double t = std::round(p * 4294967296.0);
  if (t < 1)
    t = 1;
  if (t >= 4294967296.0)
    return 0;
  return uint32_t(t);
}

double u32_to_prob(uint32_t v) { return v == 0 ? 1.0 : double(v) / 4294967296.0; }

static std::string devstr(iof_dev d) { return std::to_string(d.major) + ":" + std::to_string(d.minor); }
static bool same(iof_dev a, iof_dev b) { return a.major == b.major && a.minor == b.minor; }

static uint64_t *index_word(Pinned &p, uint32_t b) { return p.index.at<uint64_t>(b); }
static uint32_t index_load(Pinned &p, uint32_t b) {
  return uint32_t(__atomic_load_n(index_word(p, b), __ATOMIC_ACQUIRE));
}
static void index_store(Pinned &p, uint32_t b, uint32_t v) {
  __atomic_store_n(index_word(p, b), uint64_t(v), __ATOMIC_RELEASE);
}

Table::Table(Pinned &p, const KernelFacts &k)
    : p_(p), fetch_atomics_(k.fetch_atomics), release_(k.release), timed_grace_(!k.membarrier || k.cpus < 2),
      membarrier_(k.membarrier) {
  // whatever an earlier owner had quarantined when it stopped is free after this
  grace();
  rebuild();
  reclaimer_ = std::thread([this] { reclaim_loop(); });
}

Table::~Table() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  work_.notify_all();
  freed_.notify_all();
  if (reclaimer_.joinable())
    reclaimer_.join();
}

template <typename F> void Table::for_each_entry(F fn) {
  for (uint32_t b = 0; b < p_.index.max_entries; b++) {
    uint32_t v = index_load(p_, b);
    if (v == IOF_INDEX_EMPTY || v == IOF_INDEX_TOMB)
      continue;
    const iof_entry *e = p_.entries.at<iof_entry>(v - 1);
    if (e)
      fn(b, v - 1, *e);
  }
}

// Free lists from what the published entries use; everything else is free.
void Table::rebuild() {
  std::vector<bool> entries(p_.entries.max_entries), counters(p_.counters.max_entries), filters(p_.fstats.max_entries);
  std::vector<bool> ranges(p_.ranges.max_entries), nodes(p_.nodes.max_entries);
  uint32_t disks = 0;
  for_each_entry([&](uint32_t, uint32_t slot, const iof_entry &e) {
    disks++;
    entries[slot] = true;
    for (uint32_t li = 0; li < e.nr_layers && li < IOF_MAX_LAYERS; li++) {
      const iof_layer &l = e.layers[li];
      for (uint32_t i = 0; i < l.nr_ranges; i++) {
        if (l.range_off + i < ranges.size())
          ranges[l.range_off + i] = true;
        if (const iof_range *r = p_.ranges.at<iof_range>(l.range_off + i); r && r->counter < counters.size())
          counters[r->counter] = true;
      }
      for (uint32_t i = 0, n = tree_nodes(l.nr_ranges); i < n; i++)
        if (l.node_off + i < nodes.size())
          nodes[l.node_off + i] = true;
    }
    for (uint32_t fi = 0; fi < e.nr_filters && fi < IOF_MAX_FILTERS; fi++) {
      if (e.filters[fi].stats < filters.size())
        filters[e.filters[fi].stats] = true;
      next_id_ = std::max(next_id_, e.filters[fi].id + 1);
    }
  });
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
  if (iof_state *st = p_.state.at<iof_state>(0))
    __atomic_store_n(&st->nr_disks, disks, __ATOMIC_RELEASE);
}

// ---- grace periods ----------------------------------------------------------------

void Table::grace() {
  if (membarrier_)
    syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0);
  // without membarrier, or on one CPU (where it returns at once although a program
  // may be preempted), fall back to time: a program run takes microseconds
  if (timed_grace_)
    std::this_thread::sleep_for(std::chrono::seconds(1));
}

void Table::reclaim_loop() {
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
        release_now(q);
      else
        keep.push_back(q);
    }
    quarantine_.swap(keep);
    freed_gen_ = g;
    freed_.notify_all();
  }
}

// Blocks until everything quarantined so far is free (a pool ran out).
void Table::wait_reclaimed(std::unique_lock<std::mutex> &lk) {
  uint64_t target = gen_;
  work_.notify_all();
  freed_.wait(lk, [&] { return stop_ || freed_gen_ >= target; });
}

void Table::quarantine(Kind k, uint32_t off, uint32_t len) {
  quarantine_.push_back({k, off, len, gen_});
  work_.notify_all();
}

void Table::release_now(const Quarantined &q) {
  switch (q.kind) {
  case Kind::Entry:
    free_entries_.push_back(q.off);
    break;
  case Kind::Counter:
    free_counters_.push_back(q.off);
    break;
  case Kind::FilterSlot:
    free_filters_.push_back(q.off);
    break;
  case Kind::RangeRun:
    give_run(free_ranges_, q.off, q.len);
    break;
  case Kind::NodeRun:
    give_run(free_nodes_, q.off, q.len);
    break;
  }
}

uint32_t Table::take_slot(std::vector<uint32_t> &free, const char *what) {
  if (free.empty())
    exhausted(std::string(what) + " exhausted");
  uint32_t s = free.back();
  free.pop_back();
  return s;
}

uint32_t Table::take_run(std::map<uint32_t, uint32_t> &free, uint32_t len, const char *what) {
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
}

void Table::give_run(std::map<uint32_t, uint32_t> &free, uint32_t off, uint32_t len) {
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

template <typename F> auto Table::with_retry(std::unique_lock<std::mutex> &lk, F alloc) -> decltype(alloc()) {
  try {
    return alloc();
  } catch (const Error &e) {
    if (e.code != "ENOSPC" || quarantine_.empty())
      throw;
  }
  wait_reclaimed(lk); // replaced memory still waits for a grace period: take it back
  return alloc();
}

// ---- composing and publishing entries ---------------------------------------------

int64_t Table::bucket_of(const iof_dev &disk) {
  uint32_t mask = p_.index.max_entries - 1, h = iof_hash(disk.major, disk.minor);
  for (uint32_t i = 0; i < IOF_PROBES; i++) {
    uint32_t b = (h + i) & mask, v = index_load(p_, b);
    if (v == IOF_INDEX_EMPTY)
      return -1;
    if (v == IOF_INDEX_TOMB)
      continue;
    const iof_entry *e = p_.entries.at<iof_entry>(v - 1);
    if (e && same(e->disk, disk))
      return b;
  }
  return -1;
}

const iof_entry *Table::entry_of(const iof_dev &disk) {
  int64_t b = bucket_of(disk);
  return b < 0 ? nullptr : p_.entries.at<iof_entry>(index_load(p_, uint32_t(b)) - 1);
}

std::vector<Table::Composed> Table::decompose(const iof_entry &e) {
  std::vector<Composed> out(std::min<uint32_t>(e.nr_filters, IOF_MAX_FILTERS));
  for (size_t fi = 0; fi < out.size(); fi++)
    out[fi].f = e.filters[fi];
  for (uint32_t li = 0; li < e.nr_layers && li < IOF_MAX_LAYERS; li++)
    for (uint32_t i = 0; i < e.layers[li].nr_ranges; i++)
      if (const iof_range *r = p_.ranges.at<iof_range>(e.layers[li].range_off + i); r && r->filter < out.size())
        out[r->filter].ranges.push_back(*r);
  for (Composed &c : out)
    std::sort(c.ranges.begin(), c.ranges.end(),
              [](const iof_range &a, const iof_range &b) { return a.index < b.index; });
  return out;
}

void Table::retire_entry(const iof_entry &e, uint32_t slot) {
  quarantine(Kind::Entry, slot, 1);
  if (e.nr_layers) {
    // one run of ranges and one of nodes per entry, layer 0 first
    uint32_t nr = 0, nn = 0;
    for (uint32_t li = 0; li < e.nr_layers && li < IOF_MAX_LAYERS; li++) {
      nr += e.layers[li].nr_ranges;
      nn += tree_nodes(e.layers[li].nr_ranges);
    }
    quarantine(Kind::RangeRun, e.layers[0].range_off, nr);
    quarantine(Kind::NodeRun, e.layers[0].node_off, nn);
  }
}

void Table::retire_filter(const Composed &c) {
  for (const iof_range &r : c.ranges)
    quarantine(Kind::Counter, r.counter, 1);
  quarantine(Kind::FilterSlot, c.f.stats, 1);
}

// Publishes `filters` as the disk's entry (none: removes it). Either the new entry is
// published, or nothing changed and the error says why.
void Table::publish(const iof_dev &disk, std::vector<Composed> filters, std::unique_lock<std::mutex> &lk) {
  uint32_t mask = p_.index.max_entries - 1;
  int64_t b = bucket_of(disk);
  iof_state *st = p_.state.at<iof_state>(0);
  if (filters.empty()) {
    if (b < 0)
      return;
    uint32_t old = index_load(p_, uint32_t(b)) - 1;
    index_store(p_, uint32_t(b), IOF_INDEX_TOMB);
    // a tombstone followed by an empty bucket ends no probe chain: make it empty
    for (uint32_t x = uint32_t(b);
         index_load(p_, x) == IOF_INDEX_TOMB && index_load(p_, (x + 1) & mask) == IOF_INDEX_EMPTY; x = (x - 1) & mask)
      index_store(p_, x, IOF_INDEX_EMPTY);
    __atomic_fetch_sub(&st->nr_disks, 1, __ATOMIC_RELEASE);
    retire_entry(*p_.entries.at<iof_entry>(old), old);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return;
  }
  std::vector<iof_range> all;
  for (uint32_t fi = 0; fi < filters.size(); fi++)
    for (iof_range r : filters[fi].ranges) {
      r.filter = uint8_t(fi);
      all.push_back(r);
    }
  std::vector<LayerOut> layers = build_layers(all);
  uint32_t nr = uint32_t(all.size()), nn = 0;
  for (const LayerOut &l : layers)
    nn += uint32_t(l.nodes.size());
  int64_t fresh = -1;
  if (b < 0) {
    uint32_t h = iof_hash(disk.major, disk.minor);
    for (uint32_t i = 0; i < IOF_PROBES && fresh < 0; i++) {
      uint32_t v = index_load(p_, (h + i) & mask);
      if (v == IOF_INDEX_EMPTY || v == IOF_INDEX_TOMB)
        fresh = (h + i) & mask;
    }
    if (fresh < 0)
      exhausted("the disk index has no room near disk " + devstr(disk) + "'s hash (" +
                std::to_string(p_.index.max_entries) + " buckets for maxDisks " + std::to_string(p_.sizes.max_disks) +
                ")");
  }
  uint32_t slot = with_retry(lk, [&] { return take_slot(free_entries_, "disk entries (maxDisks)"); });
  uint32_t roff, noff;
  try {
    roff = with_retry(lk, [&] { return take_run(free_ranges_, nr, "the range pool (maxRangesTotal)"); });
    try {
      noff = with_retry(lk, [&] { return take_run(free_nodes_, nn, "the search-tree pool"); });
    } catch (...) {
      give_run(free_ranges_, roff, nr);
      throw;
    }
  } catch (...) {
    free_entries_.push_back(slot);
    throw;
  }
  iof_entry *e = p_.entries.at<iof_entry>(slot);
  memset(e, 0, sizeof(*e));
  e->disk = disk;
  e->nr_filters = uint32_t(filters.size());
  e->nr_layers = uint32_t(layers.size());
  for (uint32_t fi = 0; fi < filters.size(); fi++)
    e->filters[fi] = filters[fi].f;
  uint32_t ro = roff, no = noff;
  for (uint32_t li = 0; li < layers.size(); li++) {
    const LayerOut &l = layers[li];
    iof_layer &dst = e->layers[li];
    dst.range_off = ro;
    dst.nr_ranges = uint32_t(l.ranges.size());
    dst.node_off = no;
    dst.nr_levels = uint32_t(l.level_off.size());
    for (uint32_t h = 0; h < l.level_off.size(); h++)
      dst.level_off[h] = l.level_off[h];
    for (const iof_range &r : l.ranges)
      *p_.ranges.at<iof_range>(ro++) = r;
    for (const iof_node &n : l.nodes)
      *p_.nodes.at<iof_node>(no++) = n;
  }
  if (b >= 0) {
    uint32_t old = index_load(p_, uint32_t(b)) - 1;
    index_store(p_, uint32_t(b), slot + 1); // the switch: old entry or new, never a mix
    retire_entry(*p_.entries.at<iof_entry>(old), old);
  } else {
    // counted before it is findable, so the "no filter at all" test never skips it
    __atomic_fetch_add(&st->nr_disks, 1, __ATOMIC_RELEASE);
    index_store(p_, uint32_t(fresh), slot + 1);
  }
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

// ---- the operations ------------------------------------------------------------------

FilterInfo Table::put(const FilterSpec &s) {
  std::unique_lock<std::mutex> lk(mu_);
  if (!(s.probability > 0 && s.probability <= 1))
    range_error("probability must be in (0, 1], got " + std::to_string(s.probability));
  if (s.max_failures && !fetch_atomics_)
    throw Error(
        "ENOTSUP", ENOTSUP,
        "max_failures needs BPF atomic fetch-add (Linux 5.12+) to count exactly under concurrency; this kernel is " +
            release_ + ": not supported here");
  if (s.cgroup.id && s.cgroup.level > 255)
    range_error("cgroup level " + std::to_string(s.cgroup.level) + " is deeper than cgroup v2 allows");
  if (s.events_per_sec > 1000000)
    range_error("events per second must be at most 1000000, got " + std::to_string(s.events_per_sec));
  std::vector<RangeSpec> ranges = s.ranges;
  bool whole = ranges.empty();
  if (whole) {
    if (s.size == 0)
      range_error("no ranges and no device size: cannot cover the whole device");
    ranges.push_back({0, s.size - 1, s.whole_ops});
  }
  if (ranges.size() > IOF_MAX_RANGES)
    range_error("too many ranges: " + std::to_string(ranges.size()) + ", limit " + std::to_string(IOF_MAX_RANGES) +
                    " per filter",
                "E2BIG");
  uint32_t any_flush = 0;
  for (size_t i = 0; i < ranges.size(); i++) {
    const RangeSpec &r = ranges[i];
    std::string at = "range " + std::to_string(i) + " [" + std::to_string(r.start) + ", " + std::to_string(r.end) + "]";
    if (r.start > r.end)
      range_error(at + ": start > end");
    if (r.ops == 0 || (r.ops & ~IOF_OP_ALL))
      range_error(at + ": no operations selected");
    if (r.end > IOF_SECTOR_MAX - s.offset)
      range_error(at + ": beyond the end of the disk's sector space at offset " + std::to_string(s.offset));
    if (s.size && r.end >= s.size)
      range_error(at + ": beyond the device's last sector " + std::to_string(s.size - 1));
    any_flush |= r.ops & IOF_OP_FLUSH;
  }

  std::vector<Composed> filters;
  if (const iof_entry *old = entry_of(s.disk))
    filters = decompose(*old);
  int replace = -1;
  for (size_t i = 0; i < filters.size(); i++)
    if (same(filters[i].f.dev, s.device) && filters[i].f.cgroup_id == s.cgroup.id)
      replace = int(i);
  if (replace < 0 && filters.size() >= IOF_MAX_FILTERS)
    range_error("too many filters on disk " + devstr(s.disk) + ": limit " + std::to_string(IOF_MAX_FILTERS) +
                    " (the disk, its partitions and their cgroup scopes)",
                "E2BIG");
  size_t others = 0;
  for (size_t i = 0; i < filters.size(); i++)
    if (int(i) != replace)
      others += filters[i].ranges.size();
  if (others + ranges.size() > IOF_MAX_RANGES)
    range_error("too many ranges: disk " + devstr(s.disk) + " would hold " + std::to_string(others + ranges.size()) +
                    " ranges, limit " + std::to_string(IOF_MAX_RANGES) + " per disk (" + std::to_string(others) +
                    " held by other filters on it)",
                "E2BIG");

  // the new filter's slots: zeroed before anything that points at them is published
  Composed c;
  std::vector<uint32_t> taken;
  memset(&c.f, 0, sizeof(c.f));
  c.f.stats = with_retry(lk, [&] { return take_slot(free_filters_, "filter slots (maxFiltersTotal)"); });
  auto give_back = [&] { // never published: free at once
    for (uint32_t x : taken)
      free_counters_.push_back(x);
    free_filters_.push_back(c.f.stats);
  };
  try {
    for (size_t i = 0; i < ranges.size(); i++)
      taken.push_back(with_retry(lk, [&] { return take_slot(free_counters_, "range counters (maxRangesTotal)"); }));
  } catch (...) {
    give_back();
    throw;
  }
  *p_.fstats.at<iof_fstats>(c.f.stats) = iof_fstats{};
  iof_meta *m = p_.meta.at<iof_meta>(c.f.stats);
  memset(m, 0, sizeof(*m));
  if (!s.meta.file.empty()) {
    m->kind |= IOF_META_FILE;
    strncpy(m->file, s.meta.file.c_str(), IOF_META_PATH - 1);
  }
  if (!s.meta.cgroup_path.empty()) {
    m->kind |= IOF_META_CGROUP;
    strncpy(m->cgroup, s.meta.cgroup_path.c_str(), IOF_META_PATH - 1);
  }
  if (s.meta.from_pid) {
    m->kind |= IOF_META_PID;
    m->from_pid = s.meta.from_pid;
  }
  c.f.dev = s.device;
  c.f.offset = s.offset;
  c.f.size = s.size;
  c.f.expires_ns = s.ttl_ms ? boottime_ns() + s.ttl_ms * 1000000ull : 0;
  c.f.max_failures = s.max_failures;
  c.f.cgroup_id = s.cgroup.id;
  c.f.cgroup_level = s.cgroup.id ? s.cgroup.level : 0;
  c.f.prob = prob_to_u32(s.probability);
  c.f.id = next_id_;
  c.f.events_per_sec = s.events_per_sec;
  c.f.flags = (whole ? IOF_FILTER_WHOLE : 0) | (any_flush ? IOF_FILTER_FLUSH : 0) |
              (s.events_spared ? IOF_FILTER_EVENTS_SPARED : 0) | (s.selftest ? IOF_FILTER_SELFTEST : 0);
  for (size_t i = 0; i < ranges.size(); i++) {
    iof_range r = {};
    r.start = s.offset + ranges[i].start;
    r.end = s.offset + ranges[i].end;
    r.counter = taken[i];
    r.ops = uint8_t(ranges[i].ops);
    r.index = uint16_t(i);
    *p_.counters.at<iof_counter>(taken[i]) = iof_counter{};
    c.ranges.push_back(r);
  }
  std::vector<Composed> next = filters;
  if (replace >= 0)
    next[replace] = c; // keeps its place: filters are judged in order
  else
    next.push_back(c);
  try {
    publish(s.disk, next, lk);
  } catch (...) {
    give_back();
    throw;
  }
  next_id_++;
  if (replace >= 0)
    retire_filter(filters[replace]);
  FilterInfo out = info(s.disk, c, boottime_ns());
  return out;
}

static bool matches(const FilterKey &k, const iof_filter &f) {
  if (bool(f.flags & IOF_FILTER_SELFTEST) != k.selftest)
    return false;
  switch (k.kind) {
  case FilterKey::Id:
    return f.id == k.id;
  case FilterKey::AllScopes:
    return same(f.dev, k.device);
  case FilterKey::Scope:
    return same(f.dev, k.device) && f.cgroup_id == k.cgroup_id;
  }
  return false;
}

std::optional<FilterInfo> Table::get(const FilterKey &key) {
  std::unique_lock<std::mutex> lk(mu_);
  std::optional<FilterInfo> out;
  uint64_t now = boottime_ns();
  for_each_entry([&](uint32_t, uint32_t, const iof_entry &e) {
    for (uint32_t fi = 0; !out && fi < e.nr_filters && fi < IOF_MAX_FILTERS; fi++)
      if (matches(key, e.filters[fi]))
        for (const Composed &c : decompose(e))
          if (c.f.id == e.filters[fi].id)
            out = info(e.disk, c, now);
  });
  return out;
}

uint32_t Table::remove(const FilterKey &key) {
  std::unique_lock<std::mutex> lk(mu_);
  std::vector<iof_dev> disks;
  for_each_entry([&](uint32_t, uint32_t, const iof_entry &e) {
    for (uint32_t fi = 0; fi < e.nr_filters && fi < IOF_MAX_FILTERS; fi++)
      if (matches(key, e.filters[fi])) {
        disks.push_back(e.disk);
        break;
      }
  });
  uint32_t removed = 0;
  for (const iof_dev &d : disks) {
    std::vector<Composed> keep, gone;
    for (Composed &c : decompose(*entry_of(d)))
      (matches(key, c.f) ? gone : keep).push_back(std::move(c));
    publish(d, keep, lk);
    for (const Composed &c : gone)
      retire_filter(c);
    removed += uint32_t(gone.size());
  }
  return removed;
}

uint32_t Table::clear() {
  std::unique_lock<std::mutex> lk(mu_);
  std::vector<iof_dev> disks;
  for_each_entry([&](uint32_t, uint32_t, const iof_entry &e) { disks.push_back(e.disk); });
  uint32_t removed = 0;
  for (const iof_dev &d : disks) {
    std::vector<Composed> gone = decompose(*entry_of(d));
    publish(d, {}, lk);
    for (const Composed &c : gone) {
      retire_filter(c);
      removed += !(c.f.flags & IOF_FILTER_SELFTEST);
    }
  }
  return removed;
}

std::vector<FilterInfo> Table::list() {
  std::unique_lock<std::mutex> lk(mu_);
  std::vector<FilterInfo> out;
  uint64_t now = boottime_ns();
  for_each_entry([&](uint32_t, uint32_t, const iof_entry &e) {
    for (const Composed &c : decompose(e))
      if (!(c.f.flags & IOF_FILTER_SELFTEST))
        out.push_back(info(e.disk, c, now));
  });
  std::sort(out.begin(), out.end(), [](const FilterInfo &a, const FilterInfo &b) {
    if (a.device.major != b.device.major)
      return a.device.major < b.device.major;
    if (a.device.minor != b.device.minor)
      return a.device.minor < b.device.minor;
    return a.id < b.id;
  });
  return out;
}

uint32_t Table::reap_expired() {
  std::unique_lock<std::mutex> lk(mu_);
  uint64_t now = boottime_ns();
  std::vector<iof_dev> disks;
  for_each_entry([&](uint32_t, uint32_t, const iof_entry &e) {
    for (uint32_t fi = 0; fi < e.nr_filters && fi < IOF_MAX_FILTERS; fi++)
      if (e.filters[fi].expires_ns && now >= e.filters[fi].expires_ns) {
        disks.push_back(e.disk);
        break;
      }
  });
  uint32_t reaped = 0;
  for (const iof_dev &d : disks) {
    std::vector<Composed> keep, gone;
    for (Composed &c : decompose(*entry_of(d)))
      (c.f.expires_ns && now >= c.f.expires_ns ? gone : keep).push_back(std::move(c));
    publish(d, keep, lk);
    for (const Composed &c : gone) {
      retire_filter(c);
      reaped += !(c.f.flags & IOF_FILTER_SELFTEST);
    }
  }
  return reaped;
}

uint64_t Table::truncated() {
  const iof_state *st = p_.state.at<iof_state>(0);
  return st ? __atomic_load_n(&st->truncated, __ATOMIC_RELAXED) : 0;
}

uint64_t Table::events_lost() {
  const iof_state *st = p_.state.at<iof_state>(0);
  return st ? __atomic_load_n(&st->events_lost, __ATOMIC_RELAXED) : 0;
}

FilterInfo Table::info(const iof_dev &disk, const Composed &c, uint64_t now) {
  const iof_filter &f = c.f;
  FilterInfo out;
  out.id = f.id;
  out.device = f.dev;
  out.disk = disk;
  out.offset = f.offset;
  out.size = f.size;
  out.whole = f.flags & IOF_FILTER_WHOLE;
  out.probability = u32_to_prob(f.prob);
  out.max_failures = f.max_failures;
  out.cgroup = {f.cgroup_id, f.cgroup_level};
  out.events_per_sec = f.events_per_sec;
  out.events_spared = f.flags & IOF_FILTER_EVENTS_SPARED;
  iof_fstats fs = {};
  if (const iof_fstats *p = p_.fstats.at<iof_fstats>(f.stats))
    fs = *p;
  out.matched_ios = fs.matched;
  out.failed_ios = fs.failed;
  out.failures = f.max_failures ? std::min(fs.failed, f.max_failures) : 0;
  out.events_dropped = fs.ev_dropped;
  if (f.expires_ns)
    out.remaining_ms = now >= f.expires_ns ? 0 : (f.expires_ns - now + 999999) / 1000000;
  for (const iof_range &r : c.ranges) {
    iof_counter rc = {};
    if (const iof_counter *p = p_.counters.at<iof_counter>(r.counter))
      rc = *p;
    // empty flushes match a filter by device and count on its flush ranges
    uint64_t fm = (r.ops & IOF_OP_FLUSH) ? fs.flush_matched : 0, ff = (r.ops & IOF_OP_FLUSH) ? fs.flush_failed : 0;
    out.ranges.push_back({r.start - f.offset, r.end - f.offset, rc.matched + fm, rc.failed + ff, r.ops});
  }
  if (const iof_meta *m = p_.meta.at<iof_meta>(f.stats)) {
    if (m->kind & IOF_META_FILE)
      out.meta.file = std::string(m->file, strnlen(m->file, IOF_META_PATH));
    if (m->kind & IOF_META_CGROUP)
      out.meta.cgroup_path = std::string(m->cgroup, strnlen(m->cgroup, IOF_META_PATH));
    if (m->kind & IOF_META_PID)
      out.meta.from_pid = m->from_pid;
  }
  return out;
}

} // namespace iof
