/*
 * Host harness for the event rate limit: bpf/iofilter_rate.h - the very code the BPF
 * program runs - hammered by threads sharing one filter's stats and one clock, with
 * the clock moving on while threads are between reading it and using it (as a CPU
 * that read "now" before another CPU started a newer window).
 *   rate_harness THREADS ITERATIONS LIMIT
 * prints: windows W admitted A max M over O
 *   (W windows seen, A events admitted, M the most admitted in one window, O windows
 *   where more than LIMIT were admitted). Built with -DIOF_NO_FETCH: the 5.10 variant.
 */
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "iofilter_rate.h"

static iof_fstats g_fs;
static std::atomic<unsigned long long> g_clock{5000000000ull};

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: rate_harness THREADS ITERATIONS LIMIT\n");
    return 2;
  }
  int threads = atoi(argv[1]);
  long iterations = atol(argv[2]);
  unsigned limit = unsigned(atoi(argv[3]));
  std::mutex mu;
  std::map<unsigned long long, unsigned long long> per_window; // second -> admitted
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; t++)
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(t + 1);
      std::map<unsigned long long, unsigned long long> mine;
      for (long i = 0; i < iterations; i++) {
        // about 50 events a window between all threads, with the clock moving on
        unsigned long long now = g_clock.fetch_add(1000000000ull / 50 / threads + rng() % 1000);
        if (rng() % 8 == 0)
          std::this_thread::yield(); // let others start a newer window meanwhile
        if (iof_ev_admit(&g_fs, limit, now))
          mine[now / 1000000000ull]++;
      }
      std::lock_guard<std::mutex> l(mu);
      for (auto &[w, n] : mine)
        per_window[w] += n;
    });
  for (auto &t : ts)
    t.join();
  unsigned long long admitted = 0, max = 0, over = 0;
  for (auto &[w, n] : per_window) {
    admitted += n;
    max = n > max ? n : max;
    over += n > limit;
  }
  unsigned long long windows = g_clock.load() / 1000000000ull - 5;
  printf("windows %llu admitted %llu max %llu over %llu\n", windows, admitted, max, over);
  return 0;
}
