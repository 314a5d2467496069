// The filter table's operations: validating a spec and composing its filter (new
// counter and stats slots, zeroed before anything that points at them is published),
// replacing or removing filters by key, listing them with their counters, reaping the
// expired ones. Publication and the concurrency guarantees are in publish.cc.
#include "table.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fstream>

#include "errors.h"

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

Table::Table(Pinned &p, const KernelFacts &k)
    : p_(p), fetch_atomics_(k.fetch_atomics), release_(k.release), pools_([this] { rcu_.wait(); }) {
  rebuild(); // after a grace period, whatever an earlier owner had quarantined is free
  pools_.start();
}

// ---- the operations ------------------------------------------------------------------

// The filter `s` describes, with fresh counter and stats slots (zeroed) and its
// metadata written; nothing points at them until the entry is published.
Table::Composed Table::compose(const FilterSpec &s, Lock &lk) {
  if (!(s.probability > 0 && s.probability <= 1))
    range_error("probability must be in (0, 1], got " + std::to_string(s.probability));
  if (s.max_failures && !fetch_atomics_)
    throw Error("ENOTSUP", ENOTSUP,
                "max_failures needs BPF atomic fetch-add (Linux 5.12+) to count exactly under concurrency; this kernel "
                "is " +
                    release_ + ": not supported here");
  if (s.cgroup.id && s.cgroup.level > 255)
    range_error("cgroup level " + std::to_string(s.cgroup.level) + " is deeper than cgroup v2 allows");
  if (s.ttl_ms > MAX_TTL_MS)
    range_error("ttl_ms must be at most " + std::to_string(MAX_TTL_MS) + " (317 years), got " +
                std::to_string(s.ttl_ms));
  if (s.events_per_sec > 1000000)
    range_error("events per second must be at most 1000000, got " + std::to_string(s.events_per_sec));
  std::vector<RangeSpec> ranges = s.ranges;
  bool whole = ranges.empty();
  if (whole) {
    if (s.size == 0)
      range_error("no ranges and no device size: cannot cover the whole device");
    ranges.push_back({0, s.size - 1, s.whole_ops});
  }
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

  Composed c;
  memset(&c.f, 0, sizeof(c.f));
  c.f.stats = pools_.take(Pools::Kind::FilterSlot, 1, "filter slots (maxFiltersTotal)", lk);
  std::vector<uint32_t> taken;
  try {
    for (size_t i = 0; i < ranges.size(); i++)
      taken.push_back(pools_.take(Pools::Kind::Counter, 1, "range counters (maxRangesTotal)", lk));
  } catch (...) {
    for (uint32_t x : taken)
      pools_.give_now(Pools::Kind::Counter, x);
    pools_.give_now(Pools::Kind::FilterSlot, c.f.stats);
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
  c.f.expires_ns = s.ttl_ms ? boottime_ns() + s.ttl_ms * 1000000ull : 0; // bounded above
  c.f.max_failures = s.max_failures;
  c.f.cgroup_id = s.cgroup.id;
  c.f.cgroup_level = s.cgroup.id ? s.cgroup.level : 0;
  c.f.prob = prob_to_u32(s.probability);
  c.f.id = next_id_;
  c.f.events_per_sec = s.events_per_sec;
  c.f.diskseq = s.diskseq;
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
  return c;
}

FilterInfo Table::put(const FilterSpec &s) {
  if (s.ranges.size() > IOF_MAX_RANGES)
    range_error("too many ranges: " + std::to_string(s.ranges.size()) + ", limit " + std::to_string(IOF_MAX_RANGES) +
                    " per filter",
                "E2BIG");
  Lock lk(pools_.mutex());
  std::vector<Composed> filters;
  if (const iof_entry *old = entry_of(s.disk))
    filters = decompose(*old);
  // Filters bound to an earlier medium of this disk (a loop device re-attached, a
  // namespace replaced) no longer match anything: a put on the new medium drops them.
  std::vector<Composed> stale;
  for (auto it = filters.begin(); it != filters.end();)
    if (it->f.diskseq != s.diskseq) {
      stale.push_back(std::move(*it));
      it = filters.erase(it);
    } else
      ++it;
  int replace = -1;
  size_t others = 0;
  for (size_t i = 0; i < filters.size(); i++) {
    if (same(filters[i].f.dev, s.device) && filters[i].f.cgroup_id == s.cgroup.id)
      replace = int(i);
    else
      others += filters[i].ranges.size();
  }
  if (replace < 0 && filters.size() >= IOF_MAX_FILTERS)
    range_error("too many filters on disk " + devstr(s.disk) + ": limit " + std::to_string(IOF_MAX_FILTERS) +
                    " (the disk, its partitions and their cgroup scopes)",
                "E2BIG");
  size_t mine = s.ranges.empty() ? 1 : s.ranges.size();
  if (others + mine > IOF_MAX_RANGES)
    range_error("too many ranges: disk " + devstr(s.disk) + " would hold " + std::to_string(others + mine) +
                    " ranges, limit " + std::to_string(IOF_MAX_RANGES) + " per disk (" + std::to_string(others) +
                    " held by other filters on it)",
                "E2BIG");
  Composed c = compose(s, lk);
  std::vector<Composed> next = filters;
  if (replace >= 0)
    next[replace] = c; // keeps its place: filters are judged in order
  else
    next.push_back(c);
  try {
    publish(s.disk, next, lk);
  } catch (...) { // never published: its slots are free at once
    for (const iof_range &r : c.ranges)
      pools_.give_now(Pools::Kind::Counter, r.counter);
    pools_.give_now(Pools::Kind::FilterSlot, c.f.stats);
    throw;
  }
  next_id_++;
  if (replace >= 0)
    retire_filter(filters[replace]);
  for (const Composed &x : stale)
    retire_filter(x);
  return info(s.disk, c, boottime_ns());
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
  Lock lk(pools_.mutex());
  uint64_t now = boottime_ns();
  for (const iof_dev &d : disks_where([&](const iof_filter &f) { return matches(key, f); }))
    for (const Composed &c : decompose(*entry_of(d)))
      if (matches(key, c.f))
        return info(d, c, now);
  return std::nullopt;
}

// Removes the filters `gone` picks from every disk that has one; returns how many
// (the self-test's own filter is not counted).
uint32_t Table::remove_where(const std::function<bool(const iof_filter &)> &gone) {
  Lock lk(pools_.mutex());
  uint32_t removed = 0;
  for (const iof_dev &d : disks_where(gone)) {
    std::vector<Composed> keep, out;
    for (Composed &c : decompose(*entry_of(d)))
      (gone(c.f) ? out : keep).push_back(std::move(c));
    publish(d, keep, lk);
    for (const Composed &c : out) {
      retire_filter(c);
      removed += !(c.f.flags & IOF_FILTER_SELFTEST);
    }
  }
  return removed;
}

uint32_t Table::remove(const FilterKey &key) {
  return remove_where([&](const iof_filter &f) { return matches(key, f); });
}

uint32_t Table::clear() {
  return remove_where([](const iof_filter &) { return true; });
}

uint32_t Table::reap_expired() {
  uint64_t now = boottime_ns();
  return remove_where([&](const iof_filter &f) { return f.expires_ns && now >= f.expires_ns; });
}

std::vector<FilterInfo> Table::list() {
  Lock lk(pools_.mutex());
  std::vector<FilterInfo> out;
  uint64_t now = boottime_ns();
  for (const iof_dev &d : disks_where([](const iof_filter &) { return true; }))
    for (const Composed &c : decompose(*entry_of(d)))
      if (!(c.f.flags & IOF_FILTER_SELFTEST))
        out.push_back(info(d, c, now));
  std::sort(out.begin(), out.end(), [](const FilterInfo &a, const FilterInfo &b) {
    if (a.device.major != b.device.major)
      return a.device.major < b.device.major;
    if (a.device.minor != b.device.minor)
      return a.device.minor < b.device.minor;
    return a.id < b.id;
  });
  return out;
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
  out.diskseq = f.diskseq;
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
