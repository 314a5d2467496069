// The one errno -> code table, and the libbpf print hook that keeps libbpf's last
// warning so a failure can say what libbpf saw.
#include "errors.h"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

extern "C" {
#include <bpf/libbpf.h>
}

namespace iof {

std::string errname(int err) {
  static const std::map<int, const char *> names = {
      {EPERM, "EPERM"},   {ENOENT, "ENOENT"},       {EINVAL, "EINVAL"}, {ENOSPC, "ENOSPC"},   {E2BIG, "E2BIG"},
      {ENOMEM, "ENOMEM"}, {EACCES, "EACCES"},       {EEXIST, "EEXIST"}, {EBUSY, "EBUSY"},     {ENOTSUP, "ENOTSUP"},
      {ESRCH, "ESRCH"},   {EBADF, "EBADF"},         {ENODEV, "ENODEV"}, {ENOTDIR, "ENOTDIR"}, {EFAULT, "EFAULT"},
      {ENOSYS, "ENOSYS"}, {ERANGE, "ERANGE"},       {EAGAIN, "EAGAIN"}, {EIO, "EIO"},         {ENXIO, "ENXIO"},
      {ENOTTY, "ENOTTY"}, {ENOTEMPTY, "ENOTEMPTY"}, {524, "ENOTSUPP"},
  };
  auto it = names.find(err);
  return it == names.end() ? "E" + std::to_string(err) : it->second;
}

std::string strerr(int err) {
  if (err == 524)
    return "operation not supported by the kernel (ENOTSUPP)";
  return strerror(err);
}

static thread_local std::string t_libbpf_last;

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args) {
  char buf[1024];
  va_list copy;
  va_copy(copy, args);
  vsnprintf(buf, sizeof(buf), fmt, copy);
  va_end(copy);
  if (level != LIBBPF_DEBUG) {
    std::string line(buf);
    while (!line.empty() && (line.back() == '\n' || line.back() == ' '))
      line.pop_back();
    if (!line.empty())
      t_libbpf_last = line;
  }
  if (getenv("IOFILTER_DEBUG"))
    fputs(buf, stderr);
  return 0;
}

// libbpf's print hook is process-wide by libbpf's design; installing it once is idempotent.
[[maybe_unused]] static const bool hooked = (libbpf_set_print(libbpf_print), true);

void libbpf_clear() { t_libbpf_last.clear(); }
std::string libbpf_last() { return t_libbpf_last; }

void fail(int err, const std::string &what) {
  std::string msg = what + ": " + strerr(err);
  if (!t_libbpf_last.empty())
    msg += " (libbpf: " + t_libbpf_last + ")";
  throw Error(errname(err), err, msg);
}

void sysfail(int err, const std::string &what) { throw Error(errname(err), err, what + ": " + strerr(err)); }

void range_error(const std::string &msg, const std::string &code) { throw Error(code, 0, msg, Error::Range); }

void exhausted(const std::string &msg) { throw Error("ENOSPC", ENOSPC, msg); }

} // namespace iof
