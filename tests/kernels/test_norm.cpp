// Tests of RMSNorm and LayerNorm forward: ref against the formula, every table against ref.
// Not the backward passes (they live with training and are checked by finite differences there).
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/kernel_test_util.h"

namespace lmkit::test {
namespace {

using kernels::KernelTable;

TEST(RmsNorm, RefMatchesTheFormula) {
  const int64_t rows = 3, dim = 10;
  const float eps = 1e-5f;
  const auto x = random_floats(rows * dim, 1, 2.0f), w = random_floats(dim, 2);
  std::vector<float> y(rows * dim), rstd(rows);
  kernels::ref::rmsnorm_fwd(y.data(), rstd.data(), x.data(), w.data(), rows, dim, eps);
  for (int64_t r = 0; r < rows; ++r) {
    double ms = 0;
    for (int64_t d = 0; d < dim; ++d) ms += double(x[r * dim + d]) * x[r * dim + d] / dim;
    const double rs = 1 / std::sqrt(ms + eps);
    EXPECT_NEAR(rstd[r], rs, 1e-6 * rs);
    for (int64_t d = 0; d < dim; ++d) EXPECT_NEAR(y[r * dim + d], x[r * dim + d] * rs * w[d], 1e-6);
  }
}

TEST(RmsNorm, EveryTableMatchesRef) {
  for (const KernelTable *t : simd_tables()) {
    for (int64_t dim : odd_dims()) {
      for (int64_t rows : {1, 2, 5, 17}) {
        SCOPED_TRACE(testing::Message() << t->name << " dim=" << dim << " rows=" << rows);
        const auto x = random_floats(rows * dim, uint64_t(dim + rows), 3.0f);
        const auto w = random_floats(dim, uint64_t(dim));
        FBuf xb(x), wb(w), y0(rows * dim), y1(rows * dim), r0(rows), r1(rows);
        kernels::ref::rmsnorm_fwd(y0.data(), r0.data(), xb.data(), wb.data(), rows, dim, 1e-6f);
        t->rmsnorm_fwd(y1.data(), r1.data(), xb.data(), wb.data(), rows, dim, 1e-6f);
        EXPECT_LE(nmse(y0.vec(), y1.vec()), kMaxNmse);
        EXPECT_LE(nmse(r0.vec(), r1.vec()), kMaxNmse);
        // In place (y == x) with rstd not wanted gives the same values.
        t->rmsnorm_fwd(xb.data(), nullptr, xb.data(), wb.data(), rows, dim, 1e-6f);
        EXPECT_TRUE(same_bits(xb.vec(), y1.vec()));
      }
    }
  }
}

TEST(LayerNorm, RefNormalisesEachRow) {
  const int64_t rows = 4, dim = 33;
  const auto x = random_floats(rows * dim, 3, 5.0f);
  std::vector<float> ones(dim, 1.0f), y(rows * dim), mean(rows), rstd(rows);
  kernels::ref::layernorm_fwd(y.data(), mean.data(), rstd.data(), x.data(), ones.data(), nullptr,
                              rows, dim, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    double mu = 0, var = 0, want_mu = 0;
    for (int64_t d = 0; d < dim; ++d) want_mu += x[r * dim + d] / double(dim);
    for (int64_t d = 0; d < dim; ++d) mu += y[r * dim + d] / double(dim);
    for (int64_t d = 0; d < dim; ++d) var += (y[r * dim + d] - mu) * (y[r * dim + d] - mu) / dim;
    EXPECT_NEAR(mu, 0.0, 1e-6);
    EXPECT_NEAR(var, 1.0, 1e-5);
    EXPECT_NEAR(mean[r], want_mu, 1e-6);
    EXPECT_NEAR((x[r * dim] - mean[r]) * rstd[r], y[r * dim], 1e-5);
  }
  // With w and b: y = normalised * w + b.
  const auto w = random_floats(dim, 4), b = random_floats(dim, 5);
  std::vector<float> y2(rows * dim);
  kernels::ref::layernorm_fwd(y2.data(), nullptr, nullptr, x.data(), w.data(), b.data(), rows, dim,
                              0.0f);
  for (int64_t i = 0; i < rows * dim; ++i) EXPECT_NEAR(y2[i], y[i] * w[i % dim] + b[i % dim], 1e-5);
}

TEST(LayerNorm, EveryTableMatchesRef) {
  for (const KernelTable *t : simd_tables()) {
    for (int64_t dim : odd_dims()) {
      for (int64_t rows : {1, 2, 5, 17}) {
        for (bool with_b : {false, true}) {
          SCOPED_TRACE(testing::Message()
                       << t->name << " dim=" << dim << " rows=" << rows << " bias=" << with_b);
          // An offset mean makes the two-pass variance matter.
          auto x = random_floats(rows * dim, uint64_t(dim * 3 + rows), 2.0f);
          for (auto &v : x) v += 10.0f;
          FBuf xb(x), wb(random_floats(dim, 1)), bb(random_floats(dim, 2));
          FBuf y0(rows * dim), y1(rows * dim), m0(rows), m1(rows), r0(rows), r1(rows);
          const float *b = with_b ? bb.data() : nullptr;
          kernels::ref::layernorm_fwd(y0.data(), m0.data(), r0.data(), xb.data(), wb.data(), b,
                                      rows, dim, 1e-5f);
          t->layernorm_fwd(y1.data(), m1.data(), r1.data(), xb.data(), wb.data(), b, rows, dim,
                           1e-5f);
          EXPECT_LE(nmse(y0.vec(), y1.vec()), kMaxNmse);
          EXPECT_LE(nmse(m0.vec(), m1.vec()), kMaxNmse);
          EXPECT_LE(nmse(r0.vec(), r1.vec()), kMaxNmse);
          t->layernorm_fwd(xb.data(), nullptr, nullptr, xb.data(), wb.data(), b, rows, dim, 1e-5f);
          EXPECT_TRUE(same_bits(xb.vec(), y1.vec()));
        }
      }
    }
  }
}

TEST(Norms, ZeroRowsTouchNothing) {
  for (const KernelTable *t : kernels::available()) {
    std::vector<float> y(4, -7.0f), x(4, 1.0f), w(4, 1.0f), s(1, -7.0f);
    t->rmsnorm_fwd(y.data(), s.data(), x.data(), w.data(), 0, 4, 1e-5f);
    t->layernorm_fwd(y.data(), s.data(), s.data(), x.data(), w.data(), nullptr, 0, 4, 1e-5f);
    EXPECT_EQ(y, std::vector<float>(4, -7.0f)) << t->name;
    EXPECT_EQ(s[0], -7.0f) << t->name;
  }
}

}  // namespace
}  // namespace lmkit::test
