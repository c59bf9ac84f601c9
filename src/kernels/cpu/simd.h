// Vf: one SIMD register of floats for the ISA this translation unit is compiled for (AVX2 or
// AVX-512), with the few operations the kernels need. Not portable: include only from avx2.cpp or
// avx512.cpp, whose per-file flags pick the branch below.
//
// ODR safety: everything here has internal linkage (anonymous namespace inside an ISA-named one),
// so no inline function compiled with wide instructions can be merged with a baseline copy; the
// ISA translation units use intrinsics and plain code only (no STL, no dtype.h inline helpers).
#pragma once

#include <immintrin.h>

#include <cstdint>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512DQ__) && defined(__FMA__) && defined(__F16C__)
#define LMKIT_SIMD_ISA avx512
#define LMKIT_SIMD_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define LMKIT_SIMD_ISA avx2
#define LMKIT_SIMD_AVX512 0
#else
#error "kernels/cpu/simd.h needs -mavx2 -mfma -mf16c (plus -mavx512{f,bw,vl,dq} for AVX-512)"
#endif

namespace lmkit::kernels::LMKIT_SIMD_ISA {
namespace {

#if LMKIT_SIMD_AVX512

constexpr int64_t kLanes = 16;
struct Vf {
  __m512 v;
};
struct Mask {  // which of the first lanes a partial load/store touches
  __mmask16 m;
};
struct Cmp {  // result of a lane-wise comparison
  __mmask16 m;
};

// The first n lanes, n in [0, kLanes].
inline Mask mask_first(int64_t n) {
  return {__mmask16((1u << n) - 1u)};
}
// Lanes [a, b), 0 <= a <= b <= kLanes (for f32 loads, stores and keep).
inline Mask mask_range(int64_t a, int64_t b) {
  return {__mmask16(((1u << b) - 1u) & ~((1u << a) - 1u))};
}

inline Vf zero() {
  return {_mm512_setzero_ps()};
}
inline Vf set1(float a) {
  return {_mm512_set1_ps(a)};
}
inline Vf load(const float *p) {
  return {_mm512_loadu_ps(p)};
}
inline Vf load(const float *p, Mask m) {
  return {_mm512_maskz_loadu_ps(m.m, p)};
}  // 0 outside
inline Vf load_or(const float *p, Mask m, Vf fill) {
  return {_mm512_mask_loadu_ps(fill.v, m.m, p)};
}
inline void store(float *p, Vf a) {
  _mm512_storeu_ps(p, a.v);
}
inline void store(float *p, Vf a, Mask m) {
  _mm512_mask_storeu_ps(p, m.m, a.v);
}
inline Vf keep(Vf a, Mask m) {
  return {_mm512_maskz_mov_ps(m.m, a.v)};
}  // 0 outside m

inline Vf f16_to_vf(__m256i h) {
  return {_mm512_cvtph_ps(h)};
}
inline Vf bf16_to_vf(__m256i h) {
  return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))};
}
inline __m256i load_u16(const uint16_t *p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p));
}
inline __m256i load_u16(const uint16_t *p, Mask m) {
  return _mm256_maskz_loadu_epi16(m.m, p);
}
inline Vf load_f16(const uint16_t *p) {
  return f16_to_vf(load_u16(p));
}
inline Vf load_f16(const uint16_t *p, Mask m) {
  return f16_to_vf(load_u16(p, m));
}
inline Vf load_bf16(const uint16_t *p) {
  return bf16_to_vf(load_u16(p));
}
inline Vf load_bf16(const uint16_t *p, Mask m) {
  return bf16_to_vf(load_u16(p, m));
}

inline Vf operator+(Vf a, Vf b) {
  return {_mm512_add_ps(a.v, b.v)};
}
inline Vf operator-(Vf a, Vf b) {
  return {_mm512_sub_ps(a.v, b.v)};
}
inline Vf operator*(Vf a, Vf b) {
  return {_mm512_mul_ps(a.v, b.v)};
}
inline Vf operator/(Vf a, Vf b) {
  return {_mm512_div_ps(a.v, b.v)};
}
inline Vf fma(Vf a, Vf b, Vf c) {
  return {_mm512_fmadd_ps(a.v, b.v, c.v)};
}  // a*b + c
inline Vf fms(Vf a, Vf b, Vf c) {
  return {_mm512_fmsub_ps(a.v, b.v, c.v)};
}  // a*b - c
inline Vf fnma(Vf a, Vf b, Vf c) {
  return {_mm512_fnmadd_ps(a.v, b.v, c.v)};
}  // c - a*b
// Lane-wise max/min; if b is NaN the result is b (so max(const, x) propagates a NaN x).
inline Vf max(Vf a, Vf b) {
  return {_mm512_max_ps(a.v, b.v)};
}
inline Vf min(Vf a, Vf b) {
  return {_mm512_min_ps(a.v, b.v)};
}
inline Vf abs(Vf a) {
  return {_mm512_abs_ps(a.v)};
}
inline Vf round_nearest(Vf a) {
  return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
// 2^n for float lanes holding integers n in [-126, 127].
inline Vf pow2i(Vf n) {
  __m512i i = _mm512_cvtps_epi32(n.v);
  return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(i, _mm512_set1_epi32(127)), 23))};
}
// floor(n / 2) for float lanes holding integers (exact).
inline Vf half_floor(Vf n) {
  return {_mm512_roundscale_ps(_mm512_mul_ps(n.v, _mm512_set1_ps(0.5f)),
                               _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)};
}

inline Cmp operator<(Vf a, Vf b) {
  return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ)};
}
inline Cmp operator>(Vf a, Vf b) {
  return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ)};
}
inline Vf select(Cmp c, Vf a, Vf b) {
  return {_mm512_mask_blend_ps(c.m, b.v, a.v)};
}  // c ? a : b

// Rotary helpers: dup_pairs([c0 c1 ... ]) = [c0 c0 c1 c1 ...] from the low half of the lanes;
// swap_pairs([a0 b0 a1 b1 ...]) = [b0 a0 b1 a1 ...]; fmaddsub: even lanes a*b - c, odd a*b + c.
inline Vf dup_pairs(Vf a) {
  const __m512i idx = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  return {_mm512_permutexvar_ps(idx, a.v)};
}
inline Vf swap_pairs(Vf a) {
  return {_mm512_permute_ps(a.v, 0xB1)};
}
inline Vf fmaddsub(Vf a, Vf b, Vf c) {
  return {_mm512_fmaddsub_ps(a.v, b.v, c.v)};
}

inline __m256 half_sum(Vf a) {
  return _mm256_add_ps(_mm512_castps512_ps256(a.v), _mm512_extractf32x8_ps(a.v, 1));
}
inline __m256 half_max(Vf a) {
  return _mm256_max_ps(_mm512_castps512_ps256(a.v), _mm512_extractf32x8_ps(a.v, 1));
}

#else  // AVX2

constexpr int64_t kLanes = 8;
struct Vf {
  __m256 v;
};
struct Mask {
  __m256i m;
  int64_t n;  // lanes in use (for the 16-bit loads, which AVX2 cannot mask)
};
struct Cmp {
  __m256 m;
};

// -1 for the first 8 entries, then 0: an unaligned 8-lane window starting at 8 - n selects n lanes.
alignas(64) constexpr int32_t kMaskWindow[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                 0,  0,  0,  0,  0,  0,  0,  0};
inline Mask mask_first(int64_t n) {
  return {_mm256_loadu_si256(reinterpret_cast<const __m256i *>(kMaskWindow + 8 - n)), n};
}
// Lanes [a, b), 0 <= a <= b <= kLanes (for f32 loads, stores and keep; not the 16-bit loads).
inline Mask mask_range(int64_t a, int64_t b) {
  return {_mm256_andnot_si256(mask_first(a).m, mask_first(b).m), b};
}

inline Vf zero() {
  return {_mm256_setzero_ps()};
}
inline Vf set1(float a) {
  return {_mm256_set1_ps(a)};
}
inline Vf load(const float *p) {
  return {_mm256_loadu_ps(p)};
}
inline Vf load(const float *p, Mask m) {
  return {_mm256_maskload_ps(p, m.m)};
}
inline Vf load_or(const float *p, Mask m, Vf fill) {
  return {_mm256_blendv_ps(fill.v, _mm256_maskload_ps(p, m.m), _mm256_castsi256_ps(m.m))};
}
inline void store(float *p, Vf a) {
  _mm256_storeu_ps(p, a.v);
}
inline void store(float *p, Vf a, Mask m) {
  _mm256_maskstore_ps(p, m.m, a.v);
}
inline Vf keep(Vf a, Mask m) {
  return {_mm256_and_ps(a.v, _mm256_castsi256_ps(m.m))};
}

inline __m128i load_u16(const uint16_t *p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i *>(p));
}
inline __m128i load_u16(const uint16_t *p, Mask m) {
  alignas(16) uint16_t buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i < m.n; ++i) buf[i] = p[i];
  return _mm_load_si128(reinterpret_cast<const __m128i *>(buf));
}
inline Vf f16_to_vf(__m128i h) {
  return {_mm256_cvtph_ps(h)};
}
inline Vf bf16_to_vf(__m128i h) {
  return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))};
}
inline Vf load_f16(const uint16_t *p) {
  return f16_to_vf(load_u16(p));
}
inline Vf load_f16(const uint16_t *p, Mask m) {
  return f16_to_vf(load_u16(p, m));
}
inline Vf load_bf16(const uint16_t *p) {
  return bf16_to_vf(load_u16(p));
}
inline Vf load_bf16(const uint16_t *p, Mask m) {
  return bf16_to_vf(load_u16(p, m));
}

inline Vf operator+(Vf a, Vf b) {
  return {_mm256_add_ps(a.v, b.v)};
}
inline Vf operator-(Vf a, Vf b) {
  return {_mm256_sub_ps(a.v, b.v)};
}
inline Vf operator*(Vf a, Vf b) {
  return {_mm256_mul_ps(a.v, b.v)};
}
inline Vf operator/(Vf a, Vf b) {
  return {_mm256_div_ps(a.v, b.v)};
}
inline Vf fma(Vf a, Vf b, Vf c) {
  return {_mm256_fmadd_ps(a.v, b.v, c.v)};
}
inline Vf fms(Vf a, Vf b, Vf c) {
  return {_mm256_fmsub_ps(a.v, b.v, c.v)};
}
inline Vf fnma(Vf a, Vf b, Vf c) {
  return {_mm256_fnmadd_ps(a.v, b.v, c.v)};
}
inline Vf max(Vf a, Vf b) {
  return {_mm256_max_ps(a.v, b.v)};
}
inline Vf min(Vf a, Vf b) {
  return {_mm256_min_ps(a.v, b.v)};
}
inline Vf abs(Vf a) {
  return {_mm256_and_ps(a.v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)))};
}
inline Vf round_nearest(Vf a) {
  return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline Vf pow2i(Vf n) {
  __m256i i = _mm256_cvtps_epi32(n.v);
  return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(i, _mm256_set1_epi32(127)), 23))};
}
inline Vf half_floor(Vf n) {
  return {_mm256_round_ps(_mm256_mul_ps(n.v, _mm256_set1_ps(0.5f)),
                          _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)};
}

inline Cmp operator<(Vf a, Vf b) {
  return {_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)};
}
inline Cmp operator>(Vf a, Vf b) {
  return {_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)};
}
inline Vf select(Cmp c, Vf a, Vf b) {
  return {_mm256_blendv_ps(b.v, a.v, c.m)};
}

inline Vf dup_pairs(Vf a) {
  return {_mm256_permutevar8x32_ps(a.v, _mm256_set_epi32(3, 3, 2, 2, 1, 1, 0, 0))};
}
inline Vf swap_pairs(Vf a) {
  return {_mm256_permute_ps(a.v, 0xB1)};
}
inline Vf fmaddsub(Vf a, Vf b, Vf c) {
  return {_mm256_fmaddsub_ps(a.v, b.v, c.v)};
}

inline __m256 half_sum(Vf a) {
  return a.v;
}
inline __m256 half_max(Vf a) {
  return a.v;
}

#endif

// Horizontal sum with a fixed tree (lane i + lane i+half, repeatedly): every kernel that reduces
// a dot product uses this one, so equal accumulators give equal bits everywhere.
inline float hsum(Vf a) {
  __m256 s8 = half_sum(a);
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
  return _mm_cvtss_f32(s1);
}

inline float hmax(Vf a) {
  __m256 s8 = half_max(a);
  __m128 s4 = _mm_max_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  __m128 s2 = _mm_max_ps(s4, _mm_movehl_ps(s4, s4));
  __m128 s1 = _mm_max_ss(s2, _mm_movehdup_ps(s2));
  return _mm_cvtss_f32(s1);
}

inline int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}
inline int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

}  // namespace
}  // namespace lmkit::kernels::LMKIT_SIMD_ISA
