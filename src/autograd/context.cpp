// Var views, the gradient store and the tape.
#include "autograd/context.h"

#include <cstring>

#include "core/error.h"

namespace lmkit::ag {

Var Var::cols_slice(int64_t c0, int64_t n) const {
  LMKIT_CHECK(c0 >= 0 && n >= 0 && c0 + n <= cols, "column slice out of range");
  Var v = *this;
  v.data = data + c0;
  v.cols = n;
  v.col = col + c0;
  return v;
}

Var Var::rows_slice(int64_t r0, int64_t n) const {
  LMKIT_CHECK(r0 >= 0 && n >= 0 && r0 + n <= rows, "row slice out of range");
  Var v = *this;
  v.data = data + r0 * ld;
  v.rows = n;
  // The gradient of a row slice is the same rows of the buffer: encode the row offset in col.
  v.col = col + r0 * ld;
  return v;
}

Tensor Var::tensor() const {
  return Tensor::view_strided(data, DType::F32, {rows, cols}, {size_t(ld) * 4, 4, 0, 0});
}

void GradStore::add(const Tensor &param) {
  LMKIT_CHECK(param.dtype() == DType::F32 && param.is_contiguous(),
              "trainable parameters must be contiguous f32 tensors, got ", param.desc());
  if (index_.count(param.data())) return;  // tied: already registered
  index_[param.data()] = grads_.size();
  grads_.emplace_back(param.data(), Tensor::zeros(DType::F32, param.shape()));
}

float *GradStore::find(const void *p) const {
  auto it = index_.find(p);
  return it == index_.end() ? nullptr : grads_[it->second].second.f32();
}

void GradStore::zero() {
  for (auto &[p, g] : grads_) std::memset(g.data(), 0, g.nbytes());
}

Context::Context(ThreadPool &pool, Arena &act, bool recording, GradStore *params)
    : pool_(pool), act_(act), k_(kernels::active()), recording_(recording), params_(params) {}

Var Context::new_var(int64_t rows, int64_t cols, bool tracked) {
  Var v;
  v.rows = rows;
  v.cols = cols;
  v.ld = cols;
  v.data = act_.alloc_floats(rows * cols);
  if (recording_ && tracked) {
    v.buf = int32_t(bufs_.size());
    bufs_.push_back({rows, cols, nullptr});
  }
  return v;
}

float *Context::grad(const Var &v) {
  LMKIT_CHECK(v.tracked(), "gradient of an untracked value");
  Buf &b = bufs_[size_t(v.buf)];
  if (!b.grad) {
    b.grad = act_.alloc_floats(b.rows * b.ld);
    std::memset(b.grad, 0, size_t(b.rows * b.ld) * 4);
  }
  return b.grad + v.col;
}

float *Context::param_grad(const Tensor &w) const {
  return recording_ && params_ ? params_->find(w.data()) : nullptr;
}

void Context::record(std::function<void()> step) {
  if (recording_) tape_.push_back(std::move(step));
}

void Context::backward() {
  for (auto it = tape_.rbegin(); it != tape_.rend(); ++it) (*it)();
  clear();
}

void Context::clear() {
  tape_.clear();
  bufs_.clear();
}

}  // namespace lmkit::ag
