// Scratch loop device + one O_DIRECT read under a private whole-device read filter.
#include "selftest.h"

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <linux/loop.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "errors.h"

namespace iof {

namespace {

// A loop device over a 1 MiB memfd, detached when the last fd closes (AUTOCLEAR).
struct Scratch {
  int backing = -1, loop = -1;
  std::string path;
  std::string how; // how the device was reached when /dev did not simply have it
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

// A node's device number from sysfs ("7:3\n"); 0 when the file is not there.
dev_t sysfs_dev(const std::string &file) {
  std::ifstream f(file);
  unsigned maj = 0, mnr = 0;
  char colon = 0;
  if (!(f >> maj >> colon >> mnr) || colon != ':')
    return 0;
  return makedev(maj, mnr);
}

// Opens device `dev` through a node made for this open in a fresh private directory,
// removed at once: for a /dev that lacks the node (no devtmpfs, a container's /dev).
// Each directory is tried in turn, as one may be on a nodev mount. -1 with errno.
int open_private_node(dev_t dev, mode_t type, int flags) {
  int err = ENOENT;
  for (const char *base : {"/dev", "/run", "/tmp"}) {
    std::string dir = std::string(base) + "/iofilter-selftest-XXXXXX";
    if (!mkdtemp(dir.data())) {
      err = errno;
      continue;
    }
    std::string node = dir + "/dev";
    int fd = -1;
    if (mknod(node.c_str(), type | 0600, dev) == 0) {
      fd = open(node.c_str(), flags);
      err = fd < 0 ? errno : 0;
      unlink(node.c_str());
    } else {
      err = errno;
    }
    rmdir(dir.c_str());
    if (fd >= 0)
      return fd;
  }
  errno = err;
  return -1;
}

// `modprobe -q loop`, for a kernel whose loop driver is a module not loaded yet
// (posix_spawn: this runs on a worker thread of a multithreaded process).
bool load_loop_module() {
  char *argv[] = {const_cast<char *>("modprobe"), const_cast<char *>("-q"), const_cast<char *>("loop"), nullptr};
  pid_t pid;
  if (posix_spawnp(&pid, "modprobe", nullptr, nullptr, argv, environ) != 0)
    return false;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// /dev/loop-control; where /dev lacks it, the loop module is loaded and the node
// waited for, then reached through a private node (10:237, LOOP_CTRL_MINOR: opening it
// also makes the kernel load the module by its char-major-10-237 alias).
int open_loop_control(std::string &how) {
  const char *path = "/dev/loop-control";
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd >= 0 || errno != ENOENT)
    return fd;
  if (load_loop_module()) {
    how = "loaded the loop module";
    for (int t = 0; t < 100; t++) { // devtmpfs makes the node shortly
      if ((fd = open(path, O_RDWR | O_CLOEXEC)) >= 0 || errno != ENOENT)
        return fd;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  dev_t dev = sysfs_dev("/sys/class/misc/loop-control/dev");
  fd = open_private_node(dev ? dev : makedev(10, 237), S_IFCHR, O_RDWR | O_CLOEXEC);
  if (fd >= 0)
    how += std::string(how.empty() ? "" : ", ") + "no " + path + ": opened through a private node";
  return fd;
}

// /dev/loopN, waiting for devtmpfs to make it; else through a private node.
int open_loop(int n, std::string &how) {
  std::string path = "/dev/loop" + std::to_string(n);
  for (int t = 0; t < 100; t++) {
    int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd >= 0 || errno != ENOENT)
      return fd;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  dev_t dev = sysfs_dev("/sys/block/loop" + std::to_string(n) + "/dev");
  if (!dev) {
    errno = ENOENT;
    return -1;
  }
  int fd = open_private_node(dev, S_IFBLK, O_RDWR | O_CLOEXEC);
  if (fd >= 0)
    how += std::string(how.empty() ? "" : ", ") + "no " + path + ": opened through a private node";
  return fd;
}

void make_scratch(Scratch &s) {
  s.backing = memfd_create("iofilter-selftest", MFD_CLOEXEC);
  if (s.backing < 0)
    sysfail(errno, "memfd_create");
  if (ftruncate(s.backing, 1 << 20) != 0)
    sysfail(errno, "sizing the scratch file");
  int ctl = open_loop_control(s.how);
  if (ctl < 0)
    sysfail(errno,
            "opening /dev/loop-control" + (s.how.empty() ? "" : " (" + s.how + ")") + ", also through a private node");
  for (int attempt = 0; attempt < 10 && s.loop < 0; attempt++) {
    int n = ioctl(ctl, LOOP_CTL_GET_FREE);
    if (n < 0) {
      int err = errno;
      close(ctl);
      sysfail(err, "LOOP_CTL_GET_FREE");
    }
    s.path = "/dev/loop" + std::to_string(n);
    int fd = open_loop(n, s.how);
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
  // through the fd already open (its node may have been a private one, gone now)
  if (fcntl(s.loop, F_SETFL, fcntl(s.loop, F_GETFL) | O_DIRECT) != 0) {
    err = errno;
  } else {
    void *buf = nullptr;
    if (posix_memalign(&buf, 4096, 4096) == 0) {
      n = pread(s.loop, buf, 4096, 0);
      err = n < 0 ? errno : 0;
      free(buf);
    }
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
  r.detail = what + seen + (s.how.empty() ? "" : " (" + s.how + ")");
  if (!r.passed)
    r.detail = "hook attached but did not fire: " + r.detail;
  return r;
}

} // namespace iof
