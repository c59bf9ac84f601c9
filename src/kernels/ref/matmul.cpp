// Reference linear layers and embedding lookup: y = x·W^T + bias, one dot product at a time.
// Not blocked, vectorised or cache-aware: each output is a plain double-precision sum over k.
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

}  // namespace lmkit::kernels::ref
