// The quantized matmul kernels, written once over 256-bit integer vectors and compiled per ISA
// (quant_avx2.cpp: pmaddubsw/pmaddwd; quant_avx512.cpp: the same code with AVX-512 VNNI's
// vpdpbusd/vpdpwssd), ending in that ISA's QuantKernels. Not included anywhere else; the readable
// versions are ref/quant_matmul.cpp.
//
// How a dot product is formed, per 32-value block b of a 32-value format:
//   x_q    = round(x * 127 / amax_b)  (int8, the same bits as ref);  u = the stored integers (u8)
//   isum_b = sum u * x_q  - off * sum(x_q)   (exact int32 lane sums; off = 8 for q4_0, 16 for
//            q5_0, started in lane 0 of the accumulator)
//   acc   += float(isum lanes) * (d_w * d_x)        (8 float lanes, one FMA per block)
//   corr  += (m_w * d_x) * float(sum x_q)            (q4_1/q5_1 only: their float min m)
//   y      = hsum(acc) + corr (+ bias)
// Per 256-value super-block for the K-quants: the sub-block scales multiply the integer partial
// sums (pmaddwd / vpdpwssd), then one FMA for d and one for the mins/offsets (from the x sums per
// 16) go into the same lanes. q4_0x8 (pack_weight's q4_0) converts its 8 scales at once and takes
// the -8 offsets of its 8 blocks in one FMA. q8_0 has its own driver (namespace q8 below), whose
// vectors hold 8 outputs instead of 8 partial sums of one. ref sums the same integers in double, so
// the tables differ from ref only by float rounding (NMSE ~1e-14; bit-equal when every float step
// is exact).
//
// ODR safety as simd.h: everything has internal linkage; no STL, no dtype.h inline helpers.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/quant_tables.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512DQ__) && defined(__AVX512VNNI__) && defined(__FMA__) && defined(__F16C__)
#define LMKIT_QUANT_ISA avx512
#define LMKIT_QUANT_VNNI 1
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define LMKIT_QUANT_ISA avx2
#define LMKIT_QUANT_VNNI 0
#else
#error "kernels/cpu/quant_simd.h needs -mavx2 -mfma -mf16c (+ -mavx512{f,bw,vl,dq,vnni})"
#endif

// The per-block helpers must inline into the tile loops (their accumulators then stay in
// registers); GCC otherwise keeps the larger ones out of line.
#define LMKIT_QINLINE inline __attribute__((always_inline))

namespace lmkit::kernels::LMKIT_QUANT_ISA {
namespace {

// ---------------------------------------------------------------------------------------------
// Vector helpers.

inline float h2f(const uint8_t *p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}
inline __m128i load128(const void *p) {
  return _mm_loadu_si128(static_cast<const __m128i *>(p));
}
inline __m256i load256(const void *p) {
  return _mm256_loadu_si256(static_cast<const __m256i *>(p));
}
inline __m256i bytes(int v) {
  return _mm256_set1_epi8(char(v));
}

// acc + sum over groups of 4 of u[i] * s[i] (u unsigned bytes, s signed), int32 lanes. The AVX2
// form goes through int16 pair sums: exact while u <= 128 and |s| <= 127 (or u <= 63 with any s).
inline __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) {
#if LMKIT_QUANT_VNNI
  return _mm256_dpbusd_epi32(acc, u, s);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}
// acc + pairwise sums of p[i] * c[i] (int16 lanes), int32 lanes.
inline __m256i madd_acc(__m256i acc, __m256i p, __m256i c) {
#if LMKIT_QUANT_VNNI
  return _mm256_dpwssd_epi32(acc, p, c);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p, c));
#endif
}

// Fixed-tree horizontal sums (the same bits whichever tile an output lands in).
inline float hsum(__m256 a) {
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
  return _mm_cvtss_f32(s1);
}
inline int hsum_i32(__m256i a) {
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
  __m128i s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
  __m128i s1 = _mm_add_epi32(s2, _mm_shuffle_epi32(s2, 1));
  return _mm_cvtsi128_si32(s1);
}
inline float hmax(__m256 a) {
  __m128 s4 = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  __m128 s2 = _mm_max_ps(s4, _mm_movehl_ps(s4, s4));
  __m128 s1 = _mm_max_ss(s2, _mm_movehdup_ps(s2));
  return _mm_cvtss_f32(s1);
}

inline int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

// ---------------------------------------------------------------------------------------------
// Activation quantization: x (n) -> ActQ8, one scale per QB values, one sum per G values.
// Bit-identical to ref: amax is exact in any order, d and 1/d are the same scalar divisions, and
// cvtps rounds half to even as ref's nearbyint does.

constexpr float kTinyAmax = 1e-30f;

template <int QB, int G>
inline void quantize_act(ActQ8 a, const float *x, int64_t n) {
  const __m256 sign = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b * QB < n; ++b) {
    const float *xb = x + b * QB;
    __m256 mx = _mm256_setzero_ps();
    for (int j = 0; j < QB; j += 8)
      mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(xb + j), sign));
    const float amax = hmax(mx);
    const bool zero = !(amax > kTinyAmax);
    a.d[b] = zero ? 0.0f : amax / 127.0f;
    const __m256 id = _mm256_set1_ps(zero ? 0.0f : 127.0f / amax);
    int8_t *q = a.qs + b * QB;
    for (int j = 0; j < QB; j += 32) {
      __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + j), id));
      __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + j + 8), id));
      __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + j + 16), id));
      __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + j + 24), id));
      if constexpr (G == 32) {
        a.sum[b * QB / 32 + j / 32] =
            int16_t(hsum_i32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3))));
      } else {
        static_assert(G == 16, "sums per 16 or 32 values");
        a.sum[(b * QB + j) / 16] = int16_t(hsum_i32(_mm256_add_epi32(i0, i1)));
        a.sum[(b * QB + j) / 16 + 1] = int16_t(hsum_i32(_mm256_add_epi32(i2, i3)));
      }
      // packs interleaves 128-bit lanes; the permute restores value order.
      __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
      _mm256_storeu_si256(reinterpret_cast<__m256i *>(q + j),
                          _mm256_permutevar8x32_epi32(p, order));
    }
  }
}

void quantize_act_32(ActQ8 a, const float *x, int64_t n) {
  quantize_act<32, 32>(a, x, n);
}
void quantize_act_256(ActQ8 a, const float *x, int64_t n) {
  quantize_act<256, 16>(a, x, n);
}

// ---------------------------------------------------------------------------------------------
// Weight formats. Each gives, per block: Pre (scales and, for 32-value blocks, the 32 unsigned
// integers u), dot<MR> (integer sums against MR quantized x blocks, int32 lanes), the float scale
// d of those sums and the coefficient c of a float correction  c * d_x * (x sums).

struct Pre32 {
  __m256i u;   // the 32 stored integers, value order, as unsigned bytes (q8_0: signed)
  float d, c;  // scale; min (q4_1, q5_1 only)
};

// u = 32 nibbles in value order from 16 bytes (low nibbles = values 0-15, high = 16-31).
inline __m256i nibbles32(const uint8_t *qs) {
  const __m128i q = load128(qs);
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), bytes(0x0F));
}
// 0x10 in byte j where bit j of the 32-bit qh is set.
inline __m256i high_bits32(const uint8_t *qh_bytes) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
#if LMKIT_QUANT_VNNI
  return _mm256_maskz_mov_epi8(__mmask32(qh), bytes(0x10));
#else
  const __m256i spread =
      _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  const __m256i b = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(int(qh)), spread), bit);
  return _mm256_and_si256(_mm256_cmpeq_epi8(b, bit), bytes(0x10));
#endif
}

// Integer dots of u with MR x blocks. Off > 0: the weights are u - Off, and -Off * sum(x_q) starts
// lane 0 of the accumulator, so the offset costs one move instead of float work per block.
template <int MR, int Off>
LMKIT_QINLINE void dot32(const Pre32 &p, const int8_t *const *xq, const int16_t *const *xs,
                         __m256i *out) {
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) {
    const __m256i init = Off ? _mm256_castsi128_si256(_mm_cvtsi32_si128(-Off * int(*xs[m])))
                             : _mm256_setzero_si256();
    out[m] = dot_u8s8(init, p.u, load256(xq[m]));
  }
}

struct Q4_0 {
  static constexpr int64_t kQB = 32, kBytes = 18;
  static constexpr int64_t kAct = 32;
  static constexpr bool kCorr = false;  // value = d (u - 8): integer offset 8
  LMKIT_QINLINE static void prep(const uint8_t *b, Pre32 &p) {
    p.d = h2f(b);
    p.u = nibbles32(b + 2);
  }
  template <int MR>
  LMKIT_QINLINE static void dot(const uint8_t *, const Pre32 &p, const int8_t *const *xq,
                                const int16_t *const *xs, __m256i *out) {
    dot32<MR, 8>(p, xq, xs, out);
  }
};
struct Q4_1 {
  static constexpr int64_t kQB = 32, kBytes = 20;
  static constexpr int64_t kAct = 32;
  static constexpr bool kCorr = true;  // value = d u + m: corr = m * sum(x_q)
  LMKIT_QINLINE static void prep(const uint8_t *b, Pre32 &p) {
    p.d = h2f(b);
    p.c = h2f(b + 2);
    p.u = nibbles32(b + 4);
  }
  template <int MR>
  LMKIT_QINLINE static void dot(const uint8_t *, const Pre32 &p, const int8_t *const *xq,
                                const int16_t *const *xs, __m256i *out) {
    dot32<MR, 0>(p, xq, xs, out);
  }
};
struct Q5_0 {
  static constexpr int64_t kQB = 32, kBytes = 22;
  static constexpr int64_t kAct = 32;
  static constexpr bool kCorr = false;  // value = d (u - 16): integer offset 16
  LMKIT_QINLINE static void prep(const uint8_t *b, Pre32 &p) {
    p.d = h2f(b);
    p.u = _mm256_or_si256(nibbles32(b + 6), high_bits32(b + 2));
  }
  template <int MR>
  LMKIT_QINLINE static void dot(const uint8_t *, const Pre32 &p, const int8_t *const *xq,
                                const int16_t *const *xs, __m256i *out) {
    dot32<MR, 16>(p, xq, xs, out);
  }
};
struct Q5_1 {
  static constexpr int64_t kQB = 32, kBytes = 24;
  static constexpr int64_t kAct = 32;
  static constexpr bool kCorr = true;  // value = d u + m
  LMKIT_QINLINE static void prep(const uint8_t *b, Pre32 &p) {
    p.d = h2f(b);
    p.c = h2f(b + 2);
    p.u = _mm256_or_si256(nibbles32(b + 8), high_bits32(b + 4));
  }
  template <int MR>
  LMKIT_QINLINE static void dot(const uint8_t *, const Pre32 &p, const int8_t *const *xq,
                                const int16_t *const *xs, __m256i *out) {
    dot32<MR, 0>(p, xq, xs, out);
  }
};
// ---- K-quants ----

struct PreK {
  __m256i sc;    // q4_K/q5_K: the 8 sub-block scales as bytes, in both 128-bit lanes
  __m256i mn16;  // q4_K/q5_K: mins as int16, each twice (pairs with the 16 sums per 16 values)
  float d, c;
};

// The 6-bit scales and mins of a q4_K/q5_K super-block (q4k_scale_min, 4 at a time per u32
// lane): with the 12 bytes as u32s a, b, c, the scale bytes are a & 0x3f.. (sub-blocks 0-3) and
// (c & 0x0f..) | ((a >> 6) & 0x03..) << 4 (4-7); the mins the same with b and c >> 4.
LMKIT_QINLINE void k_scales(const uint8_t *s12, PreK &p) {
  const __m128i v = load128(s12);  // a, b, c (+ 4 bytes of qh/qs, unused)
  const __m128i lo = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0));  // a, c, b, c
  const __m128i hi = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0));  // a, a, b, b
  const __m128i t1 = _mm_and_si128(_mm_srlv_epi32(lo, _mm_setr_epi32(0, 0, 0, 4)),
                                   _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
  const __m128i t2 = _mm_and_si128(_mm_slli_epi32(_mm_srli_epi32(hi, 6), 4),
                                   _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
  p.sc = _mm256_broadcastsi128_si256(_mm_or_si128(t1, t2));  // sc 0-7, then mn 0-7
  // int16 lane 2i and 2i+1 <- mn_i: bytes 8.. of each lane hold mn_0..7.
  const __m256i dup =
      _mm256_setr_epi8(8, -1, 8, -1, 9, -1, 9, -1, 10, -1, 10, -1, 11, -1, 11, -1, 12, -1, 12, -1,
                       13, -1, 13, -1, 14, -1, 14, -1, 15, -1, 15, -1);
  p.mn16 = _mm256_shuffle_epi8(p.sc, dup);
}
// int16 broadcast of scale byte i of p.sc (zero-extended).
inline __m256i k_scale16(const __m256i sc, int i) {
  return _mm256_shuffle_epi8(sc, _mm256_set1_epi16(short(0xFF00 | i)));
}

template <bool Q5>
struct Q45K {
  static constexpr int64_t kQB = 256, kBytes = Q5 ? 176 : 144, kAct = 256;
  static constexpr bool kCorr = true;  // value = d sc q - dmin mn: corr = -dmin sum mn * xsum
  static constexpr int kQs = Q5 ? 48 : 16;
  LMKIT_QINLINE static void prep(const uint8_t *b, PreK &p) {
    p.d = h2f(b);
    p.c = -h2f(b + 2);
    k_scales(b + 4, p);
  }
  template <int MR>
  LMKIT_QINLINE static void dot(const uint8_t *b, const PreK &p, const int8_t *const *xq,
                                const int16_t *const *, __m256i *out) {
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) out[m] = _mm256_setzero_si256();
    const __m256i qh = Q5 ? load256(b + 16) : _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      const __m256i q = load256(b + kQs + 32 * g);
      __m256i lo = _mm256_and_si256(q, bytes(0x0F));
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), bytes(0x0F));
      if constexpr (Q5) {
        // bit 2g of qh[l] -> bit 4 of value l, bit 2g+1 -> bit 4 of value 32 + l.
        const __m256i b0 = _mm256_and_si256(qh, bytes(1 << (2 * g)));
        const __m256i b1 = _mm256_and_si256(qh, bytes(2 << (2 * g)));
        lo = _mm256_or_si256(
            lo, 2 * g <= 4 ? _mm256_slli_epi16(b0, 4 - 2 * g) : _mm256_srli_epi16(b0, 2 * g - 4));
        hi = _mm256_or_si256(hi, 2 * g + 1 <= 4 ? _mm256_slli_epi16(b1, 3 - 2 * g)
                                                : _mm256_srli_epi16(b1, 2 * g - 3));
      }
      const __m256i s_lo = k_scale16(p.sc, 2 * g), s_hi = k_scale16(p.sc, 2 * g + 1);
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) {
        // u <= 31, |x| <= 127: the int16 pair sums of maddubs are exact.
        out[m] = madd_acc(out[m], _mm256_maddubs_epi16(lo, load256(xq[m] + 64 * g)), s_lo);
        out[m] = madd_acc(out[m], _mm256_maddubs_epi16(hi, load256(xq[m] + 64 * g + 32)), s_hi);
      }
    }
  }
  // sum_i mn_i (xsum_{2i} + xsum_{2i+1}), as 8 int32 lanes of partial sums.
  LMKIT_QINLINE static __m256i corr(const PreK &p, const int16_t *xsum16) {
    return _mm256_madd_epi16(load256(xsum16), p.mn16);
  }
};

struct Q6K {
  static constexpr int64_t kQB = 256, kBytes = 210, kAct = 256;
  static constexpr bool kCorr = true;  // value = d sc (u - 32): corr = -32 d sum sc_i xsum_i
  LMKIT_QINLINE static void prep(const uint8_t *b, PreK &p) {
    p.d = h2f(b + 208);
    p.c = -32.0f * p.d;
    p.sc = _mm256_cvtepi8_epi16(load128(b + 192));  // 16 int16 scales
  }
  template <int MR>
  LMKIT_QINLINE static void dot(const uint8_t *b, const PreK &p, const int8_t *const *xq,
                                const int16_t *const *, __m256i *out) {
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) out[m] = _mm256_setzero_si256();
    const __m256i m4 = bytes(0x0F), m2 = bytes(3);
#pragma GCC unroll 2
    for (int half = 0; half < 2; ++half) {
      const uint8_t *ql = b + 64 * half, *qh_p = b + 128 + 32 * half;
      const __m256i l0 = load256(ql), l1 = load256(ql + 32), qh = load256(qh_p);
      __m256i u[4];
      u[0] =
          _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
      u[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
      u[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
      u[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
      // Scales of this half in both lanes; quarter v takes scale 2v in its low lane (values
      // 0-15) and 2v + 1 in its high lane (16-31).
      const __m256i sh =
          half ? _mm256_permute4x64_epi64(p.sc, 0xEE) : _mm256_permute4x64_epi64(p.sc, 0x44);
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) {
        const __m256i s = _mm256_shuffle_epi8(
            sh,
            _mm256_setr_epi8(char(4 * v), char(4 * v + 1), char(4 * v), char(4 * v + 1),
                             char(4 * v), char(4 * v + 1), char(4 * v), char(4 * v + 1),
                             char(4 * v), char(4 * v + 1), char(4 * v), char(4 * v + 1),
                             char(4 * v), char(4 * v + 1), char(4 * v), char(4 * v + 1),
                             char(4 * v + 2), char(4 * v + 3), char(4 * v + 2), char(4 * v + 3),
                             char(4 * v + 2), char(4 * v + 3), char(4 * v + 2), char(4 * v + 3),
                             char(4 * v + 2), char(4 * v + 3), char(4 * v + 2), char(4 * v + 3),
                             char(4 * v + 2), char(4 * v + 3), char(4 * v + 2), char(4 * v + 3)));
#pragma GCC unroll 8
        for (int m = 0; m < MR; ++m)  // u <= 63: maddubs pair sums exact
          out[m] =
              madd_acc(out[m], _mm256_maddubs_epi16(u[v], load256(xq[m] + 128 * half + 32 * v)), s);
      }
    }
  }
  // sum_i sc_i xsum_i over the 16 groups of 16, as 8 int32 lanes of partial sums.
  LMKIT_QINLINE static __m256i corr(const PreK &p, const int16_t *xsum16) {
    return _mm256_madd_epi16(load256(xsum16), p.sc);
  }
};

template <class F>
struct PreOf {
  using type = PreK;
};
template <>
struct PreOf<Q4_0> {
  using type = Pre32;
};
template <>
struct PreOf<Q4_1> {
  using type = Pre32;
};
template <>
struct PreOf<Q5_0> {
  using type = Pre32;
};
template <>
struct PreOf<Q5_1> {
  using type = Pre32;
};

// One weight block of F against MR quantized x blocks, into acc[m] (8 float lanes) and corr[m].
// xd[m]: the x scale(s) of this block; xs[m]: its sums.
template <class F, int MR>
LMKIT_QINLINE void accum_generic(const uint8_t *blk, const int8_t *const *xq,
                                 const float *const *xd, const int16_t *const *xs, __m256 *acc,
                                 float *corr) {
  typename PreOf<F>::type p;
  F::prep(blk, p);
  __m256i is[MR];
  F::template dot<MR>(blk, p, xq, xs, is);
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) {
    const float dx = *xd[m];
    acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[m]), _mm256_set1_ps(p.d * dx), acc[m]);
    if constexpr (F::kQB == kQKK)  // offsets and mins, in lanes beside the products
      acc[m] =
          _mm256_fmadd_ps(_mm256_cvtepi32_ps(F::corr(p, xs[m])), _mm256_set1_ps(p.c * dx), acc[m]);
    else if constexpr (F::kCorr)  // q4_1 / q5_1: the min m times the block's sum of x_q
      corr[m] = corr[m] + (p.c * dx) * float(*xs[m]);
  }
}

// q4_0 re-packed by pack_weight (BlockQ4_0x8): eight q4_0 blocks whose scales sit together (one
// conversion for 8) and whose nibbles pair blocks 2p and 2p+1 in 32 bytes (low nibble: block 2p
// value i, high: block 2p+1 value i), so unpacking takes an and or a shift + and per block.
struct Q4_0x8 {
  static constexpr int64_t kQB = 256, kBytes = 144, kAct = 32;
  static constexpr bool kCorr = false;
  template <int MR>
  LMKIT_QINLINE static void accum(const uint8_t *blk, const int8_t *const *xq,
                                  const float *const *xd, const int16_t *const *xs, __m256 *acc,
                                  float *) {
    const __m256 dw = _mm256_cvtph_ps(load128(blk));
    __m256 sc[MR];
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      sc[m] = _mm256_mul_ps(dw, _mm256_loadu_ps(xd[m]));  // d_w d_x of the 8 blocks
      // The -8 offsets: -8 d_w d_x sum(x_q) for the 8 blocks at once, in the same lanes.
      const __m256 xsum = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(load128(xs[m])));
      acc[m] = _mm256_fmadd_ps(_mm256_mul_ps(sc[m], _mm256_set1_ps(-8.0f)), xsum, acc[m]);
    }
#pragma GCC unroll 4
    for (int pr = 0; pr < 4; ++pr) {
      const __m256i q = load256(blk + 16 + 32 * pr);
      const __m256i u[2] = {_mm256_and_si256(q, bytes(0x0F)),
                            _mm256_and_si256(_mm256_srli_epi16(q, 4), bytes(0x0F))};
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const int j = 2 * pr + h;
#pragma GCC unroll 8
        for (int m = 0; m < MR; ++m) {
          const __m256i p = dot_u8s8(_mm256_setzero_si256(), u[h], load256(xq[m] + 32 * j));
          const __m256 s = _mm256_permutevar8x32_ps(sc[m], _mm256_set1_epi32(j));
          acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc[m]);
        }
      }
    }
  }
};

template <class F>
struct HasAccum {
  static constexpr bool value = false;
};
template <>
struct HasAccum<Q4_0x8> {
  static constexpr bool value = true;
};

// ---------------------------------------------------------------------------------------------
// The matmul driver.

// x rows quantized per call, kept on the stack: at most kActValues values at a time.
constexpr int64_t kActValues = 32768;

struct Tile {
  const uint8_t *w;  // W row 0
  size_t row_bytes;
  const int8_t *qs;    // quantized x rows of this chunk: row i at qs + i * kk
  const float *d;      // scales: row i at d + i * (kk / QB)
  const int16_t *sum;  // sums: row i at sum + i * (kk / G)
  int64_t kk;          // values in this chunk
  int64_t k_block0;    // first block of this chunk in a W row
  float *y;
  int64_t ldy;
  const float *bias;
  bool first, last;  // first / last K chunk
};

constexpr int64_t kPrefetchMaxRowBytes = 4096;
constexpr int64_t kPrefetchTiles = 2;

// y[m, n0 + r] for m < MR, r < NR over this chunk's blocks.
template <class F, int MR, int NR>
inline void mm_tile(const Tile &t, int64_t m0, int64_t n0) {
  constexpr int64_t G = F::kAct == 32 ? 32 : 16;
  const int64_t nb = t.kk / F::kQB, ld_d = t.kk / F::kAct, ld_s = t.kk / G;
  __m256 acc[NR][MR];
  float corr[NR][MR];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      acc[r][m] = _mm256_setzero_ps();
      corr[r][m] = 0;
    }
  const uint8_t *w0 = t.w + size_t(n0) * t.row_bytes + size_t(t.k_block0 * F::kBytes);
  // Decode over short rows: the hardware prefetcher does not ramp up on NR streams of a few
  // cache lines each, so fetch the tile kPrefetchTiles ahead (contiguous rows) as this one is
  // consumed, a block column at a time.
  const bool prefetch = MR == 1 && t.row_bytes <= size_t(kPrefetchMaxRowBytes);
  const char *pf = reinterpret_cast<const char *>(w0) + kPrefetchTiles * NR * t.row_bytes;
  for (int64_t b = 0; b < nb; ++b) {
    if (prefetch) {
#pragma GCC unroll 16
      for (int64_t l = 0; l < (NR * F::kBytes + 63) / 64; ++l)
        _mm_prefetch(pf + b * NR * F::kBytes + 64 * l, _MM_HINT_T0);
    }
    const int8_t *xq[MR];
    const float *xd[MR];
    const int16_t *xs[MR];
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      xq[m] = t.qs + (m0 + m) * t.kk + b * F::kQB;
      xd[m] = t.d + (m0 + m) * ld_d + b * (F::kQB / F::kAct);
      xs[m] = t.sum + (m0 + m) * ld_s + b * (F::kQB / G);
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      const uint8_t *blk = w0 + size_t(r) * t.row_bytes + size_t(b * F::kBytes);
      if constexpr (HasAccum<F>::value)
        F::template accum<MR>(blk, xq, xd, xs, acc[r], corr[r]);
      else
        accum_generic<F, MR>(blk, xq, xd, xs, acc[r], corr[r]);
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      float v = F::kCorr && F::kQB == 32 ? hsum(acc[r][m]) + corr[r][m] : hsum(acc[r][m]);
      float *yp = t.y + (m0 + m) * t.ldy + n0 + r;
      if (!t.first) v = *yp + v;
      if (t.last && t.bias) v = v + t.bias[n0 + r];
      *yp = v;
    }
}

#if LMKIT_QUANT_VNNI
constexpr int kMR = 4, kNR = 2;  // 8 float + 4 int accumulators of 32 registers
#else
constexpr int kMR = 2, kNR = 2;  // 4 float + 2 int accumulators of 16 registers
#endif
constexpr int kNR1 = 4;  // M = 1: four W rows in flight

template <class F, int MR, int NR>
void mm_rows(const Tile &t, int64_t m0, int64_t n_begin, int64_t n_end) {
  int64_t n = n_begin;
  for (; n + NR <= n_end; n += NR) mm_tile<F, MR, NR>(t, m0, n);
  for (; n < n_end; ++n) mm_tile<F, MR, 1>(t, m0, n);
}

template <class F>
void mm_rows_any(int64_t mr, const Tile &t, int64_t m0, int64_t n_begin, int64_t n_end) {
  static_assert(kMR <= 4, "extend the switch below");
  switch (mr) {
    case 1:
      return mm_rows<F, 1, kNR1>(t, m0, n_begin, n_end);
    case 2:
      return mm_rows<F, 2, kNR>(t, m0, n_begin, n_end);
#if LMKIT_QUANT_VNNI
    case 3:
      return mm_rows<F, 3, kNR>(t, m0, n_begin, n_end);
    case 4:
      return mm_rows<F, 4, kNR>(t, m0, n_begin, n_end);
#endif
    default:
      return;
  }
}

// K = 0: y = bias (or 0).
void fill_bias(float *y, int64_t ldy, const float *bias, int64_t M, int64_t N) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) y[m * ldy + n] = bias ? 0.0f + bias[n] : 0.0f;
}

// W is walked in panels of about 256 KiB (a multiple of `step` rows), kept in L2 while the tiles
// of x rows pass over it.
int64_t panel_rows(size_t row_bytes, int64_t step) {
  const int64_t p = (256 * 1024) / int64_t(row_bytes > 0 ? row_bytes : 1);
  return p < step ? step : p - p % step;
}

template <class F>
void matmul(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w, const float *bias,
            int64_t M, int64_t N, int64_t K) {
  if (M <= 0 || N <= 0) return;
  constexpr int64_t QB = F::kQB, A = F::kAct, G = A == 32 ? 32 : 16;
  alignas(64) int8_t qs[kActValues];
  alignas(64) float d[kActValues / 32];
  alignas(64) int16_t sum[kActValues / 16];
  // K chunks depend on K only (never on M), so every y[m, n] sees the same float operations.
  const int64_t kc = min64(K, kActValues);
  const int64_t rows = kc > 0 ? min64(M, kActValues / kc) : M;
  Tile t;
  t.w = static_cast<const uint8_t *>(w);
  t.row_bytes = size_t(K / QB * F::kBytes);
  t.qs = qs;
  t.d = d;
  t.sum = sum;
  t.ldy = ldy;
  t.bias = bias;
  if (K == 0) return fill_bias(y, ldy, bias, M, N);
  int64_t panel = panel_rows(t.row_bytes, kNR);
  for (int64_t m0 = 0; m0 < M; m0 += rows) {
    const int64_t mt = min64(rows, M - m0);
    if (mt <= kMR) panel = N;  // one pass over W anyway
    for (int64_t k0 = 0; k0 < K; k0 += kc) {
      const int64_t kk = min64(kc, K - k0);
      for (int64_t i = 0; i < mt; ++i) {
        const ActQ8 a{qs + i * kk, d + i * (kk / A), sum + i * (kk / G)};
        if constexpr (A == 32)
          quantize_act_32(a, x + (m0 + i) * ldx + k0, kk);
        else
          quantize_act_256(a, x + (m0 + i) * ldx + k0, kk);
      }
      t.kk = kk;
      t.k_block0 = k0 / QB;
      t.y = y + m0 * ldy;
      t.first = k0 == 0;
      t.last = k0 + kk >= K;
      for (int64_t n0 = 0; n0 < N; n0 += panel) {
        const int64_t n1 = min64(N, n0 + panel);
        for (int64_t i = 0; i < mt; i += kMR) mm_rows_any<F>(min64(kMR, mt - i), t, i, n0, n1);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// q8_0: its own driver, with one float lane per output.
//
// A q8_0 block needs no unpacking, so the generic tiles' per-block work for one output (a
// convert and an FMA over 8 lanes that all belong to that output) costs more than its dot
// product. Here the 8 lanes of a vector are 8 outputs:
//  - rows8 (groups of 8 x rows; 2 to 7 rows left over make one zero-padded group): the x rows
//    are interleaved 4 bytes per lane, and each W row's 4 bytes are broadcast. With VNNI, w + 128
//    is the unsigned side of vpdpbusd and each lane starts at -128 * sum(x_q); AVX2 moves w's sign
//    onto x (pmaddubsw).
//  - cols8 (decode, and a single row left over): 8 W rows against one x row, each row's 8
//    partial dots reduced into its lane.
// Both compute, for each output, y = fma(float(isum_b), d_w,b * d_x,b, y) block after block from
// y = 0 (then + bias). So y[m, n] does not depend on M, on the split of N or on the path that took
// it, bit for bit.

namespace q8 {

constexpr int64_t kQB = 32, kBytes = 34;
#if LMKIT_QUANT_VNNI
constexpr int kNR = 4, kRG = 2;  // rows8 tile: 4 W rows x 2 groups: 8 int + 8 float accumulators
#else
constexpr int kNR = 2, kRG = 2;  // 4 float + 4 int accumulators of 16 registers
#endif

inline uint32_t load_u32(const uint8_t *p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

struct Tile {
  const uint8_t *w;  // W row 0, block k_block0
  size_t row_bytes;
  int64_t nb;  // blocks in this K chunk
  float *y;    // row 0 of this M chunk
  int64_t ldy;
  const float *bias;
  bool first, last;  // first / last K chunk
};

// y[m, n] = v (+ the earlier K chunks, + bias after the last).
inline void put(const Tile &t, int64_t m, int64_t n, float v) {
  float *yp = t.y + m * t.ldy + n;
  if (!t.first) v = *yp + v;
  if (t.last && t.bias) v = v + t.bias[n];
  *yp = v;
}

// 8 x rows of one K chunk, interleaved: per block b, qs + 256 b holds 8 vectors (one per 4-value
// step) whose lane l is row l's 4 values; d + 8 b the rows' scales; start + 8 b the lanes' start
// values (VNNI: -128 * sum(x_q), else 0).
struct Group {
  const int8_t *qs;
  const float *d;
  const int32_t *start;
  int rows;  // lanes that hold x rows (8, or fewer in a zero-padded last group)
};

// A W row's 4 bytes, broadcast: `a` is the unsigned side of the dot, `s` the signed w.
struct WBcast {
  __m256i a, s;
};
LMKIT_QINLINE WBcast w_bcast(const uint8_t *p) {
  const __m256i w = _mm256_set1_epi32(int(load_u32(p)));
#if LMKIT_QUANT_VNNI
  return {_mm256_xor_si256(w, bytes(0x80)), w};  // w + 128
#else
  return {_mm256_abs_epi8(w), w};
#endif
}
LMKIT_QINLINE __m256i dot_bcast(__m256i acc, const WBcast &w, __m256i x) {
#if LMKIT_QUANT_VNNI
  return _mm256_dpbusd_epi32(acc, w.a, x);
#else
  return dot_u8s8(acc, w.a, _mm256_sign_epi8(x, w.s));  // |w| <= 128, |x| <= 127: exact
#endif
}

// Groups g[0 .. RG) (x rows m0 + 8 i + l) against W rows n0 .. n0 + NR. `prefetch`: fetch the W
// rows ahead (the first pass over a panel of short rows reads W from memory).
template <int NR, int RG>
void rows8_tile(const Tile &t, const Group *g, int64_t m0, int64_t n0, bool prefetch) {
  __m256 acc[NR][RG];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
    for (int i = 0; i < RG; ++i) acc[r][i] = _mm256_setzero_ps();
  const uint8_t *w0 = t.w + size_t(n0) * t.row_bytes;
  const char *pf = reinterpret_cast<const char *>(w0) + kPrefetchTiles * kNR1 * t.row_bytes;
  for (int64_t b = 0; b < t.nb; ++b) {
    if (prefetch) {
#pragma GCC unroll 8
      for (int64_t l = 0; l < (NR * kBytes + 63) / 64; ++l)
        _mm_prefetch(pf + b * NR * kBytes + 64 * l, _MM_HINT_T0);
    }
    const uint8_t *wb[NR];
    __m256i is[NR][RG];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      wb[r] = w0 + size_t(r) * t.row_bytes + size_t(b * kBytes);
#pragma GCC unroll 4
      for (int i = 0; i < RG; ++i) is[r][i] = load256(g[i].start + 8 * b);
    }
#pragma GCC unroll 8
    for (int s = 0; s < 8; ++s) {
      __m256i xv[RG];
#pragma GCC unroll 4
      for (int i = 0; i < RG; ++i) xv[i] = load256(g[i].qs + 256 * b + 32 * s);
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) {
        const WBcast wv = w_bcast(wb[r] + 2 + 4 * s);
#pragma GCC unroll 4
        for (int i = 0; i < RG; ++i) is[r][i] = dot_bcast(is[r][i], wv, xv[i]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      const __m256 dw = _mm256_set1_ps(h2f(wb[r]));
#pragma GCC unroll 4
      for (int i = 0; i < RG; ++i)
        acc[r][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[r][i]),
                                    _mm256_mul_ps(_mm256_loadu_ps(g[i].d + 8 * b), dw), acc[r][i]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
    for (int i = 0; i < RG; ++i) {
      alignas(32) float v[8];
      _mm256_store_ps(v, acc[r][i]);
      for (int l = 0; l < g[i].rows; ++l) put(t, m0 + 8 * i + l, n0 + r, v[l]);
    }
}

template <int RG>
void rows8_run(const Tile &t, const Group *g, int64_t m0, int64_t n_begin, int64_t n_end,
               bool prefetch) {
  int64_t n = n_begin;
  for (; n + kNR <= n_end; n += kNR) rows8_tile<kNR, RG>(t, g, m0, n, prefetch);
  for (; n < n_end; ++n) rows8_tile<1, RG>(t, g, m0, n, prefetch);
}

// Lane r <- the sum of p[r]'s 8 lanes.
LMKIT_QINLINE __m256i reduce8(const __m256i *p) {
  const __m256i u0 =
      _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
  const __m256i u1 =
      _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
                          _mm256_permute2x128_si256(u0, u1, 0x31));
}

// The low 16 bits of each int32 lane, packed.
LMKIT_QINLINE __m128i low16(__m256i v) {
#if LMKIT_QUANT_VNNI
  return _mm256_cvtepi32_epi16(v);
#else
  const __m256i pick = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0,
                                        1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, pick), 0x08));
#endif
}

// x row m (quantized: xq, xd) against W rows n0 .. n0 + 8; rows from n_end on repeat row
// n_end - 1 and are not written. `prefetch`: fetch the W rows ahead (decode over short rows, as
// mm_tile).
void cols8_tile(const Tile &t, const int8_t *xq, const float *xd, int64_t m, int64_t n0,
                int64_t n_end, bool prefetch) {
  const int nr = int(min64(8, n_end - n0));
  const uint8_t *w0 = t.w + size_t(n0) * t.row_bytes;
  const uint8_t *wr[8];
  alignas(32) int32_t off[8];
  for (int r = 0; r < 8; ++r) {
    off[r] = int32_t((r < nr ? r : nr - 1) * int64_t(t.row_bytes));
    wr[r] = w0 + off[r];
  }
  const __m256i gather_off = _mm256_load_si256(reinterpret_cast<const __m256i *>(off));
  // The same distance in bytes as mm_tile's (kPrefetchTiles tiles of kNR1 rows).
  const char *pf = reinterpret_cast<const char *>(w0) + kPrefetchTiles * kNR1 * t.row_bytes;
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < t.nb; ++b) {
    if (prefetch) {
#pragma GCC unroll 8
      for (int64_t l = 0; l < (8 * kBytes + 63) / 64; ++l)
        _mm_prefetch(pf + b * 8 * kBytes + 64 * l, _MM_HINT_T0);
    }
    const __m256i xv = load256(xq + kQB * b);
    __m256i p[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; ++r) {
      const __m256i w = load256(wr[r] + b * kBytes + 2);
      p[r] = dot_u8s8(_mm256_setzero_si256(), _mm256_abs_epi8(w), _mm256_sign_epi8(xv, w));
    }
    // The 8 rows' f16 scales (the gather reads each scale and the 2 bytes after it).
    const __m256 dw = _mm256_cvtph_ps(low16(
        _mm256_i32gather_epi32(reinterpret_cast<const int *>(w0 + b * kBytes), gather_off, 1)));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(reduce8(p)), _mm256_mul_ps(dw, _mm256_set1_ps(xd[b])),
                          acc);
  }
  alignas(32) float v[8];
  _mm256_store_ps(v, acc);
  for (int r = 0; r < nr; ++r) put(t, m, n0 + r, v[r]);
}

void matmul(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w, const float *bias,
            int64_t M, int64_t N, int64_t K) {
  if (M <= 0 || N <= 0) return;
  if (K == 0) return fill_bias(y, ldy, bias, M, N);
  alignas(64) int8_t qs[kActValues];  // x rows as quantized, row i at qs + i * kk
  alignas(64) float d[kActValues / kQB];
  alignas(64) int16_t sum[kActValues / kQB];
  alignas(64) int8_t gqs[kActValues];  // the same, interleaved per group of 8 rows
  alignas(64) float gd[kActValues / kQB];
  alignas(64) int32_t gstart[kActValues / kQB];
  // K chunks depend on K only (never on M), so every y[m, n] sees the same float operations.
  const int64_t kc = min64(K, kActValues), rows = min64(M, kActValues / kc);
  Tile t;
  t.row_bytes = size_t(K / kQB * kBytes);
  t.ldy = ldy;
  t.bias = bias;
  for (int64_t m0 = 0; m0 < M; m0 += rows) {
    // Groups of 8 rows; 2 to 7 rows left over make one more group, padded with zero rows (8
    // lanes at once cost less than a cols8 pass per row), when it fits the buffers.
    const int64_t mt = min64(rows, M - m0), left = mt % 8;
    const bool pad = left >= 2 && (mt - left + 8) * kc <= kActValues;
    const int64_t groups = mt / 8 + (pad ? 1 : 0), grouped = pad ? mt : mt - left;
    const int64_t panel = groups > 0 ? panel_rows(t.row_bytes, 8) : N;
    for (int64_t k0 = 0; k0 < K; k0 += kc) {
      const int64_t kk = min64(kc, K - k0), nb = kk / kQB;
      for (int64_t i = 0; i < mt; ++i)
        quantize_act_32({qs + i * kk, d + i * nb, sum + i * nb}, x + (m0 + i) * ldx + k0, kk);
      // Interleave: lane l of step s of block b <- row l's 4 values (zeros past the last row).
      for (int64_t gi = 0; gi < groups; ++gi)
        for (int64_t b = 0; b < nb; ++b)
          for (int l = 0; l < 8; ++l) {
            const int64_t row = 8 * gi + l, at = 8 * (gi * nb + b) + l;
            const bool real = row < mt;
            for (int s = 0; s < 8; ++s) {
              int8_t *dst = gqs + 32 * (at - l) + 32 * s + 4 * l;
              if (real)
                std::memcpy(dst, qs + row * kk + kQB * b + 4 * s, 4);
              else
                std::memset(dst, 0, 4);
            }
            gd[at] = real ? d[row * nb + b] : 0.0f;
            gstart[at] = real && LMKIT_QUANT_VNNI ? -128 * int32_t(sum[row * nb + b]) : 0;
          }
      auto group = [&](int64_t gi) {
        return Group{gqs + gi * 8 * kk, gd + gi * 8 * nb, gstart + gi * 8 * nb,
                     int(min64(8, mt - 8 * gi))};
      };
      t.w = static_cast<const uint8_t *>(w) + size_t(k0 / kQB * kBytes);
      t.nb = nb;
      t.y = y + m0 * ldy;
      t.first = k0 == 0;
      t.last = k0 + kk >= K;
      for (int64_t n0 = 0; n0 < N; n0 += panel) {
        const int64_t n1 = min64(N, n0 + panel);
        // Only the first pass over a panel prefetches: later ones find it in L2.
        const bool short_rows = t.row_bytes <= size_t(kPrefetchMaxRowBytes);
        int64_t gi = 0;
        for (; gi + kRG <= groups; gi += kRG) {
          Group g[kRG];
          for (int i = 0; i < kRG; ++i) g[i] = group(gi + i);
          rows8_run<kRG>(t, g, 8 * gi, n0, n1, short_rows && gi == 0);
        }
        for (; gi < groups; ++gi) {
          const Group g = group(gi);
          rows8_run<1>(t, &g, 8 * gi, n0, n1, short_rows && gi == 0);
        }
        // The rows left over, 8 W rows at a time (each tile stays in L1 across those rows).
        for (int64_t n = n0; n < n1; n += 8)
          for (int64_t m = grouped; m < mt; ++m)
            cols8_tile(t, qs + m * kk, d + m * nb, m, n, n1, short_rows && groups == 0 && m == 0);
      }
    }
  }
}

}  // namespace q8

}  // namespace

// The table for this ISA (declared in quant_tables.h). Constant-initialised: no start-up code.
constinit const QuantKernels quant_table = {
#if LMKIT_QUANT_VNNI
    .name = "avx512",
#else
    .name = "avx2",
#endif
    .matmul_q4_0 = matmul<Q4_0>,
    .matmul_q4_1 = matmul<Q4_1>,
    .matmul_q5_0 = matmul<Q5_0>,
    .matmul_q5_1 = matmul<Q5_1>,
    .matmul_q8_0 = q8::matmul,
    .matmul_q4_K = matmul<Q45K<false>>,
    .matmul_q5_K = matmul<Q45K<true>>,
    .matmul_q6_K = matmul<Q6K>,
    .matmul_q4_0x8 = matmul<Q4_0x8>,
    .quantize_act_32 = quantize_act_32,
    .quantize_act_256 = quantize_act_256,
};

}  // namespace lmkit::kernels::LMKIT_QUANT_ISA

#undef LMKIT_QINLINE
