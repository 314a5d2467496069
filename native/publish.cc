// Publication: the disk index and entries. A published entry, its ranges and tree
// nodes are never written again. A change composes the disk's new entry in free slots
// of the mmapped pools, then switches the disk's index word with one release store;
// when it returns, every I/O that enters the program afterwards reads the new entry.
// What the old entry used goes to the pools' quarantine (freed after a grace period).
#include <cstring>

#include "errors.h"
#include "layout.h"
#include "table.h"

namespace iof {

static std::string devstr(iof_dev d) { return std::to_string(d.major) + ":" + std::to_string(d.minor); }
static bool same(iof_dev a, iof_dev b) { return a.major == b.major && a.minor == b.minor; }

static uint64_t *index_word(Pinned &p, uint32_t b) { return p.index.at<uint64_t>(b); }
static uint32_t index_load(Pinned &p, uint32_t b) {
  return uint32_t(__atomic_load_n(index_word(p, b), __ATOMIC_ACQUIRE));
}
static void index_store(Pinned &p, uint32_t b, uint32_t v) {
  __atomic_store_n(index_word(p, b), uint64_t(v), __ATOMIC_RELEASE);
}

template <typename F> void Table::for_each_entry(F fn) {
  for (uint32_t b = 0; b < p_.index.max_entries; b++) {
    uint32_t v = index_load(p_, b);
    if (v == IOF_INDEX_EMPTY || v == IOF_INDEX_TOMB)
      continue;
    if (const iof_entry *e = p_.entries.at<iof_entry>(v - 1))
      fn(v - 1, *e);
  }
}

// Free space from what the published entries use; everything else is free.
void Table::rebuild() {
  std::vector<bool> entries(p_.entries.max_entries), counters(p_.counters.max_entries), filters(p_.fstats.max_entries);
  std::vector<bool> ranges(p_.ranges.max_entries), nodes(p_.nodes.max_entries);
  uint32_t disks = 0;
  for_each_entry([&](uint32_t slot, const iof_entry &e) {
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
  pools_.rebuild(entries, counters, filters, ranges, nodes);
  if (iof_state *st = p_.state.at<iof_state>(0))
    __atomic_store_n(&st->nr_disks, disks, __ATOMIC_RELEASE);
}

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

std::vector<iof_dev> Table::disks_where(const std::function<bool(const iof_filter &)> &pred) {
  std::vector<iof_dev> out;
  for_each_entry([&](uint32_t, const iof_entry &e) {
    for (uint32_t fi = 0; fi < e.nr_filters && fi < IOF_MAX_FILTERS; fi++)
      if (pred(e.filters[fi])) {
        out.push_back(e.disk);
        break;
      }
  });
  return out;
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
  pools_.quarantine(Pools::Kind::Entry, slot);
  if (e.nr_layers) {
    // one run of ranges and one of nodes per entry, layer 0 first
    uint32_t nr = 0, nn = 0;
    for (uint32_t li = 0; li < e.nr_layers && li < IOF_MAX_LAYERS; li++) {
      nr += e.layers[li].nr_ranges;
      nn += tree_nodes(e.layers[li].nr_ranges);
    }
    pools_.quarantine(Pools::Kind::RangeRun, e.layers[0].range_off, nr);
    pools_.quarantine(Pools::Kind::NodeRun, e.layers[0].node_off, nn);
  }
}

void Table::retire_filter(const Composed &c) {
  for (const iof_range &r : c.ranges)
    pools_.quarantine(Pools::Kind::Counter, r.counter);
  pools_.quarantine(Pools::Kind::FilterSlot, c.f.stats);
}

// Publishes `filters` as the disk's entry (none: removes it). Either the new entry is
// published, or nothing changed and the error says why.
void Table::publish(const iof_dev &disk, const std::vector<Composed> &filters, Lock &lk) {
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
  uint32_t slot = pools_.take(Pools::Kind::Entry, 1, "disk entries (maxDisks)", lk), roff = 0, noff = 0;
  try {
    roff = pools_.take(Pools::Kind::RangeRun, nr, "the range pool (maxRangesTotal)", lk);
    try {
      noff = pools_.take(Pools::Kind::NodeRun, nn, "the search-tree pool", lk);
    } catch (...) {
      pools_.give_now(Pools::Kind::RangeRun, roff, nr);
      throw;
    }
  } catch (...) {
    pools_.give_now(Pools::Kind::Entry, slot);
    throw;
  }
  iof_entry *e = p_.entries.at<iof_entry>(slot);
  memset(e, 0, sizeof(*e));
  e->disk = disk;
  e->diskseq = filters[0].f.diskseq; // put() keeps one medium per entry
  e->nr_filters = uint32_t(filters.size());
  e->nr_layers = uint32_t(layers.size());
  e->lo = IOF_SECTOR_MAX;
  for (const iof_range &r : all) { // the program's first test: ops and span of the whole entry
    e->ops |= r.ops;
    e->lo = std::min<uint64_t>(e->lo, r.start);
    e->hi = std::max<uint64_t>(e->hi, r.end);
  }
  for (uint32_t fi = 0; fi < filters.size(); fi++) {
    const iof_filter &f = filters[fi].f;
    e->filters[fi] = f;
    if (f.cgroup_id)
      e->flags |= IOF_ENTRY_SCOPED;
    if (f.expires_ns && (!e->min_expires || f.expires_ns < e->min_expires))
      e->min_expires = f.expires_ns;
  }
  uint32_t ro = roff, no = noff;
  for (uint32_t li = 0; li < layers.size(); li++) {
    const LayerOut &l = layers[li];
    iof_layer &dst = e->layers[li];
    dst.range_off = ro;
    dst.nr_ranges = uint32_t(l.ranges.size());
    dst.node_off = no;
    dst.nr_levels = uint32_t(l.level_off.size());
    dst.narrow = l.narrow;
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

} // namespace iof
