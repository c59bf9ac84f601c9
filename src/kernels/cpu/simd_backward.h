// SIMD backward kernels for norms, activations, the embedding and the fused cross-entropy loss.
// Not matmul or attention (simd_gemm.h, simd_attention_bwd.h); included only by simd_kernels.h
// (internal linkage, one copy per ISA; see simd.h). ref/ holds the readable formulas.
#pragma once

#include "kernels/cpu/simd.h"
#include "kernels/cpu/simd_math.h"

namespace lmkit::kernels::LMKIT_SIMD_ISA {
namespace {

// sum over i < n of f(i) (full vectors) and tail(i, mask) (the last partial vector, lanes past the
// end must come back 0): four accumulators, combined in a fixed order.
template <class Full, class Tail>
inline float sum_lanes(int64_t n, Full f, Tail tail) {
  Vf a0 = zero(), a1 = zero(), a2 = zero(), a3 = zero();
  int64_t i = 0;
  for (; i + 4 * kLanes <= n; i += 4 * kLanes) {
    a0 = a0 + f(i);
    a1 = a1 + f(i + kLanes);
    a2 = a2 + f(i + 2 * kLanes);
    a3 = a3 + f(i + 3 * kLanes);
  }
  for (; i + kLanes <= n; i += kLanes) a0 = a0 + f(i);
  if (i < n) a0 = a0 + tail(i, mask_first(n - i));
  return hsum((a0 + a1) + (a2 + a3));
}

// body(i, full_mask_or_tail, is_tail) over i in steps of kLanes (the last step masked).
template <class Body>
inline void for_lanes(int64_t n, Body body) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) body(i, false, Mask{});
  if (i < n) body(i, true, mask_first(n - i));
}

inline Vf vload(const float *p, bool tail, Mask m) {
  return tail ? load(p, m) : load(p);
}
inline void vstore(float *p, Vf v, bool tail, Mask m) {
  if (tail)
    store(p, v, m);
  else
    store(p, v);
}

// ---------------------------------------------------------------------------------------------
// Norms. Per row: one reduction pass, then one pass writing dx and accumulating dw (db). Each
// element of dy is read before the same element of dx is written, so dx may alias dy.

void rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w,
                 const float *rstd, int64_t rows, int64_t dim) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * dim, *dyr = dy + r * dim;
    float *dxr = dx + r * dim;
    const float gx = sum_lanes(
        dim, [&](int64_t d) { return load(dyr + d) * load(w + d) * load(xr + d); },
        [&](int64_t d, Mask m) { return load(dyr + d, m) * load(w + d, m) * load(xr + d, m); });
    const float rs = rstd[r];
    const Vf vrs = set1(rs), vc = set1(rs * rs * gx / float(dim));
    for_lanes(dim, [&](int64_t d, bool tail, Mask m) {
      const Vf dyv = vload(dyr + d, tail, m), xv = vload(xr + d, tail, m);
      vstore(dw + d, fma(dyv * xv, vrs, vload(dw + d, tail, m)), tail, m);
      vstore(dxr + d, vrs * fnma(xv, vc, dyv * vload(w + d, tail, m)), tail, m);
    });
  }
}

void layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                   const float *mean, const float *rstd, int64_t rows, int64_t dim) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * dim, *dyr = dy + r * dim;
    float *dxr = dx + r * dim;
    const Vf vmu = set1(mean[r]), vrs = set1(rstd[r]);
    const float g_sum = sum_lanes(
        dim, [&](int64_t d) { return load(dyr + d) * load(w + d); },
        [&](int64_t d, Mask m) { return load(dyr + d, m) * load(w + d, m); });
    // Masked lanes: dy = 0 there, so the product is 0 whatever xhat is.
    const float gx_sum = sum_lanes(
        dim, [&](int64_t d) { return load(dyr + d) * load(w + d) * ((load(xr + d) - vmu) * vrs); },
        [&](int64_t d, Mask m) {
          return load(dyr + d, m) * load(w + d, m) * ((load(xr + d, m) - vmu) * vrs);
        });
    const Vf g_mean = set1(g_sum / float(dim)), gx_mean = set1(gx_sum / float(dim));
    for_lanes(dim, [&](int64_t d, bool tail, Mask m) {
      const Vf dyv = vload(dyr + d, tail, m), xhat = (vload(xr + d, tail, m) - vmu) * vrs;
      vstore(dw + d, fma(dyv, xhat, vload(dw + d, tail, m)), tail, m);
      if (db) vstore(db + d, vload(db + d, tail, m) + dyv, tail, m);
      const Vf g = dyv * vload(w + d, tail, m);
      vstore(dxr + d, vrs * fnma(xhat, gx_mean, g - g_mean), tail, m);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Activations: dx = dy * f'(x); dx may alias dy or x (each vector is read before it is written).

// s = sigmoid(x) and t = 1 - s = sigmoid(-x) without cancellation or overflow: e = exp(-|x|).
inline void sigmoid_pair(Vf x, Vf &s, Vf &t) {
  const Vf e = exp(zero() - abs(x));
  const Vf big = set1(1.0f) / (set1(1.0f) + e), small = e * big;
  const Cmp neg = x < zero();
  s = select(neg, small, big);
  t = select(neg, big, small);
}

// silu'(x) = s (1 + x t)
inline Vf silu_grad(Vf x) {
  Vf s, t;
  sigmoid_pair(x, s, t);
  return s * fma(x, t, set1(1.0f));
}

template <class F>
inline void map_grad(float *dx, const float *x, const float *dy, int64_t n, F fprime) {
  for_lanes(n, [&](int64_t i, bool tail, Mask m) {
    const Vf xv = vload(x + i, tail, m), dyv = vload(dy + i, tail, m);
    vstore(dx + i, dyv * fprime(xv), tail, m);
  });
}

void silu_bwd(float *dx, const float *x, const float *dy, int64_t n) {
  map_grad(dx, x, dy, n, [](Vf v) { return silu_grad(v); });
}

// gelu'(x) = Phi(x) + x phi(x),  phi(x) = exp(-x^2/2) / sqrt(2 pi); x^2 is split exactly into
// hi + lo (as in normal_cdf) so exp(-x^2/2) keeps its relative accuracy in the tails.
void gelu_bwd(float *dx, const float *x, const float *dy, int64_t n) {
  map_grad(dx, x, dy, n, [](Vf v) {
    const Vf xc = min(set1(16.0f), max(set1(-16.0f), v));  // phi is 0 in float beyond
    const Vf x2_hi = xc * xc, x2_lo = fms(xc, xc, x2_hi);
    Vf e = exp(x2_hi * set1(-0.5f));
    e = fnma(e, x2_lo * set1(0.5f), e);
    const Vf phi = e * set1(0.3989422804014327f);
    return fma(xc, phi, normal_cdf(v));
  });
}

// gelu_tanh(x) = x s, s = sigmoid(2u), u = c (x + a x^3);  gelu_tanh'(x) = s + x s t 2c (1 + 3a x^2)
// with t = 1 - s. |x| is capped at 1e4 for the polynomial (the answer is then exactly 0 or 1 in
// float) so that x^3 cannot overflow into inf * 0.
void gelu_tanh_bwd(float *dx, const float *x, const float *dy, int64_t n) {
  map_grad(dx, x, dy, n, [](Vf v) {
    const float c = 0.7978845608028654f, a = 0.044715f;
    const Vf xc = min(set1(1e4f), max(set1(-1e4f), v));
    const Vf x2 = xc * xc;
    Vf s, t;
    sigmoid_pair(xc * fma(x2, set1(2.0f * c * a), set1(2.0f * c)), s, t);
    const Vf slope = fma(x2, set1(6.0f * c * a), set1(2.0f * c));  // 2c (1 + 3a x^2)
    return fma(xc * s * t, slope, s);
  });
}

// dgate = dy * up * silu'(gate), dup = dy * silu(gate); in place on gate/up is fine (all three
// inputs of a vector are loaded before either output is stored).
void swiglu_bwd(float *dgate, float *dup, const float *gate, const float *up, const float *dy,
                int64_t n) {
  for_lanes(n, [&](int64_t i, bool tail, Mask m) {
    const Vf g = vload(gate + i, tail, m), u = vload(up + i, tail, m), d = vload(dy + i, tail, m);
    Vf s, t;
    sigmoid_pair(g, s, t);
    const Vf du = d * (g * s);
    const Vf dg = d * u * (s * fma(g, t, set1(1.0f)));
    vstore(dgate + i, dg, tail, m);
    vstore(dup + i, du, tail, m);
  });
}

// ---------------------------------------------------------------------------------------------
// Embedding: dw[ids[i], :] += dy[i, :], rows in order (one float addition per element, like ref).

void embedding_bwd(float *dw, const int32_t *ids, int64_t n, const float *dy, int64_t dim) {
  for (int64_t i = 0; i < n; ++i) {
    float *row = dw + int64_t(ids[i]) * dim;
    const float *g = dy + i * dim;
    for_lanes(dim, [&](int64_t d, bool tail, Mask m) {
      vstore(row + d, vload(row + d, tail, m) + vload(g + d, tail, m), tail, m);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Fused softmax + cross-entropy, per row: (1) max, (2) exp(l - max) summed (written to dlogits
// when wanted), (3) dlogits *= dscale / sum and the target gets -dscale. The sum runs in float
// vectors over chunks of kCeChunk elements whose totals are added in double, so a 150k vocabulary
// keeps about 1e-7 relative accuracy; the order is fixed, so results are deterministic.
// dlogits may alias logits: the target's logit is read before pass (2) overwrites the row.

constexpr int64_t kCeChunk = 1024;

void cross_entropy_fwd_bwd(float *loss, float *dlogits, int64_t ld_d, const float *logits,
                           int64_t ld, const int32_t *targets, int64_t rows, int64_t n_vocab,
                           float dscale) {
  const Vf neg_inf = set1(-__builtin_inff());
  for (int64_t r = 0; r < rows; ++r) {
    const float *l = logits + r * ld;
    float *dl = dlogits ? dlogits + r * ld_d : nullptr;
    const int64_t t = targets[r];
    if (t < 0 || n_vocab <= 0) {
      loss[r] = 0.0f;
      if (dl) for_lanes(n_vocab, [&](int64_t j, bool tail, Mask m) { vstore(dl + j, zero(), tail, m); });
      continue;
    }
    Vf vmax = neg_inf;
    int64_t j = 0;
    for (; j + kLanes <= n_vocab; j += kLanes) vmax = max(vmax, load(l + j));
    if (j < n_vocab) vmax = max(vmax, load_or(l + j, mask_first(n_vocab - j), neg_inf));
    const float mx = hmax(vmax);
    const Vf vmx = set1(mx);
    const float lt = l[t];

    double total = 0;
    for (int64_t c0 = 0; c0 < n_vocab; c0 += kCeChunk) {
      const int64_t len = min64(kCeChunk, n_vocab - c0);
      const float *lc = l + c0;
      float *dc = dl ? dl + c0 : nullptr;
      Vf a0 = zero(), a1 = zero();
      int64_t i = 0;
      for (; i + 2 * kLanes <= len; i += 2 * kLanes) {
        const Vf e0 = exp(load(lc + i) - vmx), e1 = exp(load(lc + i + kLanes) - vmx);
        if (dc) {
          store(dc + i, e0);
          store(dc + i + kLanes, e1);
        }
        a0 = a0 + e0;
        a1 = a1 + e1;
      }
      for (; i < len; i += kLanes) {
        const bool tail = len - i < kLanes;
        const Mask m = mask_first(min64(kLanes, len - i));
        const Vf e = exp((tail ? load_or(lc + i, m, neg_inf) : load(lc + i)) - vmx);  // 0 outside
        if (dc) vstore(dc + i, e, tail, m);
        a0 = a0 + e;
      }
      total += double(hsum(a0 + a1));
    }
    loss[r] = float(double(mx) + __builtin_log(total) - double(lt));
    if (dl) {
      const Vf scale = set1(float(double(dscale) / total));
      for_lanes(n_vocab, [&](int64_t i, bool tail, Mask m) {
        vstore(dl + i, vload(dl + i, tail, m) * scale, tail, m);
      });
      dl[t] -= dscale;
    }
  }
}

}  // namespace
}  // namespace lmkit::kernels::LMKIT_SIMD_ISA
