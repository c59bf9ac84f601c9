// Tests of RMSNorm and LayerNorm backward: ref against finite differences of the forward formula
// in double, every table against ref (odd sizes, misaligned, dx aliasing dy), accumulation of dw/db.
// Not the forward passes (test_norm.cpp).
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/kernel_test_util.h"

namespace lmkit::test {
namespace {

using kernels::KernelTable;

// L = sum_{r,d} y[r,d] * dy[r,d] with y the norm's output, in double.
// in = [x (rows*dim), w (dim), b (dim)] (b ignored for RMSNorm).
double rmsnorm_loss(const std::vector<double> &in, const std::vector<float> &dy, int64_t rows,
                    int64_t dim, double eps) {
  const double *x = in.data(), *w = x + rows * dim;
  double L = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t d = 0; d < dim; ++d) ss += x[r * dim + d] * x[r * dim + d];
    const double rs = 1 / std::sqrt(ss / dim + eps);
    for (int64_t d = 0; d < dim; ++d) L += x[r * dim + d] * rs * w[d] * dy[r * dim + d];
  }
  return L;
}

double layernorm_loss(const std::vector<double> &in, const std::vector<float> &dy, int64_t rows,
                      int64_t dim, double eps) {
  const double *x = in.data(), *w = x + rows * dim, *b = w + dim;
  double L = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double mu = 0, var = 0;
    for (int64_t d = 0; d < dim; ++d) mu += x[r * dim + d] / dim;
    for (int64_t d = 0; d < dim; ++d) var += (x[r * dim + d] - mu) * (x[r * dim + d] - mu) / dim;
    const double rs = 1 / std::sqrt(var + eps);
    for (int64_t d = 0; d < dim; ++d)
      L += ((x[r * dim + d] - mu) * rs * w[d] + b[d]) * dy[r * dim + d];
  }
  return L;
}

// Concatenation of float vectors as doubles.
std::vector<double> cat(std::initializer_list<const std::vector<float> *> parts) {
  std::vector<double> v;
  for (auto *p : parts) v.insert(v.end(), p->begin(), p->end());
  return v;
}

// Rows of one element (RMSNorm) or two (LayerNorm) are left out of the finite-difference checks:
// there y hardly depends on x (dy/dx ~ eps / x^2), so dx is the cancellation of terms 1e5 times
// larger and only as accurate as the float rstd/mean saved by the forward.
TEST(RmsNormBwd, RefMatchesFiniteDifferences) {
  const float eps = 1e-5f;
  for (auto [rows, dim] : {std::pair<int64_t, int64_t>{1, 2}, {3, 7}, {4, 33}}) {
    SCOPED_TRACE(testing::Message() << "rows=" << rows << " dim=" << dim);
    const auto x = random_floats(rows * dim, 1, 2.0f), w = random_floats(dim, 2, 1.5f);
    const auto dy = random_floats(rows * dim, 3);
    std::vector<float> y(rows * dim), rstd(rows), dx(rows * dim, -7.0f), dw0 = random_floats(dim, 4);
    kernels::ref::rmsnorm_fwd(y.data(), rstd.data(), x.data(), w.data(), rows, dim, eps);
    std::vector<float> dw = dw0;
    kernels::ref::rmsnorm_bwd(dx.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(),
                              rows, dim);
    const auto g = fd_gradient(cat({&x, &w}), [&](const std::vector<double> &in) {
      return rmsnorm_loss(in, dy, rows, dim, eps);
    });
    const std::vector<double> gx(g.begin(), g.begin() + rows * dim);
    std::vector<double> gw(g.begin() + rows * dim, g.end());
    for (int64_t d = 0; d < dim; ++d) gw[d] += dw0[d];  // dw accumulates onto what was there
    EXPECT_LE(max_rel_err(gx, dx), 1e-5);
    EXPECT_LE(max_rel_err(gw, dw), 1e-5);
  }
}

TEST(LayerNormBwd, RefMatchesFiniteDifferences) {
  const float eps = 1e-5f;
  for (auto [rows, dim] : {std::pair<int64_t, int64_t>{1, 3}, {3, 7}, {4, 33}}) {
    SCOPED_TRACE(testing::Message() << "rows=" << rows << " dim=" << dim);
    auto x = random_floats(rows * dim, 5, 2.0f);
    for (auto &v : x) v += 3.0f;  // a mean away from 0
    const auto w = random_floats(dim, 6, 1.5f), b = random_floats(dim, 7);
    const auto dy = random_floats(rows * dim, 8);
    std::vector<float> y(rows * dim), mean(rows), rstd(rows), dx(rows * dim, -7.0f);
    const auto dw0 = random_floats(dim, 9), db0 = random_floats(dim, 10);
    kernels::ref::layernorm_fwd(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(),
                                rows, dim, eps);
    std::vector<float> dw = dw0, db = db0;
    kernels::ref::layernorm_bwd(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(),
                                mean.data(), rstd.data(), rows, dim);
    const auto g = fd_gradient(cat({&x, &w, &b}), [&](const std::vector<double> &in) {
      return layernorm_loss(in, dy, rows, dim, eps);
    });
    const std::vector<double> gx(g.begin(), g.begin() + rows * dim);
    std::vector<double> gw(g.begin() + rows * dim, g.begin() + rows * dim + dim);
    std::vector<double> gb(g.begin() + rows * dim + dim, g.end());
    for (int64_t d = 0; d < dim; ++d) {
      gw[d] += dw0[d];
      gb[d] += db0[d];
    }
    EXPECT_LE(max_rel_err(gx, dx), 1e-5);
    EXPECT_LE(max_rel_err(gw, dw), 1e-5);
    EXPECT_LE(max_rel_err(gb, db), 1e-5);
    // Without db the other outputs are the same and nothing else is written.
    std::vector<float> dx2(rows * dim), dw2 = dw0;
    kernels::ref::layernorm_bwd(dx2.data(), dw2.data(), nullptr, dy.data(), x.data(), w.data(),
                                mean.data(), rstd.data(), rows, dim);
    EXPECT_TRUE(same_bits(dx, dx2));
    EXPECT_TRUE(same_bits(dw, dw2));
  }
}

TEST(RmsNormBwd, EveryTableMatchesRef) {
  for (const KernelTable *t : simd_tables()) {
    for (int64_t dim : odd_dims()) {
      for (int64_t rows : {1, 2, 5, 17}) {
        SCOPED_TRACE(testing::Message() << t->name << " dim=" << dim << " rows=" << rows);
        const uint64_t seed = uint64_t(dim * 7 + rows);
        FBuf x(random_floats(rows * dim, seed, 3.0f)), w(random_floats(dim, seed + 1));
        FBuf dy(random_floats(rows * dim, seed + 2)), rstd(rows);
        FBuf y(rows * dim);
        kernels::ref::rmsnorm_fwd(y.data(), rstd.data(), x.data(), w.data(), rows, dim, 1e-6f);
        const auto dw0 = random_floats(dim, seed + 3);
        FBuf dx0(rows * dim, -7.0f), dx1(rows * dim, -9.0f), dw_0(dw0), dw_1(dw0);
        kernels::ref::rmsnorm_bwd(dx0.data(), dw_0.data(), dy.data(), x.data(), w.data(),
                                  rstd.data(), rows, dim);
        t->rmsnorm_bwd(dx1.data(), dw_1.data(), dy.data(), x.data(), w.data(), rstd.data(), rows,
                       dim);
        // dim 1: dx is pure cancellation noise (see above); dw is still checked.
        if (dim > 1) {
          EXPECT_LE(nmse(dx0.vec(), dx1.vec()), kMaxNmse);
        }
        EXPECT_LE(nmse(dw_0.vec(), dw_1.vec()), kMaxNmse);
        // In place (dx == dy) gives the same bits; dw accumulates again.
        FBuf dw_2(dw0);
        t->rmsnorm_bwd(dy.data(), dw_2.data(), dy.data(), x.data(), w.data(), rstd.data(), rows,
                       dim);
        EXPECT_TRUE(same_bits(dy.vec(), dx1.vec()));
        EXPECT_TRUE(same_bits(dw_2.vec(), dw_1.vec()));
      }
    }
  }
}

TEST(LayerNormBwd, EveryTableMatchesRef) {
  for (const KernelTable *t : simd_tables()) {
    for (int64_t dim : odd_dims()) {
      for (int64_t rows : {1, 2, 5, 17}) {
        for (bool with_b : {false, true}) {
          SCOPED_TRACE(testing::Message()
                       << t->name << " dim=" << dim << " rows=" << rows << " db=" << with_b);
          const uint64_t seed = uint64_t(dim * 11 + rows);
          auto xv = random_floats(rows * dim, seed, 2.0f);
          for (auto &v : xv) v += 5.0f;
          FBuf x(xv), w(random_floats(dim, seed + 1)), dy(random_floats(rows * dim, seed + 2));
          FBuf y(rows * dim), mean(rows), rstd(rows);
          kernels::ref::layernorm_fwd(y.data(), mean.data(), rstd.data(), x.data(), w.data(),
                                      nullptr, rows, dim, 1e-5f);
          const auto dw0 = random_floats(dim, seed + 3), db0 = random_floats(dim, seed + 4);
          FBuf dx0(rows * dim, -7.0f), dx1(rows * dim, -9.0f);
          FBuf dw_0(dw0), dw_1(dw0), db_0(db0), db_1(db0);
          kernels::ref::layernorm_bwd(dx0.data(), dw_0.data(), with_b ? db_0.data() : nullptr,
                                      dy.data(), x.data(), w.data(), mean.data(), rstd.data(), rows,
                                      dim);
          t->layernorm_bwd(dx1.data(), dw_1.data(), with_b ? db_1.data() : nullptr, dy.data(),
                           x.data(), w.data(), mean.data(), rstd.data(), rows, dim);
          EXPECT_LE(nmse(dx0.vec(), dx1.vec()), kMaxNmse);
          EXPECT_LE(nmse(dw_0.vec(), dw_1.vec()), kMaxNmse);
          EXPECT_LE(nmse(db_0.vec(), db_1.vec()), kMaxNmse);
          if (!with_b) {
            EXPECT_EQ(db_1.vec(), db0);
          }
          FBuf dw_2(dw0), db_2(db0);
          t->layernorm_bwd(dy.data(), dw_2.data(), with_b ? db_2.data() : nullptr, dy.data(),
                           x.data(), w.data(), mean.data(), rstd.data(), rows, dim);
          EXPECT_TRUE(same_bits(dy.vec(), dx1.vec()));
          EXPECT_TRUE(same_bits(dw_2.vec(), dw_1.vec()));
          EXPECT_TRUE(same_bits(db_2.vec(), db_1.vec()));
        }
      }
    }
  }
}

// dx is overwritten (not accumulated), dw and db accumulate; zero rows touch nothing.
TEST(NormBwd, WrittenAndAccumulatedOutputs) {
  const int64_t rows = 3, dim = 20;
  const auto x = random_floats(rows * dim, 1, 2.0f), w = random_floats(dim, 2);
  const auto dy = random_floats(rows * dim, 3);
  std::vector<float> y(rows * dim), mean(rows), rstd(rows);
  kernels::ref::layernorm_fwd(y.data(), mean.data(), rstd.data(), x.data(), w.data(), nullptr,
                              rows, dim, 1e-5f);
  for (const KernelTable *t : kernels::available()) {
    SCOPED_TRACE(t->name);
    std::vector<float> dx_a(rows * dim, 0.0f), dx_b(rows * dim, 123.0f);
    std::vector<float> dw_a(dim, 0.0f), db_a(dim, 0.0f), dw_b(dim, 0.0f), db_b(dim, 0.0f);
    t->layernorm_bwd(dx_a.data(), dw_a.data(), db_a.data(), dy.data(), x.data(), w.data(),
                     mean.data(), rstd.data(), rows, dim);
    t->layernorm_bwd(dx_b.data(), dw_b.data(), db_b.data(), dy.data(), x.data(), w.data(),
                     mean.data(), rstd.data(), rows, dim);
    t->layernorm_bwd(dx_b.data(), dw_b.data(), db_b.data(), dy.data(), x.data(), w.data(),
                     mean.data(), rstd.data(), rows, dim);
    EXPECT_TRUE(same_bits(dx_a, dx_b));  // written: the 123s and the first call are gone
    for (int64_t d = 0; d < dim; ++d) {
      EXPECT_NEAR(dw_b[d], 2 * dw_a[d], 1e-6);  // accumulated twice
      EXPECT_NEAR(db_b[d], 2 * db_a[d], 1e-6);
      double col = 0;
      for (int64_t r = 0; r < rows; ++r) col += dy[r * dim + d];
      EXPECT_NEAR(db_a[d], col, 1e-5);
    }
    std::vector<float> dw_c(dim, 0.0f);
    t->rmsnorm_bwd(dx_a.data(), dw_c.data(), dy.data(), x.data(), w.data(), rstd.data(), rows,
                   dim);
    std::vector<float> dw_d = dw_c;
    t->rmsnorm_bwd(dx_b.data(), dw_d.data(), dy.data(), x.data(), w.data(), rstd.data(), rows,
                   dim);
    for (int64_t d = 0; d < dim; ++d) EXPECT_NEAR(dw_d[d], 2 * dw_c[d], 1e-6);
    EXPECT_TRUE(same_bits(dx_a, dx_b));
    // Zero rows: nothing read or written.
    std::vector<float> untouched(dim, -7.0f), u2 = untouched, u3 = untouched;
    t->rmsnorm_bwd(u2.data(), u3.data(), nullptr, nullptr, w.data(), nullptr, 0, dim);
    t->layernorm_bwd(u2.data(), u3.data(), u3.data(), nullptr, nullptr, w.data(), nullptr, nullptr,
                     0, dim);
    EXPECT_EQ(u2, untouched);
    EXPECT_EQ(u3, untouched);
  }
}

}  // namespace
}  // namespace lmkit::test
