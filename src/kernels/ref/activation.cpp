// Reference elementwise activations (forward and backward), residual add and row softmax, in double.
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

// ---- Backward: dx = dy * f'(x), written; dx may alias dy or x (each element is read first).

namespace {

// sigmoid(x) and 1 - sigmoid(x) = sigmoid(-x), both without cancellation or overflow.
void sigmoid_pair(double x, double &s, double &one_minus_s) {
  const double e = std::exp(-std::abs(x));  // in (0, 1]
  const double big = 1.0 / (1.0 + e), small = e / (1.0 + e);
  s = x >= 0 ? big : small;
  one_minus_s = x >= 0 ? small : big;
}

// silu'(x) = s + x s (1 - s),  s = sigmoid(x)
double silu_grad(double x) {
  double s, t;
  sigmoid_pair(x, s, t);
  return s + x * s * t;
}

}  // namespace

void silu_bwd(float *dx, const float *x, const float *dy, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = float(double(dy[i]) * silu_grad(x[i]));
}

// gelu'(x) = Phi(x) + x phi(x),  phi(x) = exp(-x^2/2) / sqrt(2 pi)
void gelu_bwd(float *dx, const float *x, const float *dy, int64_t n) {
  const double inv_sqrt2 = 0.70710678118654752440, inv_sqrt_2pi = 0.39894228040143267794;
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    const double g = 0.5 * std::erfc(-v * inv_sqrt2) + v * inv_sqrt_2pi * std::exp(-0.5 * v * v);
    dx[i] = float(double(dy[i]) * g);
  }
}

// gelu_tanh(x) = x s,  s = sigmoid(2u),  u = c (x + a x^3)  (since 0.5 (1 + tanh u) = sigmoid(2u))
// gelu_tanh'(x) = s + x s (1 - s) 2c (1 + 3a x^2)
void gelu_tanh_bwd(float *dx, const float *x, const float *dy, int64_t n) {
  const double c = 0.79788456080286535588, a = 0.044715;
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    double s, t;
    sigmoid_pair(2.0 * c * (v + a * v * v * v), s, t);
    const double g = s + v * s * t * 2.0 * c * (1.0 + 3.0 * a * v * v);
    dx[i] = float(double(dy[i]) * g);
  }
}

// y = silu(gate) * up:  dgate = dy * up * silu'(gate),  dup = dy * silu(gate).
// dgate may alias gate and dup may alias up (both read before either is written).
void swiglu_bwd(float *dgate, float *dup, const float *gate, const float *up, const float *dy,
                int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i], u = up[i], d = dy[i];
    double s, t;
    sigmoid_pair(g, s, t);
    dgate[i] = float(d * u * silu_grad(g));
    dup[i] = float(d * g * s);
  }
}

}  // namespace lmkit::kernels::ref
