// Reference quantized matmuls: x rows quantized to 8 bits per block, integer block dot products
// with the weight's stored integers, then the block scales applied in double precision.
// Not fast: one output at a time, re-quantizing each x block where it is used (no buffers).
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "kernels/quant.h"

namespace lmkit::kernels::ref {
namespace {

// Below this amax a block of x is taken as all zeros (127 / amax would overflow to inf).
constexpr float kTinyAmax = 1e-30f;

// Round half to even (the SIMD conversion's default rounding); NaN becomes 0 instead of UB.
int round_even(float v) {
  const float r = std::nearbyint(v);
  return r == r ? int(r) : 0;
}

// x (n) -> a, one scale per `block` values, one sum per `group` values.
void quantize_act(ActQ8 a, const float *x, int64_t n, int64_t block, int64_t group) {
  for (int64_t b = 0; b * block < n; ++b) {
    const float *xb = x + b * block;
    float amax = 0;
    for (int64_t j = 0; j < block; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    const bool zero = !(amax > kTinyAmax);
    a.d[b] = zero ? 0.0f : amax / 127.0f;
    const float id = zero ? 0.0f : 127.0f / amax;
    for (int64_t j = 0; j < block; ++j) a.qs[b * block + j] = int8_t(round_even(xb[j] * id));
  }
  for (int64_t g = 0; g * group < n; ++g) {
    int s = 0;
    for (int64_t j = 0; j < group; ++j) s += a.qs[g * group + j];
    a.sum[g] = int16_t(s);
  }
}

void quantize_act_32(ActQ8 a, const float *x, int64_t n) {
  quantize_act(a, x, n, kQK, kQK);
}
void quantize_act_256(ActQ8 a, const float *x, int64_t n) {
  quantize_act(a, x, n, kQKK, 16);
}

float f(uint16_t h) {
  return f16_to_f32(h);
}

// The stored integer of value j of a 32-value block, and the block's (scale, offset) so that
// value = scale * q + offset.
int q_of(const BlockQ4_0 &b, int j) {
  return (j < 16 ? b.qs[j] & 0xF : b.qs[j - 16] >> 4) - 8;
}
int q_of(const BlockQ4_1 &b, int j) {
  return j < 16 ? b.qs[j] & 0xF : b.qs[j - 16] >> 4;
}
template <class B>
int q5_of(const B &b, int j) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  return (j < 16 ? b.qs[j] & 0xF : b.qs[j - 16] >> 4) | int((qh >> j) & 1) << 4;
}
int q_of(const BlockQ5_0 &b, int j) {
  return q5_of(b, j) - 16;
}
int q_of(const BlockQ5_1 &b, int j) {
  return q5_of(b, j);
}
int q_of(const BlockQ8_0 &b, int j) {
  return b.qs[j];
}
float offset_of(const BlockQ4_1 &b) {
  return f(b.m);
}
float offset_of(const BlockQ5_1 &b) {
  return f(b.m);
}
template <class B>
float offset_of(const B &) {
  return 0;
}

// sum_j W[j] x[j] over one 32-value block:  d_w d_x sum(q_w q_x) + m_w d_x sum(q_x).
template <class B>
double dot_block32(const B &w, const int8_t *xq, float xd, int xsum) {
  int isum = 0;
  for (int j = 0; j < kQK; ++j) isum += q_of(w, j) * xq[j];
  return double(f(w.d)) * double(xd) * isum + double(offset_of(w)) * double(xd) * xsum;
}

// q4_K / q5_K super-block: d_x (d_w sum_i sc_i isum_i - dmin_w sum_i mn_i xsum_i).
template <class B>
double dot_block_k45(const B &w, const int8_t *xq, float xd, const int16_t *xsum) {
  int64_t s = 0, mins = 0;
  for (int i = 0; i < 8; ++i) {
    int sc, mn;
    q4k_scale_min(w.scales, i, sc, mn);
    const int g = i / 2, hi = i % 2;  // 64-value group, low/high nibble
    int isum = 0;
    for (int l = 0; l < 32; ++l) {
      int q = hi ? w.qs[32 * g + l] >> 4 : w.qs[32 * g + l] & 0xF;
      if constexpr (sizeof(B) == sizeof(BlockQ5_K)) q |= ((w.qh[l] >> i) & 1) << 4;
      isum += q * xq[32 * i + l];
    }
    s += int64_t(sc) * isum;
    mins += int64_t(mn) * (xsum[2 * i] + xsum[2 * i + 1]);
  }
  return double(xd) * (double(f(w.d)) * double(s) - double(f(w.dmin)) * double(mins));
}

// q6_K super-block: d_x d_w sum_i scales_i sum_l (q - 32) x_q.
double dot_block_q6k(const BlockQ6_K &w, const int8_t *xq, float xd, const int16_t *) {
  int64_t s = 0;
  for (int i = 0; i < 16; ++i) {
    const int half = i / 8, r = i % 8;  // 128-value half, 16-value group in it
    const int quarter = r / 2;          // which 32 of the half: ql/qh bit field
    const uint8_t *ql = w.ql + 64 * half, *qh = w.qh + 32 * half;
    int isum = 0;
    for (int l16 = 0; l16 < 16; ++l16) {
      const int l = (r % 2) * 16 + l16;  // index inside the 32-value quarter
      const int lo = quarter == 0   ? ql[l] & 0xF
                     : quarter == 1 ? ql[l + 32] & 0xF
                     : quarter == 2 ? ql[l] >> 4
                                    : ql[l + 32] >> 4;
      const int q = (lo | (((qh[l] >> (2 * quarter)) & 3) << 4)) - 32;
      isum += q * xq[16 * i + l16];
    }
    s += int64_t(w.scales[i]) * isum;
  }
  return double(xd) * double(f(w.d)) * double(s);
}

// y = x W^T + bias with W rows of K / QB blocks of type B; Dot scores one block against the
// quantized x block.
template <class B, int64_t QB, class Dot>
void matmul_q(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w, const float *bias,
              int64_t M, int64_t N, int64_t K, Dot dot) {
  const int64_t nb = K / QB;
  int8_t xq[kQKK];
  float xd[1];
  int16_t xsum[kQKK / 16];
  const ActQ8 a{xq, xd, xsum};
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      const B *wr = static_cast<const B *>(w) + n * nb;
      double acc = 0;
      for (int64_t b = 0; b < nb; ++b) {
        quantize_act(a, x + m * ldx + b * QB, QB, QB, QB == kQK ? kQK : 16);
        acc += dot(wr[b], xq, xd[0], xsum);
      }
      if (bias) acc += bias[n];
      y[m * ldy + n] = float(acc);
    }
  }
}

template <class B>
void matmul_32(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w, const float *bias,
               int64_t M, int64_t N, int64_t K) {
  matmul_q<B, kQK>(y, ldy, x, ldx, w, bias, M, N, K,
                   [](const B &wb, const int8_t *xq, float xd, const int16_t *xs) {
                     return dot_block32(wb, xq, xd, xs[0]);
                   });
}

void matmul_q4_K(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                 const float *bias, int64_t M, int64_t N, int64_t K) {
  matmul_q<BlockQ4_K, kQKK>(y, ldy, x, ldx, w, bias, M, N, K, dot_block_k45<BlockQ4_K>);
}
void matmul_q5_K(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                 const float *bias, int64_t M, int64_t N, int64_t K) {
  matmul_q<BlockQ5_K, kQKK>(y, ldy, x, ldx, w, bias, M, N, K, dot_block_k45<BlockQ5_K>);
}
void matmul_q6_K(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                 const float *bias, int64_t M, int64_t N, int64_t K) {
  matmul_q<BlockQ6_K, kQKK>(y, ldy, x, ldx, w, bias, M, N, K, dot_block_q6k);
}

// q4_0x8: each super-block is the eight q4_0 blocks it holds.
void matmul_q4_0x8(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                   const float *bias, int64_t M, int64_t N, int64_t K) {
  const int64_t ns = K / kQKK;
  int8_t xq[kQK];
  float xd;
  int16_t xsum;
  BlockQ4_0 blk[8];
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      const BlockQ4_0x8 *wr = static_cast<const BlockQ4_0x8 *>(w) + n * ns;
      double acc = 0;
      for (int64_t s = 0; s < ns; ++s) {
        unpack_row_q4_0x8(wr + s, blk, kQKK);
        for (int j = 0; j < 8; ++j) {
          quantize_act(ActQ8{xq, &xd, &xsum}, x + m * ldx + s * kQKK + j * kQK, kQK, kQK, kQK);
          acc += dot_block32(blk[j], xq, xd, xsum);
        }
      }
      if (bias) acc += bias[n];
      y[m * ldy + n] = float(acc);
    }
  }
}

}  // namespace

const QuantKernels &quant_table() {
  static constexpr QuantKernels table = {
      .name = "ref",
      .matmul_q4_0 = matmul_32<BlockQ4_0>,
      .matmul_q4_1 = matmul_32<BlockQ4_1>,
      .matmul_q5_0 = matmul_32<BlockQ5_0>,
      .matmul_q5_1 = matmul_32<BlockQ5_1>,
      .matmul_q8_0 = matmul_32<BlockQ8_0>,
      .matmul_q4_K = matmul_q4_K,
      .matmul_q5_K = matmul_q5_K,
      .matmul_q6_K = matmul_q6_K,
      .matmul_q4_0x8 = matmul_q4_0x8,
      .quantize_act_32 = quantize_act_32,
      .quantize_act_256 = quantize_act_256,
  };
  return table;
}

}  // namespace lmkit::kernels::ref
