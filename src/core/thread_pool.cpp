// Persistent pool: workers spin on a generation counter, then sleep on it (C++20 atomic wait).
#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LMKIT_PAUSE() _mm_pause()
#else
#define LMKIT_PAUSE() ((void)0)
#endif

namespace lmkit {

namespace {
// About 50-100 microseconds of spinning before a worker sleeps: long enough to bridge the gap
// between two kernels of one token, short enough not to burn a core while the user reads.
constexpr int kSpinIters = 20000;
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  LMKIT_CHECK(n_threads >= 1 && n_threads <= 1024, "thread count must be in [1, 1024], got ",
              n_threads);
  taken_ = std::make_unique<std::atomic<uint64_t>[]>(size_t(n_threads_));
  for (int i = 0; i < n_threads_; ++i) taken_[size_t(i)].store(0, std::memory_order_relaxed);
  workers_.reserve(size_t(n_threads_ - 1));
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  for (auto &t : workers_) t.join();
}

void ThreadPool::split_range(int64_t n, int64_t grain, int ti, int nt, int64_t &b, int64_t &e) {
  grain = std::max<int64_t>(grain, 1);
  int64_t blocks = (n + grain - 1) / grain;
  int64_t per = blocks / nt, extra = blocks % nt;
  int64_t bb = ti * per + std::min<int64_t>(ti, extra);
  int64_t be = bb + per + (ti < extra ? 1 : 0);
  b = std::min(n, bb * grain);
  e = std::min(n, be * grain);
}

void ThreadPool::dispatch(Thunk thunk, void *ctx) {
  if (n_threads_ == 1) {
    thunk(ctx, 0, 1);
    return;
  }
  LMKIT_CHECK(!busy_.exchange(true, std::memory_order_acquire),
              "ThreadPool::run called re-entrantly (nested parallel loops are not supported)");
  thunk_ = thunk;
  ctx_ = ctx;
  error_ = nullptr;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  const uint64_t g = generation_.fetch_add(1, std::memory_order_release) + 1;
  generation_.notify_all();
  run_share(0);
  // Shares whose workers have not started yet (asleep or descheduled) are run here.
  for (int i = 1; i < n_threads_; ++i)
    if (claim(i, g)) {
      run_share(i);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  // Spin briefly, then yield: with more threads than cores a worker may need this core.
  for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
    if (spin < kSpinIters)
      LMKIT_PAUSE();
    else
      std::this_thread::yield();
  }
  busy_.store(false, std::memory_order_release);
  if (error_) std::rethrow_exception(error_);
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0; g == seen && spin < kSpinIters; ++spin) {
      if (spin % 1024 == 1023) std::this_thread::yield();  // let an oversubscribed core breathe
      LMKIT_PAUSE();
      g = generation_.load(std::memory_order_acquire);
    }
    while (g == seen) {
      generation_.wait(seen, std::memory_order_acquire);
      g = generation_.load(std::memory_order_acquire);
    }
    seen = g;
    if (stop_.load(std::memory_order_acquire)) return;
    // A late wake-up may find its share already run by the caller (or its generation over).
    if (!claim(index, g)) continue;
    run_share(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

bool ThreadPool::claim(int share, uint64_t g) {
  uint64_t prev = taken_[size_t(share)].load(std::memory_order_acquire);
  return prev < g &&
         taken_[size_t(share)].compare_exchange_strong(prev, g, std::memory_order_acq_rel);
}

void ThreadPool::run_share(int share) {
  try {
    thunk_(ctx_, share, n_threads_);
  } catch (...) {
    std::lock_guard<std::mutex> lk(error_mu_);
    if (!error_) error_ = std::current_exception();
  }
}

}  // namespace lmkit
