// The attach-time hook self-test: one I/O to a private scratch loop device (over a
// small memory-backed file, created and removed here) under a private filter must
// fail with EIO (observe mode: be counted). A hook that attaches but never fires -
// a compiler that folded should_fail_bio() away, a backport that moved the call -
// would otherwise make every filter silently inert.
#pragma once

#include <cstdint>
#include <string>

#include "table.h"

namespace iof {

struct SelfTestResult {
  bool passed = false;
  bool ran = false; // false: could not run here (no loop devices), detail says why
  uint64_t at_unix_ms = 0;
  std::string detail;
};

SelfTestResult self_test(Table &t, bool enforcing);

} // namespace iof
