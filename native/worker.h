// Running native work off the JS thread: guard() turns an iof::Error into the
// matching JS error; run() does `work` on the libuv pool and settles a promise with
// `done`'s value (or the error).
#pragma once

#include <napi.h>

#include <functional>
#include <memory>

#include "convert.h"
#include "errors.h"

namespace iof::js {

// Runs f, turning an iof::Error into the matching JS error.
template <typename F> Napi::Value guard(Napi::Env env, F f) {
  try {
    return f();
  } catch (const Error &e) {
    throw error(env, e);
  }
}

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
      return deferred_.Reject(error(env, *err_).Value());
    try {
      deferred_.Resolve(done_(env));
    } catch (const Napi::Error &e) {
      deferred_.Reject(e.Value());
    } catch (const Error &e) {
      deferred_.Reject(error(env, e).Value());
    }
  }

private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  std::unique_ptr<Error> err_;
};

inline Napi::Promise run(Napi::Env env, Worker::Work work, Worker::Done done) {
  auto *w = new Worker(env, std::move(work), std::move(done));
  auto p = w->Promise();
  w->Queue();
  return p;
}

} // namespace iof::js
