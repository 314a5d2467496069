// A file's physical extents (FIEMAP) and the device holding it, for `set --file`.
// Policy - which extents are stable enough to filter - is the agent's. Free of N-API.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace iof {

struct Extent {
  uint64_t logical, physical, length; // bytes; physical on the filesystem's device
  uint32_t flags;                     // FIEMAP_EXTENT_*
};

struct FileExtents {
  uint32_t dev_major = 0, dev_minor = 0; // st_dev: the filesystem's block device (0:N for none)
  uint64_t size = 0;
  std::vector<Extent> extents;
};

// Flushes delayed allocation first (FIEMAP_FLAG_SYNC) so extents are on disk. Throws
// E2BIG past max_extents: a badly fragmented file must not cost unbounded memory.
FileExtents file_extents(const std::string &path, uint32_t max_extents);

} // namespace iof
