// Tensor views and copies.
#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

namespace lmkit {

Shape::Shape(std::initializer_list<int64_t> d) {
  LMKIT_CHECK(d.size() <= size_t(kMaxDims), "a tensor has at most ", kMaxDims, " dims, got ",
              d.size());
  for (int64_t v : d) dims[size_t(ndim++)] = v;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= dims[size_t(i)];
  return n;
}

bool Shape::operator==(const Shape &o) const {
  if (ndim != o.ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if (dims[size_t(i)] != o.dims[size_t(i)]) return false;
  return true;
}

std::string Shape::str() const {
  std::ostringstream os;
  os << '[';
  for (int i = 0; i < ndim; ++i) os << (i ? ", " : "") << dims[size_t(i)];
  os << ']';
  return os.str();
}

static void set_contiguous_strides(std::array<size_t, kMaxDims> &st, const Shape &s, DType t) {
  if (s.ndim == 0) return;
  size_t b = dtype_row_bytes(t, s[s.ndim - 1]);
  st[size_t(s.ndim - 1)] = b / size_t(std::max<int64_t>(s[s.ndim - 1], 1));
  for (int i = s.ndim - 2; i >= 0; --i) {
    st[size_t(i)] = b;
    b *= size_t(s[i]);
  }
}

Tensor Tensor::zeros(DType t, const Shape &s) {
  for (int i = 0; i < s.ndim; ++i) LMKIT_CHECK(s[i] >= 0, "negative dimension in ", s.str());
  size_t bytes = dtype_row_bytes(t, s.ndim ? s[s.ndim - 1] : 1);
  for (int i = 0; i + 1 < s.ndim; ++i) bytes *= size_t(s[i]);
  size_t alloc = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  void *p = std::aligned_alloc(64, alloc);
  LMKIT_CHECK(p != nullptr, "out of memory allocating ", bytes, " bytes for a ", s.str(),
              " tensor");
  std::memset(p, 0, alloc);
  std::shared_ptr<void> owner(p, [](void *q) { std::free(q); });
  return view_of(p, t, s, std::move(owner));
}

Tensor Tensor::view_of(void *data, DType t, const Shape &s, std::shared_ptr<void> owner) {
  Tensor r;
  r.data_ = data;
  r.dtype_ = t;
  r.shape_ = s;
  set_contiguous_strides(r.strides_, s, t);
  r.owner_ = std::move(owner);
  return r;
}

Tensor Tensor::view_strided(void *data, DType t, const Shape &s,
                            const std::array<size_t, kMaxDims> &strides,
                            std::shared_ptr<void> owner) {
  LMKIT_CHECK(dtype_info(t).block == 1, "strided views of block types are not supported");
  Tensor r = view_of(data, t, s, std::move(owner));
  r.strides_ = strides;
  return r;
}

int64_t Tensor::dim(int i) const {
  if (i < 0) i += shape_.ndim;
  LMKIT_CHECK(i >= 0 && i < shape_.ndim, "dim ", i, " out of range for ", desc());
  return shape_[i];
}

size_t Tensor::nbytes() const {
  if (shape_.ndim == 0) return dtype_row_bytes(dtype_, 1);
  size_t b = dtype_row_bytes(dtype_, shape_[shape_.ndim - 1]);
  for (int i = 0; i + 1 < shape_.ndim; ++i) b *= size_t(shape_[i]);
  return b;
}

bool Tensor::is_contiguous() const {
  std::array<size_t, kMaxDims> st{};
  set_contiguous_strides(st, shape_, dtype_);
  for (int i = 0; i < shape_.ndim; ++i)
    if (shape_[i] > 1 && st[size_t(i)] != strides_[size_t(i)]) return false;
  return true;
}

float *Tensor::f32() const {
  LMKIT_CHECK(dtype_ == DType::F32, "expected an f32 tensor, got ", desc());
  return static_cast<float *>(data_);
}

Tensor Tensor::slice(int d, int64_t start, int64_t len) const {
  if (d < 0) d += shape_.ndim;
  LMKIT_CHECK(d >= 0 && d < shape_.ndim, "slice: dim out of range for ", desc());
  LMKIT_CHECK(start >= 0 && len >= 0 && start + len <= shape_[d], "slice [", start, ", ",
              start + len, ") out of range for dim ", d, " of ", desc());
  LMKIT_CHECK(d != shape_.ndim - 1 || dtype_info(dtype_).block == 1,
              "cannot slice inside the blocks of a ", dtype_name(dtype_), " row");
  Tensor r = *this;
  r.data_ = static_cast<char *>(data_) + size_t(start) * strides_[size_t(d)];
  r.shape_.dims[size_t(d)] = len;
  return r;
}

Tensor Tensor::select(int64_t i) const {
  LMKIT_CHECK(shape_.ndim >= 1, "select on a 0-dim tensor");
  Tensor r = slice(0, i, 1);
  for (int k = 1; k < shape_.ndim; ++k) {
    r.shape_.dims[size_t(k - 1)] = shape_[k];
    r.strides_[size_t(k - 1)] = strides_[size_t(k)];
  }
  r.shape_.ndim = shape_.ndim - 1;
  return r;
}

Tensor Tensor::reshape(const Shape &s) const {
  LMKIT_CHECK(is_contiguous(), "reshape needs a contiguous tensor, got a strided view");
  LMKIT_CHECK(s.numel() == numel(), "cannot reshape ", desc(), " to ", s.str());
  Tensor r = view_of(data_, dtype_, s, owner_);
  return r;
}

Tensor Tensor::to(DType t) const {
  Tensor r = zeros(t, shape_);
  if (numel() == 0) return r;
  // Walk the rows (last dim contiguous within a row in every view we make).
  int64_t cols = shape_.ndim ? shape_[shape_.ndim - 1] : 1;
  int64_t rows = cols ? numel() / cols : 0;
  size_t dst_row = dtype_row_bytes(t, cols);
  for (int64_t r_i = 0; r_i < rows; ++r_i) {
    // Decompose the row index over the outer dims to find the source offset.
    size_t off = 0;
    int64_t rem = r_i;
    for (int k = shape_.ndim - 2; k >= 0; --k) {
      off += size_t(rem % shape_[k]) * strides_[size_t(k)];
      rem /= shape_[k];
    }
    const char *src = static_cast<const char *>(data_) + off;
    char *dst = static_cast<char *>(r.data_) + size_t(r_i) * dst_row;
    if (t == dtype_)
      std::memcpy(dst, src, dst_row);
    else
      convert_elements(dst, t, src, dtype_, cols);
  }
  return r;
}

std::string Tensor::desc() const {
  return str_cat(dtype_name(dtype_), ' ', shape_.str());
}

static float load_elem(const void *src, DType t, int64_t i) {
  switch (t) {
    case DType::F32: {
      float v;
      std::memcpy(&v, static_cast<const char *>(src) + i * 4, 4);
      return v;
    }
    case DType::F16: {
      uint16_t h;
      std::memcpy(&h, static_cast<const char *>(src) + i * 2, 2);
      return f16_to_f32(h);
    }
    case DType::BF16: {
      uint16_t h;
      std::memcpy(&h, static_cast<const char *>(src) + i * 2, 2);
      return bf16_to_f32(h);
    }
    default:
      fail("cannot convert from ", dtype_name(t));
  }
}

void convert_elements(void *dst, DType dt, const void *src, DType st, int64_t n) {
  char *d = static_cast<char *>(dst);
  for (int64_t i = 0; i < n; ++i) {
    float v = load_elem(src, st, i);
    switch (dt) {
      case DType::F32:
        std::memcpy(d + i * 4, &v, 4);
        break;
      case DType::F16: {
        uint16_t h = f32_to_f16(v);
        std::memcpy(d + i * 2, &h, 2);
        break;
      }
      case DType::BF16: {
        uint16_t h = f32_to_bf16(v);
        std::memcpy(d + i * 2, &h, 2);
        break;
      }
      default:
        fail("cannot convert to ", dtype_name(dt));
    }
  }
}

}  // namespace lmkit
