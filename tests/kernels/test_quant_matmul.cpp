// Tests of the quantized matmul kernels: the activation quantizers (SIMD == ref bit for bit), ref
// against dequantized float products, every SIMD table against ref over odd shapes (NMSE, and
// exact when every float step is exact), invariance to M and N splits, dispatch.
// Not the formats themselves (test_quant_format.cpp) and not speed (bench/bench_quant.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/kernel_test_util.h"
#include "kernels/quant.h"

namespace lmkit::test {
namespace {

using kernels::QuantKernels;

const DType kMatmulTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,  DType::Q8_0,
                              DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q4_0X8};

std::vector<const QuantKernels *> simd_quant_tables() {
  std::vector<const QuantKernels *> v;
  for (const QuantKernels *t : kernels::quant_available())
    if (std::string(t->name) != "ref") v.push_back(t);
  return v;
}

// W (N, K) quantized to t from float values, in a buffer misaligned by the block's own alignment
// (2 bytes, 4 for q8_K), ending at the allocation's end.
struct QWeight {
  std::vector<uint8_t> bytes;
  Misaligned<uint16_t> buf;  // 2-byte units: block data starts 2 bytes past a 64-byte boundary
  QWeight(DType t, const std::vector<uint8_t> &b) : bytes(b), buf((b.size() + 1) / 2) {
    std::memcpy(buf.data(), b.data(), b.size());
  }
  const void *ptr() const { return buf.data(); }
};

std::vector<uint8_t> quantize_matrix(DType t, const std::vector<float> &w, int64_t N, int64_t K) {
  const size_t rb = dtype_row_bytes(t, K);
  std::vector<uint8_t> q(rb * size_t(N));
  for (int64_t n = 0; n < N; ++n) kernels::quantize_row(t, w.data() + n * K, q.data() + rb * n, K);
  return q;
}

// y (M, N) from fn with x rows of stride K + 3 (misaligned), y of stride N + 2 whose padding must
// stay untouched.
std::vector<float> run(kernels::matmul_fn fn, const std::vector<float> &x, const void *w,
                       const std::vector<float> *bias, int64_t M, int64_t N, int64_t K) {
  const int64_t ldx = K + 3, ldy = N + 2;
  FBuf xb(size_t(M * ldx), 1e30f);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) xb[size_t(m * ldx + k)] = x[size_t(m * K + k)];
  FBuf bb(bias ? *bias : std::vector<float>());
  FBuf yb(size_t(M * ldy), -7.0f);
  fn(yb.data(), ldy, xb.data(), ldx, w, bias ? bb.data() : nullptr, M, N, K);
  std::vector<float> y(size_t(M * N));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) y[size_t(m * N + n)] = yb[size_t(m * ldy + n)];
    for (int64_t n = N; n < ldy; ++n) EXPECT_EQ(yb[size_t(m * ldy + n)], -7.0f) << "wrote padding";
  }
  return y;
}

int64_t block_of(DType t) {
  return dtype_info(t).block;
}

TEST(QuantMatmul, ActivationQuantizersMatchRefBitForBit) {
  const QuantKernels &ref = kernels::ref::quant_table();
  for (const QuantKernels *t : simd_quant_tables()) {
    for (int64_t n : {256, 768, 4096}) {
      auto x = random_floats(size_t(n), uint64_t(n), 3.0f);
      // Ties: x * 127 / amax landing on .5 must round to even in both; zeros, a tiny block.
      for (int64_t i = 0; i < 32; ++i) x[size_t(i)] = float(i) - 15.5f;
      x[31] = 127.0f;
      for (int64_t i = 64; i < 96; ++i) x[size_t(i)] = 0.0f;
      for (int64_t i = 96; i < 128; ++i) x[size_t(i)] = 1e-35f * float(i);
      for (int which = 0; which < 2; ++which) {
        const int64_t nd = which ? n / 256 : n / 32, ns = which ? n / 16 : n / 32;
        std::vector<int8_t> q0(static_cast<size_t>(n)), q1(static_cast<size_t>(n));
        std::vector<float> d0(static_cast<size_t>(nd)), d1(static_cast<size_t>(nd));
        std::vector<int16_t> s0(static_cast<size_t>(ns)), s1(static_cast<size_t>(ns));
        auto fr = which ? ref.quantize_act_256 : ref.quantize_act_32;
        auto ft = which ? t->quantize_act_256 : t->quantize_act_32;
        FBuf xb(x);
        fr(kernels::ActQ8{q0.data(), d0.data(), s0.data()}, xb.data(), n);
        ft(kernels::ActQ8{q1.data(), d1.data(), s1.data()}, xb.data(), n);
        EXPECT_EQ(q0, q1) << t->name << " n=" << n << " which=" << which;
        EXPECT_TRUE(same_bits(d0, d1)) << t->name;
        EXPECT_EQ(s0, s1) << t->name;
      }
    }
  }
  // The reference itself: half-way cases round to even; the scale is amax / 127.
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -3.5f;
  x[3] = 0.5f;
  std::vector<int8_t> q(32);
  float d;
  int16_t s;
  ref.quantize_act_32(kernels::ActQ8{q.data(), &d, &s}, x.data(), 32);
  EXPECT_EQ(d, 1.0f);
  EXPECT_EQ(q[1], 2);
  EXPECT_EQ(q[2], -4);
  EXPECT_EQ(q[3], 0);
  EXPECT_EQ(s, 127 + 2 - 4);
}

TEST(QuantMatmul, RefEqualsTheFloatProductUpToActivationRounding) {
  // ref = sum over blocks of (dequantized W) . (dequantized x_q) exactly (double sums), so it
  // differs from the float product with the dequantized W only by x's 8-bit rounding.
  const int64_t M = 3, N = 7, K = 512;
  const auto x = random_floats(size_t(M * K), 1), w = random_floats(size_t(N * K), 2);
  for (DType t : kMatmulTypes) {
    const auto q = quantize_matrix(t, w, N, K);
    std::vector<float> wd(size_t(N * K));
    for (int64_t n = 0; n < N; ++n)
      kernels::dequantize_row(t, q.data() + dtype_row_bytes(t, K) * n, wd.data() + n * K, K);
    std::vector<float> expect(size_t(M * N));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += double(x[size_t(m * K + k)]) * wd[size_t(n * K + k)];
        expect[size_t(m * N + n)] = float(acc);
      }
    QWeight qw(t, q);
    const auto y = run(kernels::ref::quant_table().matmul_for(t), x, qw.ptr(), nullptr, M, N, K);
    // Per-value rounding of x is <= amax/254: relative error of a dot ~ 1/254/sqrt(3) ~ 2e-3.
    EXPECT_LT(nmse(expect, y), 1e-4) << dtype_name(t);
    EXPECT_GT(nmse(expect, y), 0.0) << dtype_name(t) << ": x was not quantized?";
  }
}

TEST(QuantMatmul, EveryTableMatchesRefOverOddShapes) {
  for (const QuantKernels *tab : simd_quant_tables()) {
    for (DType t : kMatmulTypes) {
      const int64_t qb = block_of(t);
      for (int64_t K : {qb, 3 * qb, 9 * qb, 17 * qb}) {
        for (int64_t M : {1, 2, 3, 5, 7, 8, 13, 16, 27}) {
          for (int64_t N : {1, 3, 4, 5, 9, 17}) {
            const auto x = random_floats(size_t(M * K), uint64_t(M * 131 + K)),
                       w = random_floats(size_t(N * K), uint64_t(N * 7 + K), 0.5f),
                       bias = random_floats(size_t(N), uint64_t(N));
            QWeight qw(t, quantize_matrix(t, w, N, K));
            for (const std::vector<float> *b :
                 {&bias, static_cast<const std::vector<float> *>(nullptr)}) {
              const auto want =
                  run(kernels::ref::quant_table().matmul_for(t), x, qw.ptr(), b, M, N, K);
              const auto got = run(tab->matmul_for(t), x, qw.ptr(), b, M, N, K);
              ASSERT_LT(nmse(want, got), kMaxNmse)
                  << tab->name << " " << dtype_name(t) << " M=" << M << " N=" << N << " K=" << K;
            }
          }
        }
      }
    }
  }
}

// Random blocks whose every float step is exact: power-of-two scales, x integers with one 127 per
// activation block (so d_x = 1 and x_q = x), small enough that all sums stay below 2^24.
std::vector<uint8_t> exact_blocks(DType t, int64_t N, int64_t K, uint64_t seed) {
  std::vector<uint8_t> q(dtype_row_bytes(t, K) * size_t(N));
  uint64_t s = seed;
  auto rnd = [&] {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return uint32_t(s >> 33);
  };
  for (auto &c : q) c = uint8_t(rnd());
  auto put = [&](size_t at, float v) {
    const uint16_t h = f32_to_f16(v);
    std::memcpy(&q[at], &h, 2);
  };
  const size_t bb = dtype_info(t).block_bytes;
  for (size_t b = 0; b < q.size(); b += bb) {
    const float p2 = std::ldexp(1.0f, int(rnd() % 6) - 8);
    switch (t) {
      case DType::Q4_1:
      case DType::Q5_1:
        put(b, p2);
        put(b + 2, std::ldexp(float(int(rnd() % 9) - 4), -3));
        break;
      case DType::Q4_K:
      case DType::Q5_K:
        put(b, p2);
        put(b + 2, std::ldexp(1.0f, int(rnd() % 4) - 6));
        break;
      case DType::Q4_0X8:
        for (int j = 0; j < 8; ++j) put(b + 2 * size_t(j), std::ldexp(1.0f, int(rnd() % 6) - 8));
        break;
      case DType::Q6_K:
        put(b + 208, p2);
        for (int j = 0; j < 16; ++j) q[b + 192 + size_t(j)] = uint8_t(int8_t(int(rnd() % 17) - 8));
        break;
      default:
        put(b, p2);
    }
  }
  return q;
}

TEST(QuantMatmul, TablesEqualRefExactlyWhenEveryFloatStepIsExact) {
  // The integer part (activation quantization, block dot products, sub-block scales, offsets and
  // mins) is exact in every table; with exact float steps the results must be the same bits.
  for (const QuantKernels *tab : simd_quant_tables()) {
    for (DType t : kMatmulTypes) {
      // x is quantized per 32 values, except for the K-quants (per 256).
      const bool k_quant = t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K;
      const int64_t qb = k_quant ? 256 : 32, K = 5 * 256, M = 19, N = 5;
      std::vector<float> x(size_t(M * K));
      uint64_t s = 3;
      for (size_t i = 0; i < x.size(); ++i) {
        s = s * 6364136223846793005ull + 1;
        x[i] = float(int(s >> 59) - 16);  // [-16, 15]
        if (i % size_t(qb) == 0) x[i] = (s >> 20) & 1 ? 127.0f : -127.0f;
      }
      std::vector<float> bias(static_cast<size_t>(N));
      for (int64_t n = 0; n < N; ++n) bias[size_t(n)] = 0.125f * float(n - 2);
      QWeight qw(t, exact_blocks(t, N, K, 11 + uint64_t(t)));
      const auto want = run(kernels::ref::quant_table().matmul_for(t), x, qw.ptr(), &bias, M, N, K);
      const auto got = run(tab->matmul_for(t), x, qw.ptr(), &bias, M, N, K);
      EXPECT_TRUE(same_bits(want, got)) << tab->name << " " << dtype_name(t);
    }
  }
}

TEST(QuantMatmul, ResultsDoNotDependOnMOrTheSplitOfN) {
  // y[m, n] depends only on x[m, :] and W[n, :]: decode (M = 1) and prefill agree bit for bit.
  // M = 27: q8_0 takes groups of 8 rows (two at a time, then one) and 3 rows one by one.
  for (const QuantKernels *tab : kernels::quant_available()) {
    for (DType t : kMatmulTypes) {
      const int64_t K = 2 * 256, M = 27, N = 13;
      const auto x = random_floats(size_t(M * K), 21), w = random_floats(size_t(N * K), 22),
                 bias = random_floats(size_t(N), 23);
      const auto q = quantize_matrix(t, w, N, K);
      const auto fn = tab->matmul_for(t);
      std::vector<float> all(size_t(M * N)), parts(size_t(M * N));
      fn(all.data(), N, x.data(), K, q.data(), bias.data(), M, N, K);
      for (int64_t m = 0; m < M; ++m) {
        const int64_t n_split = 1 + m % 5;  // rows [0, s) and [s, N) in two calls
        const size_t rb = dtype_row_bytes(t, K);
        fn(parts.data() + m * N, N, x.data() + m * K, K, q.data(), bias.data(), 1, n_split, K);
        fn(parts.data() + m * N + n_split, N, x.data() + m * K, K, q.data() + rb * size_t(n_split),
           bias.data() + n_split, 1, N - n_split, K);
      }
      EXPECT_TRUE(same_bits(all, parts)) << tab->name << " " << dtype_name(t);
    }
  }
}

TEST(QuantMatmul, LongRowsAreQuantizedInChunks) {
  // K beyond the kernels' stack tile (32768 values) takes several activation chunks.
  const int64_t K = 40960, N = 3;
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q6_K}) {
    const auto x = random_floats(size_t(2 * K), 31), w = random_floats(size_t(N * K), 32);
    QWeight qw(t, quantize_matrix(t, w, N, K));
    const auto want = run(kernels::ref::quant_table().matmul_for(t), x, qw.ptr(), nullptr, 2, N, K);
    for (const QuantKernels *tab : simd_quant_tables())
      EXPECT_LT(nmse(want, run(tab->matmul_for(t), x, qw.ptr(), nullptr, 2, N, K)), kMaxNmse)
          << tab->name << " " << dtype_name(t);
  }
}

TEST(QuantMatmul, ZeroSizesAndZeroRows) {
  for (const QuantKernels *tab : kernels::quant_available()) {
    const auto fn = tab->matmul_for(DType::Q8_0);
    float y = 5.0f;
    fn(&y, 1, nullptr, 0, nullptr, nullptr, 0, 1, 32);  // M = 0
    fn(&y, 1, nullptr, 0, nullptr, nullptr, 1, 0, 32);  // N = 0
    EXPECT_EQ(y, 5.0f);
    // An all-zero x row gives exactly the bias.
    std::vector<float> x(64, 0.0f), b = {0.5f, -2.0f};
    const auto q = quantize_matrix(DType::Q8_0, random_floats(128, 3), 2, 64);
    std::vector<float> out(2);
    fn(out.data(), 2, x.data(), 64, q.data(), b.data(), 1, 2, 64);
    EXPECT_EQ(out, b) << tab->name;
  }
}

TEST(QuantMatmul, KernelTablesDispatchQuantizedTypes) {
  for (const kernels::KernelTable *k : kernels::available()) {
    const QuantKernels &q = kernels::quant_kernels_for(*k);
    for (DType t : kMatmulTypes) EXPECT_EQ(k->matmul_for(t), q.matmul_for(t)) << k->name;
    EXPECT_THROW(k->matmul_for(DType::Q8_1), Error);
    EXPECT_THROW(k->matmul_for(DType::Q8_K), Error);
    if (std::string(k->name) == "ref") {
      EXPECT_EQ(&q, &kernels::ref::quant_table());
    }
    if (std::string(k->name) == "avx2") {
      EXPECT_STREQ(q.name, "avx2");
    }
  }
  EXPECT_EQ(&kernels::quant_active(), &kernels::quant_kernels_for(kernels::active()));
  EXPECT_STREQ(kernels::quant_available().front()->name, "ref");
  EXPECT_TRUE(kernels::quant_has_matmul(DType::Q6_K));
  EXPECT_FALSE(kernels::quant_has_matmul(DType::Q8_K));
}

}  // namespace
}  // namespace lmkit::test
