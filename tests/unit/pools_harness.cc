// Drives the real native/pools.cc (the agent's free lists, quarantine and reclaimer).
// One scenario per run, named by argv[1]; prints one line per step, "ok ..." or
// "error CODE message", and "hang" (exit 3) if a step does not finish within its limit:
//   deadlock        a take() that needs memory quarantined before the reclaimer's
//                   current round began (the reclaimer is held inside that round)
//   exhausted       quarantined memory is not enough even when freed: ENOSPC, no hang
//   grace-fails     the grace period throws: take() reports it, nothing is freed
//   inflight OBJ [LOOPS [deny-membarrier]]
//                   the production grace period (RcuGrace) while a BPF program runs:
//                   it must return only after the program has finished
//   refused         the production grace period when seccomp refuses bpf(): an error
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <future>
#include <string>

#include "errors.h"
#include "pools.h"

using namespace iof;
using Kind = Pools::Kind;
using Clock = std::chrono::steady_clock;

static const std::chrono::seconds LIMIT(20); // a step this slow has hung

// A grace period the scenario holds shut: rounds block inside it until open().
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  int entered = 0;
  void pass() {
    std::unique_lock<std::mutex> lk(mu);
    entered++;
    cv.notify_all();
    cv.wait(lk, [&] { return open; });
  }
  void wait_entered(int n) {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return entered >= n; });
  }
  void release() {
    std::lock_guard<std::mutex> lk(mu);
    open = true;
    cv.notify_all();
  }
};

// Every pool free, the range pool `ranges` long.
static void fresh(Pools &p, uint32_t ranges) {
  std::vector<bool> none(8), r(ranges);
  p.rebuild(none, none, none, r, none);
  p.start();
}

// Runs `f` on its own thread; "hang" and exit 3 if it takes longer than LIMIT.
template <typename F> static void within_limit(const char *what, F f) {
  auto fut = std::async(std::launch::async, f);
  if (fut.wait_for(LIMIT) != std::future_status::ready) {
    printf("hang %s\n", what);
    fflush(stdout);
    _exit(3);
  }
  fut.get();
}

static void take(Pools &p, uint32_t len, const char *what) {
  try {
    std::unique_lock<std::mutex> lk(p.mutex());
    uint32_t off = p.take(Kind::RangeRun, len, "the range pool", lk);
    printf("ok %s %u+%u\n", what, off, len);
  } catch (const Error &e) {
    printf("error %s %s\n", e.code.c_str(), e.what());
  }
  fflush(stdout);
}

// A filter of L ranges replaced twice within one grace period, pool of 100 and L = 40:
// set (0+40), replace (40+40, 0+40 quarantined), replace again: 20 free, needs the 40.
static int deadlock() {
  Gate gate;
  int calls = 0;
  Pools p([&] {
    if (calls++) // the first is rebuild()'s
      gate.pass();
  });
  fresh(p, 100);
  uint32_t first;
  {
    std::unique_lock<std::mutex> lk(p.mutex());
    first = p.take(Kind::RangeRun, 40, "the range pool", lk);
    p.take(Kind::RangeRun, 40, "the range pool", lk);
    p.quarantine(Kind::RangeRun, first, 40);
  }
  gate.wait_entered(1); // the reclaimer's round has begun, the 40 stamped before it
  std::atomic<bool> locked{false};
  auto waiter = std::async(std::launch::async, [&] {
    std::unique_lock<std::mutex> lk(p.mutex());
    locked = true;
    uint32_t off = p.take(Kind::RangeRun, 40, "the range pool", lk); // must wait: 20 free
    printf("ok second replace %u+40\n", off);
    fflush(stdout);
  });
  while (!locked)
    std::this_thread::yield();
  { std::lock_guard<std::mutex> lk(p.mutex()); } // free only once the waiter waits
  gate.release();
  if (waiter.wait_for(LIMIT) != std::future_status::ready) {
    printf("hang second replace\n");
    fflush(stdout);
    _exit(3);
  }
  printf("ok graces %llu\n", (unsigned long long)p.graces());
  return 0;
}

static int exhausted() {
  Pools p([] {});
  fresh(p, 100);
  {
    std::unique_lock<std::mutex> lk(p.mutex());
    uint32_t a = p.take(Kind::RangeRun, 60, "the range pool", lk);
    p.take(Kind::RangeRun, 30, "the range pool", lk);
    p.quarantine(Kind::RangeRun, a, 60);
  }
  within_limit("take 80", [&] { take(p, 80, "take 80"); }); // 10 free + 60 freed < 80
  within_limit("take 60", [&] { take(p, 60, "take 60"); }); // the freed run: 10 + 60 are apart
  return 0;
}

static int grace_fails() {
  int calls = 0;
  Pools p([&] {
    if (calls++)
      throw Error("EPERM", EPERM, "refused by the scenario");
  });
  fresh(p, 100);
  {
    std::unique_lock<std::mutex> lk(p.mutex());
    uint32_t a = p.take(Kind::RangeRun, 60, "the range pool", lk);
    p.take(Kind::RangeRun, 30, "the range pool", lk);
    p.quarantine(Kind::RangeRun, a, 60);
  }
  within_limit("take 20", [&] { take(p, 20, "take 20"); }); // needs the quarantined 60
  within_limit("take 10", [&] { take(p, 10, "take 10"); }); // the 10 never quarantined
  within_limit("take 1", [&] { take(p, 1, "take 1"); });    // the 60 stay quarantined
  printf("ok graces %llu\n", (unsigned long long)p.graces());
  return 0;
}

// seccomp: system call `nr` fails with EPERM on every thread of the process.
static void refuse(long nr) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, uint32_t(nr), 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
      syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog)) {
    printf("error setup seccomp: %s\n", strerror(errno));
    exit(2);
  }
}

struct Hold {
  volatile uint64_t started, done, spins;
  volatile uint32_t tid, loops;
};

static int inflight(const char *obj_path, uint32_t loops, bool deny_membarrier) {
  // fentry (preemptible on CONFIG_PREEMPT) on the getpgid function BTF has, else tp_btf
  static const std::pair<const char *, const char *> hooks[] = {{"hold_fentry", "__x64_sys_getpgid"},
                                                                {"hold_fentry", "__do_sys_getpgid"},
                                                                {"hold_fentry", "do_getpgid"},
                                                                {"hold_tp", nullptr}};
  bpf_object *obj = nullptr;
  bpf_link *link = nullptr;
  const char *hook = "";
  for (const auto &[name, fn] : hooks) {
    obj = bpf_object__open_file(obj_path, nullptr);
    bpf_program *p, *mine = bpf_object__find_program_by_name(obj, name);
    bpf_object__for_each_program(p, obj) bpf_program__set_autoload(p, p == mine);
    if ((!fn || !bpf_program__set_attach_target(mine, 0, fn)) && !bpf_object__load(obj) &&
        (link = bpf_program__attach(mine))) {
      hook = fn ? fn : "tp_btf/sys_enter";
      break;
    }
    bpf_object__close(obj);
    obj = nullptr;
  }
  if (!obj) {
    printf("error setup loading %s\n", obj_path);
    return 2;
  }
  int map = bpf_map__fd(bpf_object__find_map_by_name(obj, "hold_state"));
  auto *h = static_cast<Hold *>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, map, 0));
  if (!link || map < 0 || h == MAP_FAILED) {
    printf("error setup program or map\n");
    return 2;
  }
  RcuGrace rcu;
  Pools p([&] { rcu.wait(); });
  if (deny_membarrier)
    refuse(__NR_membarrier);
  // A run is conclusive when the program had not finished as the grace period began;
  // on a busy machine this thread may not get a CPU in time: run it again.
  for (int attempt = 1; attempt <= 20; attempt++) {
    h->started = h->done = h->spins = 0;
    h->loops = loops;
    auto run = std::async(std::launch::async, [&] {
      h->tid = uint32_t(syscall(__NR_gettid));
      syscall(__NR_getpgid, 0); // the program runs inside this call
      h->tid = 0;
      return 0;
    });
    while (!h->started)
      std::this_thread::yield();
    uint64_t done_before = h->done;
    auto t0 = Clock::now();
    p.grace();
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    uint64_t done_after = h->done, spins = h->spins;
    int rc = run.get();
    if (done_before)
      continue;
    printf("ok inflight done_after=%llu spins_at_return=%llu run=%d grace_ms=%.3f attempts=%d hook=%s\n",
           (unsigned long long)done_after, (unsigned long long)spins, rc, ms, attempt, hook);
    return 0;
  }
  printf("error inconclusive: the program finished before the grace period began, 20 times\n");
  return 1;
}

static int refused() {
  RcuGrace rcu;
  Pools p([&] { rcu.wait(); });
  fresh(p, 100); // its first grace period works
  refuse(__NR_bpf);
  {
    std::unique_lock<std::mutex> lk(p.mutex());
    uint32_t a = p.take(Kind::RangeRun, 60, "the range pool", lk);
    p.take(Kind::RangeRun, 30, "the range pool", lk);
    p.quarantine(Kind::RangeRun, a, 60);
  }
  within_limit("take 20", [&] { take(p, 20, "take 20"); });
  try {
    RcuGrace again;
    printf("ok created\n");
  } catch (const Error &e) {
    printf("error %s %s\n", e.code.c_str(), e.what());
  }
  return 0;
}

int main(int argc, char **argv) {
  std::string s = argc > 1 ? argv[1] : "";
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (s == "deadlock")
    return deadlock();
  if (s == "exhausted")
    return exhausted();
  if (s == "grace-fails")
    return grace_fails();
  if (s == "inflight" && argc > 2)
    return inflight(argv[2], argc > 3 ? uint32_t(std::stoul(argv[3])) : 1u << 19,
                    argc > 4 && std::string(argv[4]) == "deny-membarrier");
  if (s == "refused")
    return refused();
  fprintf(stderr, "usage: pools_harness deadlock|exhausted|grace-fails|inflight OBJ [LOOPS [deny-membarrier]]|refused\n");
  return 2;
}
