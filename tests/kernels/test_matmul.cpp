// Tests of the linear-layer kernels (f32/f16/bf16 weights) and the embedding lookup.
// Not performance: bench/bench_kernels.cpp measures speed; here only values and invariants.
#include <gtest/gtest.h>

#include "core/error.h"
#include "kernels/kernel_test_util.h"

namespace lmkit::test {
namespace {

using kernels::KernelTable;

const DType kWeightTypes[] = {DType::F32, DType::F16, DType::BF16};

// A weight (N, K) stored in dtype dt in a misaligned buffer; `values` are what its bits mean.
struct WeightBuf {
  FBuf f32;
  Misaligned<uint16_t> u16;
  std::vector<float> values;
  WeightBuf(DType dt, const std::vector<float> &w)
      : f32(dt == DType::F32 ? w : std::vector<float>()),
        u16(dt == DType::F16    ? to_f16(w)
            : dt == DType::BF16 ? to_bf16(w)
                                : std::vector<uint16_t>()),
        values(dt == DType::F32   ? w
               : dt == DType::F16 ? from_f16(u16.vec())
                                  : from_bf16(u16.vec())) {}
  const void *ptr() const {
    return f32.size() ? static_cast<const void *>(f32.data()) : u16.data();
  }
};

// y (M, N) from fn with misaligned x, W, bias, y and row strides ldx = K + 3, ldy = N + 2;
// checks that the padding of y is left alone.
std::vector<float> run_matmul(kernels::matmul_fn fn, const std::vector<float> &x,
                              const WeightBuf &w, const std::vector<float> *bias, int64_t M,
                              int64_t N, int64_t K) {
  const int64_t ldx = K + 3, ldy = N + 2;
  FBuf xb(size_t(M * ldx), 1e30f);  // huge padding: reading it would wreck the result
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) xb[size_t(m * ldx + k)] = x[size_t(m * K + k)];
  FBuf bb(bias ? *bias : std::vector<float>());
  FBuf yb(size_t(M * ldy), -7.0f);
  fn(yb.data(), ldy, xb.data(), ldx, w.ptr(), bias ? bb.data() : nullptr, M, N, K);
  std::vector<float> y(size_t(M * N));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) y[size_t(m * N + n)] = yb[size_t(m * ldy + n)];
    for (int64_t n = N; n < ldy; ++n) EXPECT_EQ(yb[size_t(m * ldy + n)], -7.0f) << "wrote padding";
  }
  return y;
}

TEST(Matmul, RefComputesTheFormulaOnASmallExample) {
  // x = [[1, 2], [3, -1]];  W = [[1, 0], [0, 1], [1, 1]];  bias = [0.5, 0, -1]
  const std::vector<float> x = {1, 2, 3, -1}, bias = {0.5f, 0, -1};
  WeightBuf w(DType::F32, {1, 0, 0, 1, 1, 1});
  EXPECT_EQ(run_matmul(kernels::ref::matmul_f32, x, w, &bias, 2, 3, 2),
            (std::vector<float>{1.5f, 2, 2, 3.5f, -1, 1}));
  EXPECT_EQ(run_matmul(kernels::ref::matmul_f32, x, w, nullptr, 2, 3, 2),
            (std::vector<float>{1, 2, 3, 3, -1, 2}));
}

TEST(Matmul, RefHalfWeightsEqualF32OnConvertedWeights) {
  const int64_t M = 3, N = 5, K = 37;
  const auto x = random_floats(M * K, 1), w = random_floats(N * K, 2), bias = random_floats(N, 3);
  for (DType dt : {DType::F16, DType::BF16}) {
    WeightBuf half(dt, w), conv(DType::F32, half.values);
    EXPECT_TRUE(
        same_bits(run_matmul(kernels::ref::ref_table().matmul_for(dt), x, half, &bias, M, N, K),
                  run_matmul(kernels::ref::matmul_f32, x, conv, &bias, M, N, K)))
        << dtype_name(dt);
  }
}

TEST(Matmul, EveryTableMatchesRefOverOddShapes) {
  for (const KernelTable *t : simd_tables()) {
    for (DType dt : kWeightTypes) {
      for (int64_t K : odd_dims()) {
        for (int64_t M : {1, 2, 5, 7, 17}) {
          for (int64_t N : {1, 3, 8, 17, 33}) {
            SCOPED_TRACE(testing::Message() << t->name << " " << dtype_name(dt) << " M=" << M
                                            << " N=" << N << " K=" << K);
            const auto x = random_floats(M * K, uint64_t(K * 131 + M));
            WeightBuf w(dt, random_floats(N * K, uint64_t(K * 7 + N)));
            const auto bias = random_floats(N, uint64_t(N));
            const std::vector<float> *b = (M + N) % 2 ? &bias : nullptr;
            auto want = run_matmul(kernels::ref::ref_table().matmul_for(dt), x, w, b, M, N, K);
            auto got = run_matmul(t->matmul_for(dt), x, w, b, M, N, K);
            ASSERT_LE(nmse(want, got), kMaxNmse);
          }
        }
      }
    }
  }
}

// The contract: y[m, n] does not depend on M or on how the caller splits M and N into calls.
TEST(Matmul, RowsDoNotDependOnBatchOrSplit) {
  const int64_t M = 13, N = 29, K = 300;
  const auto x = random_floats(M * K, 5), bias = random_floats(N, 6);
  for (const KernelTable *t : kernels::available()) {
    for (DType dt : kWeightTypes) {
      SCOPED_TRACE(testing::Message() << t->name << " " << dtype_name(dt));
      WeightBuf w(dt, random_floats(N * K, 7));
      const auto whole = run_matmul(t->matmul_for(dt), x, w, &bias, M, N, K);
      std::vector<float> pieces(size_t(M * N));
      // Row by row, and each row's N split unevenly in two calls.
      for (int64_t m = 0; m < M; ++m) {
        const int64_t n_split = (m * 7) % N;
        t->matmul_for(dt)(pieces.data() + m * N, N, x.data() + m * K, K, w.ptr(), bias.data(), 1,
                          n_split, K);
        const auto *wp =
            static_cast<const char *>(w.ptr()) + n_split * K * int64_t(dtype_info(dt).block_bytes);
        t->matmul_for(dt)(pieces.data() + m * N + n_split, N, x.data() + m * K, K, wp,
                          bias.data() + n_split, 1, N - n_split, K);
      }
      EXPECT_TRUE(same_bits(whole, pieces));
      EXPECT_TRUE(same_bits(whole, run_matmul(t->matmul_for(dt), x, w, &bias, M, N, K)))
          << "not deterministic";
    }
  }
}

TEST(Matmul, EmptyShapesAreNoOpsAndKZeroGivesBias) {
  const std::vector<float> bias = {1, 2, 3};
  for (const KernelTable *t : kernels::available()) {
    for (DType dt : kWeightTypes) {
      SCOPED_TRACE(testing::Message() << t->name << " " << dtype_name(dt));
      WeightBuf w(dt, random_floats(3 * 4, 1));
      std::vector<float> y(12, -7.0f), x = random_floats(12, 2);
      t->matmul_for(dt)(y.data(), 3, x.data(), 4, w.ptr(), bias.data(), 0, 3, 4);
      t->matmul_for(dt)(y.data(), 3, x.data(), 4, w.ptr(), bias.data(), 2, 0, 4);
      EXPECT_EQ(y, std::vector<float>(12, -7.0f));
      t->matmul_for(dt)(y.data(), 3, x.data(), 4, w.ptr(), bias.data(), 2, 3, 0);
      EXPECT_EQ(std::vector<float>(y.begin(), y.begin() + 6),
                (std::vector<float>{1, 2, 3, 1, 2, 3}));
      t->matmul_for(dt)(y.data(), 3, x.data(), 4, w.ptr(), nullptr, 1, 3, 0);
      EXPECT_EQ(std::vector<float>(y.begin(), y.begin() + 3), (std::vector<float>{0, 0, 0}));
    }
  }
}

TEST(Matmul, MatmulForPicksTheDtypeEntryAndRejectsOthers) {
  for (const KernelTable *t : kernels::available()) {
    EXPECT_EQ(t->matmul_for(DType::F32), t->matmul_f32);
    EXPECT_EQ(t->matmul_for(DType::F16), t->matmul_f16);
    EXPECT_EQ(t->matmul_for(DType::BF16), t->matmul_bf16);
    EXPECT_THROW(t->matmul_for(DType::I32), Error);
  }
}

TEST(Embedding, EveryTableCopiesRowsExactlyForEveryDtype) {
  const int64_t vocab = 11;
  const std::vector<int32_t> ids = {3, 0, 10, 3, 7};
  for (const KernelTable *t : kernels::available()) {
    for (DType dt : kWeightTypes) {
      for (int64_t dim : {1, 7, 8, 16, 17, 65, 4101}) {
        SCOPED_TRACE(testing::Message() << t->name << " " << dtype_name(dt) << " dim=" << dim);
        WeightBuf table(dt, random_floats(vocab * dim, uint64_t(dim), 3.0f));
        FBuf y(ids.size() * dim + 1, -7.0f);
        t->embedding_fwd(y.data(), ids.data(), int64_t(ids.size()), table.ptr(), dt, dim);
        for (size_t i = 0; i < ids.size(); ++i)
          for (int64_t d = 0; d < dim; ++d)
            ASSERT_EQ(y[i * dim + d], table.values[size_t(ids[i] * dim + d)]) << i << " " << d;
        EXPECT_EQ(y[ids.size() * dim], -7.0f) << "wrote past the end";
        t->embedding_fwd(y.data(), ids.data(), 0, table.ptr(), dt, dim);  // n = 0: nothing
        EXPECT_EQ(y[ids.size() * dim], -7.0f);
      }
    }
  }
}

}  // namespace
}  // namespace lmkit::test
