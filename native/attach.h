// Choosing a mode and attaching in it: probe what each mode can do on this kernel,
// attach the first mode that loads, pins and passes the hook self-test (auto never
// tries a mode known unsafe here), adopt existing pins, detach. Free of N-API.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "facts.h"
#include "pins.h"
#include "selftest.h"
#include "table.h"

namespace iof {

struct ModeCap {
  std::string mode, hook, reason;
  bool available = false;
};

struct Caps {
  KernelFacts facts;
  std::vector<ModeCap> modes; // fmod_ret, kprobe, observe
};

Caps probe();

struct AttachOpts {
  std::string mode = "auto";
  Sizes sizes;
  bool self_test = true;
};

// An attached program: its pins, its filter table, the self-test it passed.
struct Attached {
  KernelFacts facts;
  std::unique_ptr<Pinned> pinned;
  std::unique_ptr<Table> table;
  std::optional<SelfTestResult> self_test;
};

// Adopts existing pins in the lock's dir, else attaches. Throws ENOTSUP with each
// mode's reason (Error::reasons) when no mode works.
Attached attach(const AttachOpts &o, PinDirLock &lock);
// pinned == nullptr when the dir holds no pins.
Attached adopt(PinDirLock &lock);
// Every filter gone: unpins (only our pins) and detaches.
void detach(Attached &a);

} // namespace iof
