// Packed, cache-blocked f32 GEMM over Vf for the matmul backward passes: C(I, J) += A(I, P) B(P, J).
// Not the forward matmul: that one keeps one dot product per output so its bits do not depend on
// M; here each output is a sum of per-block partial sums (fixed blocks, still deterministic).
//
// Included only by simd_kernels.h (internal linkage, one copy per ISA; see simd.h).
//
// Layout: C row-major (row stride ldc); B(p, j) = b[p*ldb + j] (rows contiguous along j);
// A(i, p) = a[i*a_ri + p*a_rp] with any strides (dy is read row-wise for dx and column-wise for
// dW). The loop nest (outer to inner):
//   p blocks of kKC   (the reduction; C is updated once per block, in block order)
//   i blocks of kMC   A block packed into Ap (kMC x kKC, micro-panels of kMR rows): stays in L2
//   j strips of kNR   B strip packed into Bp (kKC x kNR): stays in L1/L2 while every A micro-panel
//                     of the block streams past it
//   micro-tile        kMR x kNR accumulators in registers; A broadcast, B loaded as vectors.
// Packing makes every micro-kernel read contiguous (no cache-set conflicts when ldb is a large
// power of two) and zero-pads the edges, so the micro-kernel always runs full tiles and only its
// stores are masked. Buffers live on the stack (about 160 KiB with AVX-512, 112 KiB with AVX2).
#pragma once

#include "kernels/cpu/simd.h"

namespace lmkit::kernels::LMKIT_SIMD_ISA {
namespace {

#if LMKIT_SIMD_AVX512
constexpr int kGemmMR = 6;  // 24 accumulators + 4 B vectors + 1 broadcast of 32 registers
constexpr int kGemmNV = 4;  // 64 columns per micro-tile
#else
constexpr int kGemmMR = 6;  // 12 accumulators + 2 B vectors + 1 broadcast of 16 registers
constexpr int kGemmNV = 2;  // 16 columns per micro-tile
#endif
constexpr int64_t kGemmNR = kGemmNV * kLanes;
#ifndef TUNE_KC
#define TUNE_KC 384
#define TUNE_MC 192
#endif
constexpr int64_t kGemmKC = TUNE_KC;  // reduction block: the B strip is kKC x kNR floats
constexpr int64_t kGemmMC = TUNE_MC;  // rows of A per block (a multiple of kGemmMR)
static_assert(kGemmMC % kGemmMR == 0, "A blocks hold whole micro-panels");

// How a micro-kernel reads its MR x kc panel of A: A(r, p) = a[r*ri + p*rp].
//   kAlongP: each row contiguous along p (rp == 1), read through MR row pointers;
//   otherwise the MR values of one p are adjacent (ri == 1: dy read column-wise, or a packed
//   panel with rp == MR).
// c[r, 0:nr] += sum_p A(r, p) * bp[p*NR + 0:nr] for r < mr.  bp: (kc, NR) packed B.
template <int MR, int NV, bool kAlongP>
inline void gemm_micro(float *c, int64_t ldc, const float *a, int64_t ri, int64_t rp,
                       const float *bp, int64_t kc, int64_t mr, int64_t nr) {
  constexpr int64_t NR = NV * kLanes;
  Vf acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = zero();
  const float *arow[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) arow[r] = a + r * ri;
  for (int64_t p = 0; p < kc; ++p) {
    Vf b[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) b[v] = load(bp + p * NR + v * kLanes);
    const float *ap = a + p * rp;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const Vf av = set1(kAlongP ? arow[r][p] : ap[r]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = fma(av, b[v], acc[r][v]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    if (r >= mr) break;
    float *cr = c + r * ldc;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const int64_t w = nr - v * kLanes;  // columns left in this vector
      if (w >= kLanes) {
        store(cr + v * kLanes, load(cr + v * kLanes) + acc[r][v]);
      } else if (w > 0) {
        const Mask m = mask_first(w);
        store(cr + v * kLanes, load(cr + v * kLanes, m) + acc[r][v], m);
      }
    }
  }
}

// ap[p*MR + r] = A(r, p) = a[r*ri + p*rp] for r < rows (zero for rows .. MR-1), p < kc.
inline void gemm_pack_a(float *ap, const float *a, int64_t ri, int64_t rp, int64_t rows,
                        int64_t kc) {
  for (int64_t p = 0; p < kc; ++p)
    for (int64_t r = 0; r < kGemmMR; ++r) ap[p * kGemmMR + r] = r < rows ? a[r * ri + p * rp] : 0.0f;
}

// The mc x kc block of A with ri == 1 (the MR values of one p adjacent: dy read column-wise)
// packed into panels ap[s][p][r], walking each source row once.
inline void gemm_pack_a_cols(float *ap, const float *a, int64_t rp, int64_t mc, int64_t kc) {
  const int64_t full = mc / kGemmMR;
  for (int64_t p = 0; p < kc; ++p) {
    const float *src = a + p * rp;
    for (int64_t s = 0; s < full; ++s)
#pragma GCC unroll 8
      for (int r = 0; r < kGemmMR; ++r) ap[(s * kc + p) * kGemmMR + r] = src[s * kGemmMR + r];
  }
  if (full * kGemmMR < mc)
    gemm_pack_a(ap + full * kc * kGemmMR, a + full * kGemmMR, 1, rp, mc - full * kGemmMR, kc);
}

// Bp[p][0:kGemmNR] = B(p, 0:nr), zero beyond nr.  b: rows stride ldb.
inline void gemm_pack_b(float *bp, const float *b, int64_t ldb, int64_t kc, int64_t nr) {
  if (nr == kGemmNR) {
    for (int64_t p = 0; p < kc; ++p)
#pragma GCC unroll 8
      for (int v = 0; v < kGemmNV; ++v)
        store(bp + p * kGemmNR + v * kLanes, load(b + p * ldb + v * kLanes));
    return;
  }
  for (int64_t p = 0; p < kc; ++p)
    for (int v = 0; v < kGemmNV; ++v) {
      const int64_t w = nr - v * kLanes;
      Vf x = zero();
      if (w >= kLanes)
        x = load(b + p * ldb + v * kLanes);
      else if (w > 0)
        x = load(b + p * ldb + v * kLanes, mask_first(w));
      store(bp + p * kGemmNR + v * kLanes, x);
    }
}

// Prefetches rows [p0, p1) of the B strip at b (kGemmNR floats each, row stride ldb).
inline void gemm_prefetch_b(const float *b, int64_t ldb, int64_t p0, int64_t p1, int64_t nr) {
  const int64_t lines = (nr * 4 + 63) / 64;
  for (int64_t p = p0; p < p1; ++p)
    for (int64_t l = 0; l < lines; ++l)
      _mm_prefetch(reinterpret_cast<const char *>(b + p * ldb) + 64 * l, _MM_HINT_T0);
}

// C(I, J) += A(I, P) B(P, J) with A(i, p) = a[i*ri + p*rp]; one of ri, rp must be 1.
// See the top of the file for the loop nest. When A's rows are contiguous along p (dy for dx),
// full micro-panels are read in place and only the ragged last panel of a block is packed; when
// they are not (dy^T for dW, where each p would touch a new cache line), the block is packed.
// While one B strip is in use, the next one's source rows are prefetched, spread over the
// micro-kernel calls, so packing it does not wait on memory.
void gemm_acc(float *c, int64_t ldc, const float *a, int64_t ri, int64_t rp, const float *b,
              int64_t ldb, int64_t I, int64_t J, int64_t P) {
  if (I <= 0 || J <= 0 || P <= 0) return;
  alignas(64) float bp[kGemmKC * kGemmNR];
  alignas(64) float ap[kGemmMC * kGemmKC];
  const bool along_p = rp == 1;
  for (int64_t pc = 0; pc < P; pc += kGemmKC) {
    const int64_t kc = min64(kGemmKC, P - pc);
    for (int64_t ic = 0; ic < I; ic += kGemmMC) {
      const int64_t mc = min64(kGemmMC, I - ic);
      const int64_t panels = (mc + kGemmMR - 1) / kGemmMR;
      const int64_t edge_rows = mc % kGemmMR;  // rows of the ragged last panel (0: none)
      const float *ablk = a + ic * ri + pc * rp;
      if (!along_p)
        gemm_pack_a_cols(ap, ablk, rp, mc, kc);
      else if (edge_rows)
        gemm_pack_a(ap + (panels - 1) * kc * kGemmMR, ablk + (mc - edge_rows) * ri, ri, rp,
                    edge_rows, kc);
      const float *bblk = b + pc * ldb;
      for (int64_t jc = 0; jc < J; jc += kGemmNR) {
        const int64_t nr = min64(kGemmNR, J - jc);
        gemm_pack_b(bp, bblk + jc, ldb, kc, nr);
        const int64_t jn = jc + kGemmNR, nr_next = min64(kGemmNR, J - jn);
        const int64_t pf_step = (kc + panels - 1) / panels;
        for (int64_t s = 0; s < panels; ++s) {
          if (jn < J)
            gemm_prefetch_b(bblk + jn, ldb, min64(kc, s * pf_step), min64(kc, (s + 1) * pf_step),
                            nr_next);
          float *cs = c + (ic + s * kGemmMR) * ldc + jc;
          const int64_t rows = min64(kGemmMR, mc - s * kGemmMR);
          if (along_p && rows == kGemmMR)
            gemm_micro<kGemmMR, kGemmNV, true>(cs, ldc, ablk + s * kGemmMR * ri, ri, 1, bp, kc,
                                               rows, nr);
          else
            gemm_micro<kGemmMR, kGemmNV, false>(cs, ldc, ap + s * kc * kGemmMR, 1, kGemmMR, bp,
                                                kc, rows, nr);
        }
      }
    }
  }
}

// dx(M, K) += dy(M, N) W(N, K): C = dx, A = dy (rows along n), B = W.
void matmul_bwd_x(float *dx, int64_t lddx, const float *dy, int64_t lddy, const float *w,
                  int64_t M, int64_t N, int64_t K) {
  gemm_acc(dx, lddx, dy, lddy, 1, w, K, M, K, N);
}

// dw(N, K) += dy^T x: C = dw, A = dy^T (A(n, m) = dy[m*lddy + n]), B = x.
// db(N) += column sums of dy, summed over m in order, a few vectors of n at a time.
void matmul_bwd_w(float *dw, float *db, const float *dy, int64_t lddy, const float *x, int64_t ldx,
                  int64_t M, int64_t N, int64_t K) {
  gemm_acc(dw, K, dy, 1, lddy, x, ldx, N, K, M);
  if (!db || M <= 0) return;
  for (int64_t n0 = 0; n0 < N; n0 += 4 * kLanes) {
    Vf acc[4] = {zero(), zero(), zero(), zero()};
    const int64_t width = min64(4 * kLanes, N - n0);
    for (int64_t m = 0; m < M; ++m) {
      const float *row = dy + m * lddy + n0;
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) {
        const int64_t w = width - v * kLanes;
        if (w >= kLanes)
          acc[v] = acc[v] + load(row + v * kLanes);
        else if (w > 0)
          acc[v] = acc[v] + load(row + v * kLanes, mask_first(w));
      }
    }
    for (int v = 0; v < 4; ++v) {
      const int64_t w = width - v * kLanes;
      float *d = db + n0 + v * kLanes;
      if (w >= kLanes)
        store(d, load(d) + acc[v]);
      else if (w > 0)
        store(d, load(d, mask_first(w)) + acc[v], mask_first(w));
    }
  }
}

}  // namespace
}  // namespace lmkit::kernels::LMKIT_SIMD_ISA
