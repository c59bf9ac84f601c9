// SIMD attention backward (flash-attention style: scores recomputed from q, k and the saved lse).
// Not the forward (simd_kernels.h); included only by simd_kernels.h (internal linkage, one copy
// per ISA; see simd.h). ref/attention.cpp holds the readable per-row version of the same math.
//
// Blocked path (head_dim <= kAttnMaxHd): for each KV head, keys are taken kLanes at a time (one
// vector of scores). The block's K and V are transposed once into (head_dim, kLanes) stack tiles,
// so the scores of one query against the whole block are head_dim broadcast-FMAs with no
// horizontal sums. Then, for every query head of the group, the queries that see any key of the
// block are gathered kAttnBq at a time and the five products of the backward run as small
// register-blocked updates while the block's k, v, dk, dv rows stay in L1:
//   S = Q K^T, dP = dO V^T          (kAttnBq x kLanes, from the transposed tiles)
//   P = exp(scale S - lse) masked,  dS = scale P (dP - D),  D = rowsum(dO * O)
//   dV += P^T dO,  dK += dS^T Q,  dQ += dS K
// Every sum runs in a fixed order (keys block by block, queries in index order), so results are
// deterministic; memory is the two small tiles, not O(n_q * n_kv).
// Larger heads take a plain per-row path that uses the caller's scratch (2 * n_kv floats).
#pragma once

#include "kernels/cpu/simd.h"
#include "kernels/cpu/simd_math.h"

namespace lmkit::kernels::LMKIT_SIMD_ISA {
namespace {

constexpr int kAttnBq = 8;            // query rows per tile (independent FMA chains for S, dP)
constexpr int64_t kAttnMaxHd = 256;   // head_dim of the blocked path (stack tiles of 16 KiB each)
constexpr int64_t kAttnChunk = 4;     // vectors of head_dim per register-blocked update

// y_r[d0 : d0 + NV*kLanes) += sum_{u < U} coef[r*c_r + u*c_u] * x_u[d0 : ...] for r < R; the last
// vector is masked by `last`. R output rows share every x vector loaded.
template <int R, int NV>
inline void attn_axpy_chunk(float *const *y, const float *coef, int64_t c_r, int64_t c_u,
                            const float *const *x, int64_t U, int64_t d0, Mask last) {
  Vf acc[R][NV];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < NV - 1; ++v) acc[r][v] = load(y[r] + d0 + v * kLanes);
    acc[r][NV - 1] = load(y[r] + d0 + (NV - 1) * kLanes, last);
  }
  for (int64_t u = 0; u < U; ++u) {
    Vf xv[NV];
    const float *xu = x[u] + d0;
#pragma GCC unroll 4
    for (int v = 0; v < NV - 1; ++v) xv[v] = load(xu + v * kLanes);
    xv[NV - 1] = load(xu + (NV - 1) * kLanes, last);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const Vf c = set1(coef[r * c_r + u * c_u]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = fma(c, xv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < NV - 1; ++v) store(y[r] + d0 + v * kLanes, acc[r][v]);
    store(y[r] + d0 + (NV - 1) * kLanes, acc[r][NV - 1], last);
  }
}

// The same over all of head_dim hd, in chunks of kAttnChunk vectors.
template <int R>
inline void attn_axpy(float *const *y, const float *coef, int64_t c_r, int64_t c_u,
                      const float *const *x, int64_t U, int64_t hd) {
  static_assert(kAttnChunk == 4, "extend the switch below");
  for (int64_t d0 = 0; d0 < hd; d0 += kAttnChunk * kLanes) {
    const int64_t width = min64(hd - d0, kAttnChunk * kLanes);
    const int64_t nv = (width + kLanes - 1) / kLanes;
    const Mask last = mask_first(width - (nv - 1) * kLanes);
    switch (nv) {
      case 1:
        attn_axpy_chunk<R, 1>(y, coef, c_r, c_u, x, U, d0, last);
        break;
      case 2:
        attn_axpy_chunk<R, 2>(y, coef, c_r, c_u, x, U, d0, last);
        break;
      case 3:
        attn_axpy_chunk<R, 3>(y, coef, c_r, c_u, x, U, d0, last);
        break;
      default:
        attn_axpy_chunk<R, 4>(y, coef, c_r, c_u, x, U, d0, last);
        break;
    }
  }
}

// a · b over n floats (4 accumulators, fixed order).
inline float dot_row(const float *a, const float *b, int64_t n) {
  Vf a0 = zero(), a1 = zero(), a2 = zero(), a3 = zero();
  int64_t d = 0;
  for (; d + 4 * kLanes <= n; d += 4 * kLanes) {
    a0 = fma(load(a + d), load(b + d), a0);
    a1 = fma(load(a + d + kLanes), load(b + d + kLanes), a1);
    a2 = fma(load(a + d + 2 * kLanes), load(b + d + 2 * kLanes), a2);
    a3 = fma(load(a + d + 3 * kLanes), load(b + d + 3 * kLanes), a3);
  }
  for (; d + kLanes <= n; d += kLanes) a0 = fma(load(a + d), load(b + d), a0);
  if (d < n) {
    const Mask m = mask_first(n - d);
    a0 = fma(load(a + d, m), load(b + d, m), a0);
  }
  return hsum((a0 + a1) + (a2 + a3));
}

// acc[t] = sum_d rows[t][d] * tile[d, :]  for t < kAttnBq.  tile: (hd, kLanes).
inline void attn_tile_scores(Vf (&acc)[kAttnBq], const float *const *rows, const float *tile,
                             int64_t hd) {
#pragma GCC unroll 8
  for (int t = 0; t < kAttnBq; ++t) acc[t] = zero();
  for (int64_t d = 0; d < hd; ++d) {
    const Vf kv = load(tile + d * kLanes);
#pragma GCC unroll 8
    for (int t = 0; t < kAttnBq; ++t) acc[t] = fma(set1(rows[t][d]), kv, acc[t]);
  }
}

// The per-KV-head state of the blocked path for one key block [j0, j0 + nk).
struct AttnBlock {
  const AttentionBwdArgs *a;
  int64_t hd, kr, j0, nk;
  const float *kt, *vt;        // (hd, kLanes) transposed K and V of the block, zero-padded
  const float *krow[kLanes];   // the block's key rows (kr stride) ...
  float *dkrow[kLanes], *dvrow[kLanes];  // ... and their gradient rows
};

// One tile: nr (1..kAttnBq) query rows idx[] of head h against the block.
inline void attn_bwd_tile(const AttnBlock &b, int64_t h, const int64_t *idx, int nr) {
  const AttentionBwdArgs &a = *b.a;
  const int64_t hd = b.hd;
  const float *qp[kAttnBq], *dop[kAttnBq];
  float *dqp[kAttnBq];
  for (int t = 0; t < kAttnBq; ++t) {
    const int64_t i = idx[t < nr ? t : 0];  // padding rows repeat row 0; their results are unused
    qp[t] = a.q + i * a.ld_q + h * hd;
    dop[t] = a.dout + i * a.ld_dout + h * hd;
    dqp[t] = a.dq + i * a.ld_dq + h * hd;
  }
  Vf s[kAttnBq], dp[kAttnBq];
  attn_tile_scores(s, qp, b.kt, hd);
  attn_tile_scores(dp, dop, b.vt, hd);

  alignas(64) float pbuf[kAttnBq * kLanes];   // P   (t, key)
  alignas(64) float dsbuf[kAttnBq * kLanes];  // dS * scale
  const Vf vscale = set1(a.scale);
  for (int t = 0; t < nr; ++t) {
    const int64_t i = idx[t], pos = a.q_pos[i];
    const int64_t hi = min64(pos, a.n_kv - 1);
    const int64_t lo = a.window > 0 ? max64(0, pos - a.window + 1) : 0;
    const float dsum = dot_row(dop[t], a.out + i * a.ld_out + h * hd, hd);
    // Keys outside [lo, hi] (and padding lanes) are zeroed by the mask, not by arithmetic, so an
    // exp that overflowed there cannot turn into a NaN.
    const Vf p = keep(exp(fms(s[t], vscale, set1(a.lse[i * a.n_head + h]))),
                      mask_range(max64(lo - b.j0, 0), min64(hi - b.j0 + 1, b.nk)));
    store(pbuf + t * kLanes, p);
    store(dsbuf + t * kLanes, p * (dp[t] - set1(dsum)) * vscale);
  }

  // dV_j += sum_t P[t, j] dO_t and dK_j += sum_t dS[t, j] Q_t, two keys at a time.
  int64_t j = 0;
  for (; j + 2 <= b.nk; j += 2) {
    attn_axpy<2>(b.dvrow + j, pbuf + j, 1, kLanes, dop, nr, hd);
    attn_axpy<2>(b.dkrow + j, dsbuf + j, 1, kLanes, qp, nr, hd);
  }
  if (j < b.nk) {
    attn_axpy<1>(b.dvrow + j, pbuf + j, 1, kLanes, dop, nr, hd);
    attn_axpy<1>(b.dkrow + j, dsbuf + j, 1, kLanes, qp, nr, hd);
  }
  // dQ_t += sum_j dS[t, j] K_j, two query rows at a time.
  int t = 0;
  for (; t + 2 <= nr; t += 2) attn_axpy<2>(dqp + t, dsbuf + t * kLanes, kLanes, 1, b.krow, b.nk, hd);
  if (t < nr) attn_axpy<1>(dqp + t, dsbuf + t * kLanes, kLanes, 1, b.krow, b.nk, hd);
}

void attention_bwd_blocked(const AttentionBwdArgs &a) {
  const int64_t group = a.n_head / a.n_head_kv;
  const int64_t hd = a.head_dim;
  const int64_t kr = a.ld_kv_row ? a.ld_kv_row : hd;
  alignas(64) float kt[kAttnMaxHd * kLanes];
  alignas(64) float vt[kAttnMaxHd * kLanes];
  AttnBlock b;
  b.a = &a;
  b.hd = hd;
  b.kr = kr;
  b.kt = kt;
  b.vt = vt;
  for (int64_t hk = a.kv_head_begin; hk < a.kv_head_end; ++hk) {
    const float *kh = a.k + hk * a.ld_kv_head, *vh = a.v + hk * a.ld_kv_head;
    float *dkh = a.dk + hk * a.ld_kv_head, *dvh = a.dv + hk * a.ld_kv_head;
    for (int64_t j0 = 0; j0 < a.n_kv; j0 += kLanes) {
      const int64_t nk = min64(kLanes, a.n_kv - j0);
      const int64_t j_last = j0 + nk - 1;
      b.j0 = j0;
      b.nk = nk;
      for (int64_t j = 0; j < kLanes; ++j) {
        const int64_t jj = j < nk ? j0 + j : j0;  // padding lanes point at a real row, unused
        b.krow[j] = kh + jj * kr;
        b.dkrow[j] = dkh + jj * kr;
        b.dvrow[j] = dvh + jj * kr;
      }
      bool transposed = false;
      for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
        int64_t idx[kAttnBq];
        int nr = 0;
        for (int64_t i = 0; i < a.n_q; ++i) {
          const int64_t pos = a.q_pos[i];
          const int64_t hi = min64(pos, a.n_kv - 1);
          const int64_t lo = a.window > 0 ? max64(0, pos - a.window + 1) : 0;
          if (lo > hi || hi < j0 || lo > j_last) continue;  // sees no key of this block
          if (!transposed) {
            for (int64_t d = 0; d < hd; ++d)
              for (int64_t j = 0; j < kLanes; ++j) {
                kt[d * kLanes + j] = j < nk ? kh[(j0 + j) * kr + d] : 0.0f;
                vt[d * kLanes + j] = j < nk ? vh[(j0 + j) * kr + d] : 0.0f;
              }
            transposed = true;
          }
          idx[nr++] = i;
          if (nr == kAttnBq) {
            attn_bwd_tile(b, h, idx, nr);
            nr = 0;
          }
        }
        if (nr > 0) attn_bwd_tile(b, h, idx, nr);
      }
    }
  }
}

// Per query row, for any head_dim: p and ds of the visible keys in the caller's scratch.
void attention_bwd_rows(const AttentionBwdArgs &a) {
  const int64_t group = a.n_head / a.n_head_kv;
  const int64_t hd = a.head_dim;
  const int64_t kr = a.ld_kv_row ? a.ld_kv_row : hd;
  for (int64_t hk = a.kv_head_begin; hk < a.kv_head_end; ++hk) {
    const float *kh = a.k + hk * a.ld_kv_head, *vh = a.v + hk * a.ld_kv_head;
    float *dkh = a.dk + hk * a.ld_kv_head, *dvh = a.dv + hk * a.ld_kv_head;
    for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
      for (int64_t i = 0; i < a.n_q; ++i) {
        const int64_t pos = a.q_pos[i];
        const int64_t hi = min64(pos, a.n_kv - 1);
        const int64_t lo = a.window > 0 ? max64(0, pos - a.window + 1) : 0;
        const int64_t n = hi - lo + 1;
        if (n <= 0) continue;
        const float *q = a.q + i * a.ld_q + h * hd;
        const float *dout = a.dout + i * a.ld_dout + h * hd;
        float *dq = a.dq + i * a.ld_dq + h * hd;
        float *p = a.scratch, *ds = a.scratch + a.n_kv;
        const float lse = a.lse[i * a.n_head + h];
        const float dsum = dot_row(dout, a.out + i * a.ld_out + h * hd, hd);
        for (int64_t j = 0; j < n; ++j) {
          const float *kj = kh + (lo + j) * kr, *vj = vh + (lo + j) * kr;
          p[j] = dot_row(q, kj, hd) * a.scale - lse;
          ds[j] = dot_row(dout, vj, hd) - dsum;
        }
        for (int64_t j = 0; j < n; j += kLanes) {
          const Mask m = mask_first(min64(kLanes, n - j));
          const Vf pv = exp(load(p + j, m));
          store(p + j, pv, m);
          store(ds + j, pv * load(ds + j, m) * set1(a.scale), m);
        }
        for (int64_t j = 0; j < n; ++j) {
          const float *kj = kh + (lo + j) * kr;
          float *dkj = dkh + (lo + j) * kr, *dvj = dvh + (lo + j) * kr;
          const Vf vp = set1(p[j]), vds = set1(ds[j]);
          for (int64_t d = 0; d < hd; d += kLanes) {
            const Mask m = mask_first(min64(kLanes, hd - d));
            store(dq + d, fma(vds, load(kj + d, m), load(dq + d, m)), m);
            store(dkj + d, fma(vds, load(q + d, m), load(dkj + d, m)), m);
            store(dvj + d, fma(vp, load(dout + d, m), load(dvj + d, m)), m);
          }
        }
      }
    }
  }
}

void attention_bwd(const AttentionBwdArgs &a) {
  if (a.head_dim <= 0 || a.n_q <= 0 || a.n_kv <= 0) return;
  if (a.head_dim <= kAttnMaxHd)
    attention_bwd_blocked(a);
  else
    attention_bwd_rows(a);
}

}  // namespace
}  // namespace lmkit::kernels::LMKIT_SIMD_ISA
