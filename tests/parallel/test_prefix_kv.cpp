// Sequence-chunked attention with kept prefix K/V (the attention half of Seq1F1B): a sequence cut
// into chunks, each recorded in its own autograd context, forward in chunk order with chunk i
// attending to the K/V of chunks 0..i kept in a KVStore, backward last chunk first with dK/dV
// accumulating into earlier chunks, gives the output and the Q/K/V gradients of attention over the
// whole sequence at once (relative error <= 1e-5), for grouped KV heads, a sliding window and even
// or uneven chunks, with the fused kernels of this CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/ops.h"
#include "core/error.h"
#include "core/rng.h"

namespace lmkit::ag {
namespace {

struct Case {
  int64_t n, n_head, n_head_kv, head_dim, window;
  std::vector<int64_t> bounds;  // chunk boundaries 0 = b0 < b1 < ... = n
};

double max_abs(const std::vector<float> &v) {
  double m = 0;
  for (float x : v) m = std::max(m, double(std::abs(x)));
  return m;
}

void check(const Case &t) {
  SCOPED_TRACE(testing::Message() << "n " << t.n << " heads " << t.n_head << "/" << t.n_head_kv
                                  << " window " << t.window << " chunks " << t.bounds.size() - 1);
  ThreadPool pool(2);
  const int64_t q_dim = t.n_head * t.head_dim, kv_dim = t.n_head_kv * t.head_dim;
  const int64_t cols = q_dim + 2 * kv_dim, n = t.n;
  AttnShape shape;
  shape.n_head = t.n_head;
  shape.n_head_kv = t.n_head_kv;
  shape.head_dim = t.head_dim;
  shape.window = t.window;
  shape.scale = float(1.0 / std::sqrt(double(t.head_dim)));
  Rng rng(7);
  std::vector<float> x(size_t(n * cols)), r(size_t(n * q_dim));
  for (float &v : x) v = 2 * rng.uniform() - 1;
  for (float &v : r) v = 2 * rng.uniform() - 1;  // dL/dz
  std::vector<int32_t> pos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pos[size_t(i)] = int32_t(i);

  // The whole sequence at once.
  Arena arena_full;
  std::vector<float> z_full(size_t(n * q_dim)), g_full(size_t(n * cols));
  {
    Context c(pool, arena_full, true);
    Var qkv = c.new_var(n, cols);
    std::copy(x.begin(), x.end(), qkv.data);
    AttnSeq s;
    s.row_begin = 0;
    s.row_end = n;
    s.k = qkv.row(0) + q_dim;
    s.v = qkv.row(0) + q_dim + kv_dim;
    s.ld_head = t.head_dim;
    s.ld_row = qkv.ld;
    s.n_kv = n;
    s.in_batch = true;
    Var z = attention(c, qkv, std::span<const AttnSeq>(&s, 1), pos.data(), shape);
    std::copy(z.data, z.data + n * q_dim, z_full.begin());
    std::copy(r.begin(), r.end(), c.grad(z));
    float *gq = c.grad(qkv);
    c.backward();
    std::copy(gq, gq + n * cols, g_full.begin());
  }

  // Chunk by chunk, each in its own context, sharing one KV store.
  Arena arena;
  std::vector<float> sk(size_t(t.n_head_kv * n * t.head_dim)), sv(sk.size()), sdk(sk.size(), 0.0f),
      sdv(sk.size(), 0.0f);
  KVStore store{sk.data(), sv.data(), sdk.data(), sdv.data(), t.n_head_kv, t.head_dim, n};
  const size_t k = t.bounds.size() - 1;
  std::vector<std::unique_ptr<Context>> ctx;
  std::vector<Var> qkvs, zs;
  for (size_t i = 0; i < k; ++i) {  // forward in chunk order
    const int64_t b = t.bounds[i], e = t.bounds[i + 1];
    ctx.push_back(std::make_unique<Context>(pool, arena, true));
    Context &c = *ctx.back();
    Var qkv = c.new_var(e - b, cols);
    std::copy(x.begin() + b * cols, x.begin() + e * cols, qkv.data);
    kv_store_append(c, qkv, q_dim, q_dim + kv_dim, store, b);
    const AttnSeq s = store.seq(0, e - b, e);
    const KVGrad g = store.grad();
    zs.push_back(attention(c, qkv, std::span<const AttnSeq>(&s, 1), pos.data() + b, shape, nullptr,
                           std::span<const KVGrad>(&g, 1)));
    qkvs.push_back(qkv);
  }
  std::vector<float> z_chunk(size_t(n * q_dim)), g_chunk(size_t(n * cols));
  for (size_t i = k; i-- > 0;) {  // backward last chunk first
    const int64_t b = t.bounds[i], e = t.bounds[i + 1];
    Context &c = *ctx[i];
    std::copy(zs[i].data, zs[i].data + (e - b) * q_dim, z_chunk.begin() + b * q_dim);
    std::copy(r.begin() + b * q_dim, r.begin() + e * q_dim, c.grad(zs[i]));
    float *gq = c.grad(qkvs[i]);
    c.backward();
    std::copy(gq, gq + (e - b) * cols, g_chunk.begin() + b * cols);
  }

  const double zs_max = max_abs(z_full), g_max = max_abs(g_full);
  ASSERT_GT(g_max, 0);
  for (size_t i = 0; i < z_full.size(); ++i)
    ASSERT_LE(std::abs(z_chunk[i] - z_full[i]), 1e-5 * zs_max) << "z[" << i << "]";
  for (size_t i = 0; i < g_full.size(); ++i)
    ASSERT_LE(std::abs(g_chunk[i] - g_full[i]), 1e-5 * g_max)
        << "dqkv row " << i / size_t(cols) << " column " << i % size_t(cols);
}

TEST(PrefixKV, ChunkedAttentionEqualsWholeSequenceForwardAndBackward) {
  check({16, 4, 2, 8, 0, {0, 8, 16}});                        // k = 2, even
  check({16, 4, 2, 8, 0, {0, 4, 8, 12, 16}});                 // k = 4, even
  check({37, 4, 4, 16, 0, {0, 15, 26, 37}});                  // uneven (compute-split-like), MHA
  check({29, 6, 2, 8, 0, {0, 1, 2, 29}});                     // one-token chunks
  check({40, 4, 1, 8, 9, {0, 11, 23, 31, 40}});               // sliding window, one KV head
  check({64, 2, 2, 32, 0, {0, 26, 37, 46, 53, 58, 61, 64}});  // longer keys (blocked kernels)
}

TEST(PrefixKV, BadStoresAreErrors) {
  ThreadPool pool(1);
  Arena arena;
  Context c(pool, arena, true);
  std::vector<float> buf(2 * 4 * 8, 0.0f);
  KVStore store{buf.data(), buf.data(), buf.data(), buf.data(), 1, 4, 8};
  Var qkv = c.new_var(3, 12);
  std::fill(qkv.data, qkv.data + 36, 0.0f);
  EXPECT_THROW(kv_store_append(c, qkv, 4, 8, store, 6), Error);   // positions 6..8 of 8
  EXPECT_THROW(kv_store_append(c, qkv, 4, 10, store, 0), Error);  // V columns past the row
  EXPECT_THROW(store.seq(0, 3, 9), Error);
  // Keys outside the batch without gradient buffers cannot take gradients.
  const AttnSeq s = store.seq(0, 3, 3);
  AttnShape shape{1, 1, 4, 0, 0.5f};
  std::vector<int32_t> pos = {0, 1, 2};
  EXPECT_THROW(attention(c, qkv, std::span<const AttnSeq>(&s, 1), pos.data(), shape), Error);
  const KVGrad none;
  EXPECT_THROW(attention(c, qkv, std::span<const AttnSeq>(&s, 1), pos.data(), shape, nullptr,
                         std::span<const KVGrad>(&none, 1)),
               Error);
  const KVGrad two[2] = {store.grad(), store.grad()};  // one per sequence, not two
  EXPECT_THROW(attention(c, qkv, std::span<const AttnSeq>(&s, 1), pos.data(), shape, nullptr,
                         std::span<const KVGrad>(two, 2)),
               Error);
}

}  // namespace
}  // namespace lmkit::ag
