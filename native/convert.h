// Conversions between JS values and the native structs (typed in native/index.ts):
// BigInt sectors and counters, op names, filter specs and keys, filter infos, events,
// capabilities. Argument checks throw TypeError (wrong type) or RangeError (a value
// the native side cannot represent); policy is the agent's, capacity the table's.
#pragma once

#include <napi.h>

#include "attach.h"
#include "errors.h"
#include "events.h"
#include "fiemap.h"
#include "table.h"

namespace iof::js {

Napi::Error error(Napi::Env env, const Error &e);
[[noreturn]] void type_error(const std::string &m);

uint64_t u64(const Napi::Value &v, const std::string &what);
uint32_t u32(const Napi::Value &v, const std::string &what, uint32_t max);
std::string str(const Napi::Value &v, const std::string &what);
iof_dev dev(const Napi::Value &v, const std::string &what);
FilterSpec filter_spec(const Napi::Value &v);
FilterKey filter_key(const Napi::Value &v);
Sizes sizes(const Napi::Object &o);

Napi::Object dev(Napi::Env env, iof_dev d);
// A filter for JS; its ranges packed as {nums: [start, end, matched, failed]..., ops: bits...}.
Napi::Value filter(Napi::Env env, const FilterInfo &f);
// Operation names to the bits of packed ranges.
Napi::Object op_bits(Napi::Env env);
Napi::Value event(Napi::Env env, const Event &e);
Napi::Value caps(Napi::Env env, const Caps &c);
Napi::Value self_test(Napi::Env env, const std::optional<SelfTestResult> &s);
Napi::Value extents(Napi::Env env, const FileExtents &x);

} // namespace iof::js
