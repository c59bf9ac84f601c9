// Reference linear layers and embedding lookup, forward (y = x·W^T + bias) and backward.
// Not blocked, vectorised or cache-aware: each output is a plain double-precision sum.
#include "core/dtype.h"
#include "kernels/ref/ref.h"

namespace lmkit::kernels::ref {
namespace {

// W element (n, k) of a row-major (N, K) weight, converted to float by the scalar dtype.h rules.
float w_f32(const void *w, int64_t i) {
  return static_cast<const float *>(w)[i];
}
float w_f16(const void *w, int64_t i) {
  return f16_to_f32(static_cast<const uint16_t *>(w)[i]);
}
float w_bf16(const void *w, int64_t i) {
  return bf16_to_f32(static_cast<const uint16_t *>(w)[i]);
}

// y[m, n] = bias[n] + sum_k x[m, k] * W[n, k]
// y: (M, N) stride ldy;  x: (M, K) stride ldx;  W: (N, K);  bias: (N) or null.
void matmul(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
            float (*w_at)(const void *, int64_t), const float *bias, int64_t M, int64_t N,
            int64_t K) {
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += double(x[m * ldx + k]) * double(w_at(w, n * K + k));
      if (bias) acc += bias[n];
      y[m * ldy + n] = float(acc);
    }
  }
}

}  // namespace

void matmul_f32(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                const float *bias, int64_t M, int64_t N, int64_t K) {
  matmul(y, ldy, x, ldx, w, w_f32, bias, M, N, K);
}

void matmul_f16(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                const float *bias, int64_t M, int64_t N, int64_t K) {
  matmul(y, ldy, x, ldx, w, w_f16, bias, M, N, K);
}

void matmul_bf16(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                 const float *bias, int64_t M, int64_t N, int64_t K) {
  matmul(y, ldy, x, ldx, w, w_bf16, bias, M, N, K);
}

// y[i, :] = table[ids[i], :] as f32.  y: (n, dim);  table: (vocab, dim) of dtype t.
void embedding_fwd(float *y, const int32_t *ids, int64_t n, const void *table, DType t,
                   int64_t dim) {
  float (*at)(const void *, int64_t) = t == DType::F16 ? w_f16 : t == DType::BF16 ? w_bf16 : w_f32;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < dim; ++d) y[i * dim + d] = at(table, int64_t(ids[i]) * dim + d);
}

// dx[m, k] += sum_n dy[m, n] * W[n, k]
// dx: (M, K) stride lddx;  dy: (M, N) stride lddy;  W: (N, K) f32.
void matmul_bwd_x(float *dx, int64_t lddx, const float *dy, int64_t lddy, const float *w,
                  int64_t M, int64_t N, int64_t K) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) {
      double acc = 0;
      for (int64_t n = 0; n < N; ++n) acc += double(dy[m * lddy + n]) * w[n * K + k];
      dx[m * lddx + k] = float(dx[m * lddx + k] + acc);
    }
}

// dw[n, k] += sum_m dy[m, n] * x[m, k];   db[n] += sum_m dy[m, n]  (db may be null)
// dw: (N, K) contiguous;  dy: (M, N) stride lddy;  x: (M, K) stride ldx.
void matmul_bwd_w(float *dw, float *db, const float *dy, int64_t lddy, const float *x, int64_t ldx,
                  int64_t M, int64_t N, int64_t K) {
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {
      double acc = 0;
      for (int64_t m = 0; m < M; ++m) acc += double(dy[m * lddy + n]) * x[m * ldx + k];
      dw[n * K + k] = float(dw[n * K + k] + acc);
    }
    if (db) {
      double acc = 0;
      for (int64_t m = 0; m < M; ++m) acc += dy[m * lddy + n];
      db[n] = float(db[n] + acc);
    }
  }
}

// dw[ids[i], :] += dy[i, :] in order i = 0, 1, ... (one float addition each, as the SIMD tables).
// dw: (vocab, dim);  dy: (n, dim).
void embedding_bwd(float *dw, const int32_t *ids, int64_t n, const float *dy, int64_t dim) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < dim; ++d) dw[int64_t(ids[i]) * dim + d] += dy[i * dim + d];
}

}  // namespace lmkit::kernels::ref
