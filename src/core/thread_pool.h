// A persistent thread pool for data-parallel loops: fixed workers, static even partitioning (so
// results never depend on timing), a short spin before sleeping so per-token calls stay cheap.
// A share whose worker has not woken up by the time the caller finishes its own is run by the
// caller (same share, same thread index: results are unchanged), so a loaded machine where a
// worker is descheduled does not stall every parallel loop for a scheduler time slice.
// Not a task scheduler: no futures, no work stealing between running threads, no nesting.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace lmkit {

class ThreadPool {
 public:
  // n_threads counts the calling thread: ThreadPool(1) runs everything inline.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  int size() const { return n_threads_; }

  // Calls fn(thread_index, n_threads) once on every thread (the caller is thread 0) and returns
  // when all calls have returned. An exception thrown by any call is rethrown here.
  template <typename F>
  void run(F &&fn) {
    auto thunk = [](void *ctx, int ti, int nt) { (*static_cast<F *>(ctx))(ti, nt); };
    dispatch(thunk, static_cast<void *>(&fn));
  }

  // Splits [0, n) into size() contiguous chunks of (nearly) equal length, aligned to `grain`,
  // and calls fn(begin, end, thread_index) for each non-empty chunk.
  template <typename F>
  void parallel_for(int64_t n, F &&fn, int64_t grain = 1) {
    if (n_threads_ == 1 || n <= grain) {
      if (n > 0) fn(int64_t(0), n, 0);
      return;
    }
    run([&](int ti, int nt) {
      int64_t b, e;
      split_range(n, grain, ti, nt, b, e);
      if (b < e) fn(b, e, ti);
    });
  }

  // The chunk [b, e) of [0, n) that thread ti of nt gets (grain-aligned, deterministic).
  static void split_range(int64_t n, int64_t grain, int ti, int nt, int64_t &b, int64_t &e);

 private:
  using Thunk = void (*)(void *, int, int);
  void dispatch(Thunk thunk, void *ctx);
  void worker(int index);
  bool claim(int share, uint64_t generation);  // true once per share and generation
  void run_share(int share);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> busy_{false};
  // taken_[i]: the last generation whose share i was claimed (by worker i or by the caller).
  std::unique_ptr<std::atomic<uint64_t>[]> taken_;
  Thunk thunk_ = nullptr;
  void *ctx_ = nullptr;
  std::mutex error_mu_;
  std::exception_ptr error_;
};

}  // namespace lmkit
