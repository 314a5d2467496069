// Kernel events: a thread reads the program's ring buffer and hands batches of
// events to a callback (addon.cc posts them to JS). Free of N-API.
#pragma once

#include <atomic>
#include <functional>
#include <thread>
#include <vector>

extern "C" {
#include "iofilter.h"
}

struct ring_buffer;

namespace iof {

struct Event {
  iof_event raw;
  uint64_t time_unix_ns; // raw.time_ns (CLOCK_BOOTTIME) on the wall clock
};

class EventReader {
public:
  using Deliver = std::function<void(std::vector<Event> &&)>;
  EventReader(int ringbuf_fd, Deliver deliver);
  ~EventReader(); // stops and joins the thread
  EventReader(const EventReader &) = delete;
  EventReader &operator=(const EventReader &) = delete;

private:
  ring_buffer *rb_ = nullptr;
  Deliver deliver_;
  std::atomic<bool> stop_{false};
  std::vector<Event> batch_;
  int64_t boot_to_unix_ = 0;
  std::thread thread_;
  static int on_sample(void *ctx, void *data, size_t size);
  void run();
};

} // namespace iof
