// Tests of attention backward: ref against finite differences of a double-precision forward (GQA,
// sliding window, keys as a prefix longer than the queries, queries that see nothing), every table
// against ref in both layouts (head-major cache, and K/V read from fused QKV rows with dQ/dK/dV
// in one fused dQKV buffer), KV head ranges, accumulation. Not the forward (test_attention.cpp).
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/kernel_test_util.h"

namespace lmkit::test {
namespace {

using kernels::AttentionArgs;
using kernels::AttentionBwdArgs;
using kernels::KernelTable;

struct Case {
  int64_t n_q, n_kv, n_head, n_head_kv, head_dim, window;
  bool fused;     // K/V (and Q) in fused QKV rows, gradients in one fused dQKV buffer
  bool mask_row;  // query 0 at position -1: it sees no key
};

std::ostream &operator<<(std::ostream &os, const Case &c) {
  return os << "n_q=" << c.n_q << " n_kv=" << c.n_kv << " heads=" << c.n_head << "/"
            << c.n_head_kv << " hd=" << c.head_dim << " window=" << c.window
            << " fused=" << c.fused << " mask_row=" << c.mask_row;
}

// One attention problem: logical q (n_q, n_head, hd), k and v (n_head_kv, n_kv, hd), dout like q;
// laid out in buffers as the case says, with padding everywhere so stray writes show.
// Queries sit at the end of the keys: q_pos[i] = n_kv - n_q + i.
struct Problem {
  Case c;
  int64_t hd, q_dim, kv_dim;
  std::vector<float> q, k, v, dout;  // logical values
  std::vector<int32_t> q_pos;
  // Layout: offsets of every logical element in its buffer.
  int64_t ld_q, ld_kv_head, ld_kv_row, ld_out;
  std::vector<size_t> q_off, k_off, v_off;
  FBuf xbuf, kbuf, vbuf;     // inputs (fused: all in xbuf)
  FBuf dxbuf, dkbuf, dvbuf;  // gradients, pre-filled with random values (accumulated into)
  FBuf out, dout_buf, lse, scratch;

  Problem(const Case &cs, uint64_t seed)
      : c(cs),
        hd(cs.head_dim),
        q_dim(cs.n_head * cs.head_dim),
        kv_dim(cs.n_head_kv * cs.head_dim),
        q(random_floats(size_t(cs.n_q * q_dim), seed, 1.5f)),
        k(random_floats(size_t(cs.n_kv * kv_dim), seed + 1, 1.5f)),
        v(random_floats(size_t(cs.n_kv * kv_dim), seed + 2)),
        dout(random_floats(size_t(cs.n_q * q_dim), seed + 3)),
        ld_q(cs.fused ? q_dim + 2 * kv_dim + 3 : q_dim + 5),
        ld_kv_head(cs.fused ? hd : cs.n_kv * hd + 7),
        ld_kv_row(cs.fused ? ld_q : 0),
        ld_out(q_dim + 2),
        xbuf(size_t(cs.fused ? cs.n_kv * ld_q : cs.n_q * ld_q), 1e30f),
        kbuf(size_t(cs.fused ? 1 : cs.n_head_kv * ld_kv_head), 1e30f),
        vbuf(size_t(cs.fused ? 1 : cs.n_head_kv * ld_kv_head), 1e30f),
        dxbuf(random_floats(xbuf.size(), seed + 4)),
        dkbuf(random_floats(kbuf.size(), seed + 5)),
        dvbuf(random_floats(vbuf.size(), seed + 6)),
        out(size_t(cs.n_q * ld_out), -7.0f),
        dout_buf(size_t(cs.n_q * ld_out), 1e30f),
        lse(size_t(cs.n_q * cs.n_head), -7.0f),
        scratch(size_t(2 * cs.n_kv)) {
    for (int64_t i = 0; i < c.n_q; ++i)
      q_pos.push_back(c.mask_row && i == 0 ? -1 : int32_t(c.n_kv - c.n_q + i));
    const int64_t q_row0 = c.fused ? c.n_kv - c.n_q : 0;  // fused: queries are the last rows
    for (int64_t i = 0; i < c.n_q; ++i)
      for (int64_t e = 0; e < q_dim; ++e) q_off.push_back(size_t((q_row0 + i) * ld_q + e));
    for (int64_t hk = 0; hk < c.n_head_kv; ++hk)
      for (int64_t j = 0; j < c.n_kv; ++j)
        for (int64_t d = 0; d < hd; ++d) {
          if (c.fused) {
            k_off.push_back(size_t(j * ld_q + q_dim + hk * hd + d));
            v_off.push_back(size_t(j * ld_q + q_dim + kv_dim + hk * hd + d));
          } else {
            k_off.push_back(size_t(hk * ld_kv_head + j * hd + d));
            v_off.push_back(size_t(hk * ld_kv_head + j * hd + d));
          }
        }
    set_inputs();
    for (int64_t i = 0; i < c.n_q; ++i)
      for (int64_t e = 0; e < q_dim; ++e) dout_buf[size_t(i * ld_out + e)] = dout[i * q_dim + e];
  }

  // k, v logical index: (hk, j, d) -> hk*n_kv*hd + j*hd + d.
  void set_inputs() {
    for (size_t i = 0; i < q.size(); ++i) xbuf[q_off[i]] = q[i];
    FBuf &kb = c.fused ? xbuf : kbuf, &vb = c.fused ? xbuf : vbuf;
    for (size_t i = 0; i < k.size(); ++i) kb[k_off[i]] = k[i];
    for (size_t i = 0; i < v.size(); ++i) vb[v_off[i]] = v[i];
  }
  const float *q_ptr() { return xbuf.data() + q_off[0]; }
  const float *k_ptr() { return (c.fused ? xbuf : kbuf).data() + k_off[0]; }
  const float *v_ptr() { return (c.fused ? xbuf : vbuf).data() + v_off[0]; }
  float *dq_ptr() { return dxbuf.data() + q_off[0]; }
  float *dk_ptr() { return (c.fused ? dxbuf : dkbuf).data() + k_off[0]; }
  float *dv_ptr() { return (c.fused ? dxbuf : dvbuf).data() + v_off[0]; }

  void fwd(const KernelTable &t) {
    AttentionArgs a;
    a.out = out.data();
    a.ld_out = ld_out;
    a.q = q_ptr();
    a.ld_q = ld_q;
    a.k = k_ptr();
    a.v = v_ptr();
    a.ld_kv_head = ld_kv_head;
    a.ld_kv_row = ld_kv_row;
    a.q_pos = q_pos.data();
    a.n_q = c.n_q;
    a.n_kv = c.n_kv;
    a.n_head = c.n_head;
    a.n_head_kv = c.n_head_kv;
    a.head_dim = hd;
    a.window = c.window;
    a.scale = float(1 / std::sqrt(double(hd)));
    a.scratch = scratch.data();
    a.head_begin = 0;
    a.head_end = c.n_head;
    a.lse = lse.data();
    t.attention_fwd(a);
  }

  AttentionBwdArgs bwd_args(int64_t kv_begin, int64_t kv_end) {
    AttentionBwdArgs a;
    a.q = q_ptr();
    a.ld_q = ld_q;
    a.k = k_ptr();
    a.v = v_ptr();
    a.ld_kv_head = ld_kv_head;
    a.ld_kv_row = ld_kv_row;
    a.out = out.data();
    a.ld_out = ld_out;
    a.dout = dout_buf.data();
    a.ld_dout = ld_out;
    a.lse = lse.data();
    a.dq = dq_ptr();
    a.ld_dq = ld_q;
    a.dk = dk_ptr();
    a.dv = dv_ptr();
    a.q_pos = q_pos.data();
    a.n_q = c.n_q;
    a.n_kv = c.n_kv;
    a.n_head = c.n_head;
    a.n_head_kv = c.n_head_kv;
    a.head_dim = hd;
    a.window = c.window;
    a.scale = float(1 / std::sqrt(double(hd)));
    a.scratch = scratch.data();
    a.kv_head_begin = kv_begin;
    a.kv_head_end = kv_end;
    return a;
  }

  // Logical gradients read back from the buffers.
  std::vector<float> gather(const FBuf &b, const std::vector<size_t> &off) const {
    std::vector<float> r;
    for (size_t o : off) r.push_back(b[o]);
    return r;
  }
  std::vector<float> dq() const { return gather(dxbuf, q_off); }
  std::vector<float> dk() const { return gather(c.fused ? dxbuf : dkbuf, k_off); }
  std::vector<float> dv() const { return gather(c.fused ? dxbuf : dvbuf, v_off); }
  // Every gradient buffer element, in a fixed order (padding and untouched columns included).
  std::vector<float> all_grads() const {
    std::vector<float> r = dxbuf.vec();
    for (float x : dkbuf.vec()) r.push_back(x);
    for (float x : dvbuf.vec()) r.push_back(x);
    return r;
  }
};

// L = sum out ⊙ dout for logical (q, k, v) in double: the forward formula with an explicit mask.
double attention_loss(const Problem &p, const std::vector<double> &qkv) {
  const Case &c = p.c;
  const int64_t hd = c.head_dim, qn = c.n_q * c.n_head * hd, kn = c.n_head_kv * c.n_kv * hd;
  const double *q = qkv.data(), *k = q + qn, *v = k + kn;
  const double scale = double(float(1 / std::sqrt(double(hd))));
  double L = 0;
  for (int64_t h = 0; h < c.n_head; ++h) {
    const int64_t hk = h / (c.n_head / c.n_head_kv);
    for (int64_t i = 0; i < c.n_q; ++i) {
      const int64_t pos = p.q_pos[i];
      std::vector<double> s(c.n_kv, -INFINITY);
      double mx = -INFINITY;
      for (int64_t j = 0; j < c.n_kv; ++j) {
        if (j > pos || (c.window > 0 && pos - j >= c.window)) continue;
        double dot = 0;
        for (int64_t d = 0; d < hd; ++d)
          dot += q[(i * c.n_head + h) * hd + d] * k[(hk * c.n_kv + j) * hd + d];
        s[j] = scale * dot;
        mx = std::max(mx, s[j]);
      }
      if (mx == -INFINITY) continue;
      double z = 0;
      for (double x : s) z += std::exp(x - mx);
      for (int64_t j = 0; j < c.n_kv; ++j) {
        const double pj = std::exp(s[j] - mx) / z;
        for (int64_t d = 0; d < hd; ++d)
          L += pj * v[(hk * c.n_kv + j) * hd + d] * p.dout[(i * c.n_head + h) * hd + d];
      }
    }
  }
  return L;
}

const Case kFdCases[] = {
    // n_q, n_kv, n_head, n_head_kv, hd, window, fused, mask_row
    {4, 4, 2, 2, 8, 0, false, false},  // plain causal self-attention
    {3, 7, 4, 2, 5, 0, true, false},   // keys a prefix longer than the queries, GQA, fused
    {5, 9, 2, 1, 6, 3, true, true},    // sliding window, multi-query, a query that sees nothing
    {4, 6, 3, 3, 3, 2, false, true},
};

TEST(AttentionBwd, RefMatchesFiniteDifferences) {
  uint64_t seed = 1;
  for (const Case &c : kFdCases) {
    SCOPED_TRACE(testing::Message() << c);
    Problem p(c, seed += 10);
    const auto dq0 = p.dq(), dk0 = p.dk(), dv0 = p.dv();
    p.fwd(kernels::ref::ref_table());
    if (c.mask_row)
      for (int64_t h = 0; h < c.n_head; ++h) {
        EXPECT_EQ(p.lse[size_t(h)], -INFINITY);
      }
    kernels::ref::attention_bwd(p.bwd_args(0, c.n_head_kv));
    std::vector<double> in = to_double(p.q);
    in.insert(in.end(), p.k.begin(), p.k.end());
    in.insert(in.end(), p.v.begin(), p.v.end());
    const auto g = fd_gradient(in, [&](const std::vector<double> &x) {
      return attention_loss(p, x);
    });
    const size_t qn = p.q.size(), kn = p.k.size();
    auto minus = [](std::vector<float> a, const std::vector<float> &b) {
      for (size_t i = 0; i < a.size(); ++i) a[i] = float(double(a[i]) - b[i]);
      return a;
    };
    const auto dq = minus(p.dq(), dq0), dk = minus(p.dk(), dk0), dv = minus(p.dv(), dv0);
    EXPECT_LE(max_rel_err(std::vector<double>(g.begin(), g.begin() + qn), dq), 1e-5);
    EXPECT_LE(max_rel_err(std::vector<double>(g.begin() + qn, g.begin() + qn + kn), dk), 1e-5);
    EXPECT_LE(max_rel_err(std::vector<double>(g.begin() + qn + kn, g.end()), dv), 1e-5);
    if (c.mask_row) {  // the query that sees nothing gets no gradient: its dq row is unchanged
      for (int64_t e = 0; e < c.n_head * c.head_dim; ++e)
        EXPECT_EQ(p.dq()[size_t(e)], dq0[size_t(e)]);
    }
  }
}

const Case kCases[] = {
    {1, 1, 1, 1, 8, 0, false, false},     // one token
    {17, 17, 4, 2, 64, 0, true, false},   // causal, GQA, fused QKV
    {20, 45, 6, 2, 17, 0, true, false},   // prefix keys (pipeline chunk), odd head_dim
    {33, 33, 2, 2, 64, 7, false, true},   // window, a query that sees nothing
    {9, 70, 8, 1, 128, 16, true, false},  // multi-query, window, prefix
    {12, 40, 2, 2, 80, 0, false, false},  // head_dim 80
    {10, 10, 3, 3, 1, 0, true, true},     // head_dim 1
    {6, 20, 2, 1, 33, 5, false, false},
    {40, 40, 2, 1, 256, 0, true, false},   // largest head_dim of the blocked path
    {5, 12, 2, 2, 300, 0, true, true},     // head_dim > 256: the per-row path
    {70, 200, 4, 4, 64, 0, true, false},   // many key blocks and query tiles
    {50, 50, 4, 2, 96, 13, false, false},  // window across block edges
};

TEST(AttentionBwd, EveryTableMatchesRef) {
  for (const KernelTable *t : simd_tables()) {
    uint64_t seed = 100;
    for (const Case &c : kCases) {
      SCOPED_TRACE(testing::Message() << t->name << " " << c);
      Problem want(c, seed), got(c, seed);
      seed += 10;
      // Both from the ref forward's out and lse: this compares the backward alone.
      want.fwd(kernels::ref::ref_table());
      got.fwd(kernels::ref::ref_table());
      kernels::ref::attention_bwd(want.bwd_args(0, c.n_head_kv));
      t->attention_bwd(got.bwd_args(0, c.n_head_kv));
      EXPECT_LE(nmse(want.dq(), got.dq()), kMaxNmse);
      EXPECT_LE(nmse(want.dk(), got.dk()), kMaxNmse);
      EXPECT_LE(nmse(want.dv(), got.dv()), kMaxNmse);
      // Nothing outside dq, dk, dv moved: padding, and in the fused buffer the q columns of the
      // prefix rows (keys without a query in this call).
      Problem fresh(c, seed - 10);
      const auto before = fresh.all_grads(), after = got.all_grads();
      std::vector<bool> grad(after.size(), false);
      auto mark = [&](const std::vector<size_t> &off, size_t base) {
        for (size_t o : off) grad[base + o] = true;
      };
      mark(got.q_off, 0);
      mark(got.k_off, c.fused ? 0 : got.dxbuf.size());
      mark(got.v_off, c.fused ? 0 : got.dxbuf.size() + got.dkbuf.size());
      for (size_t i = 0; i < after.size(); ++i)
        if (!grad[i]) {
          ASSERT_EQ(after[i], before[i]) << "wrote outside the gradients at " << i;
        }
    }
  }
}

// Callers split KV heads across threads: ranges give the same bits as one call and touch only
// their own heads' dk/dv and their query heads' dq columns.
TEST(AttentionBwd, KvHeadRangesComputeOnlyTheirHeads) {
  const Case c = {13, 21, 6, 3, 16, 0, true, false};
  for (const KernelTable *t : kernels::available()) {
    SCOPED_TRACE(t->name);
    Problem whole(c, 7), parts(c, 7), one(c, 7);
    for (Problem *p : {&whole, &parts, &one}) p->fwd(kernels::ref::ref_table());
    t->attention_bwd(whole.bwd_args(0, 3));
    t->attention_bwd(parts.bwd_args(0, 1));
    t->attention_bwd(parts.bwd_args(1, 3));
    EXPECT_TRUE(same_bits(whole.all_grads(), parts.all_grads()));
    t->attention_bwd(one.bwd_args(1, 2));  // KV head 1 = query heads 2, 3
    Problem fresh(c, 7);
    const auto dq = one.dq(), dq0 = fresh.dq(), dk = one.dk(), dk0 = fresh.dk();
    int changed_in = 0;
    for (int64_t i = 0; i < c.n_q; ++i)
      for (int64_t h = 0; h < c.n_head; ++h)
        for (int64_t d = 0; d < c.head_dim; ++d) {
          const size_t e = size_t((i * c.n_head + h) * c.head_dim + d);
          if (h == 2 || h == 3) {
            changed_in += dq[e] != dq0[e];
          } else {
            ASSERT_EQ(dq[e], dq0[e]);
          }
        }
    EXPECT_GT(changed_in, 0);
    for (size_t e = 0; e < dk.size(); ++e) {
      const bool head1 = e / size_t(c.n_kv * c.head_dim) == 1;
      if (!head1) {
        ASSERT_EQ(dk[e], dk0[e]);
      }
    }
  }
}

// The gradients accumulate: two calls add twice the gradient; prefix keys get their share.
TEST(AttentionBwd, OutputsAccumulate) {
  const Case c = {8, 24, 2, 1, 32, 0, true, false};
  for (const KernelTable *t : kernels::available()) {
    SCOPED_TRACE(t->name);
    Problem once(c, 3), twice(c, 3), fresh(c, 3);
    once.fwd(kernels::ref::ref_table());
    twice.fwd(kernels::ref::ref_table());
    t->attention_bwd(once.bwd_args(0, 1));
    t->attention_bwd(twice.bwd_args(0, 1));
    t->attention_bwd(twice.bwd_args(0, 1));
    const auto g0 = fresh.dk(), g1 = once.dk(), g2 = twice.dk();
    double prefix_grad = 0;
    for (size_t e = 0; e < g0.size(); ++e) {
      EXPECT_NEAR(g2[e] - g0[e], 2 * (g1[e] - g0[e]), 1e-5);
      const int64_t j = int64_t(e) / c.head_dim % c.n_kv;
      if (j < c.n_kv - c.n_q) prefix_grad += std::abs(g1[e] - g0[e]);
    }
    EXPECT_GT(prefix_grad, 0.0) << "keys before the first query must get gradient";
    const auto v0 = fresh.dv(), v1 = once.dv(), v2 = twice.dv();
    for (size_t e = 0; e < v0.size(); ++e) EXPECT_NEAR(v2[e] - v0[e], 2 * (v1[e] - v0[e]), 1e-5);
  }
}

TEST(AttentionBwd, EmptyCallsTouchNothing) {
  const Case c = {4, 4, 2, 2, 8, 0, true, false};
  for (const KernelTable *t : kernels::available()) {
    Problem p(c, 5), fresh(c, 5);
    p.fwd(kernels::ref::ref_table());
    t->attention_bwd(p.bwd_args(1, 1));
    AttentionBwdArgs a = p.bwd_args(0, 2);
    a.n_q = 0;
    t->attention_bwd(a);
    EXPECT_TRUE(same_bits(p.all_grads(), fresh.all_grads())) << t->name;
  }
}

}  // namespace
}  // namespace lmkit::test
