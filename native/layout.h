// How a disk's ranges are laid out for the program: ranges that overlap go to
// different LAYERS (at most IOF_MAX_LAYERS cover any one sector), each layer sorted
// and disjoint, with a static search tree over its range ends (bpf/iofilter.h).
// Pure: no libbpf, no maps; the unit-test harness builds with it too.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

extern "C" {
#include "iofilter.h"
}

namespace iof {

struct LayerOut {
  std::vector<iof_range> ranges;   // sorted, disjoint
  std::vector<iof_node> nodes;     // levels root first
  std::vector<uint32_t> level_off; // first node of each level within `nodes`
  bool narrow = false;             // every key below 2^63 (iof_layer.narrow)
};

// Assigns `ranges` (absolute sectors, any order) to layers and builds each layer's
// tree. Throws Error (E2BIG, RangeError) when more than IOF_MAX_LAYERS ranges would
// cover one sector.
std::vector<LayerOut> build_layers(std::vector<iof_range> ranges);

// Nodes a layer of n ranges needs.
uint32_t tree_nodes(uint32_t n);

} // namespace iof
