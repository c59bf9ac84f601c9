// Tests of the fused softmax + cross-entropy kernel: ref against the formula and finite
// differences in double, every table against ref (odd and 150k vocabularies, strides, in place,
// ignored targets, large logits). Not a training loop: the loss reduction is the caller's.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/kernel_test_util.h"

namespace lmkit::test {
namespace {

using kernels::KernelTable;

// sum_r dscale * (logsumexp(l[r, :]) - l[r, t_r]) over rows with t_r >= 0, in double.
double ce_loss(const std::vector<double> &l, const std::vector<int32_t> &t, int64_t V,
               double dscale) {
  double L = 0;
  for (size_t r = 0; r < t.size(); ++r) {
    if (t[r] < 0) continue;
    double mx = -INFINITY, z = 0;
    for (int64_t j = 0; j < V; ++j) mx = std::max(mx, l[r * V + j]);
    for (int64_t j = 0; j < V; ++j) z += std::exp(l[r * V + j] - mx);
    L += dscale * (mx + std::log(z) - l[r * V + t[r]]);
  }
  return L;
}

TEST(CrossEntropy, RefMatchesFormulaAndFiniteDifferences) {
  const int64_t V = 13;
  const std::vector<int32_t> targets = {3, -1, 0, 12, 7};
  const int64_t rows = int64_t(targets.size());
  const auto logits = random_floats(rows * V, 1, 4.0f);
  const float dscale = 0.25f;
  std::vector<float> loss(rows, -7.0f), dl(rows * V, -7.0f);
  kernels::ref::cross_entropy_fwd_bwd(loss.data(), dl.data(), V, logits.data(), V, targets.data(),
                                      rows, V, dscale);
  const auto ld = to_double(logits);
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<int32_t> one = {targets[r]};
    const std::vector<double> row(ld.begin() + r * V, ld.begin() + (r + 1) * V);
    EXPECT_NEAR(loss[r], ce_loss(row, one, V, 1.0), 1e-6) << r;
  }
  EXPECT_EQ(loss[1], 0.0f);  // ignored row
  const auto g = fd_gradient(ld, [&](const std::vector<double> &l) {
    return ce_loss(l, targets, V, dscale);
  });
  EXPECT_LE(max_rel_err(g, dl), 1e-6);
  for (int64_t j = 0; j < V; ++j) EXPECT_EQ(dl[1 * V + j], 0.0f);
  // Uniform logits: loss = log V whatever the target; the gradient row sums to 0.
  std::vector<float> flat(V, 2.5f), l1(1), d1(V);
  const int32_t t0 = 5;
  kernels::ref::cross_entropy_fwd_bwd(l1.data(), d1.data(), V, flat.data(), V, &t0, 1, V, 1.0f);
  EXPECT_NEAR(l1[0], std::log(double(V)), 1e-6);
  double s = 0;
  for (float v : d1) s += v;
  EXPECT_NEAR(s, 0.0, 1e-6);
  EXPECT_NEAR(d1[t0], 1.0 / V - 1.0, 1e-7);
}

struct CeCase {
  int64_t rows, V;
  float scale;  // logits spread
};

TEST(CrossEntropy, EveryTableMatchesRef) {
  std::vector<CeCase> cases;
  for (int64_t V : odd_dims()) cases.push_back({5, V, 4.0f});
  cases.push_back({3, 50257, 10.0f});   // GPT-2
  cases.push_back({2, 151936, 20.0f});  // Qwen2: over 150k
  cases.push_back({4, 1000, 80.0f});    // logits far apart: exp underflows for most entries
  for (const KernelTable *t : simd_tables()) {
    for (const CeCase &c : cases) {
      SCOPED_TRACE(testing::Message() << t->name << " V=" << c.V << " rows=" << c.rows);
      const int64_t ld = c.V + 3, ld_d = c.V + 5;
      auto lv = random_floats(c.rows * ld, uint64_t(c.V), c.scale);
      for (auto &v : lv) v += 100.0f;  // an offset: the max subtraction matters
      FBuf logits(lv);
      std::vector<int32_t> targets;
      for (int64_t r = 0; r < c.rows; ++r)
        targets.push_back(r == 1 ? -1 : int32_t((r * 7919 + c.V / 2) % c.V));
      FBuf l0(c.rows, -7.0f), l1(c.rows, -7.0f);
      FBuf d0(c.rows * ld_d, -7.0f), d1(c.rows * ld_d, -7.0f);
      const float dscale = 1.0f / 3;
      kernels::ref::cross_entropy_fwd_bwd(l0.data(), d0.data(), ld_d, logits.data(), ld,
                                          targets.data(), c.rows, c.V, dscale);
      t->cross_entropy_fwd_bwd(l1.data(), d1.data(), ld_d, logits.data(), ld, targets.data(),
                               c.rows, c.V, dscale);
      EXPECT_LE(nmse(l0.vec(), l1.vec()), kMaxNmse);
      for (int64_t r = 0; r < c.rows; ++r)
        EXPECT_NEAR(l1[r], l0[r], 2e-6 * std::abs(l0[r]) + 1e-6) << r;
      EXPECT_LE(nmse(d0.vec(), d1.vec()), kMaxNmse);  // padding included: must stay -7
      for (int64_t r = 0; r < c.rows; ++r)
        for (int64_t j = c.V; j < ld_d; ++j) ASSERT_EQ(d1[r * ld_d + j], -7.0f);
      for (int64_t j = 0; j < c.V; ++j) ASSERT_EQ(d1[1 * ld_d + j], 0.0f);  // ignored row
      // Loss only (no dlogits): the same losses.
      FBuf l2(c.rows);
      t->cross_entropy_fwd_bwd(l2.data(), nullptr, 0, logits.data(), ld, targets.data(), c.rows,
                               c.V, dscale);
      EXPECT_TRUE(same_bits(l1.vec(), l2.vec()));
      // In place: dlogits over logits (same stride) gives the same bits.
      FBuf inplace(lv), l3(c.rows);
      t->cross_entropy_fwd_bwd(l3.data(), inplace.data(), ld, inplace.data(), ld, targets.data(),
                               c.rows, c.V, dscale);
      EXPECT_TRUE(same_bits(l1.vec(), l3.vec()));
      for (int64_t r = 0; r < c.rows; ++r)
        for (int64_t j = 0; j < c.V; ++j)
          ASSERT_EQ(inplace[r * ld + j], d1[r * ld_d + j]) << r << " " << j;
    }
  }
}

TEST(CrossEntropy, RefInPlaceAndLargeVocabularyAccuracy) {
  // ref in place equals ref out of place.
  const int64_t rows = 3, V = 1001;
  const auto lv = random_floats(rows * V, 3, 30.0f);
  const std::vector<int32_t> targets = {0, 1000, -5};
  std::vector<float> l0(rows), d0(rows * V), l1(rows), inplace = lv;
  kernels::ref::cross_entropy_fwd_bwd(l0.data(), d0.data(), V, lv.data(), V, targets.data(), rows,
                                      V, 1.0f);
  kernels::ref::cross_entropy_fwd_bwd(l1.data(), inplace.data(), V, inplace.data(), V,
                                      targets.data(), rows, V, 1.0f);
  EXPECT_TRUE(same_bits(l0, l1));
  EXPECT_TRUE(same_bits(d0, inplace));
  // 150k equal logits but one: the loss of that one is known in closed form, in every table.
  const int64_t big = 150001;
  std::vector<float> l(big, 0.0f);
  l[777] = 5.0f;
  const int32_t t7 = 777, t0 = 0;
  const double z = double(big - 1) + std::exp(5.0);
  for (const KernelTable *t : kernels::available()) {
    float loss7, loss0;
    t->cross_entropy_fwd_bwd(&loss7, nullptr, 0, l.data(), big, &t7, 1, big, 1.0f);
    t->cross_entropy_fwd_bwd(&loss0, nullptr, 0, l.data(), big, &t0, 1, big, 1.0f);
    EXPECT_NEAR(loss7, std::log(z) - 5.0, 1e-5) << t->name;
    EXPECT_NEAR(loss0, std::log(z), 1e-5) << t->name;
  }
}

TEST(CrossEntropy, ZeroRowsTouchNothing) {
  for (const KernelTable *t : kernels::available()) {
    std::vector<float> loss(1, -7.0f), d(4, -7.0f), l(4, 1.0f);
    const int32_t tg = 0;
    t->cross_entropy_fwd_bwd(loss.data(), d.data(), 4, l.data(), 4, &tg, 0, 4, 1.0f);
    EXPECT_EQ(loss[0], -7.0f) << t->name;
    EXPECT_EQ(d, std::vector<float>(4, -7.0f)) << t->name;
  }
}

}  // namespace
}  // namespace lmkit::test
