// Tensor: a typed, strided view of memory (shape, byte strides, dtype) plus a handle that keeps the
// memory alive (an owned buffer, a memory-mapped file, an arena). Not an op library: math lives in
// kernels/, and a Tensor never computes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "core/error.h"

namespace lmkit {

constexpr int kMaxDims = 4;

// Row-major, PyTorch order: dims[0] is the outermost. A Linear weight is {out, in}.
struct Shape {
  int ndim = 0;
  std::array<int64_t, kMaxDims> dims{};

  Shape() = default;
  Shape(std::initializer_list<int64_t> d);
  int64_t operator[](int i) const { return dims[size_t(i)]; }
  int64_t numel() const;
  bool operator==(const Shape &o) const;
  std::string str() const;  // "[512, 64]"
};

class Tensor {
 public:
  Tensor() = default;

  // A new contiguous, 64-byte aligned, zero-filled tensor that owns its memory.
  static Tensor zeros(DType t, const Shape &s);
  // A contiguous view of `data`; `owner` (may be null) keeps that memory alive.
  static Tensor view_of(void *data, DType t, const Shape &s, std::shared_ptr<void> owner = {});
  // A view with explicit byte strides (rows of a wider buffer, heads inside a row...).
  static Tensor view_strided(void *data, DType t, const Shape &s,
                             const std::array<size_t, kMaxDims> &strides,
                             std::shared_ptr<void> owner = {});

  bool defined() const { return data_ != nullptr || shape_.numel() == 0; }
  DType dtype() const { return dtype_; }
  const Shape &shape() const { return shape_; }
  int ndim() const { return shape_.ndim; }
  int64_t dim(int i) const;  // negative counts from the end
  int64_t numel() const { return shape_.numel(); }
  size_t stride_bytes(int i) const { return strides_[size_t(i)]; }
  size_t nbytes() const;  // bytes of a contiguous tensor of this shape and type
  bool is_contiguous() const;

  void *data() const { return data_; }
  template <typename T>
  T *data_as() const {
    return static_cast<T *>(data_);
  }
  // Typed access that checks the dtype: f32() for F32 tensors.
  float *f32() const;

  // Views (share memory). slice: [start, start+len) along dim. select: drop dim 0 at index i.
  Tensor slice(int dim, int64_t start, int64_t len) const;
  Tensor select(int64_t i) const;
  Tensor reshape(const Shape &s) const;  // contiguous tensors only

  // Copies: a contiguous tensor of type t (f32/f16/bf16 among each other, or a same-type copy).
  Tensor to(DType t) const;
  Tensor contiguous() const { return to(dtype_); }

  const std::shared_ptr<void> &owner() const { return owner_; }
  std::string desc() const;  // "f32 [512, 64]"

 private:
  void *data_ = nullptr;
  DType dtype_ = DType::F32;
  Shape shape_;
  std::array<size_t, kMaxDims> strides_{};  // bytes
  std::shared_ptr<void> owner_;
};

// Converts n elements between f32/f16/bf16 (scalar reference; used at load time, not per token).
void convert_elements(void *dst, DType dt, const void *src, DType st, int64_t n);

}  // namespace lmkit
