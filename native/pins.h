// The pin dir: its exclusive lock (one writer per pin dir), the pinned maps and link,
// adopting them, and removing only what this process pinned or adopted. The maps are
// mmapped: the filter table writes them with plain stores and publishes with one
// atomic store (bpf/iofilter.h). Free of N-API.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "loader.h"

namespace iof {

// flock(LOCK_EX) on the pin dir itself (bpffs holds no regular files), held for the
// lock's lifetime; the dir is not removed while held, so the lock stays meaningful.
class PinDirLock {
public:
  explicit PinDirLock(const std::string &dir); // throws EBUSY naming the holder's pid
  ~PinDirLock();
  PinDirLock(const PinDirLock &) = delete;
  PinDirLock &operator=(const PinDirLock &) = delete;
  const std::string &dir() const { return dir_; }
  bool held() const { return fd_ >= 0; }
  void release(); // removes the dir too if it is empty

private:
  std::string dir_;
  int fd_ = -1;
};

// One BPF map: its fd and id, and its mmapped values when mmapable.
struct MapView {
  int fd = -1;
  uint32_t id = 0, value_size = 0, max_entries = 0;
  void *mem = nullptr;
  size_t len = 0;
  template <typename T> T *at(uint32_t i) const {
    return i < max_entries ? reinterpret_cast<T *>(static_cast<char *>(mem) + size_t(i) * ((value_size + 7) & ~7u))
                           : nullptr;
  }
  void close();
};

// The attached program and its maps, fresh or adopted.
struct Pinned {
  std::string pin_dir, mode, hook, prog;
  MapView index, entries, ranges, nodes, counters, fstats, meta, state, seen, events;
  int link_fd = -1, prog_fd = -1;
  uint32_t prog_id = 0, link_id = 0;
  bool adopted = false;
  // false: the link could not be pinned (kprobe before 5.15); `live` holds the program
  // attached, and it ends with this process
  bool pinned = true;
  std::unique_ptr<Loaded> live;
  Sizes sizes;
  ~Pinned();
  void close();
};

// Map names under the pin dir; bpffs refuses names with a dot, hence link_<prog>.
extern const char *const MAP_PINS[];

bool has_pins(const std::string &pin_dir);
// Pins `l`'s maps and link under the lock's dir and opens them as a Pinned. When the
// link cannot be pinned (no BPF perf links), nothing is pinned and the Pinned keeps `l`.
std::unique_ptr<Pinned> pin(std::unique_ptr<Loaded> l, PinDirLock &lock, const Sizes &s);
// nullptr when the dir holds no pins.
std::unique_ptr<Pinned> adopt_pins(PinDirLock &lock);
// Removes the pins this Pinned holds (each checked to be the same object), closes
// everything: the program detaches once nothing holds it. The dir stays while locked.
void unpin(Pinned &p);

} // namespace iof
