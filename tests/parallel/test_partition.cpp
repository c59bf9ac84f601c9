// Tests of the sequence partitioning for Seq1F1B: the per-layer FLOP model against explicit
// counting, the even split, and the computation-wise split against a brute-force optimum.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "parallel/partition.h"

namespace lmkit::parallel {
namespace {

ModelShape tiny(int64_t d = 8, int64_t f = 32) {
  ModelShape m;
  m.n_layer = 2;
  m.n_embd = d;
  m.n_head = 2;
  m.n_ff = f;
  return m;
}

double chunk_flops(const ModelShape &m, const std::vector<int64_t> &lens, size_t i) {
  return layer_fwd_flops(m, chunk_starts(lens)[i], lens[i]);
}

TEST(Partition, FlopModelCountsEveryMultiplyAdd) {
  // Count the multiply-adds of one layer by brute force: every projection row and every causal
  // (query, key) pair, 2 FLOPs each.
  for (int64_t d : {4, 8}) {
    const ModelShape m = tiny(d, 3 * d);
    for (int64_t start : {0, 1, 5})
      for (int64_t len : {1, 2, 7}) {
        double macs = 0;
        for (int64_t q = start; q < start + len; ++q) {
          macs += d * 3 * d + d * d + 2 * d * m.n_ff;            // QKV, output, MLP up and down
          for (int64_t key = 0; key <= q; ++key) macs += 2 * d;  // q.k and p.v over all heads
        }
        EXPECT_DOUBLE_EQ(layer_fwd_flops(m, start, len), 2 * macs)
            << d << " " << start << " " << len;
      }
  }
  // 24 L d^2 + 4 d L (s + (L+1)/2) for GPT's f = 4d.
  const ModelShape g = model_shape_named("7b");
  EXPECT_DOUBLE_EQ(layer_fwd_flops(g, 1000, 500),
                   24.0 * 500 * 4096.0 * 4096 + 4.0 * 4096 * 500 * (1000 + 501.0 / 2));
}

TEST(Partition, ChunkFlopsArePrefixDifferences) {
  const ModelShape m = model_shape_named("30b");
  for (int64_t s : {0, 1, 4096, 60000})
    for (int64_t l : {1, 17, 4096})
      EXPECT_NEAR(layer_fwd_flops(m, s, l), prefix_fwd_flops(m, s + l) - prefix_fwd_flops(m, s),
                  1e-9 * layer_fwd_flops(m, s, l));
  // The pairs of any split add up to the whole causal triangle.
  for (int k : {1, 3, 8}) {
    double pairs = 0;
    const auto lens = seq_split_compute(m, 65536, k);
    const auto starts = chunk_starts(lens);
    for (size_t i = 0; i < lens.size(); ++i) pairs += causal_pairs(starts[i], lens[i]);
    EXPECT_DOUBLE_EQ(pairs, 65536.0 * 65537 / 2);
  }
}

TEST(Partition, EvenSplit) {
  EXPECT_EQ(seq_split_even(16, 4), (std::vector<int64_t>{4, 4, 4, 4}));
  EXPECT_EQ(seq_split_even(10, 4), (std::vector<int64_t>{3, 3, 2, 2}));
  EXPECT_EQ(seq_split_even(3, 3), (std::vector<int64_t>{1, 1, 1}));
  EXPECT_EQ(chunk_starts({3, 3, 2, 2}), (std::vector<int64_t>{0, 3, 6, 8}));
  EXPECT_THROW(seq_split_even(3, 4), Error);
  EXPECT_THROW(seq_split_even(3, 0), Error);
}

// The smallest possible largest-chunk FLOPs over every split of n tokens into k chunks.
double brute_force_minimax(const ModelShape &m, int64_t n, int k) {
  // best[j][x]: minimal max chunk FLOPs covering [0, x) with j chunks.
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(size_t(k) + 1, std::vector<double>(size_t(n) + 1, inf));
  best[0][0] = 0;
  for (int j = 1; j <= k; ++j)
    for (int64_t x = 1; x <= n; ++x)
      for (int64_t y = 0; y < x; ++y)
        best[size_t(j)][size_t(x)] =
            std::min(best[size_t(j)][size_t(x)],
                     std::max(best[size_t(j) - 1][size_t(y)], layer_fwd_flops(m, y, x - y)));
  return best[size_t(k)][size_t(n)];
}

TEST(Partition, ComputeSplitEqualisesFlops) {
  // Attention-heavy shapes (d small against n), where the split matters.
  for (int64_t d : {2, 8, 64}) {
    const ModelShape m = tiny(d, 4 * d);
    for (int64_t n : {7, 40, 97})
      for (int k : {1, 2, 3, 4, 7}) {
        if (n < k) continue;
        const auto lens = seq_split_compute(m, n, k);
        ASSERT_EQ(int(lens.size()), k);
        int64_t sum = 0;
        for (int64_t l : lens) {
          EXPECT_GE(l, 1);
          sum += l;
        }
        EXPECT_EQ(sum, n);
        // Every chunk is within one token's FLOPs (the costliest token, the last) of the ideal.
        const double ideal = prefix_fwd_flops(m, n) / k;
        const double token = prefix_fwd_flops(m, n) - prefix_fwd_flops(m, n - 1);
        double worst = 0;
        for (size_t i = 0; i < lens.size(); ++i) {
          EXPECT_LE(std::fabs(chunk_flops(m, lens, i) - ideal), token) << d << " " << n << " " << k;
          worst = std::max(worst, chunk_flops(m, lens, i));
        }
        // And the largest chunk is within one token of the best any integer split achieves.
        const double opt = brute_force_minimax(m, n, k);
        EXPECT_LE(opt, worst + 1e-9);
        EXPECT_LE(worst, opt + token) << d << " " << n << " " << k;
        // Never worse than the even split by more than that token (nearest-to-target boundaries
        // are not always the minimax ones), and better where attention dominates.
        const auto even = seq_split_even(n, k);
        double even_worst = 0;
        for (size_t i = 0; i < even.size(); ++i)
          even_worst = std::max(even_worst, chunk_flops(m, even, i));
        EXPECT_LE(worst, even_worst + token);
        if (d == 2 && n == 97 && k > 1) {
          EXPECT_LT(worst, 0.9 * even_worst) << k;
        }
      }
  }
}

TEST(Partition, ComputeSplitOfThePapersSetting) {
  // 30b at 64k tokens: later chunks attend to longer prefixes, so they are shorter.
  const ModelShape m = model_shape_named("30b");
  for (int k : {2, 4, 8}) {
    const auto lens = seq_split_compute(m, 65536, k, 8);
    for (size_t i = 0; i + 1 < lens.size(); ++i) {
      EXPECT_GT(lens[i], lens[i + 1]);
      EXPECT_EQ(chunk_starts(lens)[i + 1] % 8, 0);  // aligned boundaries (TP size)
    }
    const double ideal = prefix_fwd_flops(m, 65536) / k;
    for (size_t i = 0; i < lens.size(); ++i)
      EXPECT_NEAR(chunk_flops(m, lens, i) / ideal, 1.0, 1e-3);
  }
  // The even split of the same sequence is far from balanced: the last of 4 chunks costs about
  // 1.5x the first.
  const auto even = seq_split_even(65536, 4);
  EXPECT_GT(chunk_flops(m, even, 3) / chunk_flops(m, even, 0), 1.4);
  EXPECT_THROW(seq_split_compute(m, 30, 4, 8), Error);
}

TEST(Partition, NamedShapes) {
  const ModelShape m = model_shape_named("30b");
  EXPECT_EQ(m.n_layer, 64);
  EXPECT_EQ(m.n_embd, 6144);
  EXPECT_EQ(m.n_head, 64);
  EXPECT_EQ(m.n_ff, 4 * 6144);
  EXPECT_NEAR(m.params_per_layer() * m.n_layer / 1e9, 29.0, 0.1);
  EXPECT_NEAR(model_shape_named("7b").params_per_layer() * 32 / 1e9, 6.44, 0.05);
  EXPECT_EQ(model_shape_names().size(), 5u);
  try {
    model_shape_named("175b");
    ADD_FAILURE();
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("1.3b, 2.7b, 7b, 13b, 30b"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(seq_split_parse("even"), SeqSplit::Even);
  EXPECT_THROW(seq_split_parse("flops"), Error);
  ModelShape bad = m;
  bad.n_head = 7;
  EXPECT_THROW(bad.validate(), Error);
}

}  // namespace
}  // namespace lmkit::parallel
