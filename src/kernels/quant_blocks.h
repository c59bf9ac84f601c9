// The GGUF block layouts byte for byte (ggml-common.h), the Q8 activation rows the quantized
// matmuls compute with, and the table type of those kernels. Not code: plain structs, safe to
// include from the ISA-flagged sources (quant.h has the functions).
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace lmkit::kernels {

constexpr int64_t kQK = 32;    // values per block of q4_0, q4_1, q5_0, q5_1, q8_0, q8_1
constexpr int64_t kQKK = 256;  // values per super-block of the K-quants

// Half-precision fields are stored as raw IEEE binary16 bits. Within a block, value j of the
// block is called x[j]; "q" is its stored integer.

// x[j] = d * (q[j] - 8);  qs[j] holds q[j] in its low nibble and q[j + 16] in its high nibble.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];
};
// x[j] = d * q[j] + m;  nibbles as q4_0.
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[16];
};
// x[j] = d * (q[j] - 16);  low 4 bits as q4_0, bit 4 of q[j] is bit j of qh (little-endian u32).
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
// x[j] = d * q[j] + m;  bits as q5_0.
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[16];
};
// x[j] = d * qs[j].
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
// x[j] = d * qs[j];  s = d * sum(qs) (llama.cpp's activation format; stored, never computed on).
struct BlockQ8_1 {
  uint16_t d, s;
  int8_t qs[32];
};
// Eight sub-blocks of 32 with 6-bit scales sc[i] and mins mn[i] packed in `scales` (see
// q4k_scale_min); x = d * sc[i] * q - dmin * mn[i]. qs: 64 values per 32 bytes, the low nibbles
// are values [64g, 64g + 32), the high nibbles [64g + 32, 64g + 64).
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
// As q4_K with 5-bit q: bit 4 of value 64g + l is bit 2g of qh[l], of value 64g + 32 + l bit 2g+1.
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
// Sixteen sub-blocks of 16 with int8 scales; x = d * scales[i] * (q - 32), q 6 bits: for half h
// (128 values, ql + 64h, qh + 32h) and l < 32, value l takes ql[l] low | qh[l] bits 0-1, value
// 32 + l ql[l + 32] low | bits 2-3, value 64 + l ql[l] high | bits 4-5, 96 + l ql[l + 32] high |
// bits 6-7.
struct BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
// x[j] = d * qs[j] (f32 scale);  bsums[i] = sum of qs[16i .. 16i + 16).
struct BlockQ8_K {
  float d;
  int8_t qs[256];
  int16_t bsums[16];
};

// lmkit's re-packed q4_0 (DType::Q4_0X8, made by pack_weight, never written to files): the eight
// q4_0 blocks of 256 values with their scales together and nibbles paired for the SIMD kernels:
// qs[32p + i] holds q of block 2p value i (low nibble) and of block 2p+1 value i (high nibble).
struct BlockQ4_0x8 {
  uint16_t d[8];
  uint8_t qs[128];
};

static_assert(sizeof(BlockQ4_0x8) == 144, "q4_0x8 size");
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
                  sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ8_1) == 36,
              "GGUF block sizes");
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 &&
                  sizeof(BlockQ8_K) == 292,
              "GGUF K-quant super-block sizes");

// The 6-bit scale and min of sub-block j < 8 of a q4_K/q5_K super-block: for j < 4 the low 6 bits
// of s[j] and s[j + 4]; for j >= 4 the nibbles of s[j + 4] with the top 2 bits of s[j - 4]
// (scale) and s[j] (min) above them. Static: ISA-flagged files must not share inline functions.
static inline void q4k_scale_min(const uint8_t *s, int j, int &sc, int &mn) {
  if (j < 4) {
    sc = s[j] & 63;
    mn = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// A row of K activations quantized for the integer dot products: q = round(x * 127 / amax) per
// block (round half to even), so x ~= d * q with |q| <= 127. Blocks of 32 for the 32-value weight
// formats (sums per 32), of 256 for the K-quants (sums per 16, as llama.cpp's q8_K).
struct ActQ8 {
  int8_t *qs;    // (K)
  float *d;      // (K / 32) or (K / 256): amax / 127
  int16_t *sum;  // (K / 32) or (K / 16): sum of qs over the block / 16-value group
};

// One table per instruction set, as KernelTable. Every matmul has the matmul_fn contract of
// kernels.h (y(M, N) = x(M, K) W(N, K)^T + bias; same bits for y[m, n] whatever M and the N split)
// with W rows of K / block blocks in the GGUF layout, K a multiple of the block size (any K: x is
// quantized in bounded tiles on the stack). They never allocate, throw or start threads.
struct QuantKernels {
  const char *name;  // "ref", "avx2", "avx512"
  matmul_fn matmul_q4_0, matmul_q4_1, matmul_q5_0, matmul_q5_1, matmul_q8_0;
  matmul_fn matmul_q4_K, matmul_q5_K, matmul_q6_K;
  matmul_fn matmul_q4_0x8;  // pack_weight's q4_0 layout

  // The activation quantizers the matmuls use, exposed so tests can check them bit for bit.
  // x (n) -> a (n multiple of 32, resp. 256). a.sum gets n/32 (resp. n/16) entries.
  void (*quantize_act_32)(ActQ8 a, const float *x, int64_t n);
  void (*quantize_act_256)(ActQ8 a, const float *x, int64_t n);

  matmul_fn matmul_for(DType t) const;  // null for a type with no kernel
};

}  // namespace lmkit::kernels
