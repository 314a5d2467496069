// N-API face of the addon (typed in native/index.ts): the wrapped classes (Filterer,
// PinLock, EmptyProgram), promises for everything that may block, and per-environment
// state in the Addon instance. Conversions are in convert.cc; the work is in
// attach.cc, table.cc, pins.cc, events.cc and fiemap.cc.
#include <napi.h>

#include <cerrno>
#include <functional>
#include <memory>

#include "attach.h"
#include "convert.h"
#include "errors.h"
#include "events.h"
#include "fiemap.h"
#include "linkinfo.h"
#include "worker.h"

extern "C" {
#include <bpf/bpf.h>
}

namespace {

using iof::Error;
using iof::js::guard;
using iof::js::run;
namespace js = iof::js;

Napi::Error closed(Napi::Env env) {
  return js::error(env, Error("ENOTATTACHED", 0, "this handle is closed (detached or close() was called)"));
}

// ---- PinLock ------------------------------------------------------------------------

class PinLock : public Napi::ObjectWrap<PinLock> {
public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "PinDirLock", {InstanceMethod<&PinLock::Release>("release")});
  }
  PinLock(const Napi::CallbackInfo &info) : Napi::ObjectWrap<PinLock>(info) {
    guard(info.Env(), [&] {
      lock_ = std::make_unique<iof::PinDirLock>(js::str(info[0], "pinDir"));
      info.This().As<Napi::Object>().DefineProperty(
          Napi::PropertyDescriptor::Value("pinDir", info[0], napi_enumerable));
      return info.Env().Undefined();
    });
  }
  iof::PinDirLock *get() { return lock_ && lock_->held() ? lock_.get() : nullptr; }

private:
  std::unique_ptr<iof::PinDirLock> lock_;
  Napi::Value Release(const Napi::CallbackInfo &info) {
    lock_.reset();
    return info.Env().Undefined();
  }
};

// ---- Filterer -------------------------------------------------------------------------

class Filterer : public Napi::ObjectWrap<Filterer> {
public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "Filterer",
        {InstanceMethod<&Filterer::Put>("putFilter"), InstanceMethod<&Filterer::Get>("getFilter"),
         InstanceMethod<&Filterer::Delete>("deleteFilter"), InstanceMethod<&Filterer::Clear>("clearFilters"),
         InstanceMethod<&Filterer::List>("listFilters"), InstanceMethod<&Filterer::Reap>("reapExpired"),
         InstanceMethod<&Filterer::Stats>("programStats"), InstanceMethod<&Filterer::Counters>("counters"),
         InstanceMethod<&Filterer::StartEvents>("startEvents"), InstanceMethod<&Filterer::StopEvents>("stopEvents"),
         InstanceMethod<&Filterer::Detach>("detach"), InstanceMethod<&Filterer::Close>("close")});
  }

  Filterer(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Filterer>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "Filterer is created by attach() or adopt()");
    a_.reset(info[0].As<Napi::External<iof::Attached>>().Data());
    Napi::Env env = info.Env();
    const iof::Pinned &p = *a_->pinned;
    auto st = Napi::Object::New(env);
    st.Set("mode", p.mode);
    st.Set("pinDir", p.pin_dir);
    st.Set("adopted", p.adopted);
    st.Set("pinned", p.pinned);
    st.Set("hook", p.hook);
    auto ids = [&](std::initializer_list<uint32_t> l) {
      auto arr = Napi::Array::New(env);
      uint32_t i = 0;
      for (uint32_t x : l)
        arr.Set(i++, x);
      return arr;
    };
    st.Set("progIds", ids({p.prog_id}));
    st.Set("linkIds", p.link_id ? ids({p.link_id}) : Napi::Array::New(env));
    st.Set("mapIds", ids({p.index.id, p.entries.id, p.ranges.id, p.nodes.id, p.counters.id, p.fstats.id, p.meta.id,
                          p.state.id, p.seen.id, p.events.id}));
    st.Set("maxDisks", p.sizes.max_disks);
    st.Set("selfTest", js::self_test(env, a_->self_test));
    info.This().As<Napi::Object>().DefineProperty(Napi::PropertyDescriptor::Value("state", st, napi_enumerable));
  }

  ~Filterer() { stop_events(); }

private:
  std::unique_ptr<iof::Attached> a_;
  std::unique_ptr<iof::EventReader> reader_;
  Napi::ThreadSafeFunction tsfn_;
  std::atomic<uint64_t> dropped_{0}; // batches JS had no room for, in events

  iof::Table &table(Napi::Env env) {
    if (!a_ || !a_->table)
      throw closed(env);
    return *a_->table;
  }

  Napi::Value Put(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&] { return js::filter(info.Env(), table(info.Env()).put(js::filter_spec(info[0]))); });
  }
  Napi::Value Get(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto f = table(info.Env()).get(js::filter_key(info[0]));
      return f ? js::filter(info.Env(), *f) : info.Env().Null();
    });
  }
  Napi::Value Delete(const Napi::CallbackInfo &info) {
    return guard(info.Env(),
                 [&] { return Napi::Number::New(info.Env(), table(info.Env()).remove(js::filter_key(info[0]))); });
  }
  Napi::Value Clear(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&] { return Napi::Number::New(info.Env(), table(info.Env()).clear()); });
  }
  Napi::Value List(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto list = table(info.Env()).list();
      auto arr = Napi::Array::New(info.Env(), list.size());
      for (size_t i = 0; i < list.size(); i++)
        arr.Set(uint32_t(i), js::filter(info.Env(), list[i]));
      return arr;
    });
  }
  Napi::Value Reap(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&] { return Napi::Number::New(info.Env(), table(info.Env()).reap_expired()); });
  }
  Napi::Value Counters(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      iof::Table &t = table(info.Env());
      auto o = Napi::Object::New(info.Env());
      o.Set("truncatedIos", Napi::BigInt::New(info.Env(), t.truncated()));
      o.Set("eventsLost", Napi::BigInt::New(info.Env(), t.events_lost() + dropped_.load()));
      return o;
    });
  }
  // The attached program's counters and its kprobe link's misses; a refused query is
  // an error (never an empty list that would read as "no program").
  Napi::Value Stats(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!a_ || !a_->pinned)
      throw closed(env);
    return guard(env, [&]() -> Napi::Value {
      bpf_prog_info pi = {};
      uint32_t len = sizeof(pi);
      if (bpf_obj_get_info_by_fd(a_->pinned->prog_fd, &pi, &len) != 0)
        iof::sysfail(errno, "reading the program's info (BPF_OBJ_GET_INFO_BY_FD)");
      auto missed = iof::kprobe_link_missed(a_->pinned->link_fd, a_->facts.link_missed);
      auto o = Napi::Object::New(env);
      o.Set("progId", pi.id);
      o.Set("name", std::string(pi.name));
      o.Set("recursionMisses",
            a_->facts.recursion_misses ? Napi::BigInt::New(env, uint64_t(pi.recursion_misses)) : env.Null());
      o.Set("runCount", Napi::BigInt::New(env, uint64_t(pi.run_cnt)));
      o.Set("linkMissed", missed ? Napi::BigInt::New(env, *missed) : env.Null());
      auto arr = Napi::Array::New(env, 1);
      arr.Set(uint32_t(0), o);
      return arr;
    });
  }

  Napi::Value StartEvents(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!a_ || !a_->pinned)
      throw closed(env);
    if (!info[0].IsFunction())
      throw Napi::TypeError::New(env, "startEvents(onEvents): onEvents must be a function");
    if (reader_)
      throw js::error(env, Error("EBUSY", 0, "events are already being delivered on this handle (stopEvents() first)"));
    // at most 64 batches wait for JS; beyond that a batch is dropped and counted
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "iofilter-events", 64, 1);
    tsfn_.Unref(env);
    return guard(env, [&] {
      reader_ = std::make_unique<iof::EventReader>(a_->pinned->events.fd, [this](std::vector<iof::Event> &&batch) {
        auto *b = new std::vector<iof::Event>(std::move(batch));
        size_t n = b->size();
        auto call = [](Napi::Env env, Napi::Function cb, std::vector<iof::Event> *events) {
          auto arr = Napi::Array::New(env, events->size());
          for (size_t i = 0; i < events->size(); i++)
            arr.Set(uint32_t(i), js::event(env, (*events)[i]));
          delete events;
          cb.Call({arr});
        };
        if (tsfn_.NonBlockingCall(b, call) != napi_ok) {
          delete b;
          dropped_ += n;
        }
      });
      return env.Undefined();
    });
  }
  void stop_events() {
    reader_.reset(); // joins the reader thread: no call is made after this
    if (tsfn_) {
      tsfn_.Release();
      tsfn_ = Napi::ThreadSafeFunction();
    }
  }
  Napi::Value StopEvents(const Napi::CallbackInfo &info) {
    stop_events();
    return info.Env().Undefined();
  }

  Napi::Value Detach(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!a_ || !a_->pinned) {
      auto d = Napi::Promise::Deferred::New(env);
      d.Reject(closed(env).Value());
      return d.Promise();
    }
    stop_events();
    // the worker owns the program from here on; this handle is closed at once
    std::shared_ptr<iof::Attached> a(a_.release());
    return run(
        env, [a] { iof::detach(*a); }, [](Napi::Env env) { return env.Undefined(); });
  }
  Napi::Value Close(const Napi::CallbackInfo &info) {
    stop_events();
    a_.reset();
    return info.Env().Undefined();
  }
};

// ---- empty programs (benchmarks) -------------------------------------------------------

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

// ---- the addon ---------------------------------------------------------------------------

class Addon : public Napi::Addon<Addon> {
public:
  Addon(Napi::Env env, Napi::Object exports) {
    filterer_ = Napi::Persistent(Filterer::Define(env));
    lock_ = Napi::Persistent(PinLock::Define(env));
    empty_ = Napi::Persistent(EmptyHandle::Define(env));
    auto limits = Napi::Object::New(env);
    limits.Set("maxRanges", IOF_MAX_RANGES);
    limits.Set("maxRangesPerFilter", IOF_MAX_RANGES);
    limits.Set("maxFilters", IOF_MAX_FILTERS);
    limits.Set("maxOverlap", IOF_MAX_LAYERS);
    limits.Set("maxRangesPerIo", IOF_MAX_WALK);
    DefineAddon(exports, {InstanceValue("limits", limits, napi_enumerable), InstanceValue("opBits", js::op_bits(env)),
                          InstanceMethod<&Addon::Probe>("probe"), InstanceMethod<&Addon::Lock>("lock"),
                          InstanceMethod<&Addon::Attach>("attach"), InstanceMethod<&Addon::Adopt>("adopt"),
                          InstanceMethod<&Addon::AttachEmpty>("attachEmpty"),
                          InstanceMethod<&Addon::FileExtents>("fileExtents")});
  }

private:
  Napi::FunctionReference filterer_, lock_, empty_;

  Napi::Value wrap(Napi::Env env, iof::Attached *a) {
    return filterer_.New({Napi::External<iof::Attached>::New(env, a)});
  }

  iof::PinDirLock &lock_of(const Napi::Value &v) {
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(lock_.Value()))
      js::type_error("lock must be a PinDirLock from lock()");
    iof::PinDirLock *l = PinLock::Unwrap(v.As<Napi::Object>())->get();
    if (!l)
      throw Error("ENOLCK", 0, "the pin dir lock was released");
    return *l;
  }

  Napi::Value Probe(const Napi::CallbackInfo &info) {
    auto caps = std::make_shared<iof::Caps>();
    return run(
        info.Env(), [caps] { *caps = iof::probe(); }, [caps](Napi::Env env) { return js::caps(env, *caps); });
  }

  Napi::Value Lock(const Napi::CallbackInfo &info) { return lock_.New({info[0]}); }

  Napi::Value Attach(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      if (!info[0].IsObject())
        js::type_error("attach options must be an object");
      auto o = info[0].As<Napi::Object>();
      iof::AttachOpts opts;
      if (!o.Get("mode").IsUndefined())
        opts.mode = js::str(o.Get("mode"), "mode");
      opts.sizes = js::sizes(o);
      if (!o.Get("selfTest").IsUndefined())
        opts.self_test = o.Get("selfTest").ToBoolean();
      iof::PinDirLock *lock = &lock_of(o.Get("lock"));
      auto out = std::make_shared<iof::Attached>();
      return run(
          info.Env(), [=] { *out = iof::attach(opts, *lock); },
          [this, out](Napi::Env env) { return wrap(env, new iof::Attached(std::move(*out))); });
    });
  }

  Napi::Value Adopt(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      iof::PinDirLock *lock = &lock_of(info[0]);
      auto out = std::make_shared<iof::Attached>();
      return run(
          info.Env(), [=] { *out = iof::adopt(*lock); },
          [this, out](Napi::Env env) -> Napi::Value {
            return out->pinned ? wrap(env, new iof::Attached(std::move(*out))) : env.Null();
          });
    });
  }

  Napi::Value AttachEmpty(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      std::string hook = js::str(info[0], "hook");
      auto out = std::make_shared<std::unique_ptr<iof::EmptyProg>>();
      return run(
          info.Env(), [=] { *out = iof::attach_empty(hook); },
          [this, out](Napi::Env env) -> Napi::Value {
            return empty_.New({Napi::External<iof::EmptyProg>::New(env, out->release())});
          });
    });
  }

  Napi::Value FileExtents(const Napi::CallbackInfo &info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      std::string path = js::str(info[0], "path");
      uint32_t max_extents = js::u32(info[1], "maxExtents", UINT32_MAX);
      auto out = std::make_shared<iof::FileExtents>();
      return run(
          info.Env(), [=] { *out = iof::file_extents(path, max_extents); },
          [out](Napi::Env env) { return js::extents(env, *out); });
    });
  }
};

} // namespace

NODE_API_ADDON(Addon)
