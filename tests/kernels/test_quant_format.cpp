// Tests of the GGUF block formats: dtype table entries, dequantization of hand-built blocks,
// quantize -> dequantize round trips against an independent per-value decoder, error bounds.
// Not the matmul kernels (test_quant_matmul.cpp) and not file I/O (tests/io/test_quant_gguf.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/kernel_test_util.h"
#include "kernels/quant.h"

namespace lmkit::test {
namespace {

const DType kAllBlockTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                                DType::Q8_1, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K};

float f16(const uint8_t *p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}
void put_f16(uint8_t *p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

// Value i of a row of blocks, decoded from the GGUF spec one value at a time (independently of
// the library's block-at-a-time code), with ggml's float operation order.
float spec_value(DType t, const uint8_t *row, int64_t i) {
  const int64_t j32 = i % 32, j256 = i % 256;
  switch (t) {
    case DType::Q4_0: {
      const uint8_t *b = row + (i / 32) * 18;
      const int q = j32 < 16 ? b[2 + j32] & 15 : b[2 + j32 - 16] >> 4;
      return float(q - 8) * f16(b);
    }
    case DType::Q4_1: {
      const uint8_t *b = row + (i / 32) * 20;
      const int q = j32 < 16 ? b[4 + j32] & 15 : b[4 + j32 - 16] >> 4;
      return float(q) * f16(b) + f16(b + 2);
    }
    case DType::Q5_0:
    case DType::Q5_1: {
      const bool one = t == DType::Q5_1;
      const uint8_t *b = row + (i / 32) * (one ? 24 : 22);
      const uint8_t *qh = b + (one ? 4 : 2), *qs = qh + 4;
      const int lo = j32 < 16 ? qs[j32] & 15 : qs[j32 - 16] >> 4;
      const int hi = (qh[j32 / 8] >> (j32 % 8)) & 1;
      const int q = lo + 16 * hi;
      return one ? float(q) * f16(b) + f16(b + 2) : float(q - 16) * f16(b);
    }
    case DType::Q8_0:
      return float(int8_t(row[(i / 32) * 34 + 2 + j32])) * f16(row + (i / 32) * 34);
    case DType::Q8_1:
      return float(int8_t(row[(i / 32) * 36 + 4 + j32])) * f16(row + (i / 32) * 36);
    case DType::Q4_K:
    case DType::Q5_K: {
      const bool five = t == DType::Q5_K;
      const uint8_t *b = row + (i / 256) * (five ? 176 : 144);
      const uint8_t *s = b + 4, *qs = b + (five ? 48 : 16), *qh = b + 16;
      const int sub = int(j256 / 32), g = int(j256 / 64), l = int(j256 % 32);
      const bool high = (j256 % 64) >= 32;
      // 6-bit fields: sub-blocks 0-3 in the low 6 bits of bytes 0-3 (scales) and 4-7 (mins);
      // 4-7 take their low 4 bits from bytes 8-11 and their top 2 from the spare bits above.
      int sc, mn;
      if (sub < 4) {
        sc = s[sub] % 64;
        mn = s[sub + 4] % 64;
      } else {
        sc = s[sub + 4] % 16 + 16 * (s[sub - 4] / 64);
        mn = s[sub + 4] / 16 + 16 * (s[sub] / 64);
      }
      int q = high ? qs[32 * g + l] / 16 : qs[32 * g + l] % 16;
      if (five) q += 16 * ((qh[l] >> sub) & 1);
      const float d1 = f16(b) * float(sc), m1 = f16(b + 2) * float(mn);
      return d1 * float(q) - m1;
    }
    case DType::Q6_K: {
      const uint8_t *b = row + (i / 256) * 210;
      const int half = int(j256 / 128), v = int(j256 % 128), quarter = v / 32, l = v % 32;
      const uint8_t *ql = b + 64 * half, *qh = b + 128 + 32 * half;
      const int lo = quarter % 2 == 0 ? ql[l] : ql[l + 32];
      const int nib = quarter < 2 ? lo % 16 : lo / 16;
      const int q = nib + 16 * ((qh[l] >> (2 * quarter)) & 3);
      const int sc = int8_t(b[192 + j256 / 16]);
      return f16(b + 208) * float(sc) * float(q - 32);
    }
    case DType::Q8_K: {
      const uint8_t *b = row + (i / 256) * 292;
      float d;
      std::memcpy(&d, b, 4);
      return d * float(int8_t(b[4 + j256]));
    }
    default:
      ADD_FAILURE() << "no spec decoder for " << dtype_name(t);
      return 0;
  }
}

std::vector<uint8_t> quantized(DType t, const std::vector<float> &x) {
  std::vector<uint8_t> q(dtype_row_bytes(t, int64_t(x.size())));
  kernels::quantize_row(t, x.data(), q.data(), int64_t(x.size()));
  return q;
}
std::vector<float> dequantized(DType t, const std::vector<uint8_t> &q, int64_t n) {
  std::vector<float> y(size_t(n), -1.0f);
  kernels::dequantize_row(t, q.data(), y.data(), n);
  return y;
}

TEST(QuantFormat, DTypeTableFollowsGGUF) {
  struct {
    DType t;
    uint32_t id;
    const char *name;
    int64_t block;
    size_t bytes;
  } const want[] = {{DType::Q4_0, 2, "q4_0", 32, 18},    {DType::Q4_1, 3, "q4_1", 32, 20},
                    {DType::Q5_0, 6, "q5_0", 32, 22},    {DType::Q5_1, 7, "q5_1", 32, 24},
                    {DType::Q8_0, 8, "q8_0", 32, 34},    {DType::Q8_1, 9, "q8_1", 32, 36},
                    {DType::Q4_K, 12, "q4_K", 256, 144}, {DType::Q5_K, 13, "q5_K", 256, 176},
                    {DType::Q6_K, 14, "q6_K", 256, 210}, {DType::Q8_K, 15, "q8_K", 256, 292}};
  for (const auto &w : want) {
    EXPECT_EQ(uint32_t(w.t), w.id);
    EXPECT_EQ(dtype_name(w.t), w.name);
    EXPECT_EQ(dtype_info(w.t).block, w.block);
    EXPECT_EQ(dtype_info(w.t).block_bytes, w.bytes);
    EXPECT_TRUE(dtype_is_quantized(w.t));
    EXPECT_EQ(dtype_from_name(w.name), w.t);
  }
  EXPECT_EQ(dtype_from_name("Q4_k"), DType::Q4_K);
  EXPECT_FALSE(dtype_is_quantized(DType::F16));
  EXPECT_EQ(dtype_row_bytes(DType::Q6_K, 512), 420u);
  EXPECT_THROW(dtype_row_bytes(DType::Q4_0, 48), Error);
}

TEST(QuantFormat, HandBuiltBlocksDequantizeToKnownValues) {
  {  // q4_0: d = 0.5; qs[0] = 0x1F -> values 0 and 16 are (15-8)/2 and (1-8)/2
    uint8_t b[18] = {};
    put_f16(b, 0.5f);
    b[2] = 0x1F;
    for (int j = 1; j < 16; ++j) b[2 + j] = 0x88;  // q = 8 -> 0
    auto y = dequantized(DType::Q4_0, std::vector<uint8_t>(b, b + 18), 32);
    EXPECT_EQ(y[0], 3.5f);
    EXPECT_EQ(y[16], -3.5f);
    for (int j : {1, 5, 15, 17, 31}) EXPECT_EQ(y[size_t(j)], 0.0f) << j;
  }
  {  // q4_1: d = 0.25, m = -1; q = 4 -> 0, q = 15 -> 2.75
    uint8_t b[20] = {};
    put_f16(b, 0.25f);
    put_f16(b + 2, -1.0f);
    b[4] = 0xF4;
    auto y = dequantized(DType::Q4_1, std::vector<uint8_t>(b, b + 20), 32);
    EXPECT_EQ(y[0], 0.0f);
    EXPECT_EQ(y[16], 2.75f);
    EXPECT_EQ(y[1], -1.0f);
  }
  {  // q5_0: bit 4 from qh: value 0 low nibble 0xF + 16 = 31 -> 15 d; value 31: 0 + 16 -> 0
    uint8_t b[22] = {};
    put_f16(b, 2.0f);
    const uint32_t qh = 1u | (1u << 31);
    std::memcpy(b + 2, &qh, 4);
    b[6] = 0x0F;
    auto y = dequantized(DType::Q5_0, std::vector<uint8_t>(b, b + 22), 32);
    EXPECT_EQ(y[0], 30.0f);
    EXPECT_EQ(y[31], 0.0f);
    EXPECT_EQ(y[1], -32.0f);  // q = 0
  }
  {  // q5_1: d = 1, m = 0.5, value 17 = high nibble of qs[1] + bit 17 of qh
    uint8_t b[24] = {};
    put_f16(b, 1.0f);
    put_f16(b + 2, 0.5f);
    const uint32_t qh = 1u << 17;
    std::memcpy(b + 4, &qh, 4);
    b[8 + 1] = 0x30;
    auto y = dequantized(DType::Q5_1, std::vector<uint8_t>(b, b + 24), 32);
    EXPECT_EQ(y[17], 19.5f);
    EXPECT_EQ(y[16], 0.5f);
  }
  {  // q8_0: d = 0.125
    uint8_t b[34] = {};
    put_f16(b, 0.125f);
    b[2] = uint8_t(int8_t(-128));
    b[33] = 127;
    auto y = dequantized(DType::Q8_0, std::vector<uint8_t>(b, b + 34), 32);
    EXPECT_EQ(y[0], -16.0f);
    EXPECT_EQ(y[31], 15.875f);
  }
  {  // q4_K: sub-block 1 (scale 3, min 2, in bytes 1 and 5) and sub-block 6 (scale 0b100101 = 37:
     // low nibble 5 in byte 10, top bits 0b10 in byte 2; min 0b110001 = 49: high nibble 1 of byte
     // 10, top bits 0b11 in byte 6). d = 0.5, dmin = 0.25.
    std::vector<uint8_t> b(144, 0);
    put_f16(b.data(), 0.5f);
    put_f16(b.data() + 2, 0.25f);
    uint8_t *s = b.data() + 4;
    s[1] = 3;
    s[5] = 2;
    s[10] = 0x15;
    s[2] = 0x80;
    s[6] = 0xC0;
    // value 32 + 5 (sub-block 1, high nibble of qs[5]) = 9; value 192 + 7 (sub-block 6, low
    // nibble of qs[96 + 7]) = 4.
    b[16 + 5] = 0x90;
    b[16 + 96 + 7] = 0x04;
    auto y = dequantized(DType::Q4_K, b, 256);
    EXPECT_EQ(y[37], 0.5f * 3 * 9 - 0.25f * 2);
    EXPECT_EQ(y[199], 0.5f * 37 * 4 - 0.25f * 49);
    EXPECT_EQ(y[192], -0.25f * 49);  // q = 0
    EXPECT_EQ(y[0], 0.0f);           // sub-block 0: scale 0, min 0
  }
  {  // q5_K: as q4_K plus bit 4 of value 64 + 32 + l (sub-block 3) in bit 3 of qh[l].
    std::vector<uint8_t> b(176, 0);
    put_f16(b.data(), 1.0f);
    put_f16(b.data() + 2, 1.0f);
    b[4 + 3] = 2;   // scale of sub-block 3
    b[4 + 7] = 5;   // min of sub-block 3
    b[16 + 4] = 8;  // qh[4] bit 3
    b[48 + 32 + 4] = 0x70;
    auto y = dequantized(DType::Q5_K, b, 256);
    EXPECT_EQ(y[64 + 32 + 4], 2.0f * (7 + 16) - 5);
  }
  {  // q6_K: value 128 + 64 + 3 (half 1, quarter 2, group 12): high nibble of ql[64 + 3],
     // bits 4-5 of qh[32 + 3]; scale -2, d = 0.5: q = 0xA | 0b10 << 4 = 42 -> 0.5 * -2 * 10.
    std::vector<uint8_t> b(210, 0);
    b[64 + 3] = 0xA0;
    b[128 + 32 + 3] = 0x20;
    b[192 + 12] = uint8_t(int8_t(-2));
    put_f16(b.data() + 208, 0.5f);
    auto y = dequantized(DType::Q6_K, b, 256);
    EXPECT_EQ(y[195], -10.0f);
    EXPECT_EQ(y[0], 0.0f);  // scale 0
  }
  {  // q8_K: f32 d.
    std::vector<uint8_t> b(292, 0);
    const float d = 0.75f;
    std::memcpy(b.data(), &d, 4);
    b[4 + 255] = uint8_t(int8_t(-3));
    auto y = dequantized(DType::Q8_K, b, 256);
    EXPECT_EQ(y[255], -2.25f);
  }
}

TEST(QuantFormat, DequantizeEqualsTheSpecOnRandomBytes) {
  // Any bit pattern is a valid block (scales from random bytes too, NaN/inf halves excluded):
  // the library's block decoder and the per-value spec decoder must agree exactly.
  for (DType t : kAllBlockTypes) {
    const int64_t n = dtype_info(t).block * 5;
    std::vector<uint8_t> q(dtype_row_bytes(t, n));
    uint64_t s = 99 + uint64_t(t);
    for (auto &c : q) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      c = uint8_t(s >> 56);
    }
    // Replace half-precision fields by finite values (exponent bits not all ones).
    const size_t bb = dtype_info(t).block_bytes;
    for (size_t b0 = 0; b0 < q.size(); b0 += bb) {
      if (t == DType::Q6_K) {
        q[b0 + 209] &= 0x3F;
      } else if (t == DType::Q8_K) {
        const float d = 0.01f * float(b0 % 7 + 1);
        std::memcpy(&q[b0], &d, 4);
      } else {
        q[b0 + 1] &= 0x3F;
        if (t != DType::Q4_0 && t != DType::Q5_0 && t != DType::Q8_0) q[b0 + 3] &= 0x3F;
      }
    }
    const auto y = dequantized(t, q, n);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(y[size_t(i)], spec_value(t, q.data(), i)) << dtype_name(t) << " value " << i;
  }
}

// Root-mean-square error of a round trip, relative to the data's range.
double rel_rmse(const std::vector<float> &x, const std::vector<float> &y) {
  double se = 0, lo = x[0], hi = x[0];
  for (size_t i = 0; i < x.size(); ++i) {
    se += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    lo = std::min(lo, double(x[i]));
    hi = std::max(hi, double(x[i]));
  }
  return std::sqrt(se / double(x.size())) / (hi - lo);
}

TEST(QuantFormat, RoundTripsMatchTheSpecAndStayWithinErrorBounds) {
  // Bounds: uniform data, step = range / levels, rmse ~ step / sqrt(12) (the K-quants' searched
  // scales do a little better than their 4/5/6 bits alone suggest).
  struct {
    DType t;
    double max_rel_rmse;
  } const cases[] = {{DType::Q4_0, 0.025}, {DType::Q4_1, 0.022},  {DType::Q5_0, 0.012},
                     {DType::Q5_1, 0.011}, {DType::Q8_0, 0.0015}, {DType::Q8_1, 0.0015},
                     {DType::Q4_K, 0.022}, {DType::Q5_K, 0.011},  {DType::Q6_K, 0.006},
                     {DType::Q8_K, 0.0015}};
  for (const auto &c : cases) {
    for (int dist = 0; dist < 3; ++dist) {
      const int64_t n = 256 * 12;
      std::vector<float> x = random_floats(size_t(n), 5 + uint64_t(dist));
      if (dist == 1)  // heavier tails and an offset (mins matter)
        for (auto &v : x) v = 0.3f + v * v * v * 2.0f;
      if (dist == 2)  // per-block magnitudes spanning 1e-3 .. 1e2, and one all-zero block
        for (size_t i = 0; i < x.size(); ++i)
          x[i] *= i < 256 ? 0.0f : std::pow(10.0f, float(i / 256 % 6) - 3.0f);
      const auto q = quantized(c.t, x);
      const auto y = dequantized(c.t, q, n);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(y[size_t(i)], spec_value(c.t, q.data(), i)) << dtype_name(c.t) << " " << i;
      if (dist == 2) {
        for (int64_t i = 0; i < 256; ++i) ASSERT_EQ(y[size_t(i)], 0.0f) << dtype_name(c.t);
        // Every block keeps its own scale: relative error per 256-value block.
        for (int64_t b = 1; b < n / 256; ++b) {
          std::vector<float> xb(x.begin() + b * 256, x.begin() + (b + 1) * 256),
              yb(y.begin() + b * 256, y.begin() + (b + 1) * 256);
          EXPECT_LT(rel_rmse(xb, yb), c.max_rel_rmse * 1.3) << dtype_name(c.t) << " block " << b;
        }
      } else {
        EXPECT_LT(rel_rmse(x, y), c.max_rel_rmse) << dtype_name(c.t) << " dist " << dist;
      }
    }
  }
}

TEST(QuantFormat, ExactlyRepresentableValuesSurvive) {
  // Values already on a format's grid come back unchanged: d * (q - 8) for q4_0 with the extreme
  // at -8 d, and d * q for q8_0 with the extreme at 127 d.
  std::vector<float> x(64);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.25f * float(int(i % 16) - 8);
  EXPECT_EQ(dequantized(DType::Q4_0, quantized(DType::Q4_0, x), 64), x);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.5f * float(int(i * 37 % 255) - 127);
  for (size_t b = 0; b < 2; ++b) x[32 * b] = 63.5f;
  EXPECT_EQ(dequantized(DType::Q8_0, quantized(DType::Q8_0, x), 64), x);
}

TEST(QuantFormat, KQuantScalesUseTheirFullRange) {
  // The largest sub-block scale quantizes to 63 (q4_K/q5_K, 6 bits) or -128 (q6_K, int8), so the
  // super-block scale d is max_scale / 63 (resp. / -128) and no precision is left unused.
  std::vector<float> x = random_floats(256, 17);
  for (size_t i = 0; i < 32; ++i) x[i] *= 4;  // sub-block 0 has the largest scale
  for (DType t : {DType::Q4_K, DType::Q5_K}) {
    const auto q = quantized(t, x);
    int max_sc = 0;
    for (int j = 0; j < 8; ++j) {
      int sc, mn;
      kernels::q4k_scale_min(q.data() + 4, j, sc, mn);
      max_sc = std::max(max_sc, sc);
    }
    EXPECT_EQ(max_sc, 63) << dtype_name(t);
  }
  const auto q6 = quantized(DType::Q6_K, x);
  int8_t lo = 0;
  for (int j = 0; j < 16; ++j) lo = std::min(lo, int8_t(q6[192 + size_t(j)]));
  EXPECT_EQ(lo, -128);
}

TEST(QuantFormat, TensorHelpersQuantizeDequantizeAndLookUpRows) {
  const int64_t rows = 3, cols = 64;
  auto xs = random_floats(size_t(rows * cols), 8);
  Tensor x = Tensor::zeros(DType::F32, {rows, cols});
  std::memcpy(x.f32(), xs.data(), xs.size() * 4);
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q5_1}) {
    Tensor q = kernels::quantize(x, t);
    EXPECT_EQ(q.dtype(), t);
    EXPECT_EQ(q.nbytes(), dtype_row_bytes(t, cols) * rows);
    Tensor y = kernels::dequantize(q);
    for (int64_t r = 0; r < rows; ++r) {
      auto row = dequantized(
          t, quantized(t, std::vector<float>(xs.begin() + r * cols, xs.begin() + (r + 1) * cols)),
          cols);
      EXPECT_EQ(0, std::memcmp(row.data(), y.f32() + r * cols, size_t(cols) * 4));
    }
    // Embedding rows of a quantized table = its dequantized rows.
    const int32_t ids[] = {2, 0, 2};
    std::vector<float> e(size_t(3 * cols));
    kernels::embedding_lookup(e.data(), ids, 3, q.data(), t, cols);
    for (int i = 0; i < 3; ++i)
      EXPECT_EQ(0, std::memcmp(e.data() + i * cols, y.f32() + ids[i] * cols, size_t(cols) * 4));
    EXPECT_EQ(kernels::pack_weight(q).data(), q.data());  // K = 64: the GGUF layout is kept
  }
  // f32 tables go through the active KernelTable.
  const int32_t id = 1;
  std::vector<float> e(static_cast<size_t>(cols));
  kernels::embedding_lookup(e.data(), &id, 1, x.data(), DType::F32, cols);
  EXPECT_EQ(0, std::memcmp(e.data(), x.f32() + cols, size_t(cols) * 4));
  EXPECT_THROW(kernels::quantize(x, DType::F16), Error);
  EXPECT_THROW(kernels::quantize(x, DType::Q4_K), Error);  // 64 is not a multiple of 256
  EXPECT_THROW(kernels::pack_weight(kernels::quantize(x, DType::Q8_1)), Error);
}

TEST(QuantFormat, Q4_0IsRepackedLosslesslyWhenRowsHoldWholeSuperBlocks) {
  const int64_t N = 5, K = 768;
  auto xs = random_floats(size_t(N * K), 41);
  Tensor x = Tensor::zeros(DType::F32, {N, K});
  std::memcpy(x.f32(), xs.data(), xs.size() * 4);
  const Tensor q = kernels::quantize(x, DType::Q4_0);
  const Tensor p = kernels::pack_weight(q);
  EXPECT_EQ(p.dtype(), DType::Q4_0X8);
  EXPECT_EQ(p.shape(), q.shape());
  EXPECT_EQ(p.nbytes(), q.nbytes());  // same bytes per row: row offsets are unchanged
  EXPECT_EQ(dtype_row_bytes(DType::Q4_0X8, K), dtype_row_bytes(DType::Q4_0, K));
  // Values survive, and unpacking gives back the very bytes.
  const Tensor yq = kernels::dequantize(q), yp = kernels::dequantize(p);
  EXPECT_EQ(0, std::memcmp(yq.data(), yp.data(), yq.nbytes()));
  std::vector<uint8_t> back(q.nbytes());
  for (int64_t n = 0; n < N; ++n)
    kernels::unpack_row_q4_0x8(p.data_as<const uint8_t>() + dtype_row_bytes(DType::Q4_0X8, K) * n,
                               back.data() + dtype_row_bytes(DType::Q4_0, K) * n, K);
  EXPECT_EQ(0, std::memcmp(back.data(), q.data(), q.nbytes()));
  // The layout itself: scale j of super-block 0 is block j's; byte 32p + i pairs blocks 2p, 2p+1.
  const auto *b0 = q.data_as<const kernels::BlockQ4_0>();
  const auto *s0 = p.data_as<const kernels::BlockQ4_0x8>();
  for (int j = 0; j < 8; ++j) EXPECT_EQ(s0->d[j], b0[j].d);
  EXPECT_EQ(s0->qs[32 * 1 + 20] & 0xF, b0[2].qs[4] >> 4);  // block 2, value 20
  EXPECT_EQ(s0->qs[32 * 1 + 20] >> 4, b0[3].qs[4] >> 4);   // block 3, value 20
  // Embedding rows of the packed table are the q4_0 rows.
  const int32_t ids[] = {4, 1};
  std::vector<float> e(size_t(2 * K));
  kernels::embedding_lookup(e.data(), ids, 2, p.data(), DType::Q4_0X8, K);
  for (int i = 0; i < 2; ++i)
    EXPECT_EQ(0, std::memcmp(e.data() + i * K, yq.f32() + ids[i] * K, size_t(K) * 4));
  // Other types and q4_0 rows that are not whole super-blocks keep the GGUF layout.
  EXPECT_EQ(kernels::pack_weight(kernels::quantize(x, DType::Q6_K)).dtype(), DType::Q6_K);
  // The packed type is lmkit's own: not a GGUF type id.
  EXPECT_GE(uint32_t(DType::Q4_0X8), 256u);
}

}  // namespace
}  // namespace lmkit::test
