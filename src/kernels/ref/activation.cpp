// Reference elementwise activations, residual add and row softmax, evaluated in double.
// Not approximations: std::exp / std::erfc / std::tanh are the ground truth the SIMD code must hit.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/ref/ref.h"

namespace lmkit::kernels::ref {

// silu(x) = x * sigmoid(x) = x / (1 + exp(-x))
void silu_fwd(float *y, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    double v = x[i];
    y[i] = float(v / (1.0 + std::exp(-v)));
  }
}

// gelu(x) = 0.5 x (1 + erf(x/sqrt2)), written as 0.5 x erfc(-x/sqrt2) so that the tail x << 0
// keeps its relative accuracy (1 + erf cancels there).
void gelu_fwd(float *y, const float *x, int64_t n) {
  const double inv_sqrt2 = 0.70710678118654752440;
  for (int64_t i = 0; i < n; ++i) {
    double v = x[i];
    y[i] = float(0.5 * v * std::erfc(-v * inv_sqrt2));
  }
}

// gelu_tanh(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)   (GPT-2's "gelu_new")
// evaluated as x / (1 + exp(-2u)), the same value (1 + tanh(u) = 2 / (1 + exp(-2u))) without the
// cancellation of 1 + tanh(u) for x << 0.
void gelu_tanh_fwd(float *y, const float *x, int64_t n) {
  const double sqrt_2_over_pi = 0.79788456080286535588;
  for (int64_t i = 0; i < n; ++i) {
    double v = x[i];
    double u = sqrt_2_over_pi * (v + 0.044715 * v * v * v);
    y[i] = float(v / (1.0 + std::exp(-2.0 * u)));
  }
}

// y = silu(gate) * up
void swiglu_fwd(float *y, const float *gate, const float *up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    double g = gate[i];
    y[i] = float(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

// y = a + b (one float addition: exact same bits in every table)
void add_fwd(float *y, const float *a, const float *b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

// y[r, j] = exp(x[r, j] - max_r) / sum_j' exp(x[r, j'] - max_r);  a row of -inf gives zeros.
// x, y: (rows, cols), y may alias x.
void softmax_fwd(float *y, const float *x, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * cols;
    float *yr = y + r * cols;
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, double(xr[j]));
    if (mx == -std::numeric_limits<double>::infinity()) {
      for (int64_t j = 0; j < cols; ++j) yr[j] = 0.0f;
      continue;
    }
    double sum = 0;
    for (int64_t j = 0; j < cols; ++j) sum += std::exp(xr[j] - mx);
    for (int64_t j = 0; j < cols; ++j) yr[j] = float(std::exp(xr[j] - mx) / sum);
  }
}

}  // namespace lmkit::kernels::ref
