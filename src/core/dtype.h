// Element types and their conversions: f32, f16, bf16, and the GGUF block-quantized types.
// Not a tensor: see tensor.h. Scalar conversions here are the reference; kernels vectorise them
// (block layouts and (de)quantization live in kernels/quant.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace lmkit {

// Values follow GGUF's ggml_type numbering so a GGUF tensor type maps without a table.
enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  BF16 = 30,
  // GGUF block formats (kernels/quant.h has their layouts). Q8_1 and Q8_K are the activation
  // formats of llama.cpp; lmkit knows them so their files load, but has no matmul for them.
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I32 = 26,
  I8 = 24,
  I16 = 25,
  I64 = 27,
  F64 = 28,
  // lmkit's own re-packed layouts (kernels::pack_weight), never in a file: ids from 256 up, past
  // any ggml type. Q4_0X8 holds eight q4_0 blocks per 256 values (kernels/quant_blocks.h).
  Q4_0X8 = 256 + 2,
};

struct DTypeInfo {
  std::string_view name;  // "f32", "f16", "bf16", "q4_0", "q4_K", ... (as ggml writes them)
  int64_t block;          // elements per block (1 for plain types)
  size_t block_bytes;     // bytes per block
};

// Throws lmkit::Error for a type lmkit does not know.
const DTypeInfo &dtype_info(DType t);
inline std::string_view dtype_name(DType t) {
  return dtype_info(t).name;
}
// A block-quantized type (block > 1).
inline bool dtype_is_quantized(DType t) {
  return dtype_info(t).block > 1;
}
// Bytes taken by n elements (n must be a multiple of the block size).
size_t dtype_row_bytes(DType t, int64_t n);
// Parses a name of the table ("f32", "F16", "q8_0", "Q4_K", case-insensitive); throws otherwise.
DType dtype_from_name(std::string_view name);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even; NaN stays NaN (quiet).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// IEEE 754 binary16 <-> binary32, exact for every half value (subnormals included).
inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        man <<= 1;
        ++e;
      } while (!(man & 0x400u));
      u = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | man << 13;
  } else {
    u = sign | (exp + 112) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, overflow to inf, NaN stays NaN.
inline uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);
  if (a >= 0x47800000u) return uint16_t(sign | 0x7c00u);  // >= 65536: inf
  if (a < 0x38800000u) {                                  // below the smallest normal half
    if (a < 0x33000000u) return uint16_t(sign);           // rounds to zero
    uint32_t e = a >> 23;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;  // 14..24
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = ((a >> 13) - (112u << 10));
  uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return uint16_t(sign | r);
}

}  // namespace lmkit
