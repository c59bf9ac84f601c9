// Autograd context: 2-D activations (Var), the tape of backward steps, gradient buffers, and the
// parameter-gradient store. With recording off (inference) ops compute in place where they can
// and record nothing: no_grad pays no tape cost.
// Not the ops themselves (ops.h) and not an optimizer (train/).
#pragma once

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/arena.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"

namespace lmkit::ag {

// A (rows, cols) f32 activation with row stride ld. When tracked, `buf` names the gradient buffer
// its gradient lives in and `col` its column offset there (slices of a buffer share it).
struct Var {
  float *data = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
  int32_t buf = -1;  // -1: no gradient flows here
  int64_t col = 0;

  bool tracked() const { return buf >= 0; }
  float *row(int64_t r) const { return data + r * ld; }
  // Columns [c0, c0 + n): same rows, same gradient buffer.
  Var cols_slice(int64_t c0, int64_t n) const;
  // Rows [r0, r0 + n): same gradient buffer at the same offset.
  Var rows_slice(int64_t r0, int64_t n) const;
  // A strided tensor view (rows, cols) of the data, for hooks.
  Tensor tensor() const;
};

// Gradients of parameters, keyed by the parameter's data pointer (tied weights share one).
class GradStore {
 public:
  // Registers a trainable f32 parameter and allocates its zeroed gradient.
  void add(const Tensor &param);
  float *find(const void *param_data) const;  // null when the parameter is frozen / unknown
  void zero();
  // (param data, gradient) in registration order.
  const std::vector<std::pair<const void *, Tensor>> &all() const { return grads_; }

 private:
  std::vector<std::pair<const void *, Tensor>> grads_;
  std::unordered_map<const void *, size_t> index_;
};

class Context {
 public:
  // Activations are allocated from `act`; when recording, gradients of parameters in `params`
  // (may be null: no parameter gradients) accumulate there.
  Context(ThreadPool &pool, Arena &act, bool recording = false, GradStore *params = nullptr);

  ThreadPool &pool() { return pool_; }
  const kernels::KernelTable &k() const { return k_; }
  bool recording() const { return recording_; }
  GradStore *params() const { return params_; }
  Arena &arena() { return act_; }

  // A new activation (uninitialised); tracked (gets a gradient buffer) when recording.
  Var new_var(int64_t rows, int64_t cols, bool tracked = true);
  float *scratch(int64_t n) { return act_.alloc_floats(n); }  // temporary floats (arena)

  // Inference scopes: everything allocated inside is released at the end of the scope unless
  // recording (training keeps every activation for backward).
  Arena::Mark scope_begin() const { return act_.mark(); }
  void scope_end(Arena::Mark m) {
    if (!recording_) act_.release(m);
  }

  // Backward steps run in reverse order of recording.
  void record(std::function<void()> step);
  // Runs the tape backwards once (gradient buffers start at zero), then clears it.
  void backward();
  // Forgets the tape and gradient buffers (their memory returns when the arena is reset).
  void clear();

  // Gradient of a tracked Var (allocated zeroed on first use, from the same arena).
  float *grad(const Var &v);
  // The gradient buffer behind v (same rows and ld as the buffer v was allocated with).
  int64_t grad_ld(const Var &v) const { return bufs_[size_t(v.buf)].ld; }
  // Parameter gradient for a weight, or null when it is frozen or nothing records.
  float *param_grad(const Tensor &w) const;

 private:
  struct Buf {
    int64_t rows, ld;
    float *grad = nullptr;
  };
  ThreadPool &pool_;
  Arena &act_;  // activations, scratch and (in backward) gradient buffers
  const kernels::KernelTable &k_;
  bool recording_;
  GradStore *params_;
  std::vector<Buf> bufs_;
  std::vector<std::function<void()>> tape_;
};

}  // namespace lmkit::ag
