// Scratch loop device + one O_DIRECT read under a private whole-device read filter.
#include "selftest.h"

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <thread>
#include <unistd.h>

#include "errors.h"

namespace iof {

namespace {

// A loop device over a 1 MiB memfd, detached when the last fd closes (AUTOCLEAR).
struct Scratch {
  int backing = -1, loop = -1;
  std::string path;
  iof_dev dev{};
  ~Scratch() {
    if (loop >= 0) {
      ioctl(loop, LOOP_CLR_FD, 0);
      close(loop);
    }
    if (backing >= 0)
      close(backing);
  }
};

void make_scratch(Scratch &s) {
  s.backing = memfd_create("iofilter-selftest", MFD_CLOEXEC);
  if (s.backing < 0)
    sysfail(errno, "memfd_create");
  if (ftruncate(s.backing, 1 << 20) != 0)
    sysfail(errno, "sizing the scratch file");
  int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl < 0)
    sysfail(errno, "opening /dev/loop-control");
  for (int attempt = 0; attempt < 10 && s.loop < 0; attempt++) {
    int n = ioctl(ctl, LOOP_CTL_GET_FREE);
    if (n < 0) {
      int err = errno;
      close(ctl);
      sysfail(err, "LOOP_CTL_GET_FREE");
    }
    s.path = "/dev/loop" + std::to_string(n);
    int fd = -1;
    for (int t = 0; t < 100 && fd < 0; t++) { // devtmpfs makes the node shortly
      fd = open(s.path.c_str(), O_RDWR | O_CLOEXEC);
      if (fd < 0 && errno == ENOENT)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      else if (fd < 0)
        break;
    }
    if (fd < 0)
      continue;
    if (ioctl(fd, LOOP_SET_FD, s.backing) != 0) { // EBUSY: someone took it first
      close(fd);
      continue;
    }
    s.loop = fd;
  }
  close(ctl);
  if (s.loop < 0)
    sysfail(EBUSY, "finding a free loop device");
  loop_info64 info = {};
  info.lo_flags = LO_FLAGS_AUTOCLEAR;
  strncpy(reinterpret_cast<char *>(info.lo_file_name), "iofilter-selftest", LO_NAME_SIZE - 1);
  ioctl(s.loop, LOOP_SET_STATUS64, &info);
  struct stat st;
  if (fstat(s.loop, &st) != 0)
    sysfail(errno, "stat " + s.path);
  s.dev = {major(st.st_rdev), minor(st.st_rdev)};
}

} // namespace

SelfTestResult self_test(Table &t, bool enforcing) {
  SelfTestResult r;
  r.at_unix_ms = uint64_t(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  Scratch s;
  try {
    make_scratch(s);
  } catch (const Error &e) {
    r.detail = std::string("not run: no scratch loop device (") + e.what() + ")";
    return r;
  }
  r.ran = true;
  FilterSpec spec;
  spec.device = spec.disk = s.dev;
  spec.size = (1 << 20) / 512;
  spec.whole_ops = IOF_OP_READ;
  spec.ttl_ms = 10000; // kernel-enforced, should this process die mid-test
  spec.events_per_sec = 0;
  spec.selftest = true;
  FilterInfo f = t.put(spec);
  FilterKey key;
  key.kind = FilterKey::Id;
  key.id = f.id;
  key.selftest = true;

  int err = 0;
  ssize_t n = -1;
  int fd = open(s.path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) {
    err = errno;
  } else {
    void *buf = nullptr;
    if (posix_memalign(&buf, 4096, 4096) == 0) {
      n = pread(fd, buf, 4096, 0);
      err = n < 0 ? errno : 0;
      free(buf);
    }
    close(fd);
  }
  auto after = t.get(key);
  t.remove(key);
  uint64_t matched = after ? after->matched_ios : 0, failed = after ? after->failed_ios : 0;
  std::string what = "one O_DIRECT read of 4 KiB from scratch " + s.path + " (" + std::to_string(s.dev.major) + ":" +
                     std::to_string(s.dev.minor) + ") under a private read filter: ";
  std::string seen = (n < 0 ? "error " + errname(err) : "read " + std::to_string(n) + " bytes") + ", counted " +
                     std::to_string(matched) + " matched, " + std::to_string(failed) +
                     (enforcing ? " failed" : " would fail");
  if (enforcing)
    r.passed = n < 0 && err == EIO && failed >= 1;
  else
    r.passed = n == 4096 && matched >= 1 && failed >= 1;
  r.detail = what + seen;
  if (!r.passed)
    r.detail = "hook attached but did not fire: " + r.detail;
  return r;
}

} // namespace iof
