// Layers and search trees. Layers: greedy interval partitioning by start (the first
// layer whose last range ends before this one starts), which uses exactly as many
// layers as ranges overlap at the deepest point. Trees: a static B+ tree with
// IOF_NODE_KEYS keys per node and IOF_NODE_KEYS + 1 children; an internal key is the
// largest range end under that child, so the child to descend to is the number of
// keys below the sector sought (see iof_lower_bound in bpf/iofilter_match.h).
#include "layout.h"

#include <algorithm>

#include "errors.h"

namespace iof {

static constexpr uint32_t B = IOF_NODE_KEYS;

// Node counts per level, leaves first.
static std::vector<uint32_t> level_sizes(uint32_t n) {
  std::vector<uint32_t> sizes = {(n + B - 1) / B};
  while (sizes.back() > 1)
    sizes.push_back((sizes.back() + B) / (B + 1));
  return sizes;
}

uint32_t tree_nodes(uint32_t n) {
  uint32_t total = 0;
  for (uint32_t s : level_sizes(n))
    total += s;
  return total;
}

static void build_tree(LayerOut &l) {
  const uint32_t n = uint32_t(l.ranges.size());
  // a narrow layer pads with 2^63-1 so that keys compare by one subtraction
  l.narrow = n && l.ranges.back().end <= IOF_NARROW_MAX;
  const uint64_t pad = l.narrow ? IOF_NARROW_MAX : IOF_SECTOR_MAX;
  std::vector<uint32_t> sizes = level_sizes(n);
  if (sizes.size() > IOF_MAX_LEVELS)
    range_error("a layer of " + std::to_string(n) + " ranges needs more than " + std::to_string(IOF_MAX_LEVELS) +
                " tree levels");
  // levels bottom-up; each node also remembers the flat range index its subtree ends at
  std::vector<std::vector<iof_node>> levels;
  std::vector<std::vector<uint32_t>> ends; // one past the last range under each node
  std::vector<iof_node> leaves(sizes[0]);
  std::vector<uint32_t> leaf_end(sizes[0]);
  for (uint32_t k = 0; k < sizes[0]; k++) {
    for (uint32_t i = 0; i < B; i++) {
      uint32_t r = k * B + i;
      leaves[k].key[i] = r < n ? l.ranges[r].end : pad;
    }
    leaf_end[k] = std::min(n, (k + 1) * B);
  }
  levels.push_back(leaves);
  ends.push_back(leaf_end);
  for (size_t h = 1; h < sizes.size(); h++) {
    const auto &below = ends[h - 1];
    std::vector<iof_node> nodes(sizes[h]);
    std::vector<uint32_t> node_end(sizes[h]);
    for (uint32_t m = 0; m < sizes[h]; m++) {
      uint32_t first = m * (B + 1), last_child = std::min<uint32_t>(first + B, uint32_t(below.size()) - 1);
      for (uint32_t i = 0; i < B; i++) {
        uint32_t c = first + i;
        // the last existing child is unbounded, so a sector past every key still
        // descends into a real node and lands one past its last range
        nodes[m].key[i] = c < last_child ? l.ranges[below[c] - 1].end : pad;
      }
      node_end[m] = below[last_child];
    }
    levels.push_back(nodes);
    ends.push_back(node_end);
  }
  l.nodes.clear();
  l.level_off.clear();
  for (auto it = levels.rbegin(); it != levels.rend(); ++it) {
    l.level_off.push_back(uint32_t(l.nodes.size()));
    l.nodes.insert(l.nodes.end(), it->begin(), it->end());
  }
}

std::vector<LayerOut> build_layers(std::vector<iof_range> ranges) {
  std::stable_sort(ranges.begin(), ranges.end(), [](const iof_range &a, const iof_range &b) {
    return a.start != b.start ? a.start < b.start : a.end < b.end;
  });
  std::vector<LayerOut> layers;
  for (const iof_range &r : ranges) {
    LayerOut *into = nullptr;
    for (LayerOut &l : layers)
      if (l.ranges.back().end < r.start) {
        into = &l;
        break;
      }
    if (!into) {
      if (layers.size() == IOF_MAX_LAYERS)
        range_error("more than " + std::to_string(IOF_MAX_LAYERS) + " ranges would cover sector " +
                        std::to_string(r.start) + " of the disk (over all its filters): at most " +
                        std::to_string(IOF_MAX_LAYERS) + " may overlap",
                    "E2BIG");
      layers.emplace_back();
      into = &layers.back();
    }
    into->ranges.push_back(r);
  }
  for (LayerOut &l : layers)
    build_tree(l);
  return layers;
}

} // namespace iof
