/*
 * Host harness for the match rule: bpf/iofilter_match.h - the very code the BPF
 * program runs - over an entry laid out by native/layout.cc - the very code the
 * agent's table uses - driven from a line script on stdin:
 *   F major minor [exp=NS] [max=K] [prob=U32] [cg=ID:LEVEL] [ev=N] [spared]
 *                                   a filter (index = order, id = index + 1)
 *   R start end ops filter          a range (whole-disk sectors) of that filter
 *   NOW ns | FETCH 0|1              the clock; whether fetch-add may be used
 *   RAND v...                       random values; each draw takes the next
 *   CG id...                        the bio's cgroup and its ancestors, root first
 *   IO disk_maj disk_min dev_maj dev_min sector nr_sectors ops
 *     prints: ret draws | ranges m/f... (in the order added) | filters m/f... |
 *             flush m/f... | trunc N | events id:range:outcome...
 *   RESET                           no filters, counters zeroed
 */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <sstream>
#include <string>
#include <vector>

#include "layout.h"

static std::vector<iof_range> g_ranges;
static std::vector<iof_node> g_nodes;
static std::vector<iof_counter> g_counters;
static std::vector<iof_fstats> g_fstats;
static unsigned long long g_now;
static std::deque<unsigned> g_rand;
static unsigned g_draws;
static int g_fetch = 1;
static std::vector<unsigned long long> g_cg; // ancestry of the bio's cgroup, root first
static unsigned g_trunc;
static std::string g_events;

static const iof_range *range_at(uint32_t i) { return i < g_ranges.size() ? &g_ranges[i] : nullptr; }
static const iof_node *node_at(uint32_t i) { return i < g_nodes.size() ? &g_nodes[i] : nullptr; }
static iof_counter *counter_at(uint32_t i) { return i < g_counters.size() ? &g_counters[i] : nullptr; }
static iof_fstats *fstats_at(uint32_t i) { return i < g_fstats.size() ? &g_fstats[i] : nullptr; }
static unsigned next_rand() {
  g_draws++;
  if (g_rand.empty())
    return 0;
  unsigned v = g_rand.front();
  g_rand.pop_front();
  return v;
}
static int cg_match(const iof_filter *f) {
  return f->cgroup_level < g_cg.size() && g_cg[f->cgroup_level] == f->cgroup_id;
}
static void emit(const iof_filter *f, unsigned range, unsigned outcome) {
  g_events += (g_events.empty() ? "" : ",") + std::to_string(f->id) + ":" + std::to_string(range) + ":" + std::to_string(outcome);
}

#define IOF_RANGE(i) range_at(i)
#define IOF_NODE(i) node_at(i)
#define IOF_COUNTER(slot) counter_at(slot)
#define IOF_FSTATS(slot) fstats_at(slot)
#define IOF_NOW_NS() (g_now)
#define IOF_RANDOM_U32() next_rand()
#define IOF_ADD(p, v) __sync_fetch_and_add((p), (v))
#define IOF_HAVE_FETCH (g_fetch)
#define IOF_FETCH_ADD(p, v) __sync_fetch_and_add((p), (v))
#define IOF_CGROUP_MATCH(io, f) cg_match(f)
#define IOF_EMIT(io, f, fs, ri, oc) emit((f), (ri), (oc))
#define IOF_TRUNCATED() (g_trunc++)

#include "iofilter_match.h"

struct Spec {
  iof_filter f;
  std::vector<iof_range> ranges;
};

int main() {
  std::vector<Spec> filters;
  std::vector<unsigned> order; // counter slot -> (filter, index) in the order ranges were added
  static iof_entry e;
  bool dirty = true;
  std::string line;
  char buf[4096];
  while (fgets(buf, sizeof buf, stdin)) {
    line = buf;
    std::istringstream in(line);
    std::string cmd;
    in >> cmd;
    if (cmd.empty() || cmd[0] == '#')
      continue;
    if (cmd == "RESET") {
      filters.clear();
      g_counters.clear();
      g_fstats.clear();
      g_cg.clear();
      g_rand.clear();
      dirty = true;
    } else if (cmd == "F") {
      Spec s = {};
      in >> s.f.dev.major >> s.f.dev.minor;
      std::string kv;
      while (in >> kv) {
        if (kv.rfind("exp=", 0) == 0)
          s.f.expires_ns = strtoull(kv.c_str() + 4, nullptr, 10);
        else if (kv.rfind("max=", 0) == 0)
          s.f.max_failures = strtoull(kv.c_str() + 4, nullptr, 10);
        else if (kv.rfind("prob=", 0) == 0)
          s.f.prob = unsigned(strtoul(kv.c_str() + 5, nullptr, 10));
        else if (kv.rfind("cg=", 0) == 0)
          sscanf(kv.c_str() + 3, "%llu:%u", (unsigned long long *)&s.f.cgroup_id, &s.f.cgroup_level);
        else if (kv.rfind("ev=", 0) == 0)
          s.f.events_per_sec = unsigned(strtoul(kv.c_str() + 3, nullptr, 10));
        else if (kv == "spared")
          s.f.flags |= IOF_FILTER_EVENTS_SPARED;
        else {
          fprintf(stderr, "bad filter option: %s\n", kv.c_str());
          return 2;
        }
      }
      s.f.id = unsigned(filters.size()) + 1;
      s.f.stats = unsigned(filters.size());
      g_fstats.push_back({});
      filters.push_back(s);
      dirty = true;
    } else if (cmd == "R") {
      unsigned long long start, end;
      unsigned ops, fi;
      in >> start >> end >> ops >> fi;
      if (fi >= filters.size()) {
        fprintf(stderr, "range for unknown filter %u\n", fi);
        return 2;
      }
      iof_range r = {};
      r.start = start;
      r.end = end;
      r.ops = uint8_t(ops);
      r.filter = uint8_t(fi);
      r.index = uint16_t(filters[fi].ranges.size());
      r.counter = unsigned(g_counters.size());
      g_counters.push_back({});
      filters[fi].ranges.push_back(r);
      if (ops & IOF_OP_FLUSH)
        filters[fi].f.flags |= IOF_FILTER_FLUSH;
      dirty = true;
    } else if (cmd == "NOW") {
      in >> g_now;
    } else if (cmd == "FETCH") {
      in >> g_fetch;
    } else if (cmd == "RAND") {
      unsigned v;
      while (in >> v)
        g_rand.push_back(v);
    } else if (cmd == "CG") {
      g_cg.clear();
      unsigned long long id;
      while (in >> id)
        g_cg.push_back(id);
    } else if (cmd == "IO") {
      if (dirty) {
        std::vector<iof_range> all;
        for (const Spec &s : filters)
          all.insert(all.end(), s.ranges.begin(), s.ranges.end());
        std::vector<iof::LayerOut> layers;
        try {
          layers = iof::build_layers(all);
        } catch (const std::exception &x) {
          printf("error %s\n", x.what());
          fflush(stdout);
          continue;
        }
        memset(&e, 0, sizeof e);
        g_ranges.clear();
        g_nodes.clear();
        e.nr_filters = unsigned(filters.size());
        for (size_t fi = 0; fi < filters.size(); fi++) {
          const iof_filter &f = filters[fi].f;
          e.filters[fi] = f;
          if (f.cgroup_id)
            e.flags |= IOF_ENTRY_SCOPED;
          if (f.expires_ns && (!e.min_expires || f.expires_ns < e.min_expires))
            e.min_expires = f.expires_ns;
        }
        e.nr_layers = unsigned(layers.size());
        e.lo = IOF_SECTOR_MAX;
        for (const iof_range &r : all) {
          e.ops |= r.ops;
          e.lo = r.start < e.lo ? r.start : e.lo;
          e.hi = r.end > e.hi ? r.end : e.hi;
        }
        for (size_t li = 0; li < layers.size(); li++) {
          iof_layer &l = e.layers[li];
          l.range_off = unsigned(g_ranges.size());
          l.nr_ranges = unsigned(layers[li].ranges.size());
          l.node_off = unsigned(g_nodes.size());
          l.nr_levels = unsigned(layers[li].level_off.size());
          l.narrow = layers[li].narrow;
          for (size_t h = 0; h < layers[li].level_off.size(); h++)
            l.level_off[h] = layers[li].level_off[h];
          g_ranges.insert(g_ranges.end(), layers[li].ranges.begin(), layers[li].ranges.end());
          g_nodes.insert(g_nodes.end(), layers[li].nodes.begin(), layers[li].nodes.end());
        }
        dirty = false;
      }
      iof_io io = {};
      iof_judge j = {};
      unsigned long long sector;
      in >> io.disk.major >> io.disk.minor >> io.dev.major >> io.dev.minor >> sector >> io.nr_sectors >> io.ops;
      io.sector = sector;
      g_draws = 0;
      g_trunc = 0;
      g_events.clear();
      int ret = iof_match(&e, &io, &j, 1);
      std::string out = std::to_string(ret) + " " + std::to_string(g_draws) + " |";
      for (const iof_counter &c : g_counters)
        out += " " + std::to_string(c.matched) + "/" + std::to_string(c.failed);
      out += " |";
      for (const iof_fstats &f : g_fstats)
        out += " " + std::to_string(f.matched) + "/" + std::to_string(f.failed);
      out += " |";
      for (const iof_fstats &f : g_fstats)
        out += " " + std::to_string(f.flush_matched) + "/" + std::to_string(f.flush_failed);
      out += " | " + std::to_string(g_trunc) + " | " + g_events;
      printf("%s\n", out.c_str());
      fflush(stdout);
    } else {
      fprintf(stderr, "bad line: %s", line.c_str());
      return 2;
    }
  }
  return 0;
}
