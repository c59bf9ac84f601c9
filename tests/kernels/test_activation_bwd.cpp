// Tests of the activation backward kernels (SiLU, GELU, GELU-tanh, SwiGLU): ref against finite
// differences of the forward formulas in double, every table against ref and per element over
// wide ranges, in-place use. Not the forward activations (test_activation.cpp).
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/kernel_test_util.h"

namespace lmkit::test {
namespace {

using kernels::KernelTable;
using UnaryBwd = void (*)(float *, const float *, const float *, int64_t);

struct UnaryBwdOp {
  const char *name;
  UnaryBwd KernelTable::*entry;
  double (*f)(double);  // the forward formula in double, differentiated numerically
};

const UnaryBwdOp kOps[] = {
    {"silu", &KernelTable::silu_bwd, [](double x) { return x / (1 + std::exp(-x)); }},
    {"gelu", &KernelTable::gelu_bwd,
     [](double x) { return 0.5 * x * std::erfc(-x / std::sqrt(2.0)); }},
    {"gelu_tanh", &KernelTable::gelu_tanh_bwd,
     [](double x) {
       return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
     }},
};

TEST(ActivationBwd, RefMatchesFiniteDifferences) {
  const auto &r = kernels::ref::ref_table();
  auto x = random_floats(400, 1, 6.0f);
  x.insert(x.end(), {0.0f, 1.0f, -1.0f, 12.0f, -12.0f, 30.0f, -30.0f});
  const int64_t n = int64_t(x.size());
  const auto dy = random_floats(x.size(), 2, 2.0f);
  for (const UnaryBwdOp &op : kOps) {
    SCOPED_TRACE(op.name);
    std::vector<float> dx(x.size(), -7.0f);
    (r.*op.entry)(dx.data(), x.data(), dy.data(), n);
    for (size_t i = 0; i < x.size(); ++i) {
      const double h = 1e-6, xi = x[i];
      const double want = dy[i] * (op.f(xi + h) - op.f(xi - h)) / (2 * h);
      EXPECT_NEAR(dx[i], want, 1e-6 * (1 + std::abs(want))) << "x=" << xi;
    }
  }
  // SwiGLU: y = silu(g) * u; dL/dg, dL/du for L = sum y * dy.
  const auto g = random_floats(300, 3, 8.0f), u = random_floats(300, 4, 2.0f);
  const auto dy2 = random_floats(300, 5);
  std::vector<float> dg(300), du(300);
  r.swiglu_bwd(dg.data(), du.data(), g.data(), u.data(), dy2.data(), 300);
  std::vector<double> in = to_double(g);
  in.insert(in.end(), u.begin(), u.end());
  const auto fd = fd_gradient(in, [&](const std::vector<double> &v) {
    double L = 0;
    for (size_t i = 0; i < 300; ++i) L += v[i] / (1 + std::exp(-v[i])) * v[300 + i] * dy2[i];
    return L;
  });
  EXPECT_LE(max_rel_err(std::vector<double>(fd.begin(), fd.begin() + 300), dg), 1e-7);
  EXPECT_LE(max_rel_err(std::vector<double>(fd.begin() + 300, fd.end()), du), 1e-7);
}

TEST(ActivationBwd, EveryTableMatchesRefOverOddSizes) {
  for (const KernelTable *t : simd_tables()) {
    for (int64_t n : odd_dims()) {
      SCOPED_TRACE(testing::Message() << t->name << " n=" << n);
      const auto xv = random_floats(n, uint64_t(n), 8.0f), dyv = random_floats(n, uint64_t(n + 1));
      for (const UnaryBwdOp &op : kOps) {
        FBuf x(xv), dy(dyv), want(n, -7.0f), got(n, -9.0f);
        (kernels::ref::ref_table().*op.entry)(want.data(), x.data(), dy.data(), n);
        (t->*op.entry)(got.data(), x.data(), dy.data(), n);
        EXPECT_LE(nmse(want.vec(), got.vec()), kMaxNmse) << op.name;
        // In place over dy, and over x: same bits.
        (t->*op.entry)(dy.data(), x.data(), dy.data(), n);
        EXPECT_TRUE(same_bits(dy.vec(), got.vec())) << op.name;
        FBuf dy2(dyv);
        (t->*op.entry)(x.data(), x.data(), dy2.data(), n);
        EXPECT_TRUE(same_bits(x.vec(), got.vec())) << op.name;
      }
      const auto gv = random_floats(n, uint64_t(n + 2), 8.0f);
      FBuf g(gv), u(random_floats(n, uint64_t(n + 3), 2.0f)), dy(dyv);
      FBuf dg0(n), du0(n), dg1(n, -9.0f), du1(n, -9.0f);
      kernels::ref::swiglu_bwd(dg0.data(), du0.data(), g.data(), u.data(), dy.data(), n);
      t->swiglu_bwd(dg1.data(), du1.data(), g.data(), u.data(), dy.data(), n);
      EXPECT_LE(nmse(dg0.vec(), dg1.vec()), kMaxNmse);
      EXPECT_LE(nmse(du0.vec(), du1.vec()), kMaxNmse);
      // In place: dgate over gate, dup over up (what the caller does to save memory).
      t->swiglu_bwd(g.data(), u.data(), g.data(), u.data(), dy.data(), n);
      EXPECT_TRUE(same_bits(g.vec(), dg1.vec()));
      EXPECT_TRUE(same_bits(u.vec(), du1.vec()));
    }
  }
}

// Per element, over a wide range: the SIMD derivative is within a few float ulp of ref (relative
// to the derivative's own size, plus a small absolute floor where it crosses zero).
TEST(ActivationBwd, EveryTableIsAccuratePerElement) {
  std::vector<float> x;
  for (float v = -40.0f; v <= 40.0f; v += 0.0137f) x.push_back(v);
  x.insert(x.end(), {0.0f, -0.0f, 1e-20f, -1e-20f, 1e4f, -1e4f, 1e30f, -1e30f});
  const int64_t n = int64_t(x.size());
  const std::vector<float> ones(x.size(), 1.0f);
  for (const KernelTable *t : simd_tables()) {
    for (const UnaryBwdOp &op : kOps) {
      std::vector<float> want(x.size()), got(x.size());
      (kernels::ref::ref_table().*op.entry)(want.data(), x.data(), ones.data(), n);
      (t->*op.entry)(got.data(), x.data(), ones.data(), n);
      for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_FALSE(std::isnan(got[i])) << t->name << " " << op.name << " x=" << x[i];
        ASSERT_NEAR(got[i], want[i], 2e-6 * std::abs(want[i]) + 1e-7)
            << t->name << " " << op.name << " x=" << x[i];
      }
    }
    // SwiGLU with up = 1: dgate = silu'(g), dup = silu(g).
    std::vector<float> dg0(x.size()), du0(x.size()), dg1(x.size()), du1(x.size());
    kernels::ref::swiglu_bwd(dg0.data(), du0.data(), x.data(), ones.data(), ones.data(), n);
    t->swiglu_bwd(dg1.data(), du1.data(), x.data(), ones.data(), ones.data(), n);
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_NEAR(dg1[i], dg0[i], 2e-6 * std::abs(dg0[i]) + 1e-7) << t->name << " x=" << x[i];
      ASSERT_NEAR(du1[i], du0[i], 2e-6 * std::abs(du0[i]) + 1e-7) << t->name << " x=" << x[i];
    }
  }
}

TEST(ActivationBwd, NaNPropagatesAndEmptyCallsTouchNothing) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const KernelTable *t : kernels::available()) {
    for (const UnaryBwdOp &op : kOps) {
      float x = nan, dy = 1.0f, dx = 0.0f;
      (t->*op.entry)(&dx, &x, &dy, 1);
      EXPECT_TRUE(std::isnan(dx)) << t->name << " " << op.name;
      float untouched = -7.0f;
      (t->*op.entry)(&untouched, &x, &dy, 0);
      EXPECT_EQ(untouched, -7.0f);
    }
  }
}

}  // namespace
}  // namespace lmkit::test
