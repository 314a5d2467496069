// Filters in the pinned maps: composes a whole-disk entry (bpf/iofilter.h) from the
// filters on that disk and its partitions, and writes it with one map update so the
// program sees the old entry or the new one, never a mix. Counter slots are
// allocated here; a slot is zeroed before an entry that points at it is published.
#include "kernel.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>

extern "C" {
#include <bpf/bpf.h>
}

namespace iof {

uint64_t boottime_ns() {
  timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
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

[[noreturn]] static void sysfail(int err, const std::string &what) {
  throw Error(err == ENOENT ? "ENOENT" : err == EPERM ? "EPERM" : "E" + std::to_string(err), err,
              what + ": " + strerror(err));
}

Table::Table(Pinned &p) : p_(p) { rebuild_slots(); }

template <typename F> static void for_each_disk(int fd, F fn) {
  iof_dev key, next;
  iof_dev *prev = nullptr;
  iof_disk entry;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    key = next;
    prev = &key;
    if (bpf_map_lookup_elem(fd, &key, &entry) == 0)
      fn(key, entry);
  }
}

void Table::rebuild_slots() {
  used_.assign(p_.nr_slots, false);
  for_each_disk(p_.disks_fd, [&](const iof_dev &, const iof_disk &d) {
    for (uint32_t i = 0; i < d.nr_filters && i < IOF_MAX_FILTERS; i++)
      if (d.filters[i].counter < used_.size())
        used_[d.filters[i].counter] = true;
    for (uint32_t i = 0; i < d.nr_ranges && i < IOF_MAX_RANGES; i++)
      if (d.ranges[i].counter < used_.size())
        used_[d.ranges[i].counter] = true;
  });
}

std::vector<uint32_t> Table::alloc_slots(size_t n) {
  std::vector<uint32_t> out;
  for (uint32_t s = 0; s < used_.size() && out.size() < n; s++)
    if (!used_[s])
      out.push_back(s);
  if (out.size() < n)
    throw Error("ENOSPC", ENOSPC, "counter slots exhausted (" + std::to_string(used_.size()) + " in all)");
  iof_counter zero = {};
  for (uint32_t s : out) {
    if (bpf_map_update_elem(p_.counters_fd, &s, &zero, BPF_ANY) != 0)
      sysfail(errno, "zeroing counter slot " + std::to_string(s));
  }
  for (uint32_t s : out)
    used_[s] = true;
  return out;
}

void Table::free_slots_of(const iof_disk &d, uint32_t fi) {
  if (d.filters[fi].counter < used_.size())
    used_[d.filters[fi].counter] = false;
  for (uint32_t i = 0; i < d.nr_ranges && i < IOF_MAX_RANGES; i++)
    if (d.ranges[i].filter == fi && d.ranges[i].counter < used_.size())
      used_[d.ranges[i].counter] = false;
}

bool Table::find(iof_dev dev, iof_dev &disk, iof_disk &entry, uint32_t &fi) {
  bool found = false;
  for_each_disk(p_.disks_fd, [&](const iof_dev &k, const iof_disk &d) {
    for (uint32_t i = 0; !found && i < d.nr_filters && i < IOF_MAX_FILTERS; i++) {
      if (same(d.filters[i].dev, dev)) {
        found = true;
        disk = k;
        entry = d;
        fi = i;
      }
    }
  });
  return found;
}

// Rewrites the state the program checks before its hash lookup: how many disks have
// filters and which bits they hash to, from the map itself (plus `adding`, about to
// be inserted).
void Table::publish_state(const iof_dev *adding) {
  iof_state st;
  memset(&st, 0, sizeof(st));
  auto mark = [&](const iof_dev &d) {
    uint32_t bit = iof_disk_bit(d.major, d.minor);
    st.disk_bits[bit / 64] |= 1ull << (bit % 64);
  };
  bool seen = false;
  for_each_disk(p_.disks_fd, [&](const iof_dev &k, const iof_disk &) {
    st.nr_disks++;
    mark(k);
    seen = seen || (adding && same(k, *adding));
  });
  if (adding && !seen) {
    st.nr_disks++;
    mark(*adding);
  }
  uint32_t zero = 0;
  if (bpf_map_update_elem(p_.state_fd, &zero, &st, BPF_ANY) != 0)
    sysfail(errno, "updating the state map");
}

// Publishes `entry` for `disk` (nullptr: delete it). The state marks a disk before its
// entry is inserted and unmarks it after its entry is deleted, so the program never
// skips a disk that has a filter.
void Table::write_entry(const iof_dev &disk, const iof_disk *entry, bool existed) {
  if (!entry) {
    if (bpf_map_delete_elem(p_.disks_fd, &disk) != 0 && errno != ENOENT)
      sysfail(errno, "deleting the entry of disk " + devstr(disk));
    publish_state(nullptr);
    return;
  }
  if (!existed)
    publish_state(&disk);
  if (bpf_map_update_elem(p_.disks_fd, &disk, entry, BPF_ANY) != 0) {
    int err = errno;
    publish_state(nullptr);
    if (err == E2BIG || err == ENOSPC || err == ENOMEM)
      throw Error("ENOSPC", ENOSPC,
                  "filter map full: " + std::to_string(p_.max_disks) + " disks already have filters (maxDisks)");
    sysfail(err, "writing the entry of disk " + devstr(disk));
  }
}

// A copy of `d` without filter `drop` (indices above it shift down).
static iof_disk without(const iof_disk &d, int drop) {
  iof_disk n;
  memset(&n, 0, sizeof(n));
  uint32_t map[IOF_MAX_FILTERS];
  for (uint32_t i = 0; i < d.nr_filters && i < IOF_MAX_FILTERS; i++) {
    if (int(i) == drop)
      continue;
    map[i] = n.nr_filters;
    n.filters[n.nr_filters++] = d.filters[i];
  }
  for (uint32_t i = 0; i < d.nr_ranges && i < IOF_MAX_RANGES; i++) {
    if (int(d.ranges[i].filter) == drop || d.ranges[i].filter >= d.nr_filters)
      continue;
    n.ranges[n.nr_ranges] = d.ranges[i];
    n.ranges[n.nr_ranges++].filter = map[d.ranges[i].filter];
  }
  return n;
}

FilterInfo Table::put(const FilterSpec &s) {
  std::lock_guard<std::mutex> lock(mu_);
  auto range_err = [](const std::string &m) { throw Error("ERANGE", ERANGE, m, Error::Range); };
  if ((s.device.major == 0 && s.device.minor == 0) || (s.disk.major == 0 && s.disk.minor == 0))
    range_err("device 0:0 is not a block device");
  if (!(s.probability > 0 && s.probability <= 1))
    range_err("probability must be in (0, 1], got " + std::to_string(s.probability));

  std::vector<RangeSpec> ranges = s.ranges;
  bool whole = ranges.empty();
  if (whole) {
    if (s.size == 0)
      range_err("no ranges and no device size: cannot cover the whole device");
    ranges.push_back({0, s.size - 1, s.whole_ops});
  }
  for (size_t i = 0; i < ranges.size(); i++) {
    const RangeSpec &r = ranges[i];
    std::string at = "range " + std::to_string(i) + " [" + std::to_string(r.start) + ", " + std::to_string(r.end) + "]";
    if (r.start > r.end)
      range_err(at + ": start > end");
    if (r.ops == 0 || (r.ops & ~IOF_OP_ALL))
      range_err(at + ": no operations selected");
    if (r.end > IOF_SECTOR_MAX - s.offset)
      range_err(at + ": beyond the end of the disk's sector space at offset " + std::to_string(s.offset));
    if (s.size && r.end >= s.size)
      range_err(at + ": beyond the device's last sector " + std::to_string(s.size - 1));
  }

  iof_disk old;
  memset(&old, 0, sizeof(old));
  bool existed = bpf_map_lookup_elem(p_.disks_fd, &s.disk, &old) == 0;
  int drop = -1;
  for (uint32_t i = 0; existed && i < old.nr_filters && i < IOF_MAX_FILTERS; i++)
    if (same(old.filters[i].dev, s.device))
      drop = int(i);
  iof_disk n = without(old, drop);

  if (n.nr_filters >= IOF_MAX_FILTERS)
    throw Error("E2BIG", E2BIG,
                "too many filters on disk " + devstr(s.disk) + ": limit " + std::to_string(IOF_MAX_FILTERS) +
                    " (the disk and its partitions)",
                Error::Range);
  if (n.nr_ranges + ranges.size() > IOF_MAX_RANGES)
    range_err("too many ranges: disk " + devstr(s.disk) + " would hold " + std::to_string(n.nr_ranges + ranges.size()) +
              " ranges, limit " + std::to_string(IOF_MAX_RANGES) + " per disk (" + std::to_string(n.nr_ranges) +
              " held by other filters on it)");

  std::vector<uint32_t> slots = alloc_slots(ranges.size() + 1);
  uint32_t fi = n.nr_filters++;
  iof_filter &f = n.filters[fi];
  f.dev = s.device;
  f.offset = s.offset;
  f.size = s.size;
  f.expires_ns = s.ttl_ms ? boottime_ns() + s.ttl_ms * 1000000ull : 0;
  f.max_failures = s.max_failures;
  f.prob = prob_to_u32(s.probability);
  f.counter = slots[0];
  f.flags = whole ? IOF_FILTER_WHOLE : 0;
  for (size_t i = 0; i < ranges.size(); i++) {
    iof_range &r = n.ranges[n.nr_ranges++];
    r.start = s.offset + ranges[i].start;
    r.end = s.offset + ranges[i].end;
    r.ops = ranges[i].ops;
    r.counter = slots[1 + i];
    r.filter = uint16_t(fi);
    r.index = uint16_t(i);
  }
  std::stable_sort(n.ranges, n.ranges + n.nr_ranges,
                   [](const iof_range &a, const iof_range &b) { return a.start < b.start; });
  try {
    write_entry(s.disk, &n, existed);
  } catch (...) {
    for (uint32_t sl : slots)
      used_[sl] = false;
    throw;
  }
  if (drop >= 0)
    free_slots_of(old, uint32_t(drop));
  return info(n, fi, boottime_ns());
}

FilterInfo Table::info(const iof_disk &d, uint32_t fi, uint64_t now) {
  const iof_filter &f = d.filters[fi];
  FilterInfo out;
  out.device = f.dev;
  out.offset = f.offset;
  out.size = f.size;
  out.whole = f.flags & IOF_FILTER_WHOLE;
  out.probability = u32_to_prob(f.prob);
  out.max_failures = f.max_failures;
  iof_counter c = {};
  bpf_map_lookup_elem(p_.counters_fd, &f.counter, &c);
  out.failures = f.max_failures ? std::min<uint64_t>(c.failed, f.max_failures) : 0;
  if (f.expires_ns)
    out.remaining_ms = now >= f.expires_ns ? 0 : (f.expires_ns - now + 999999) / 1000000;
  std::vector<std::pair<uint16_t, RangeInfo>> rs;
  for (uint32_t i = 0; i < d.nr_ranges && i < IOF_MAX_RANGES; i++) {
    const iof_range &r = d.ranges[i];
    if (r.filter != fi)
      continue;
    iof_counter rc = {};
    bpf_map_lookup_elem(p_.counters_fd, &r.counter, &rc);
    rs.push_back({r.index, RangeInfo{r.start - f.offset, r.end - f.offset, rc.matched, rc.failed, r.ops}});
  }
  std::sort(rs.begin(), rs.end(), [](auto &a, auto &b) { return a.first < b.first; });
  for (auto &r : rs)
    out.ranges.push_back(r.second);
  return out;
}

std::optional<FilterInfo> Table::get(iof_dev dev) {
  std::lock_guard<std::mutex> lock(mu_);
  iof_dev disk;
  iof_disk entry;
  uint32_t fi;
  if (!find(dev, disk, entry, fi))
    return std::nullopt;
  FilterInfo out = info(entry, fi, boottime_ns());
  out.disk = disk;
  return out;
}

bool Table::remove(iof_dev dev) {
  std::lock_guard<std::mutex> lock(mu_);
  iof_dev disk;
  iof_disk entry;
  uint32_t fi;
  if (!find(dev, disk, entry, fi))
    return false;
  iof_disk n = without(entry, int(fi));
  write_entry(disk, n.nr_filters ? &n : nullptr, true);
  free_slots_of(entry, fi);
  return true;
}

std::vector<FilterInfo> Table::list() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<FilterInfo> out;
  uint64_t now = boottime_ns();
  for_each_disk(p_.disks_fd, [&](const iof_dev &k, const iof_disk &d) {
    for (uint32_t i = 0; i < d.nr_filters && i < IOF_MAX_FILTERS; i++) {
      out.push_back(info(d, i, now));
      out.back().disk = k;
    }
  });
  std::sort(out.begin(), out.end(), [](const FilterInfo &a, const FilterInfo &b) {
    return a.device.major != b.device.major ? a.device.major < b.device.major : a.device.minor < b.device.minor;
  });
  return out;
}

uint32_t Table::reap_expired() {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t now = boottime_ns();
  std::vector<std::pair<iof_dev, iof_disk>> entries;
  for_each_disk(p_.disks_fd, [&](const iof_dev &k, const iof_disk &d) { entries.push_back({k, d}); });
  uint32_t reaped = 0;
  for (auto &[disk, d] : entries) {
    iof_disk cur = d;
    bool changed = false;
    for (int i = int(cur.nr_filters) - 1; i >= 0; i--) {
      if (cur.filters[i].expires_ns && now >= cur.filters[i].expires_ns) {
        free_slots_of(cur, uint32_t(i));
        cur = without(cur, i);
        changed = true;
        reaped++;
      }
    }
    if (changed)
      write_entry(disk, cur.nr_filters ? &cur : nullptr, true);
  }
  return reaped;
}

} // namespace iof
