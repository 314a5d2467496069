// N-API face of the addon (typed in native/index.ts): argument checks, conversions
// to and from JS (BigInt sectors and counters), promises for everything that may
// block, and JS errors with .code/.errno. Per-environment state lives in the Addon
// instance; the libbpf work is in kernel.cc and filters.cc.
#include <napi.h>

#include <cmath>
#include <functional>
#include <memory>

#include "kernel.h"

namespace {

using iof::Error;

Napi::Error to_js(Napi::Env env, const Error &e) {
  Napi::Error err = e.kind == Error::Type    ? Napi::TypeError::New(env, e.what())
                    : e.kind == Error::Range ? Napi::RangeError::New(env, e.what())
                                             : Napi::Error::New(env, e.what());
  err.Set("code", Napi::String::New(env, e.code));
  if (e.err)
    err.Set("errno", Napi::Number::New(env, e.err));
  return err;
}

// Runs f, turning an iof::Error into the matching JS error.
template <typename F> Napi::Value guard(Napi::Env env, F f) {
  try {
    return f();
  } catch (const Error &e) {
    throw to_js(env, e);
  }
}

[[noreturn]] void type_error(const std::string &m) { throw Error("ERR_INVALID_ARG_TYPE", 0, m, Error::Type); }
[[noreturn]] void range_error(const std::string &m) { throw Error("ERR_OUT_OF_RANGE", 0, m, Error::Range); }

// Runs `work` on the libuv pool and settles a promise with `done`'s value.
class Worker : public Napi::AsyncWorker {
public:
  using Work = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;
  Worker(Napi::Env env, Work work, Done done)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        done_(std::move(done)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

protected:
  void Execute() override {
    try {
      work_();
    } catch (const Error &e) {
      err_ = std::make_unique<Error>(e);
    } catch (const std::exception &e) {
      err_ = std::make_unique<Error>("EUNKNOWN", 0, e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_)
      return deferred_.Reject(to_js(env, *err_).Value());
    try {
      deferred_.Resolve(done_(env));
    } catch (const Napi::Error &e) {
      deferred_.Reject(e.Value());
    } catch (const Error &e) {
      deferred_.Reject(to_js(env, e).Value());
    }
  }

private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  std::unique_ptr<Error> err_;
};

Napi::Promise run(Napi::Env env, Worker::Work work, Worker::Done done) {
  auto *w = new Worker(env, std::move(work), std::move(done));
  auto p = w->Promise();
  w->Queue();
  return p;
}

// ---- JS -> C++ -----------------------------------------------------------------

uint64_t u64(const Napi::Value &v, const std::string &what) {
  if (v.IsBigInt()) {
    bool lossless;
    int sign;
    size_t words = 1;
    uint64_t w = 0;
    v.As<Napi::BigInt>().ToWords(&sign, &words, &w);
    (void)lossless;
    if (sign)
      range_error(what + " must not be negative");
    if (words > 1)
      range_error(what + " exceeds 2^64-1");
    return words ? w : 0;
  }
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::isnan(d) || d < 0 || d != std::floor(d) || d > 9007199254740991.0)
      range_error(what + " must be a non-negative safe integer or a bigint, got " + std::to_string(d));
    return uint64_t(d);
  }
  type_error(what + " must be a bigint or a number");
}

iof_dev dev(const Napi::Value &v, const std::string &what) {
  if (!v.IsObject())
    type_error(what + " must be an object {major, minor}");
  auto o = v.As<Napi::Object>();
  auto num = [&](const char *k, uint32_t max) {
    Napi::Value x = o.Get(k);
    if (!x.IsNumber())
      type_error(what + "." + k + " must be a number");
    double d = x.As<Napi::Number>().DoubleValue();
    if (std::isnan(d) || d < 0 || d != std::floor(d) || d > max)
      range_error(what + "." + k + " must be an integer in 0.." + std::to_string(max));
    return uint32_t(d);
  };
  // dev_t holds a 12-bit major and a 20-bit minor
  iof_dev out{num("major", 4095), num("minor", (1u << 20) - 1)};
  if (out.major == 0 && out.minor == 0)
    range_error(what + " 0:0 is not a block device");
  return out;
}

uint32_t ops(const Napi::Value &v, const std::string &what) {
  if (!v.IsArray())
    type_error(what + " must be an array of operations");
  auto a = v.As<Napi::Array>();
  uint32_t out = 0;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value x = a.Get(i);
    if (!x.IsString())
      type_error(what + "[" + std::to_string(i) + "] must be a string");
    std::string s = x.As<Napi::String>();
    if (s == "read")
      out |= IOF_OP_READ;
    else if (s == "write")
      out |= IOF_OP_WRITE;
    else if (s == "flush")
      out |= IOF_OP_FLUSH;
    else if (s == "discard")
      out |= IOF_OP_DISCARD;
    else if (s == "write_zeroes")
      out |= IOF_OP_WRITE_ZEROES;
    else
      range_error("unknown op '" + s + "' in " + what + " (read, write, flush, discard, write_zeroes)");
  }
  if (!out)
    range_error(what + " selects no operation");
  return out;
}

iof::FilterSpec filter_spec(const Napi::Value &v) {
  if (!v.IsObject())
    type_error("filter spec must be an object");
  auto o = v.As<Napi::Object>();
  iof::FilterSpec s;
  s.device = dev(o.Get("device"), "device");
  s.disk = dev(o.Get("disk"), "disk");
  s.offset = u64(o.Get("offset"), "offset");
  if (!o.Get("size").IsUndefined())
    s.size = u64(o.Get("size"), "size");
  Napi::Value ranges = o.Get("ranges");
  if (!ranges.IsArray())
    type_error("ranges must be an array");
  auto ra = ranges.As<Napi::Array>();
  if (ra.Length() > IOF_MAX_RANGES)
    range_error("too many ranges: " + std::to_string(ra.Length()) + ", limit " + std::to_string(IOF_MAX_RANGES) +
                " per disk");
  for (uint32_t i = 0; i < ra.Length(); i++) {
    std::string at = "ranges[" + std::to_string(i) + "]";
    Napi::Value r = ra.Get(i);
    if (!r.IsObject())
      type_error(at + " must be an object {start, end, ops}");
    auto ro = r.As<Napi::Object>();
    iof::RangeSpec rs{u64(ro.Get("start"), at + ".start"), u64(ro.Get("end"), at + ".end"),
                      ops(ro.Get("ops"), at + ".ops")};
    if (rs.start > rs.end)
      range_error(at + ": start " + std::to_string(rs.start) + " > end " + std::to_string(rs.end));
    s.ranges.push_back(rs);
  }
  if (!o.Get("wholeOps").IsUndefined())
    s.whole_ops = ops(o.Get("wholeOps"), "wholeOps");
  Napi::Value ttl = o.Get("ttlMs");
  if (!ttl.IsUndefined()) {
    if (!ttl.IsNumber())
      type_error("ttlMs must be a number");
    double d = ttl.As<Napi::Number>().DoubleValue();
    if (std::isnan(d) || d < 0 || d > 1e15)
      range_error("ttlMs must be a finite number >= 0, got " + std::to_string(d));
    s.ttl_ms = uint64_t(std::ceil(d));
  }
  Napi::Value prob = o.Get("probability");
  if (!prob.IsUndefined()) {
    if (!prob.IsNumber())
      type_error("probability must be a number");
    s.probability = prob.As<Napi::Number>().DoubleValue();
    if (!(s.probability > 0 && s.probability <= 1))
      range_error("probability must be in (0, 1], got " + std::to_string(s.probability));
  }
  if (!o.Get("maxFailures").IsUndefined())
    s.max_failures = u64(o.Get("maxFailures"), "maxFailures");
  return s;
}

// ---- C++ -> JS -----------------------------------------------------------------

Napi::Object js_dev(Napi::Env env, iof_dev d) {
  auto o = Napi::Object::New(env);
  o.Set("major", d.major);
  o.Set("minor", d.minor);
  return o;
}

Napi::Array js_ops(Napi::Env env, uint32_t ops) {
  auto a = Napi::Array::New(env);
  const std::pair<uint32_t, const char *> names[] = {{IOF_OP_READ, "read"},
                                                     {IOF_OP_WRITE, "write"},
                                                     {IOF_OP_FLUSH, "flush"},
                                                     {IOF_OP_DISCARD, "discard"},
                                                     {IOF_OP_WRITE_ZEROES, "write_zeroes"}};
  uint32_t i = 0;
  for (auto &[bit, name] : names)
    if (ops & bit)
      a.Set(i++, name);
  return a;
}

Napi::Value js_filter(Napi::Env env, const iof::FilterInfo &f) {
  auto o = Napi::Object::New(env);
  o.Set("device", js_dev(env, f.device));
  o.Set("disk", js_dev(env, f.disk));
  o.Set("offset", Napi::BigInt::New(env, f.offset));
  o.Set("size", Napi::BigInt::New(env, f.size));
  o.Set("whole", f.whole);
  auto rs = Napi::Array::New(env, f.ranges.size());
  for (size_t i = 0; i < f.ranges.size(); i++) {
    auto r = Napi::Object::New(env);
    r.Set("start", Napi::BigInt::New(env, f.ranges[i].start));
    r.Set("end", Napi::BigInt::New(env, f.ranges[i].end));
    r.Set("ops", js_ops(env, f.ranges[i].ops));
    r.Set("matched", Napi::BigInt::New(env, f.ranges[i].matched));
    r.Set("failed", Napi::BigInt::New(env, f.ranges[i].failed));
    rs.Set(uint32_t(i), r);
  }
  o.Set("ranges", rs);
  o.Set("remainingMs", f.remaining_ms ? Napi::Number::New(env, double(*f.remaining_ms)) : env.Null());
  o.Set("probability", f.probability);
  o.Set("maxFailures", Napi::BigInt::New(env, f.max_failures));
  o.Set("failures", Napi::BigInt::New(env, f.failures));
  return o;
}

std::string str_opt(const Napi::Object &o, const char *key, const std::string &dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined())
    return dflt;
  if (!v.IsString())
    type_error(std::string(key) + " must be a string");
  return v.As<Napi::String>();
}

// ---- Filterer ------------------------------------------------------------------

class Filterer : public Napi::ObjectWrap<Filterer> {
public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Filterer",
                       {InstanceMethod<&Filterer::PutFilter>("putFilter"),
                        InstanceMethod<&Filterer::GetFilter>("getFilter"),
                        InstanceMethod<&Filterer::DeleteFilter>("deleteFilter"),
                        InstanceMethod<&Filterer::ListFilters>("listFilters"),
                        InstanceMethod<&Filterer::ReapExpired>("reapExpired"),
                        InstanceMethod<&Filterer::Detach>("detach"), InstanceMethod<&Filterer::Close>("close")});
  }

  Filterer(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Filterer>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "Filterer is created by attach() or adopt()");
    pinned_.reset(info[0].As<Napi::External<iof::Pinned>>().Data());
    table_ = std::make_unique<iof::Table>(*pinned_);
    Napi::Env env = info.Env();
    const iof::Pinned &p = *pinned_;
    auto st = Napi::Object::New(env);
    st.Set("mode", p.mode);
    st.Set("pinDir", p.pin_dir);
    st.Set("adopted", p.adopted);
    st.Set("hook", p.hook);
    auto ids = [&](std::initializer_list<uint32_t> l) {
      auto a = Napi::Array::New(env);
      uint32_t i = 0;
      for (uint32_t x : l)
        a.Set(i++, x);
      return a;
    };
    st.Set("progIds", ids({p.prog_id}));
    st.Set("linkIds", ids({p.link_id}));
    st.Set("mapIds", ids({p.disks_id, p.counters_id, p.state_id}));
    st.Set("maxDisks", p.max_disks);
    info.This().As<Napi::Object>().DefineProperty(
        Napi::PropertyDescriptor::Value("state", st, napi_enumerable));
  }

private:
  std::unique_ptr<iof::Pinned> pinned_;
  std::unique_ptr<iof::Table> table_;

  iof::Table &table(Napi::Env env) {
    if (!table_)
      throw to_js(env, Error("ENOTATTACHED", 0, "this handle is closed (detached or close() was called)"));
    return *table_;
  }

  Napi::Value PutFilter(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&] {
      iof::FilterSpec s = filter_spec(info[0]);
      iof::FilterInfo f = table(info.Env()).put(s);
      f.disk = s.disk;
      return js_filter(info.Env(), f);
    });
  }
  Napi::Value GetFilter(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto f = table(info.Env()).get(dev(info[0], "device"));
      return f ? js_filter(info.Env(), *f) : info.Env().Null();
    });
  }
  Napi::Value DeleteFilter(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      return Napi::Boolean::New(info.Env(), table(info.Env()).remove(dev(info[0], "device")));
    });
  }
  Napi::Value ListFilters(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto list = table(info.Env()).list();
      auto a = Napi::Array::New(info.Env(), list.size());
      for (size_t i = 0; i < list.size(); i++)
        a.Set(uint32_t(i), js_filter(info.Env(), list[i]));
      return a;
    });
  }
  Napi::Value ReapExpired(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      return Napi::Number::New(info.Env(), table(info.Env()).reap_expired());
    });
  }
  Napi::Value Detach(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!table_) {
      auto d = Napi::Promise::Deferred::New(env);
      d.Reject(to_js(env, Error("ENOTATTACHED", 0, "this handle is closed (detached or close() was called)")).Value());
      return d.Promise();
    }
    // the worker owns the pins from here on; this handle is closed at once
    table_.reset();
    std::shared_ptr<iof::Pinned> p(pinned_.release());
    return run(env, [p] { iof::detach(*p); }, [](Napi::Env env) { return env.Undefined(); });
  }
  Napi::Value Close(const Napi::CallbackInfo &info) {
    table_.reset();
    pinned_.reset();
    return info.Env().Undefined();
  }
};

// ---- empty programs (benchmarks) -------------------------------------------------

class EmptyHandle : public Napi::ObjectWrap<EmptyHandle> {
public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "EmptyProgram", {InstanceMethod<&EmptyHandle::Close>("close")});
  }
  EmptyHandle(const Napi::CallbackInfo &info) : Napi::ObjectWrap<EmptyHandle>(info) {
    prog_.reset(info[0].As<Napi::External<iof::EmptyProg>>().Data());
    info.This().As<Napi::Object>().Set("progId", prog_->prog_id);
  }

private:
  std::unique_ptr<iof::EmptyProg> prog_;
  Napi::Value Close(const Napi::CallbackInfo &info) {
    prog_.reset();
    return info.Env().Undefined();
  }
};

// ---- the addon -------------------------------------------------------------------

class Addon : public Napi::Addon<Addon> {
public:
  Addon(Napi::Env env, Napi::Object exports) {
    filterer_ = Napi::Persistent(Filterer::Define(env));
    empty_ = Napi::Persistent(EmptyHandle::Define(env));
    auto limits = Napi::Object::New(env);
    limits.Set("maxRanges", IOF_MAX_RANGES);
    limits.Set("maxFilters", IOF_MAX_FILTERS);
    DefineAddon(exports, {InstanceValue("limits", limits, napi_enumerable),
                          InstanceMethod<&Addon::Probe>("probe"), InstanceMethod<&Addon::Attach>("attach"),
                          InstanceMethod<&Addon::Adopt>("adopt"), InstanceMethod<&Addon::AttachEmpty>("attachEmpty")});
  }

private:
  Napi::FunctionReference filterer_, empty_;

  Napi::Value wrap(Napi::Env env, iof::Pinned *p) {
    return filterer_.New({Napi::External<iof::Pinned>::New(env, p)});
  }

  Napi::Value Probe(const Napi::CallbackInfo &info) {
    auto caps = std::make_shared<iof::Caps>();
    return run(info.Env(), [caps] { *caps = iof::probe(); },
               [caps](Napi::Env env) -> Napi::Value {
                 auto o = Napi::Object::New(env);
                 o.Set("kernelRelease", caps->release);
                 o.Set("btf", caps->btf);
                 o.Set("lockdown", caps->lockdown);
                 auto modes = Napi::Array::New(env, caps->modes.size());
                 for (size_t i = 0; i < caps->modes.size(); i++) {
                   auto m = Napi::Object::New(env);
                   m.Set("mode", caps->modes[i].mode);
                   m.Set("available", caps->modes[i].available);
                   m.Set("hook", caps->modes[i].hook);
                   m.Set("reason", caps->modes[i].reason);
                   modes.Set(uint32_t(i), m);
                 }
                 o.Set("modes", modes);
                 return o;
               });
  }

  Napi::Value Attach(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      if (!info[0].IsObject())
        type_error("attach options must be an object");
      auto o = info[0].As<Napi::Object>();
      std::string mode = str_opt(o, "mode", "auto");
      if (mode != "auto" && mode != "fmod_ret" && mode != "kprobe" && mode != "observe")
        range_error("unknown mode '" + mode + "' (auto, fmod_ret, kprobe, observe)");
      std::string pin_dir = str_opt(o, "pinDir", "/sys/fs/bpf/iofilter");
      if (pin_dir.empty() || pin_dir[0] != '/')
        range_error("pinDir must be an absolute path, got '" + pin_dir + "'");
      uint32_t max_disks = 1024;
      if (!o.Get("maxDisks").IsUndefined())
        max_disks = uint32_t(u64(o.Get("maxDisks"), "maxDisks"));
      auto out = std::make_shared<std::unique_ptr<iof::Pinned>>();
      return run(info.Env(), [=] { *out = iof::attach(mode, pin_dir, max_disks); },
                 [this, out](Napi::Env env) { return wrap(env, out->release()); });
    });
  }

  Napi::Value Adopt(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      std::string pin_dir = "/sys/fs/bpf/iofilter";
      if (!info[0].IsUndefined()) {
        if (!info[0].IsString())
          type_error("pinDir must be a string");
        pin_dir = info[0].As<Napi::String>();
      }
      auto out = std::make_shared<std::unique_ptr<iof::Pinned>>();
      return run(info.Env(), [=] { *out = iof::adopt(pin_dir); },
                 [this, out](Napi::Env env) -> Napi::Value {
                   return *out ? wrap(env, out->release()) : env.Null();
                 });
    });
  }

  Napi::Value AttachEmpty(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      if (!info[0].IsString())
        type_error("hook must be a string");
      std::string hook = info[0].As<Napi::String>();
      auto out = std::make_shared<std::unique_ptr<iof::EmptyProg>>();
      return run(info.Env(), [=] { *out = iof::attach_empty(hook); },
                 [this, out](Napi::Env env) -> Napi::Value {
                   return empty_.New({Napi::External<iof::EmptyProg>::New(env, out->release())});
                 });
    });
  }
};

} // namespace

NODE_API_ADDON(Addon)
