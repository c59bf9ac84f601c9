// The scalar reference kernels ("ref"): the oracle every SIMD table is tested against.
// Not fast and not meant to be: plain loops that read like the formulas, double accumulation.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace lmkit::kernels::ref {

const KernelTable &ref_table();

// One function per KernelTable entry; kernels.h documents each contract.
void matmul_f32(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                const float *bias, int64_t M, int64_t N, int64_t K);
void matmul_f16(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                const float *bias, int64_t M, int64_t N, int64_t K);
void matmul_bf16(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                 const float *bias, int64_t M, int64_t N, int64_t K);
void embedding_fwd(float *y, const int32_t *ids, int64_t n, const void *table, DType t,
                   int64_t dim);
void rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t rows, int64_t dim,
                 float eps);
void layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w,
                   const float *b, int64_t rows, int64_t dim, float eps);
void rope_fwd(float *x, int64_t ld, const float *cos, const float *sin, int64_t n_tok,
              int64_t n_head, int64_t head_dim, int64_t rot_dim, RopeStyle style);
void silu_fwd(float *y, const float *x, int64_t n);
void gelu_fwd(float *y, const float *x, int64_t n);
void gelu_tanh_fwd(float *y, const float *x, int64_t n);
void swiglu_fwd(float *y, const float *gate, const float *up, int64_t n);
void add_fwd(float *y, const float *a, const float *b, int64_t n);
void softmax_fwd(float *y, const float *x, int64_t rows, int64_t cols);
void attention_fwd(const AttentionArgs &a);

void matmul_bwd_x(float *dx, int64_t lddx, const float *dy, int64_t lddy, const float *w,
                  int64_t M, int64_t N, int64_t K);
void matmul_bwd_w(float *dw, float *db, const float *dy, int64_t lddy, const float *x, int64_t ldx,
                  int64_t M, int64_t N, int64_t K);
void embedding_bwd(float *dw, const int32_t *ids, int64_t n, const float *dy, int64_t dim);
void rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w,
                 const float *rstd, int64_t rows, int64_t dim);
void layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                   const float *mean, const float *rstd, int64_t rows, int64_t dim);
void silu_bwd(float *dx, const float *x, const float *dy, int64_t n);
void gelu_bwd(float *dx, const float *x, const float *dy, int64_t n);
void gelu_tanh_bwd(float *dx, const float *x, const float *dy, int64_t n);
void swiglu_bwd(float *dgate, float *dup, const float *gate, const float *up, const float *dy,
                int64_t n);
void cross_entropy_fwd_bwd(float *loss, float *dlogits, int64_t ld_d, const float *logits,
                           int64_t ld, const int32_t *targets, int64_t rows, int64_t n_vocab,
                           float dscale);
void attention_bwd(const AttentionBwdArgs &a);

}  // namespace lmkit::kernels::ref
