// Errors of the native side, free of N-API: iof::Error carries an errno-style code
// and a sentence for people; fail() adds what libbpf (and the verifier) said last.
// addon.cc turns them into JS errors with .code and .errno.
#pragma once

#include <map>
#include <stdexcept>
#include <string>

namespace iof {

struct Error : std::runtime_error {
  std::string code; // "EPERM", "ENOSPC", "EBUSY", ...
  int err;          // errno, 0 when not from a system call
  enum Kind { System, Range, Type } kind;
  std::map<std::string, std::string> reasons; // attach: why each mode tried is unavailable
  Error(std::string code, int err, const std::string &msg, Kind kind = System)
      : std::runtime_error(msg), code(std::move(code)), err(err), kind(kind) {}
};

// The one errno -> code table ("EPERM", "ENOTSUPP" for the kernel's 524, "E123").
std::string errname(int err);
std::string strerr(int err);

// A failed system or libbpf step: "what: strerror (libbpf: last message)".
[[noreturn]] void fail(int err, const std::string &what);
// A failed step without libbpf's commentary.
[[noreturn]] void sysfail(int err, const std::string &what);
// Bad input (RangeError in JS): changes nothing.
[[noreturn]] void range_error(const std::string &msg, const std::string &code = "ERANGE");
// The caller asked for more than the maps hold (RESOURCE_EXHAUSTED on the wire).
[[noreturn]] void exhausted(const std::string &msg);

// libbpf's last warning on this thread, kept by the print hook (IOFILTER_DEBUG=1 also prints all).
void libbpf_clear();
std::string libbpf_last();

} // namespace iof
