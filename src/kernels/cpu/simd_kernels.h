// The SIMD kernels, written once over Vf (simd.h) and compiled once per ISA (avx2.cpp, avx512.cpp),
// ending in that ISA's KernelTable. Not included anywhere else; ref/ holds the readable versions.
//
// Every size is handled: the last partial vector of a row goes through masked loads/stores, so
// there is no scalar tail and results do not depend on pointer alignment. Reductions run in a
// fixed order, so the same inputs always give the same bits.
#pragma once

#include "kernels/cpu/simd.h"
#include "kernels/cpu/simd_math.h"
#include "kernels/cpu/tables.h"

namespace lmkit::kernels::LMKIT_SIMD_ISA {
namespace {

// ---------------------------------------------------------------------------------------------
// Matmul: y(M, N) = x(M, K) · W(N, K)^T + bias(N)
//
// Every y[m, n] is one dot product kept in one vector accumulator, fed in k order (the last
// partial vector masked), then reduced by hsum and added to bias: the same bits whatever tile the
// output lands in, so results do not depend on M or on how callers split M and N.
// A tile is MR rows of x by NR rows of W, MR*NR accumulators in registers, so each W vector
// loaded (and converted from f16/bf16) serves MR rows. Decode (M = 1) uses a wide NR so many
// independent W streams are in flight, which is what makes it memory-bandwidth bound.

enum class WType { f32, f16, bf16 };

template <WType T>
inline Vf load_w(const void *w, int64_t i) {
  if constexpr (T == WType::f32) return load(static_cast<const float *>(w) + i);
  if constexpr (T == WType::f16) return load_f16(static_cast<const uint16_t *>(w) + i);
  if constexpr (T == WType::bf16) return load_bf16(static_cast<const uint16_t *>(w) + i);
}
template <WType T>
inline Vf load_w(const void *w, int64_t i, Mask m) {
  if constexpr (T == WType::f32) return load(static_cast<const float *>(w) + i, m);
  if constexpr (T == WType::f16) return load_f16(static_cast<const uint16_t *>(w) + i, m);
  if constexpr (T == WType::bf16) return load_bf16(static_cast<const uint16_t *>(w) + i, m);
}

#if LMKIT_SIMD_AVX512
constexpr int kMR = 6, kNR = 4;  // 24 accumulators + 4 W vectors + 1 x vector of 32 registers
constexpr int kNR1 = 8;          // M = 1: 8 independent W rows in flight
#else
constexpr int kMR = 4, kNR = 3;  // 12 accumulators + 3 W vectors + 1 x vector of 16 registers
constexpr int kNR1 = 8;
#endif
constexpr int64_t kPrefetchMaxRowBytes = 4096;

// y[m, n0 + r] for m < MR, r < NR.  x: (MR, K) stride ldx;  W rows n0 .. n0+NR-1.
template <WType T, int MR, int NR>
inline void mm_tile(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                    const float *bias, int64_t n0, int64_t K) {
  Vf acc[MR][NR];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) acc[m][r] = zero();
  const int64_t wrow = n0 * K;
  int64_t k = 0;
  for (; k + kLanes <= K; k += kLanes) {
    if constexpr (MR == 1) {
      // Decode over short rows: the hardware prefetcher does not ramp up on the NR streams of
      // a few cache lines each, so fetch the next tile (contiguous) as this one is consumed.
      // On long rows it does better alone (measured on Zen 4: f16 K=768 12 -> 20 GB/s with
      // this, K=4096 26 -> 18 GB/s; f32 K=768, 3 KiB rows, 17 -> 21 GB/s on one thread), hence
      // the threshold.
      constexpr int64_t wb = T == WType::f32 ? 4 : 2;
      if (K * wb <= kPrefetchMaxRowBytes) {
        const char *pf = static_cast<const char *>(w) + (wrow + NR * K + k * NR) * wb;
#pragma GCC unroll 16
        for (int l = 0; l < NR * kLanes * wb / 64; ++l) _mm_prefetch(pf + 64 * l, _MM_HINT_T0);
      }
    }
    Vf wv[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) wv[r] = load_w<T>(w, wrow + r * K + k);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      Vf xv = load(x + m * ldx + k);
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) acc[m][r] = fma(xv, wv[r], acc[m][r]);
    }
  }
  if (k < K) {
    const Mask mk = mask_first(K - k);
    Vf wv[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) wv[r] = load_w<T>(w, wrow + r * K + k, mk);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      Vf xv = load(x + m * ldx + k, mk);
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) acc[m][r] = fma(xv, wv[r], acc[m][r]);
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r)
      y[m * ldy + n0 + r] = hsum(acc[m][r]) + (bias ? bias[n0 + r] : 0.0f);
}

// MR rows of x against W rows [n_begin, n_end).
template <WType T, int MR, int NR>
void mm_rows(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w, const float *bias,
             int64_t n_begin, int64_t n_end, int64_t K) {
  int64_t n = n_begin;
  for (; n + NR <= n_end; n += NR) mm_tile<T, MR, NR>(y, ldy, x, ldx, w, bias, n, K);
  for (; n < n_end; ++n) mm_tile<T, MR, 1>(y, ldy, x, ldx, w, bias, n, K);
}

template <WType T>
void mm_rows_any(int64_t mr, float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                 const float *bias, int64_t n_begin, int64_t n_end, int64_t K) {
  static_assert(kMR <= 6, "extend the switch below");
  switch (mr) {
    case 1:
      return mm_rows<T, 1, kNR1>(y, ldy, x, ldx, w, bias, n_begin, n_end, K);
    case 2:
      return mm_rows<T, 2, kNR>(y, ldy, x, ldx, w, bias, n_begin, n_end, K);
    case 3:
      return mm_rows<T, 3, kNR>(y, ldy, x, ldx, w, bias, n_begin, n_end, K);
    case 4:
      return mm_rows<T, 4, kNR>(y, ldy, x, ldx, w, bias, n_begin, n_end, K);
#if LMKIT_SIMD_AVX512
    case 5:
      return mm_rows<T, 5, kNR>(y, ldy, x, ldx, w, bias, n_begin, n_end, K);
    case 6:
      return mm_rows<T, 6, kNR>(y, ldy, x, ldx, w, bias, n_begin, n_end, K);
#endif
    default:
      return;
  }
}

template <WType T>
void matmul(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w, const float *bias,
            int64_t M, int64_t N, int64_t K) {
  if (M <= 0 || N <= 0) return;
  // W is walked in panels of about 256 KiB (it stays in L2 while every block of x rows passes).
  const int64_t w_bytes = T == WType::f32 ? 4 : 2;
  int64_t panel = (256 * 1024) / (w_bytes * (K > 0 ? K : 1));
  panel = max64(kNR, panel - panel % kNR);
  if (M <= kMR) panel = N;  // one pass over W anyway
  for (int64_t n0 = 0; n0 < N; n0 += panel) {
    const int64_t n1 = min64(N, n0 + panel);
    for (int64_t m0 = 0; m0 < M; m0 += kMR)
      mm_rows_any<T>(min64(kMR, M - m0), y + m0 * ldy, ldy, x + m0 * ldx, ldx, w, bias, n0, n1, K);
  }
}

void matmul_f32(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                const float *bias, int64_t M, int64_t N, int64_t K) {
  matmul<WType::f32>(y, ldy, x, ldx, w, bias, M, N, K);
}
void matmul_f16(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                const float *bias, int64_t M, int64_t N, int64_t K) {
  matmul<WType::f16>(y, ldy, x, ldx, w, bias, M, N, K);
}
void matmul_bf16(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                 const float *bias, int64_t M, int64_t N, int64_t K) {
  matmul<WType::bf16>(y, ldy, x, ldx, w, bias, M, N, K);
}

// ---------------------------------------------------------------------------------------------
// Embedding: y(n, dim) = table[ids[i], :] as f32.

template <WType T>
void embedding_rows(float *y, const int32_t *ids, int64_t n, const void *table, int64_t dim) {
  const Mask tail = mask_first(dim % kLanes);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = int64_t(ids[i]) * dim;
    float *yr = y + i * dim;
    int64_t d = 0;
    for (; d + kLanes <= dim; d += kLanes) store(yr + d, load_w<T>(table, row + d));
    if (d < dim) store(yr + d, load_w<T>(table, row + d, tail), tail);
  }
}

void embedding_fwd(float *y, const int32_t *ids, int64_t n, const void *table, DType t,
                   int64_t dim) {
  if (t == DType::F16) return embedding_rows<WType::f16>(y, ids, n, table, dim);
  if (t == DType::BF16) return embedding_rows<WType::bf16>(y, ids, n, table, dim);
  embedding_rows<WType::f32>(y, ids, n, table, dim);
}

// ---------------------------------------------------------------------------------------------
// Row reductions (4 accumulators for throughput, combined in a fixed order).

// sum_d f(x[d]), f applied lane-wise (lanes past the end contribute nothing).
template <class F>
inline float row_sum(const float *x, int64_t dim, F f) {
  Vf a0 = zero(), a1 = zero(), a2 = zero(), a3 = zero();
  int64_t d = 0;
  for (; d + 4 * kLanes <= dim; d += 4 * kLanes) {
    a0 = a0 + f(load(x + d));
    a1 = a1 + f(load(x + d + kLanes));
    a2 = a2 + f(load(x + d + 2 * kLanes));
    a3 = a3 + f(load(x + d + 3 * kLanes));
  }
  for (; d + kLanes <= dim; d += kLanes) a0 = a0 + f(load(x + d));
  if (d < dim) {
    const Mask m = mask_first(dim - d);
    a0 = a0 + keep(f(load(x + d, m)), m);
  }
  return hsum((a0 + a1) + (a2 + a3));
}

// ---------------------------------------------------------------------------------------------
// Norms.

void rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t rows, int64_t dim,
                 float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * dim;
    float *yr = y + r * dim;
    const float ss = row_sum(xr, dim, [](Vf v) { return v * v; });
    const float rs = float(1.0 / __builtin_sqrt(double(ss) / double(dim) + double(eps)));
    const Vf vrs = set1(rs);
    int64_t d = 0;
    for (; d + kLanes <= dim; d += kLanes) store(yr + d, load(xr + d) * vrs * load(w + d));
    if (d < dim) {
      const Mask m = mask_first(dim - d);
      store(yr + d, load(xr + d, m) * vrs * load(w + d, m), m);
    }
    if (rstd) rstd[r] = rs;
  }
}

void layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w,
                   const float *b, int64_t rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * dim;
    float *yr = y + r * dim;
    const float mu = row_sum(xr, dim, [](Vf v) { return v; }) / float(dim);
    const Vf vmu = set1(mu);
    const float var = row_sum(xr, dim, [vmu](Vf v) { return (v - vmu) * (v - vmu); });
    const float rs = float(1.0 / __builtin_sqrt(double(var) / double(dim) + double(eps)));
    const Vf vrs = set1(rs);
    int64_t d = 0;
    for (; d + kLanes <= dim; d += kLanes) {
      Vf v = (load(xr + d) - vmu) * vrs;
      store(yr + d, b ? fma(v, load(w + d), load(b + d)) : v * load(w + d));
    }
    if (d < dim) {
      const Mask m = mask_first(dim - d);
      Vf v = (load(xr + d, m) - vmu) * vrs;
      store(yr + d, b ? fma(v, load(w + d, m), load(b + d, m)) : v * load(w + d, m), m);
    }
    if (mean) mean[r] = mu;
    if (rstd) rstd[r] = rs;
  }
}

// ---------------------------------------------------------------------------------------------
// RoPE, in place.

void rope_fwd(float *x, int64_t ld, const float *cos, const float *sin, int64_t n_tok,
              int64_t n_head, int64_t head_dim, int64_t rot_dim, RopeStyle style) {
  const int64_t half = rot_dim / 2;
  for (int64_t t = 0; t < n_tok; ++t) {
    const float *ct = cos + t * half;
    const float *st = sin + t * half;
    for (int64_t h = 0; h < n_head; ++h) {
      float *xh = x + t * ld + h * head_dim;
      if (style == RopeStyle::Half) {
        // a = x[i], b = x[i + half]:  a' = a c - b s,  b' = b c + a s
        int64_t i = 0;
        for (; i + kLanes <= half; i += kLanes) {
          Vf a = load(xh + i), b = load(xh + half + i), c = load(ct + i), s = load(st + i);
          store(xh + i, fms(a, c, b * s));
          store(xh + half + i, fma(b, c, a * s));
        }
        if (i < half) {
          const Mask m = mask_first(half - i);
          Vf a = load(xh + i, m), b = load(xh + half + i, m), c = load(ct + i, m),
             s = load(st + i, m);
          store(xh + i, fms(a, c, b * s), m);
          store(xh + half + i, fma(b, c, a * s), m);
        }
      } else {
        // Pairs (2i, 2i+1) share cos_i, sin_i: with c, s duplicated per pair,
        // x' = x*c -/+ swap(x)*s  (minus on the even lane, plus on the odd one).
        constexpr int64_t kPairs = kLanes / 2;
        int64_t i = 0;
        for (; i + kPairs <= half; i += kPairs) {
          const Mask mh = mask_first(kPairs);
          Vf v = load(xh + 2 * i);
          Vf c = dup_pairs(load(ct + i, mh)), s = dup_pairs(load(st + i, mh));
          store(xh + 2 * i, fmaddsub(v, c, swap_pairs(v) * s));
        }
        if (i < half) {
          const Mask mh = mask_first(half - i), m = mask_first(2 * (half - i));
          Vf v = load(xh + 2 * i, m);
          Vf c = dup_pairs(load(ct + i, mh)), s = dup_pairs(load(st + i, mh));
          store(xh + 2 * i, fmaddsub(v, c, swap_pairs(v) * s), m);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Elementwise ops: y[i] = f(a[i], b[i]); y may alias the inputs (each lane is read before written).

template <class F>
inline void map1(float *y, const float *x, int64_t n, F f) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(y + i, f(load(x + i)));
  if (i < n) {
    const Mask m = mask_first(n - i);
    store(y + i, f(load(x + i, m)), m);
  }
}

template <class F>
inline void map2(float *y, const float *a, const float *b, int64_t n, F f) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(y + i, f(load(a + i), load(b + i)));
  if (i < n) {
    const Mask m = mask_first(n - i);
    store(y + i, f(load(a + i, m), load(b + i, m)), m);
  }
}

// x / (1 + exp(-x)); for x << 0, exp(-x) overflows to inf and the quotient is -0.
inline Vf silu(Vf x) {
  return x / (set1(1.0f) + exp(set1(0.0f) - x));
}

void silu_fwd(float *y, const float *x, int64_t n) {
  map1(y, x, n, [](Vf v) { return silu(v); });
}

void gelu_fwd(float *y, const float *x, int64_t n) {
  map1(y, x, n, [](Vf v) { return v * normal_cdf(v); });
}

// 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)),  u = sqrt(2/pi) (x + 0.044715 x^3): no cancellation
// for x << 0, and no tanh needed.
void gelu_tanh_fwd(float *y, const float *x, int64_t n) {
  map1(y, x, n, [](Vf v) {
    const float c = 0.7978845608028654f;  // sqrt(2/pi)
    Vf minus_2u = v * fma(v * v, set1(-2.0f * c * 0.044715f), set1(-2.0f * c));
    return v / (set1(1.0f) + exp(minus_2u));
  });
}

void swiglu_fwd(float *y, const float *gate, const float *up, int64_t n) {
  map2(y, gate, up, n, [](Vf g, Vf u) { return silu(g) * u; });
}

void add_fwd(float *y, const float *a, const float *b, int64_t n) {
  map2(y, a, b, n, [](Vf u, Vf v) { return u + v; });
}

// ---------------------------------------------------------------------------------------------
// Softmax.

// One row of n values, max-subtracted; y may alias x; an all -inf row becomes zeros.
// Returns the row's log-sum-exp (max + log of the sum), -inf for an all -inf row.
inline float softmax_row(float *y, const float *x, int64_t n) {
  const Vf neg_inf = set1(-__builtin_inff());
  Vf vmax = neg_inf;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) vmax = max(vmax, load(x + i));
  if (i < n) vmax = max(vmax, load_or(x + i, mask_first(n - i), neg_inf));
  const float mx = hmax(vmax);
  if (mx == -__builtin_inff()) {
    map1(y, x, n, [](Vf) { return zero(); });
    return mx;
  }
  const Vf vmx = set1(mx);
  Vf sum = zero();
  for (i = 0; i + kLanes <= n; i += kLanes) {
    Vf e = exp(load(x + i) - vmx);
    store(y + i, e);
    sum = sum + e;
  }
  if (i < n) {
    const Mask m = mask_first(n - i);
    Vf e = exp(load_or(x + i, m, neg_inf) - vmx);  // masked lanes give exp(-inf) = 0
    store(y + i, e, m);
    sum = sum + e;
  }
  const float total = hsum(sum);
  const Vf inv = set1(1.0f / total);
  map1(y, y, n, [inv](Vf v) { return v * inv; });
  return mx + float(__builtin_log(double(total)));
}

void softmax_fwd(float *y, const float *x, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) softmax_row(y + r * cols, x + r * cols, cols);
}

// ---------------------------------------------------------------------------------------------
// Attention: per (head, query), scores into scratch, softmax there, then the weighted sum of V.
// Each query is computed on its own in a fixed order, so a query's output does not depend on
// which other queries share the call (prefill and decode agree).

// s[j] = scale * q · k[j, :] for j < n.  k: (n, hd) row stride kr.  Four keys at a time, one
// accumulator each.
inline void attn_scores(float *s, const float *q, const float *k, int64_t n, int64_t hd, int64_t kr,
                        float scale) {
  const int64_t full = hd - hd % kLanes;
  const Mask tail = mask_first(hd - full);
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const float *k0 = k + j * kr, *k1 = k0 + kr, *k2 = k1 + kr, *k3 = k2 + kr;
    Vf a0 = zero(), a1 = zero(), a2 = zero(), a3 = zero();
    int64_t d = 0;
    for (; d < full; d += kLanes) {
      Vf qv = load(q + d);
      a0 = fma(qv, load(k0 + d), a0);
      a1 = fma(qv, load(k1 + d), a1);
      a2 = fma(qv, load(k2 + d), a2);
      a3 = fma(qv, load(k3 + d), a3);
    }
    if (d < hd) {
      Vf qv = load(q + d, tail);
      a0 = fma(qv, load(k0 + d, tail), a0);
      a1 = fma(qv, load(k1 + d, tail), a1);
      a2 = fma(qv, load(k2 + d, tail), a2);
      a3 = fma(qv, load(k3 + d, tail), a3);
    }
    s[j] = hsum(a0) * scale;
    s[j + 1] = hsum(a1) * scale;
    s[j + 2] = hsum(a2) * scale;
    s[j + 3] = hsum(a3) * scale;
  }
  for (; j < n; ++j) {
    const float *k0 = k + j * kr;
    Vf a0 = zero();
    int64_t d = 0;
    for (; d < full; d += kLanes) a0 = fma(load(q + d), load(k0 + d), a0);
    if (d < hd) a0 = fma(load(q + d, tail), load(k0 + d, tail), a0);
    s[j] = hsum(a0) * scale;
  }
}

// out[d0 .. d0 + NV*kLanes) (the last vector masked by `last`) = sum_j p[j] v[j, d0 + ...].
// v: (n, hd) row stride vr. Even and odd j go to separate accumulators (twice the independent FMA
// chains).
template <int NV>
inline void attn_wsum_chunk(float *out, const float *p, const float *v, int64_t n, int64_t vr,
                            Mask last) {
  Vf a[NV], b[NV];
#pragma GCC unroll 8
  for (int t = 0; t < NV; ++t) a[t] = b[t] = zero();
  int64_t j = 0;
  for (; j + 2 <= n; j += 2) {
    const Vf p0 = set1(p[j]), p1 = set1(p[j + 1]);
    const float *v0 = v + j * vr, *v1 = v0 + vr;
#pragma GCC unroll 8
    for (int t = 0; t < NV - 1; ++t) {
      a[t] = fma(p0, load(v0 + t * kLanes), a[t]);
      b[t] = fma(p1, load(v1 + t * kLanes), b[t]);
    }
    a[NV - 1] = fma(p0, load(v0 + (NV - 1) * kLanes, last), a[NV - 1]);
    b[NV - 1] = fma(p1, load(v1 + (NV - 1) * kLanes, last), b[NV - 1]);
  }
  if (j < n) {
    const Vf p0 = set1(p[j]);
    const float *v0 = v + j * vr;
#pragma GCC unroll 8
    for (int t = 0; t < NV - 1; ++t) a[t] = fma(p0, load(v0 + t * kLanes), a[t]);
    a[NV - 1] = fma(p0, load(v0 + (NV - 1) * kLanes, last), a[NV - 1]);
  }
#pragma GCC unroll 8
  for (int t = 0; t < NV - 1; ++t) store(out + t * kLanes, a[t] + b[t]);
  store(out + (NV - 1) * kLanes, a[NV - 1] + b[NV - 1], last);
}

#if LMKIT_SIMD_AVX512
constexpr int kWsumVecs = 4;  // 8 accumulators (2 x 4) of 16 lanes: 64 dims per pass
#else
constexpr int kWsumVecs = 4;  // 8 accumulators of 8 lanes: 32 dims per pass
#endif

inline void attn_wsum(float *out, const float *p, const float *v, int64_t n, int64_t hd,
                      int64_t vr) {
  for (int64_t d0 = 0; d0 < hd; d0 += kWsumVecs * kLanes) {
    const int64_t width = min64(hd - d0, kWsumVecs * kLanes);
    const int64_t nv = (width + kLanes - 1) / kLanes;
    const Mask last = mask_first(width - (nv - 1) * kLanes);
    static_assert(kWsumVecs == 4, "extend the switch below");
    switch (nv) {
      case 1:
        attn_wsum_chunk<1>(out + d0, p, v + d0, n, vr, last);
        break;
      case 2:
        attn_wsum_chunk<2>(out + d0, p, v + d0, n, vr, last);
        break;
      case 3:
        attn_wsum_chunk<3>(out + d0, p, v + d0, n, vr, last);
        break;
      default:
        attn_wsum_chunk<4>(out + d0, p, v + d0, n, vr, last);
        break;
    }
  }
}

inline void fill_zero(float *p, int64_t n) {
  map1(p, p, n, [](Vf) { return zero(); });
}

void attention_fwd(const AttentionArgs &a) {
  const int64_t group = a.n_head / a.n_head_kv;
  const int64_t hd = a.head_dim;
  const int64_t kr = a.ld_kv_row ? a.ld_kv_row : hd;  // key row stride
  for (int64_t h = a.head_begin; h < a.head_end; ++h) {
    const int64_t hk = h / group;
    const float *kh = a.k + hk * a.ld_kv_head;  // (n_kv, hd) row stride kr
    const float *vh = a.v + hk * a.ld_kv_head;  // (n_kv, hd) row stride kr
    for (int64_t i = 0; i < a.n_q; ++i) {
      const int64_t pos = a.q_pos[i];
      const int64_t hi = min64(pos, a.n_kv - 1);  // visible keys: [lo, hi]
      const int64_t lo = a.window > 0 ? max64(0, pos - a.window + 1) : 0;
      const int64_t n = hi - lo + 1;
      float *out = a.out + i * a.ld_out + h * hd;
      float *pat = a.pattern ? a.pattern + (h * a.n_q + i) * a.n_kv : nullptr;
      if (n <= 0) {
        fill_zero(out, hd);
        if (pat) fill_zero(pat, a.n_kv);
        if (a.lse) a.lse[i * a.n_head + h] = -__builtin_inff();
        continue;
      }
      float *s = a.scratch;
      if (kr == hd && a.n_q == 1) {
        // Decode over cached, contiguous keys and values: ask for the values now, so they arrive
        // while the scores are computed (short streams that the hardware prefetcher picks up
        // late). Prefill finds them in cache after its first query.
        const char *vp = reinterpret_cast<const char *>(vh + lo * kr);
        for (int64_t off = 0; off < n * hd * 4; off += 64) _mm_prefetch(vp + off, _MM_HINT_T1);
      }
      attn_scores(s, a.q + i * a.ld_q + h * hd, kh + lo * kr, n, hd, kr, a.scale);
      const float lse = softmax_row(s, s, n);
      if (a.lse) a.lse[i * a.n_head + h] = lse;
      attn_wsum(out, s, vh + lo * kr, n, hd, kr);
      if (pat) {
        fill_zero(pat, lo);
        map1(pat + lo, s, n, [](Vf v) { return v; });
        fill_zero(pat + hi + 1, a.n_kv - hi - 1);
      }
    }
  }
}

}  // namespace
}  // namespace lmkit::kernels::LMKIT_SIMD_ISA

// The backward (training) kernels, each family in its own header of the same kind.
#include "kernels/cpu/simd_attention_bwd.h"
#include "kernels/cpu/simd_backward.h"
#include "kernels/cpu/simd_gemm.h"

namespace lmkit::kernels::LMKIT_SIMD_ISA {

// The table for this ISA (declared in tables.h). Constant-initialised: no start-up code runs.
constinit const KernelTable table = {
#if LMKIT_SIMD_AVX512
    .name = "avx512",
#else
    .name = "avx2",
#endif
    .matmul_f32 = matmul_f32,
    .matmul_f16 = matmul_f16,
    .matmul_bf16 = matmul_bf16,
    .embedding_fwd = embedding_fwd,
    .rmsnorm_fwd = rmsnorm_fwd,
    .layernorm_fwd = layernorm_fwd,
    .rope_fwd = rope_fwd,
    .silu_fwd = silu_fwd,
    .gelu_fwd = gelu_fwd,
    .gelu_tanh_fwd = gelu_tanh_fwd,
    .swiglu_fwd = swiglu_fwd,
    .add_fwd = add_fwd,
    .softmax_fwd = softmax_fwd,
    .attention_fwd = attention_fwd,
    .matmul_bwd_x = matmul_bwd_x,
    .matmul_bwd_w = matmul_bwd_w,
    .embedding_bwd = embedding_bwd,
    .rmsnorm_bwd = rmsnorm_bwd,
    .layernorm_bwd = layernorm_bwd,
    .silu_bwd = silu_bwd,
    .gelu_bwd = gelu_bwd,
    .gelu_tanh_bwd = gelu_tanh_bwd,
    .swiglu_bwd = swiglu_bwd,
    .cross_entropy_fwd_bwd = cross_entropy_fwd_bwd,
    .attention_bwd = attention_bwd,
};

}  // namespace lmkit::kernels::LMKIT_SIMD_ISA
