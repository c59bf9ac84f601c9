// Tests of the elementwise activations, residual add and softmax: ref against the textbook
// formulas, every table against ref, per-element accuracy over wide ranges, special values.
// Not the attention softmax (test_attention.cpp covers that path).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>

#include "kernels/kernel_test_util.h"

namespace lmkit::test {
namespace {

using kernels::KernelTable;
using Unary = void (*)(float *, const float *, int64_t);

struct UnaryOp {
  const char *name;
  Unary KernelTable::*entry;
  double (*formula)(double);  // the textbook formula, for checking ref itself
};

const UnaryOp kUnary[] = {
    {"silu", &KernelTable::silu_fwd, [](double x) { return x / (1 + std::exp(-x)); }},
    {"gelu", &KernelTable::gelu_fwd,
     [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }},
    {"gelu_tanh", &KernelTable::gelu_tanh_fwd,
     [](double x) {
       return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
     }},
};

TEST(Activation, RefMatchesFormulasAndKnownValues) {
  const auto &r = kernels::ref::ref_table();
  // Known values: silu(1) = 1/(1+e^-1), gelu(1) = Phi(1), gelu_tanh(1) from the GPT-2 formula.
  float one = 1.0f, y;
  r.silu_fwd(&y, &one, 1);
  EXPECT_NEAR(y, 0.7310585786300049, 1e-7);
  r.gelu_fwd(&y, &one, 1);
  EXPECT_NEAR(y, 0.8413447460685429, 1e-7);
  r.gelu_tanh_fwd(&y, &one, 1);
  EXPECT_NEAR(y, 0.8411919906082768, 1e-7);
  const auto x = random_floats(1000, 1, 6.0f);
  for (const UnaryOp &op : kUnary) {
    std::vector<float> out(x.size());
    (r.*op.entry)(out.data(), x.data(), int64_t(x.size()));
    for (size_t i = 0; i < x.size(); ++i)
      EXPECT_NEAR(out[i], op.formula(x[i]), 1e-6 * (1 + std::abs(x[i]))) << op.name << x[i];
  }
  std::vector<float> up = random_floats(1000, 2), sw(1000), ad(1000);
  r.swiglu_fwd(sw.data(), x.data(), up.data(), 1000);
  r.add_fwd(ad.data(), x.data(), up.data(), 1000);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_NEAR(sw[i], x[i] / (1 + std::exp(-double(x[i]))) * up[i], 1e-5);
    EXPECT_EQ(ad[i], x[i] + up[i]);
  }
}

TEST(Activation, EveryTableMatchesRefOverOddSizes) {
  for (const KernelTable *t : simd_tables()) {
    for (int64_t n : odd_dims()) {
      SCOPED_TRACE(testing::Message() << t->name << " n=" << n);
      const auto x = random_floats(n, uint64_t(n), 8.0f),
                 u = random_floats(n, uint64_t(n + 1), 3.0f);
      FBuf xb(x), ub(u), y0(n), y1(n);
      for (const UnaryOp &op : kUnary) {
        (kernels::ref::ref_table().*op.entry)(y0.data(), xb.data(), n);
        (t->*op.entry)(y1.data(), xb.data(), n);
        EXPECT_LE(nmse(y0.vec(), y1.vec()), kMaxNmse) << op.name;
        FBuf inplace(x);
        (t->*op.entry)(inplace.data(), inplace.data(), n);
        EXPECT_TRUE(same_bits(inplace.vec(), y1.vec())) << op.name << " in place";
      }
      kernels::ref::swiglu_fwd(y0.data(), xb.data(), ub.data(), n);
      t->swiglu_fwd(y1.data(), xb.data(), ub.data(), n);
      EXPECT_LE(nmse(y0.vec(), y1.vec()), kMaxNmse) << "swiglu";
      FBuf g(x), up(u);
      t->swiglu_fwd(g.data(), g.data(), ub.data(), n);    // y aliases gate
      t->swiglu_fwd(up.data(), xb.data(), up.data(), n);  // y aliases up
      EXPECT_TRUE(same_bits(g.vec(), y1.vec()));
      EXPECT_TRUE(same_bits(up.vec(), y1.vec()));
      kernels::ref::add_fwd(y0.data(), xb.data(), ub.data(), n);
      t->add_fwd(y1.data(), xb.data(), ub.data(), n);
      EXPECT_TRUE(same_bits(y0.vec(), y1.vec())) << "add is one rounding: exact everywhere";
      FBuf a(x);
      t->add_fwd(a.data(), a.data(), ub.data(), n);
      EXPECT_TRUE(same_bits(a.vec(), y1.vec()));
    }
  }
}

// Per element, not just NMSE: the vectorised exp/erf must be accurate across the whole range,
// tails included (a bad erfc for x << 0 would hide inside an NMSE).
TEST(Activation, EveryTableIsAccuratePerElementOverAWideRange) {
  std::vector<float> x;
  for (double v = -30; v <= 30; v += 0.01) x.push_back(float(v));
  for (float v : {-100.0f, -87.5f, -88.8f, 88.7f, 89.5f, 100.0f, -1e4f, 1e4f, -1e30f, 1e30f, 0.0f,
                  -0.0f, 1e-30f, -1e-30f, 1e-40f})
    x.push_back(v);
  const int64_t n = int64_t(x.size());
  for (const KernelTable *t : simd_tables()) {
    for (const UnaryOp &op : kUnary) {
      std::vector<float> want(x.size()), got(x.size());
      (kernels::ref::ref_table().*op.entry)(want.data(), x.data(), n);
      (t->*op.entry)(got.data(), x.data(), n);
      double worst = 0;  // largest error in units of the tolerance below
      for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_FALSE(std::isnan(got[i])) << t->name << " " << op.name << "(" << x[i] << ")";
        const double w = want[i], g = got[i];
        if (std::abs(w) < 1e-30) {  // deep tails: only the magnitude matters
          EXPECT_LT(std::abs(g), 1e-30) << t->name << " " << op.name << "(" << x[i] << ")";
          continue;
        }
        // A few ulp, growing with |ln|y|| in the tails: there y ~ exp(g(x)) and the float
        // rounding of g(x) itself (|g| up to ~70) is amplified into y.
        const double tol = 2.5e-7 * (1 + std::abs(std::log(std::abs(w))));
        worst = std::max(worst, std::abs(g - w) / std::abs(w) / tol);
        EXPECT_LE(std::abs(g - w), tol * std::abs(w))
            << t->name << " " << op.name << "(" << x[i] << ") = " << g << ", want " << w;
      }
      std::printf("%s %s: worst error %.2f of tolerance\n", t->name, op.name, worst);
    }
  }
}

TEST(Softmax, RefRowsAreDistributionsAndMatchTheFormula) {
  const int64_t rows = 3, cols = 50;
  auto x = random_floats(rows * cols, 4, 10.0f);
  x[5] = -std::numeric_limits<float>::infinity();
  std::vector<float> y(x.size());
  kernels::ref::softmax_fwd(y.data(), x.data(), rows, cols);
  for (int64_t r = 0; r < rows; ++r) {
    double z = 0, sum = 0;
    for (int64_t j = 0; j < cols; ++j) z += std::exp(double(x[r * cols + j]));
    for (int64_t j = 0; j < cols; ++j) {
      sum += y[r * cols + j];
      EXPECT_NEAR(y[r * cols + j], std::exp(double(x[r * cols + j])) / z, 1e-7);
    }
    EXPECT_NEAR(sum, 1.0, 1e-6);
  }
  EXPECT_EQ(y[5], 0.0f);
}

TEST(Softmax, EveryTableMatchesRefAndHandlesExtremes) {
  const float inf = std::numeric_limits<float>::infinity();
  for (const KernelTable *t : kernels::available()) {
    for (int64_t cols : odd_dims()) {
      for (int64_t rows : {1, 2, 5}) {
        SCOPED_TRACE(testing::Message() << t->name << " cols=" << cols << " rows=" << rows);
        auto x = random_floats(rows * cols, uint64_t(cols + rows), 20.0f);
        x[0] = 3e4f;  // would overflow exp without the max subtraction
        const size_t masked = cols > 1 ? size_t(cols - 1) : 0;  // a masked entry in row 0
        if (cols > 1) x[masked] = -inf;
        if (rows > 1)  // a fully masked row
          for (int64_t j = 0; j < cols; ++j) x[cols + j] = -inf;
        FBuf xb(x), y0(rows * cols), y1(rows * cols);
        kernels::ref::softmax_fwd(y0.data(), xb.data(), rows, cols);
        t->softmax_fwd(y1.data(), xb.data(), rows, cols);
        EXPECT_LE(nmse(y0.vec(), y1.vec()), kMaxNmse);
        for (int64_t r = 0; r < rows; ++r) {
          double sum = 0;
          for (int64_t j = 0; j < cols; ++j) {
            ASSERT_FALSE(std::isnan(y1[r * cols + j]));
            sum += y1[r * cols + j];
          }
          EXPECT_NEAR(sum, r == 1 ? 0.0 : 1.0, 1e-5) << "row " << r;
        }
        if (cols > 1) {
          EXPECT_EQ(y1[masked], 0.0f);
        }
        t->softmax_fwd(xb.data(), xb.data(), rows, cols);  // in place
        EXPECT_TRUE(same_bits(xb.vec(), y1.vec()));
      }
    }
  }
}

TEST(Elementwise, ZeroLengthTouchesNothing) {
  for (const KernelTable *t : kernels::available()) {
    float x = 1, y = -7;
    for (const UnaryOp &op : kUnary) (t->*op.entry)(&y, &x, 0);
    t->swiglu_fwd(&y, &x, &x, 0);
    t->add_fwd(&y, &x, &x, 0);
    t->softmax_fwd(&y, &x, 0, 1);
    t->softmax_fwd(&y, &x, 1, 0);
    EXPECT_EQ(y, -7.0f) << t->name;
  }
}

}  // namespace
}  // namespace lmkit::test
