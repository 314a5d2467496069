// Ring buffer reader: poll, collect a batch, deliver it, until stopped.
#include "events.h"

#include <cerrno>
#include <cstring>
#include <ctime>

#include "errors.h"
#include "table.h"

extern "C" {
#include <bpf/libbpf.h>
}

namespace iof {

static int64_t boot_to_unix() {
  timespec rt;
  clock_gettime(CLOCK_REALTIME, &rt);
  return int64_t(rt.tv_sec) * 1000000000ll + rt.tv_nsec - int64_t(boottime_ns());
}

EventReader::EventReader(int fd, Deliver deliver) : deliver_(std::move(deliver)) {
  libbpf_clear();
  rb_ = ring_buffer__new(fd, &EventReader::on_sample, this, nullptr);
  if (!rb_)
    fail(errno, "opening the event ring buffer");
  thread_ = std::thread([this] { run(); });
}

EventReader::~EventReader() {
  stop_ = true;
  if (thread_.joinable())
    thread_.join();
  ring_buffer__free(rb_);
}

int EventReader::on_sample(void *ctx, void *data, size_t size) {
  auto *self = static_cast<EventReader *>(ctx);
  if (size < sizeof(iof_event))
    return 0;
  Event e;
  memcpy(&e.raw, data, sizeof(e.raw));
  e.time_unix_ns = uint64_t(int64_t(e.raw.time_ns) + self->boot_to_unix_);
  self->batch_.push_back(e);
  return self->batch_.size() >= 4096 ? 1 : 0; // a full batch goes out before reading on
}

void EventReader::run() {
  while (!stop_) {
    boot_to_unix_ = boot_to_unix(); // per poll: follows wall-clock steps
    int n = ring_buffer__poll(rb_, 100);
    if (n < 0 && n != -EINTR)
      break;
    if (!batch_.empty()) {
      std::vector<Event> out;
      out.swap(batch_);
      deliver_(std::move(out));
    }
  }
}

} // namespace iof
