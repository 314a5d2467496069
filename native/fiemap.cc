// FIEMAP in batches until the last extent.
#include "fiemap.h"

#include <cerrno>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <memory>
#include <string>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "errors.h"

namespace iof {

FileExtents file_extents(const std::string &path, uint32_t max_extents) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    sysfail(errno, "opening " + path);
  FileExtents out;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    sysfail(err, "stat " + path);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    range_error(path + " is not a regular file", "EINVAL");
  }
  out.dev_major = major(st.st_dev);
  out.dev_minor = minor(st.st_dev);
  out.size = uint64_t(st.st_size);
  const uint32_t batch = 512;
  std::unique_ptr<char[]> buf(new char[sizeof(fiemap) + batch * sizeof(fiemap_extent)]);
  auto *fm = reinterpret_cast<fiemap *>(buf.get());
  uint64_t start = 0;
  for (bool last = false; !last;) {
    *fm = {};
    fm->fm_start = start;
    fm->fm_length = FIEMAP_MAX_OFFSET - start;
    fm->fm_flags = FIEMAP_FLAG_SYNC;
    fm->fm_extent_count = batch;
    if (ioctl(fd, FS_IOC_FIEMAP, fm) != 0) {
      int err = errno;
      close(fd);
      if (err == EOPNOTSUPP || err == ENOTTY)
        throw Error("ENOTSUP", err, path + ": its filesystem does not report extents (FIEMAP)");
      sysfail(err, "FIEMAP on " + path);
    }
    if (fm->fm_mapped_extents == 0)
      break;
    if (out.extents.size() + fm->fm_mapped_extents > max_extents) {
      close(fd);
      throw Error("E2BIG", E2BIG,
                  path + " has more than " + std::to_string(max_extents) + " extents: too fragmented to read them all");
    }
    for (uint32_t i = 0; i < fm->fm_mapped_extents; i++) {
      const fiemap_extent &x = fm->fm_extents[i];
      out.extents.push_back({x.fe_logical, x.fe_physical, x.fe_length, x.fe_flags});
      start = x.fe_logical + x.fe_length;
      last = last || (x.fe_flags & FIEMAP_EXTENT_LAST);
    }
  }
  close(fd);
  return out;
}

} // namespace iof
