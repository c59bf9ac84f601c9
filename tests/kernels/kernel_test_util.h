// Helpers for the kernel tests: misaligned buffers, f16/bf16 weight conversion, table iteration,
// finite-difference gradients. Not a test: test_*.cpp files include it; nothing here checks a
// kernel by itself.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref.h"
#include "test_util.h"

namespace lmkit::test {

// n elements starting one element past a 64-byte boundary (so every SIMD load is misaligned),
// ending exactly at the end of the allocation (so AddressSanitizer sees any overrun).
template <typename T>
class Misaligned {
 public:
  explicit Misaligned(size_t n, T fill = T()) : n_(n) {
    raw_ = static_cast<T *>(::operator new((n + 1) * sizeof(T), std::align_val_t(64)));
    for (size_t i = 0; i < n; ++i) raw_[1 + i] = fill;
  }
  explicit Misaligned(const std::vector<T> &v) : Misaligned(v.size()) {
    if (!v.empty()) std::memcpy(data(), v.data(), v.size() * sizeof(T));
  }
  Misaligned(const Misaligned &) = delete;
  Misaligned &operator=(const Misaligned &) = delete;
  ~Misaligned() { ::operator delete(raw_, std::align_val_t(64)); }

  T *data() { return raw_ + 1; }
  const T *data() const { return raw_ + 1; }
  size_t size() const { return n_; }
  T &operator[](size_t i) { return raw_[1 + i]; }
  const T &operator[](size_t i) const { return raw_[1 + i]; }
  std::vector<T> vec() const { return std::vector<T>(data(), data() + n_); }

 private:
  T *raw_;
  size_t n_;
};

using FBuf = Misaligned<float>;

inline std::vector<uint16_t> to_f16(const std::vector<float> &v) {
  std::vector<uint16_t> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = f32_to_f16(v[i]);
  return r;
}
inline std::vector<uint16_t> to_bf16(const std::vector<float> &v) {
  std::vector<uint16_t> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = f32_to_bf16(v[i]);
  return r;
}
inline std::vector<float> from_f16(const std::vector<uint16_t> &v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = f16_to_f32(v[i]);
  return r;
}
inline std::vector<float> from_bf16(const std::vector<uint16_t> &v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = bf16_to_f32(v[i]);
  return r;
}

// Every table this CPU runs except ref (the ones tested against ref).
inline std::vector<const kernels::KernelTable *> simd_tables() {
  std::vector<const kernels::KernelTable *> v;
  for (const kernels::KernelTable *t : kernels::available())
    if (std::string(t->name) != "ref") v.push_back(t);
  return v;
}

inline bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

// The dims the tests sweep: around every vector width and unroll boundary, plus one large odd one.
inline const std::vector<int64_t> &odd_dims() {
  static const std::vector<int64_t> d = {1, 3, 7, 8, 15, 16, 17, 31, 63, 64, 65, 127, 257, 4101};
  return d;
}

constexpr double kMaxNmse = 1e-10;

// Central finite differences of a scalar function f evaluated in double: grad[i] = (f(x + eps e_i)
// - f(x - eps e_i)) / (2 eps). With f in double, eps = 1e-6 leaves an error near 1e-9 relative.
inline std::vector<double> fd_gradient(std::vector<double> x,
                                       const std::function<double(const std::vector<double> &)> &f,
                                       double eps = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + eps;
    const double fp = f(x);
    x[i] = x0 - eps;
    const double fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * eps);
  }
  return g;
}

// max_i |got_i - want_i| / (max_i |want_i| + tiny): the error relative to the gradient's scale.
inline double max_rel_err(const std::vector<double> &want, const std::vector<float> &got) {
  EXPECT_EQ(want.size(), got.size());
  double scale = 1e-30, err = 0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  for (size_t i = 0; i < std::min(want.size(), got.size()); ++i)
    err = std::max(err, std::abs(double(got[i]) - want[i]));
  return err / scale;
}

inline std::vector<double> to_double(const std::vector<float> &v) {
  return {v.begin(), v.end()};
}

}  // namespace lmkit::test
