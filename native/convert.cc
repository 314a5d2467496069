// JS <-> native conversions; nothing here decides policy.
#include "convert.h"

#include <cmath>
#include <cstdio>
#include <linux/fiemap.h>

namespace iof::js {

Napi::Error error(Napi::Env env, const Error &e) {
  Napi::Error err = e.kind == Error::Type    ? Napi::TypeError::New(env, e.what())
                    : e.kind == Error::Range ? Napi::RangeError::New(env, e.what())
                                             : Napi::Error::New(env, e.what());
  err.Set("code", Napi::String::New(env, e.code));
  if (e.err)
    err.Set("errno", Napi::Number::New(env, e.err));
  if (!e.reasons.empty()) {
    auto r = Napi::Object::New(env);
    for (auto &[mode, why] : e.reasons)
      r.Set(mode, why);
    err.Set("reasons", r);
  }
  return err;
}

void type_error(const std::string &m) { throw Error("ERR_INVALID_ARG_TYPE", 0, m, Error::Type); }

uint64_t u64(const Napi::Value &v, const std::string &what) {
  if (v.IsBigInt()) {
    int sign;
    size_t words = 1;
    uint64_t w = 0;
    v.As<Napi::BigInt>().ToWords(&sign, &words, &w);
    if (sign)
      range_error(what + " must not be negative", "ERR_OUT_OF_RANGE");
    if (words > 1)
      range_error(what + " exceeds 2^64-1", "ERR_OUT_OF_RANGE");
    return words ? w : 0;
  }
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::isnan(d) || d < 0 || d != std::floor(d) || d > 9007199254740991.0)
      range_error(what + " must be a non-negative safe integer or a bigint, got " + std::to_string(d),
                  "ERR_OUT_OF_RANGE");
    return uint64_t(d);
  }
  type_error(what + " must be a bigint or a number");
}

uint32_t u32(const Napi::Value &v, const std::string &what, uint32_t max) {
  if (!v.IsNumber())
    type_error(what + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (std::isnan(d) || d < 0 || d != std::floor(d) || d > max)
    range_error(what + " must be an integer in 0.." + std::to_string(max), "ERR_OUT_OF_RANGE");
  return uint32_t(d);
}

std::string str(const Napi::Value &v, const std::string &what) {
  if (!v.IsString())
    type_error(what + " must be a string");
  return v.As<Napi::String>();
}

iof_dev dev(const Napi::Value &v, const std::string &what) {
  if (!v.IsObject())
    type_error(what + " must be an object {major, minor}");
  auto o = v.As<Napi::Object>();
  return {u32(o.Get("major"), what + ".major", UINT32_MAX), u32(o.Get("minor"), what + ".minor", UINT32_MAX)};
}

static const std::pair<uint32_t, const char *> OPS[] = {{IOF_OP_READ, "read"},
                                                        {IOF_OP_WRITE, "write"},
                                                        {IOF_OP_FLUSH, "flush"},
                                                        {IOF_OP_DISCARD, "discard"},
                                                        {IOF_OP_WRITE_ZEROES, "write_zeroes"}};

static uint32_t ops(const Napi::Value &v, const std::string &what) {
  if (!v.IsArray())
    type_error(what + " must be an array of operations");
  auto a = v.As<Napi::Array>();
  uint32_t out = 0;
  for (uint32_t i = 0; i < a.Length(); i++) {
    std::string s = str(a.Get(i), what + "[" + std::to_string(i) + "]");
    uint32_t bit = 0;
    for (auto &[b, name] : OPS)
      if (s == name)
        bit = b;
    if (!bit)
      range_error("unknown op '" + s + "' in " + what + " (read, write, flush, discard, write_zeroes)");
    out |= bit;
  }
  if (!out)
    range_error(what + " selects no operation");
  return out;
}

Napi::Object op_bits(Napi::Env env) {
  auto o = Napi::Object::New(env);
  for (auto &[b, name] : OPS)
    o.Set(name, b);
  return o;
}

static Napi::Array ops(Napi::Env env, uint32_t bits) {
  auto a = Napi::Array::New(env);
  uint32_t i = 0;
  for (auto &[b, name] : OPS)
    if (bits & b)
      a.Set(i++, name);
  return a;
}

FilterSpec filter_spec(const Napi::Value &v) {
  if (!v.IsObject())
    type_error("filter spec must be an object");
  auto o = v.As<Napi::Object>();
  FilterSpec s;
  s.device = dev(o.Get("device"), "device");
  s.disk = dev(o.Get("disk"), "disk");
  s.offset = u64(o.Get("offset"), "offset");
  if (!o.Get("size").IsUndefined())
    s.size = u64(o.Get("size"), "size");
  if (!o.Get("diskseq").IsUndefined())
    s.diskseq = u64(o.Get("diskseq"), "diskseq");
  Napi::Value ranges = o.Get("ranges");
  if (!ranges.IsArray())
    type_error("ranges must be an array");
  auto ra = ranges.As<Napi::Array>();
  for (uint32_t i = 0; i < ra.Length(); i++) {
    std::string at = "ranges[" + std::to_string(i) + "]";
    Napi::Value r = ra.Get(i);
    if (!r.IsObject())
      type_error(at + " must be an object {start, end, ops}");
    auto ro = r.As<Napi::Object>();
    s.ranges.push_back(
        {u64(ro.Get("start"), at + ".start"), u64(ro.Get("end"), at + ".end"), ops(ro.Get("ops"), at + ".ops")});
  }
  if (!o.Get("wholeOps").IsUndefined())
    s.whole_ops = ops(o.Get("wholeOps"), "wholeOps");
  Napi::Value ttl = o.Get("ttlMs");
  if (!ttl.IsUndefined()) {
    if (!ttl.IsNumber())
      type_error("ttlMs must be a number");
    double d = ttl.As<Napi::Number>().DoubleValue();
    if (std::isnan(d) || d < 0 || d > double(MAX_TTL_MS)) { // beyond it, expires_ns would wrap
      char got[32];
      snprintf(got, sizeof(got), "%.17g", d);
      range_error("ttlMs must be a number from 0 to " + std::to_string(MAX_TTL_MS) + " (317 years), got " + got);
    }
    s.ttl_ms = uint64_t(std::ceil(d));
  }
  Napi::Value prob = o.Get("probability");
  if (!prob.IsUndefined()) {
    if (!prob.IsNumber())
      type_error("probability must be a number");
    s.probability = prob.As<Napi::Number>().DoubleValue();
  }
  if (!o.Get("maxFailures").IsUndefined())
    s.max_failures = u64(o.Get("maxFailures"), "maxFailures");
  Napi::Value cg = o.Get("cgroup");
  if (!cg.IsUndefined() && !cg.IsNull()) {
    if (!cg.IsObject())
      type_error("cgroup must be an object {id, level}");
    auto co = cg.As<Napi::Object>();
    s.cgroup.id = u64(co.Get("id"), "cgroup.id");
    s.cgroup.level = u32(co.Get("level"), "cgroup.level", UINT32_MAX);
    if (!s.cgroup.id)
      range_error("cgroup.id must not be 0");
  }
  if (!o.Get("eventsPerSecond").IsUndefined())
    s.events_per_sec = u32(o.Get("eventsPerSecond"), "eventsPerSecond", UINT32_MAX);
  Napi::Value spared = o.Get("eventsSpared");
  if (!spared.IsUndefined()) {
    if (!spared.IsBoolean())
      type_error("eventsSpared must be a boolean");
    s.events_spared = spared.As<Napi::Boolean>();
  }
  Napi::Value meta = o.Get("meta");
  if (!meta.IsUndefined()) {
    if (!meta.IsObject())
      type_error("meta must be an object");
    auto mo = meta.As<Napi::Object>();
    if (!mo.Get("file").IsUndefined())
      s.meta.file = str(mo.Get("file"), "meta.file");
    if (!mo.Get("cgroupPath").IsUndefined())
      s.meta.cgroup_path = str(mo.Get("cgroupPath"), "meta.cgroupPath");
    if (!mo.Get("fromPid").IsUndefined())
      s.meta.from_pid = u32(mo.Get("fromPid"), "meta.fromPid", UINT32_MAX);
  }
  return s;
}

FilterKey filter_key(const Napi::Value &v) {
  if (!v.IsObject())
    type_error("filter key must be an object: {device, cgroupId?, allScopes?} or {id}");
  auto o = v.As<Napi::Object>();
  FilterKey k;
  if (!o.Get("id").IsUndefined()) {
    k.kind = FilterKey::Id;
    k.id = u32(o.Get("id"), "id", UINT32_MAX);
    return k;
  }
  k.device = dev(o.Get("device"), "device");
  if (!o.Get("cgroupId").IsUndefined())
    k.cgroup_id = u64(o.Get("cgroupId"), "cgroupId");
  Napi::Value all = o.Get("allScopes");
  if (!all.IsUndefined() && all.ToBoolean())
    k.kind = FilterKey::AllScopes;
  return k;
}

Sizes sizes(const Napi::Object &o) {
  Sizes s;
  if (!o.Get("maxDisks").IsUndefined())
    s.max_disks = u32(o.Get("maxDisks"), "maxDisks", UINT32_MAX);
  if (!o.Get("maxRangesTotal").IsUndefined())
    s.max_ranges = u32(o.Get("maxRangesTotal"), "maxRangesTotal", UINT32_MAX);
  if (!o.Get("maxFiltersTotal").IsUndefined())
    s.max_filters = u32(o.Get("maxFiltersTotal"), "maxFiltersTotal", UINT32_MAX);
  return s;
}

Napi::Object dev(Napi::Env env, iof_dev d) {
  auto o = Napi::Object::New(env);
  o.Set("major", d.major);
  o.Set("minor", d.minor);
  return o;
}

Napi::Value filter(Napi::Env env, const FilterInfo &f) {
  auto o = Napi::Object::New(env);
  o.Set("id", f.id);
  o.Set("device", dev(env, f.device));
  o.Set("disk", dev(env, f.disk));
  o.Set("offset", Napi::BigInt::New(env, f.offset));
  o.Set("size", Napi::BigInt::New(env, f.size));
  o.Set("diskseq", Napi::BigInt::New(env, f.diskseq));
  o.Set("whole", f.whole);
  // Ranges go out packed, unpacked in native/index.ts: an N-API object costs about 1 us
  // a range (4 ms of a 4096-range SetFilter, measured by bench/profile.ts), typed arrays
  // and one JS loop a fraction of that.
  const size_t n = f.ranges.size();
  auto nums = Napi::ArrayBuffer::New(env, n * 4 * sizeof(uint64_t));
  auto bits = Napi::ArrayBuffer::New(env, n * sizeof(uint32_t));
  auto *u = static_cast<uint64_t *>(nums.Data());
  auto *b = static_cast<uint32_t *>(bits.Data());
  for (size_t i = 0; i < n; i++) {
    const RangeInfo &r = f.ranges[i];
    u[4 * i] = r.start;
    u[4 * i + 1] = r.end;
    u[4 * i + 2] = r.matched;
    u[4 * i + 3] = r.failed;
    b[i] = r.ops;
  }
  auto packed = Napi::Object::New(env);
  packed.Set("nums", nums);
  packed.Set("ops", bits);
  o.Set("rangesPacked", packed);
  o.Set("remainingMs", f.remaining_ms ? Napi::Number::New(env, double(*f.remaining_ms)) : env.Null());
  o.Set("probability", f.probability);
  o.Set("maxFailures", Napi::BigInt::New(env, f.max_failures));
  o.Set("failures", Napi::BigInt::New(env, f.failures));
  o.Set("matchedIos", Napi::BigInt::New(env, f.matched_ios));
  o.Set("failedIos", Napi::BigInt::New(env, f.failed_ios));
  if (f.cgroup.id) {
    auto cg = Napi::Object::New(env);
    cg.Set("id", Napi::BigInt::New(env, f.cgroup.id));
    cg.Set("level", f.cgroup.level);
    o.Set("cgroup", cg);
  } else {
    o.Set("cgroup", env.Null());
  }
  o.Set("eventsPerSecond", f.events_per_sec);
  o.Set("eventsSpared", f.events_spared);
  o.Set("eventsDropped", Napi::BigInt::New(env, f.events_dropped));
  auto meta = Napi::Object::New(env);
  if (!f.meta.file.empty())
    meta.Set("file", f.meta.file);
  if (!f.meta.cgroup_path.empty())
    meta.Set("cgroupPath", f.meta.cgroup_path);
  if (f.meta.from_pid)
    meta.Set("fromPid", f.meta.from_pid);
  o.Set("meta", meta);
  return o;
}

Napi::Value event(Napi::Env env, const Event &e) {
  static const char *const outcomes[] = {"", "failed", "would_fail", "spared"};
  const iof_event &r = e.raw;
  auto o = Napi::Object::New(env);
  o.Set("timeUnixNs", Napi::BigInt::New(env, e.time_unix_ns));
  o.Set("dev", dev(env, r.dev));
  o.Set("disk", dev(env, r.disk));
  o.Set("sector", Napi::BigInt::New(env, uint64_t(r.sector)));
  o.Set("devSector", Napi::BigInt::New(env, uint64_t(r.dev_sector)));
  o.Set("nrSectors", r.nr_sectors);
  o.Set("ops", ops(env, r.ops));
  o.Set("filterId", r.filter_id);
  o.Set("rangeIndex", r.range_index);
  o.Set("outcome", r.outcome <= 3 ? outcomes[r.outcome] : "");
  o.Set("pid", r.pid);
  o.Set("comm", std::string(r.comm, strnlen(r.comm, sizeof(r.comm))));
  o.Set("cgroupId", Napi::BigInt::New(env, uint64_t(r.cgroup_id)));
  return o;
}

Napi::Value caps(Napi::Env env, const Caps &c) {
  const KernelFacts &k = c.facts;
  auto o = Napi::Object::New(env);
  o.Set("kernelRelease", k.release);
  o.Set("btf", k.btf);
  o.Set("lockdown", k.lockdown);
  auto modes = Napi::Array::New(env, c.modes.size());
  for (size_t i = 0; i < c.modes.size(); i++) {
    auto m = Napi::Object::New(env);
    m.Set("mode", c.modes[i].mode);
    m.Set("available", c.modes[i].available);
    m.Set("hook", c.modes[i].hook);
    m.Set("reason", c.modes[i].reason);
    modes.Set(uint32_t(i), m);
  }
  o.Set("modes", modes);
  auto f = Napi::Object::New(env);
  f.Set("fetchAtomics", k.fetch_atomics);
  f.Set("pinnableKprobe", k.perf_link);
  f.Set("recursionMisses", k.recursion_misses);
  f.Set("gracePeriod", grace_period_method(k));
  f.Set("cgroups", k.cgroups);
  auto notes = Napi::Array::New(env, k.notes.size());
  for (size_t i = 0; i < k.notes.size(); i++)
    notes.Set(uint32_t(i), k.notes[i]);
  f.Set("notes", notes);
  o.Set("features", f);
  return o;
}

Napi::Value self_test(Napi::Env env, const std::optional<SelfTestResult> &s) {
  if (!s)
    return env.Null();
  auto o = Napi::Object::New(env);
  o.Set("passed", s->passed);
  o.Set("atUnixMs", double(s->at_unix_ms));
  o.Set("detail", s->detail);
  return o;
}

Napi::Value extents(Napi::Env env, const FileExtents &x) {
  static const std::pair<uint32_t, const char *> flags[] = {
      {FIEMAP_EXTENT_LAST, "last"},
      {FIEMAP_EXTENT_UNKNOWN, "unknown"},
      {FIEMAP_EXTENT_DELALLOC, "delalloc"},
      {FIEMAP_EXTENT_ENCODED, "encoded"},
      {FIEMAP_EXTENT_DATA_ENCRYPTED, "encrypted"},
      {FIEMAP_EXTENT_NOT_ALIGNED, "not_aligned"},
      {FIEMAP_EXTENT_DATA_INLINE, "inline"},
      {FIEMAP_EXTENT_DATA_TAIL, "tail"},
      {FIEMAP_EXTENT_UNWRITTEN, "unwritten"},
      {FIEMAP_EXTENT_MERGED, "merged"},
      {FIEMAP_EXTENT_SHARED, "shared"},
  };
  auto o = Napi::Object::New(env);
  o.Set("dev", dev(env, {x.dev_major, x.dev_minor}));
  o.Set("size", Napi::BigInt::New(env, x.size));
  auto a = Napi::Array::New(env, x.extents.size());
  for (size_t i = 0; i < x.extents.size(); i++) {
    const Extent &e = x.extents[i];
    auto eo = Napi::Object::New(env);
    eo.Set("logical", Napi::BigInt::New(env, e.logical));
    eo.Set("physical", Napi::BigInt::New(env, e.physical));
    eo.Set("length", Napi::BigInt::New(env, e.length));
    auto fl = Napi::Array::New(env);
    uint32_t n = 0;
    for (auto &[bit, name] : flags)
      if (e.flags & bit)
        fl.Set(n++, name);
    eo.Set("flags", fl);
    a.Set(uint32_t(i), eo);
  }
  o.Set("extents", a);
  return o;
}

} // namespace iof::js
