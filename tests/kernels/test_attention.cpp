// Tests of causal attention forward: ref against a naive double-precision version with an explicit
// mask (GQA, sliding window, positions not starting at 0, head ranges, the saved log-sum-exp, K/V
// read with a row stride), every table against ref. Not the KV-cache bookkeeping (runtime/ owns
// it; the cache here is a plain strided array) and not the backward (test_attention_bwd.cpp).
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/kernel_test_util.h"

namespace lmkit::test {
namespace {

using kernels::AttentionArgs;
using kernels::KernelTable;

struct Case {
  int64_t n_q, n_kv, n_head, n_head_kv, head_dim, window;
  int32_t first_pos;  // q_pos[i] = first_pos + i (the queries are the last ones in the cache)
};

// Inputs and outputs of one attention call, in misaligned buffers with padded strides.
struct Problem {
  Case c;
  int64_t ld_q, ld_out, ld_kv_head;
  FBuf q, k, v, out, pattern, scratch;
  std::vector<int32_t> q_pos;

  explicit Problem(const Case &cs, uint64_t seed)
      : c(cs),
        ld_q(cs.n_head * cs.head_dim + 5),
        ld_out(cs.n_head * cs.head_dim + 3),
        ld_kv_head(cs.n_kv * cs.head_dim + 7),
        q(random_floats(size_t(cs.n_q * ld_q), seed, 2.0f)),
        k(random_floats(size_t(cs.n_head_kv * ld_kv_head), seed + 1, 2.0f)),
        v(random_floats(size_t(cs.n_head_kv * ld_kv_head), seed + 2)),
        out(size_t(cs.n_q * ld_out), -7.0f),
        pattern(size_t(cs.n_head * cs.n_q * cs.n_kv), -7.0f),
        scratch(size_t(cs.n_kv > 0 ? cs.n_kv : 1)) {
    for (int64_t i = 0; i < cs.n_q; ++i) q_pos.push_back(int32_t(cs.first_pos + i));
  }

  AttentionArgs args(int64_t head_begin, int64_t head_end, bool with_pattern) {
    AttentionArgs a;
    a.out = out.data();
    a.ld_out = ld_out;
    a.q = q.data();
    a.ld_q = ld_q;
    a.k = k.data();
    a.v = v.data();
    a.ld_kv_head = ld_kv_head;
    a.q_pos = q_pos.data();
    a.n_q = c.n_q;
    a.n_kv = c.n_kv;
    a.n_head = c.n_head;
    a.n_head_kv = c.n_head_kv;
    a.head_dim = c.head_dim;
    a.window = c.window;
    a.scale = float(1 / std::sqrt(double(c.head_dim)));
    a.pattern = with_pattern ? pattern.data() : nullptr;
    a.scratch = scratch.data();
    a.head_begin = head_begin;
    a.head_end = head_end;
    return a;
  }

  // The output (n_q, n_head*head_dim) without padding.
  std::vector<float> out_vec() {
    std::vector<float> r;
    for (int64_t i = 0; i < c.n_q; ++i)
      for (int64_t d = 0; d < c.n_head * c.head_dim; ++d) r.push_back(out[size_t(i * ld_out + d)]);
    return r;
  }
};

// Naive attention in double: full score matrix, explicit mask, softmax, weighted sum.
void naive_attention(Problem &p, std::vector<double> &out, std::vector<double> &pattern) {
  const Case &c = p.c;
  out.assign(size_t(c.n_q * c.n_head * c.head_dim), 0.0);
  pattern.assign(size_t(c.n_head * c.n_q * c.n_kv), 0.0);
  const double scale = double(float(1 / std::sqrt(double(c.head_dim))));
  for (int64_t h = 0; h < c.n_head; ++h) {
    const int64_t hk = h * c.n_head_kv / c.n_head;  // the KV head this query head shares
    for (int64_t i = 0; i < c.n_q; ++i) {
      const int64_t pos = p.q_pos[size_t(i)];
      std::vector<double> s(size_t(c.n_kv), -INFINITY);
      for (int64_t j = 0; j < c.n_kv; ++j) {
        const bool causal = j <= pos;
        const bool in_window = c.window == 0 || pos - j < c.window;
        if (!causal || !in_window) continue;
        double dot = 0;
        for (int64_t d = 0; d < c.head_dim; ++d)
          dot += double(p.q[size_t(i * p.ld_q + h * c.head_dim + d)]) *
                 p.k[size_t(hk * p.ld_kv_head + j * c.head_dim + d)];
        s[size_t(j)] = dot * scale;
      }
      double mx = -INFINITY, z = 0;
      for (double x : s) mx = std::max(mx, x);
      if (mx == -INFINITY) continue;  // sees nothing: zeros
      for (double x : s) z += std::exp(x - mx);
      for (int64_t j = 0; j < c.n_kv; ++j) {
        const double pj = std::exp(s[size_t(j)] - mx) / z;
        pattern[size_t((h * c.n_q + i) * c.n_kv + j)] = pj;
        for (int64_t d = 0; d < c.head_dim; ++d)
          out[size_t(i * c.n_head * c.head_dim + h * c.head_dim + d)] +=
              pj * p.v[size_t(hk * p.ld_kv_head + j * c.head_dim + d)];
      }
    }
  }
}

std::vector<float> to_float(const std::vector<double> &v) {
  return {v.begin(), v.end()};
}

const Case kCases[] = {
    // n_q, n_kv, n_head, n_head_kv, head_dim, window, first_pos
    {1, 1, 1, 1, 8, 0, 0},         // first token
    {1, 37, 4, 2, 64, 0, 36},      // decode, GQA 2:1
    {1, 512, 12, 12, 64, 0, 511},  // decode, GPT-2 small shape
    {5, 20, 6, 2, 17, 0, 15},      // chunked prefill at an offset, odd head_dim
    {7, 7, 4, 4, 64, 3, 0},        // prefill with a sliding window
    {3, 65, 8, 1, 128, 16, 62},    // multi-query, window
    {4, 300, 2, 2, 80, 0, 296},    // head_dim 80 (phi)
    {6, 40, 3, 3, 1, 0, 30},       // head_dim 1, queries before the end of the cache
    {2, 9, 2, 1, 33, 5, 7},        // window wider than the causal range for some queries
};

TEST(Attention, RefMatchesNaiveDoublePrecision) {
  uint64_t seed = 1;
  for (const Case &c : kCases) {
    SCOPED_TRACE(testing::Message()
                 << "n_q=" << c.n_q << " n_kv=" << c.n_kv << " heads=" << c.n_head << "/"
                 << c.n_head_kv << " hd=" << c.head_dim << " window=" << c.window);
    Problem p(c, seed++);
    kernels::ref::attention_fwd(p.args(0, c.n_head, true));
    std::vector<double> want_out, want_pat;
    naive_attention(p, want_out, want_pat);
    EXPECT_LE(nmse(to_float(want_out), p.out_vec()), 1e-12);
    EXPECT_LE(nmse(to_float(want_pat), p.pattern.vec()), 1e-12);
    // Masked entries are exactly zero and each pattern row sums to one.
    for (int64_t r = 0; r < c.n_head * c.n_q; ++r) {
      double sum = 0;
      for (int64_t j = 0; j < c.n_kv; ++j) {
        const size_t idx = size_t(r * c.n_kv + j);
        if (want_pat[idx] == 0) {
          EXPECT_EQ(p.pattern[idx], 0.0f);
        }
        sum += p.pattern[idx];
      }
      EXPECT_NEAR(sum, 1.0, 1e-5);
    }
  }
}

TEST(Attention, EveryTableMatchesRef) {
  for (const KernelTable *t : simd_tables()) {
    uint64_t seed = 100;
    for (const Case &c : kCases) {
      SCOPED_TRACE(testing::Message()
                   << t->name << " n_q=" << c.n_q << " n_kv=" << c.n_kv << " heads=" << c.n_head
                   << "/" << c.n_head_kv << " hd=" << c.head_dim << " window=" << c.window);
      Problem want(c, seed), got(c, seed);
      ++seed;
      kernels::ref::attention_fwd(want.args(0, c.n_head, true));
      t->attention_fwd(got.args(0, c.n_head, true));
      EXPECT_LE(nmse(want.out_vec(), got.out_vec()), kMaxNmse);
      EXPECT_LE(nmse(want.pattern.vec(), got.pattern.vec()), kMaxNmse);
      for (size_t i = 0; i < want.pattern.size(); ++i) {
        if (want.pattern[i] == 0.0f) {
          ASSERT_EQ(got.pattern[i], 0.0f) << i;
        }
      }
      // Without a pattern buffer the output is the same.
      Problem no_pat(c, seed - 1);
      t->attention_fwd(no_pat.args(0, c.n_head, false));
      EXPECT_TRUE(same_bits(no_pat.out_vec(), got.out_vec()));
      EXPECT_EQ(no_pat.pattern.vec(), std::vector<float>(no_pat.pattern.size(), -7.0f));
    }
  }
}

// A head range computes exactly those heads (the others' outputs and pattern rows untouched),
// with the same bits as the full call: callers split heads across threads.
TEST(Attention, HeadRangesComputeOnlyTheirHeads) {
  const Case c = {3, 24, 6, 2, 16, 0, 21};
  for (const KernelTable *t : kernels::available()) {
    SCOPED_TRACE(t->name);
    Problem full(c, 9), part(c, 9);
    t->attention_fwd(full.args(0, c.n_head, true));
    t->attention_fwd(part.args(2, 5, true));
    const int64_t hd = c.head_dim;
    for (int64_t i = 0; i < c.n_q; ++i)
      for (int64_t h = 0; h < c.n_head; ++h)
        for (int64_t d = 0; d < hd; ++d) {
          const size_t idx = size_t(i * full.ld_out + h * hd + d);
          if (h >= 2 && h < 5) {
            EXPECT_EQ(part.out[idx], full.out[idx]);
          } else {
            EXPECT_EQ(part.out[idx], -7.0f);
          }
        }
    for (int64_t h = 0; h < c.n_head; ++h)
      for (int64_t r = 0; r < c.n_q * c.n_kv; ++r) {
        const size_t idx = size_t(h * c.n_q * c.n_kv + r);
        EXPECT_EQ(part.pattern[idx], h >= 2 && h < 5 ? full.pattern[idx] : -7.0f);
      }
  }
}

// A query's output does not depend on the other queries in the call (prefill == decode).
TEST(Attention, PrefillRowsEqualOneQueryAtATime) {
  const Case c = {9, 9, 4, 2, 64, 4, 0};
  for (const KernelTable *t : kernels::available()) {
    SCOPED_TRACE(t->name);
    Problem all(c, 3);
    t->attention_fwd(all.args(0, c.n_head, false));
    for (int64_t i = 0; i < c.n_q; ++i) {
      Problem one(c, 3);
      AttentionArgs a = one.args(0, c.n_head, false);
      a.q = one.q.data() + i * one.ld_q;
      a.out = one.out.data() + i * one.ld_out;
      a.q_pos = one.q_pos.data() + i;
      a.n_q = 1;
      t->attention_fwd(a);
      for (int64_t d = 0; d < c.n_head * c.head_dim; ++d)
        ASSERT_EQ(one.out[size_t(i * one.ld_out + d)], all.out[size_t(i * all.ld_out + d)]);
    }
  }
}

TEST(Attention, QueriesThatSeeNothingGetZerosAndEmptyCallsTouchNothing) {
  const Case c = {2, 5, 2, 1, 8, 0, 0};
  for (const KernelTable *t : kernels::available()) {
    SCOPED_TRACE(t->name);
    Problem p(c, 4);
    p.q_pos = {-1, 2};  // the first query precedes every key
    t->attention_fwd(p.args(0, c.n_head, true));
    for (int64_t d = 0; d < c.n_head * c.head_dim; ++d) EXPECT_EQ(p.out[size_t(d)], 0.0f);
    for (int64_t h = 0; h < c.n_head; ++h)
      for (int64_t j = 0; j < c.n_kv; ++j) {
        EXPECT_EQ(p.pattern[size_t((h * c.n_q + 0) * c.n_kv + j)], 0.0f);
        EXPECT_EQ(p.pattern[size_t((h * c.n_q + 1) * c.n_kv + j)] == 0.0f, j > 2);
      }
    Problem empty(c, 4);
    t->attention_fwd(empty.args(1, 1, true));  // no heads
    AttentionArgs a = empty.args(0, c.n_head, true);
    a.n_q = 0;
    t->attention_fwd(a);
    EXPECT_EQ(empty.out.vec(), std::vector<float>(empty.out.size(), -7.0f));
    EXPECT_EQ(empty.pattern.vec(), std::vector<float>(empty.pattern.size(), -7.0f));
  }
}

// lse (the log-sum-exp of each query's scaled, masked scores) against the naive double version;
// every table against ref; asking for it leaves the output bits unchanged.
TEST(Attention, LogSumExpMatchesNaiveAndTablesAgree) {
  uint64_t seed = 50;
  for (const Case &c : kCases) {
    SCOPED_TRACE(testing::Message() << "n_q=" << c.n_q << " n_kv=" << c.n_kv << " hd="
                                    << c.head_dim << " window=" << c.window);
    Problem p(c, seed++);
    std::vector<float> lse(size_t(c.n_q * c.n_head), -7.0f);
    AttentionArgs a = p.args(0, c.n_head, false);
    a.lse = lse.data();
    kernels::ref::attention_fwd(a);
    const double scale = double(float(1 / std::sqrt(double(c.head_dim))));
    for (int64_t h = 0; h < c.n_head; ++h) {
      const int64_t hk = h * c.n_head_kv / c.n_head;
      for (int64_t i = 0; i < c.n_q; ++i) {
        const int64_t pos = p.q_pos[size_t(i)];
        double mx = -INFINITY;
        std::vector<double> s;
        for (int64_t j = 0; j < c.n_kv; ++j) {
          if (j > pos || (c.window > 0 && pos - j >= c.window)) continue;
          double dot = 0;
          for (int64_t d = 0; d < c.head_dim; ++d)
            dot += double(p.q[size_t(i * p.ld_q + h * c.head_dim + d)]) *
                   p.k[size_t(hk * p.ld_kv_head + j * c.head_dim + d)];
          s.push_back(dot * scale);
          mx = std::max(mx, s.back());
        }
        double z = 0;
        for (double x : s) z += std::exp(x - mx);
        EXPECT_NEAR(lse[size_t(i * c.n_head + h)], mx + std::log(z), 1e-5 * (1 + std::abs(mx)));
      }
    }
    for (const KernelTable *t : simd_tables()) {
      Problem with(c, seed - 1), without(c, seed - 1);
      std::vector<float> lse_t(lse.size(), -7.0f);
      AttentionArgs b = with.args(0, c.n_head, false);
      b.lse = lse_t.data();
      t->attention_fwd(b);
      t->attention_fwd(without.args(0, c.n_head, false));
      EXPECT_TRUE(same_bits(with.out_vec(), without.out_vec())) << t->name;
      EXPECT_LE(nmse(lse, lse_t), kMaxNmse) << t->name;
    }
  }
  // A query that sees nothing has lse = -inf.
  for (const KernelTable *t : kernels::available()) {
    Problem p({2, 5, 2, 1, 8, 0, 0}, 4);
    p.q_pos = {-1, 2};
    std::vector<float> lse(4, 0.0f);
    AttentionArgs a = p.args(0, 2, false);
    a.lse = lse.data();
    t->attention_fwd(a);
    EXPECT_EQ(lse[0], -INFINITY) << t->name;
    EXPECT_EQ(lse[1], -INFINITY) << t->name;
    EXPECT_TRUE(std::isfinite(lse[2]) && std::isfinite(lse[3])) << t->name;
  }
}

// K/V read with a row stride (ld_kv_row, as from fused QKV rows: key j of head hk at
// hk*head_dim + j*row) give the same bits as the head-major cache holding the same values.
TEST(Attention, KvRowStrideGivesTheSameBitsAsTheHeadMajorCache) {
  for (const KernelTable *t : kernels::available()) {
    uint64_t seed = 70;
    for (const Case &c : kCases) {
      SCOPED_TRACE(testing::Message() << t->name << " n_q=" << c.n_q << " n_kv=" << c.n_kv
                                      << " hd=" << c.head_dim);
      Problem p(c, seed++);
      const int64_t hd = c.head_dim, row = 2 * c.n_head_kv * hd + 3;  // K and V in one row
      FBuf kv(size_t(c.n_kv * row), 1e30f);
      for (int64_t hk = 0; hk < c.n_head_kv; ++hk)
        for (int64_t j = 0; j < c.n_kv; ++j)
          for (int64_t d = 0; d < hd; ++d) {
            kv[size_t(j * row + hk * hd + d)] = p.k[size_t(hk * p.ld_kv_head + j * hd + d)];
            kv[size_t(j * row + c.n_head_kv * hd + hk * hd + d)] =
                p.v[size_t(hk * p.ld_kv_head + j * hd + d)];
          }
      t->attention_fwd(p.args(0, c.n_head, true));
      const auto want_out = p.out_vec();
      const auto want_pat = p.pattern.vec();
      AttentionArgs a = p.args(0, c.n_head, true);
      a.k = kv.data();
      a.v = kv.data() + c.n_head_kv * hd;
      a.ld_kv_head = hd;
      a.ld_kv_row = row;
      t->attention_fwd(a);
      EXPECT_TRUE(same_bits(p.out_vec(), want_out));
      EXPECT_TRUE(same_bits(p.pattern.vec(), want_pat));
    }
  }
}

}  // namespace
}  // namespace lmkit::test
