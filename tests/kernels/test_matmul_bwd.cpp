// Tests of the linear-layer backward kernels (dx = dy·W, dW += dy^T·x, db) and embedding backward:
// ref against finite differences of the forward in double, every table against ref over odd and
// multi-block shapes with strides, accumulation, and the split invariances callers rely on.
// Not performance: bench/bench_kernels.cpp measures speed.
#include <gtest/gtest.h>

#include "kernels/kernel_test_util.h"

namespace lmkit::test {
namespace {

using kernels::KernelTable;

// L = sum_{m,n} y[m,n] dy[m,n],  y = x W^T + b,  in double; in = [x (M*K), W (N*K), b (N)].
double linear_loss(const std::vector<double> &in, const std::vector<float> &dy, int64_t M,
                   int64_t N, int64_t K) {
  const double *x = in.data(), *w = x + M * K, *b = w + N * K;
  double L = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double y = b[n];
      for (int64_t k = 0; k < K; ++k) y += x[m * K + k] * w[n * K + k];
      L += y * dy[m * N + n];
    }
  return L;
}

TEST(MatmulBwd, RefMatchesFiniteDifferences) {
  const int64_t M = 4, N = 5, K = 7;
  const auto x = random_floats(M * K, 1), w = random_floats(N * K, 2), b = random_floats(N, 3);
  const auto dy = random_floats(M * N, 4);
  std::vector<double> in = to_double(x);
  in.insert(in.end(), w.begin(), w.end());
  in.insert(in.end(), b.begin(), b.end());
  const auto g = fd_gradient(in, [&](const std::vector<double> &v) {
    return linear_loss(v, dy, M, N, K);
  });
  const auto dx0 = random_floats(M * K, 5), dw0 = random_floats(N * K, 6), db0 = random_floats(N, 7);
  std::vector<float> dx = dx0, dw = dw0, db = db0;
  kernels::ref::matmul_bwd_x(dx.data(), K, dy.data(), N, w.data(), M, N, K);
  kernels::ref::matmul_bwd_w(dw.data(), db.data(), dy.data(), N, x.data(), K, M, N, K);
  std::vector<double> gx(g.begin(), g.begin() + M * K), gw(g.begin() + M * K, g.end() - N),
      gb(g.end() - N, g.end());
  for (size_t i = 0; i < gx.size(); ++i) gx[i] += dx0[i];  // all three accumulate
  for (size_t i = 0; i < gw.size(); ++i) gw[i] += dw0[i];
  for (size_t i = 0; i < gb.size(); ++i) gb[i] += db0[i];
  EXPECT_LE(max_rel_err(gx, dx), 1e-7);
  EXPECT_LE(max_rel_err(gw, dw), 1e-7);
  EXPECT_LE(max_rel_err(gb, db), 1e-7);
}

// A (rows, cols) matrix laid out with row stride ld, padding = pad_value (for a misaligned FBuf).
std::vector<float> strided(const std::vector<float> &v, int64_t rows, int64_t cols, int64_t ld,
                           float pad_value) {
  std::vector<float> b(size_t(std::max<int64_t>(rows * ld, 1)), pad_value);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) b[size_t(r * ld + c)] = v[size_t(r * cols + c)];
  return b;
}

struct Shape {
  int64_t M, N, K;
};

// Odd shapes around every vector width and tile edge, plus shapes spanning several cache blocks
// of the SIMD GEMM (reduction blocks of 256, row blocks of 96, column strips of 16/64).
std::vector<Shape> bwd_shapes() {
  std::vector<Shape> s;
  for (int64_t K : {1, 7, 16, 17, 63, 65, 130})
    for (int64_t M : {1, 5, 7, 13})
      for (int64_t N : {1, 3, 17, 33}) s.push_back({M, N, K});
  s.push_back({200, 300, 70});  // dx: several row blocks and reduction blocks
  s.push_back({600, 40, 129});  // dW: reduction over 600 rows (3 blocks)
  s.push_back({97, 257, 257});
  return s;
}

TEST(MatmulBwd, EveryTableMatchesRef) {
  for (const KernelTable *t : simd_tables()) {
    for (const Shape &s : bwd_shapes()) {
      const auto [M, N, K] = s;
      SCOPED_TRACE(testing::Message() << t->name << " M=" << M << " N=" << N << " K=" << K);
      const uint64_t seed = uint64_t(M * 1000 + N * 10 + K);
      const int64_t lddy = N + 3, ldx = K + 2, lddx = K + 5;
      FBuf dy(strided(random_floats(M * N, seed), M, N, lddy, 1e30f));  // padding must not be read
      FBuf x(strided(random_floats(M * K, seed + 1), M, K, ldx, 1e30f));
      FBuf w(random_floats(N * K, seed + 2));
      const auto dx0 = random_floats(M * K, seed + 3);
      FBuf dx_want(strided(dx0, M, K, lddx, -7.0f)), dx_got(strided(dx0, M, K, lddx, -7.0f));
      kernels::ref::matmul_bwd_x(dx_want.data(), lddx, dy.data(), lddy, w.data(), M, N, K);
      t->matmul_bwd_x(dx_got.data(), lddx, dy.data(), lddy, w.data(), M, N, K);
      ASSERT_LE(nmse(dx_want.vec(), dx_got.vec()), kMaxNmse);  // padding compared too: still -7

      const auto dw0 = random_floats(N * K, seed + 4), db0 = random_floats(N, seed + 5);
      FBuf dw_want(dw0), dw_got(dw0), db_want(db0), db_got(db0);
      const bool with_b = (M + N + K) % 2 == 0;
      kernels::ref::matmul_bwd_w(dw_want.data(), with_b ? db_want.data() : nullptr, dy.data(),
                                 lddy, x.data(), ldx, M, N, K);
      t->matmul_bwd_w(dw_got.data(), with_b ? db_got.data() : nullptr, dy.data(), lddy, x.data(),
                      ldx, M, N, K);
      ASSERT_LE(nmse(dw_want.vec(), dw_got.vec()), kMaxNmse);
      ASSERT_LE(nmse(db_want.vec(), db_got.vec()), kMaxNmse);
      if (!with_b) {
        ASSERT_EQ(db_got.vec(), db0);
      }
    }
  }
}

// What callers rely on: dx rows do not depend on how M is split into calls (threads split M),
// dW rows do not depend on how N is split (threads split N), and results are deterministic.
TEST(MatmulBwd, SplitsGiveTheSameBits) {
  const int64_t M = 150, N = 300, K = 90;
  const auto dy = random_floats(M * N, 1), x = random_floats(M * K, 2), w = random_floats(N * K, 3);
  for (const KernelTable *t : kernels::available()) {
    SCOPED_TRACE(t->name);
    std::vector<float> whole(M * K, 0.5f), parts(M * K, 0.5f);
    t->matmul_bwd_x(whole.data(), K, dy.data(), N, w.data(), M, N, K);
    for (int64_t m0 : {0, 1, 8, 77}) {
      const int64_t m1 = m0 == 0 ? 1 : m0 == 1 ? 8 : m0 == 8 ? 77 : M;
      t->matmul_bwd_x(parts.data() + m0 * K, K, dy.data() + m0 * N, N, w.data(), m1 - m0, N, K);
    }
    EXPECT_TRUE(same_bits(whole, parts));

    std::vector<float> dw_whole(N * K, 0.25f), dw_parts(N * K, 0.25f);
    std::vector<float> db_whole(N, 1.0f), db_parts(N, 1.0f);
    t->matmul_bwd_w(dw_whole.data(), db_whole.data(), dy.data(), N, x.data(), K, M, N, K);
    for (auto [n0, n1] : {std::pair<int64_t, int64_t>{0, 7}, {7, 150}, {150, 151}, {151, 300}})
      t->matmul_bwd_w(dw_parts.data() + n0 * K, db_parts.data() + n0, dy.data() + n0, N, x.data(),
                      K, M, n1 - n0, K);
    EXPECT_TRUE(same_bits(dw_whole, dw_parts));
    EXPECT_TRUE(same_bits(db_whole, db_parts));

    std::vector<float> again(M * K, 0.5f);
    t->matmul_bwd_x(again.data(), K, dy.data(), N, w.data(), M, N, K);
    EXPECT_TRUE(same_bits(whole, again)) << "not deterministic";
  }
}

TEST(MatmulBwd, OutputsAccumulateAndEmptyShapesAreNoOps) {
  const int64_t M = 9, N = 11, K = 21;
  const auto dy = random_floats(M * N, 1), x = random_floats(M * K, 2), w = random_floats(N * K, 3);
  for (const KernelTable *t : kernels::available()) {
    SCOPED_TRACE(t->name);
    std::vector<float> dx1(M * K, 0.0f), dx2(M * K, 0.0f);
    t->matmul_bwd_x(dx1.data(), K, dy.data(), N, w.data(), M, N, K);
    t->matmul_bwd_x(dx2.data(), K, dy.data(), N, w.data(), M, N, K);
    t->matmul_bwd_x(dx2.data(), K, dy.data(), N, w.data(), M, N, K);
    for (int64_t i = 0; i < M * K; ++i) EXPECT_NEAR(dx2[i], 2 * dx1[i], 1e-5);
    std::vector<float> dw1(N * K, 0.0f), dw2(N * K, 0.0f), db1(N, 0.0f), db2(N, 0.0f);
    t->matmul_bwd_w(dw1.data(), db1.data(), dy.data(), N, x.data(), K, M, N, K);
    t->matmul_bwd_w(dw2.data(), db2.data(), dy.data(), N, x.data(), K, M, N, K);
    t->matmul_bwd_w(dw2.data(), db2.data(), dy.data(), N, x.data(), K, M, N, K);
    for (int64_t i = 0; i < N * K; ++i) EXPECT_NEAR(dw2[i], 2 * dw1[i], 1e-5);
    for (int64_t i = 0; i < N; ++i) EXPECT_NEAR(db2[i], 2 * db1[i], 1e-5);
    // M = 0 contributes nothing; N = 0 or K = 0 touch nothing.
    std::vector<float> keep(M * K, -7.0f), keep_w(N * K, -7.0f), keep_b(N, -7.0f);
    t->matmul_bwd_x(keep.data(), K, dy.data(), N, w.data(), 0, N, K);
    t->matmul_bwd_x(keep.data(), K, dy.data(), N, w.data(), M, 0, K);
    t->matmul_bwd_w(keep_w.data(), keep_b.data(), dy.data(), N, x.data(), K, 0, N, K);
    t->matmul_bwd_w(keep_w.data(), keep_b.data(), dy.data(), N, x.data(), K, M, 0, K);
    t->matmul_bwd_w(keep_w.data(), nullptr, dy.data(), N, x.data(), K, M, N, 0);
    EXPECT_EQ(keep, std::vector<float>(M * K, -7.0f));
    EXPECT_EQ(keep_w, std::vector<float>(N * K, -7.0f));
    EXPECT_EQ(keep_b, std::vector<float>(N, -7.0f));
  }
}

TEST(EmbeddingBwd, RepeatedIdsAccumulateInRowOrder) {
  const int64_t vocab = 10, dim = 37;
  const std::vector<int32_t> ids = {3, 0, 3, 9, 3, 5};
  const int64_t n = int64_t(ids.size());
  const auto dy = random_floats(n * dim, 1), w0 = random_floats(vocab * dim, 2);
  // The expected table: the same float additions in row order.
  std::vector<float> want = w0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < dim; ++d) want[ids[i] * dim + d] += dy[i * dim + d];
  for (const KernelTable *t : kernels::available()) {
    FBuf dw(w0), g(dy);
    t->embedding_bwd(dw.data(), ids.data(), n, g.data(), dim);
    EXPECT_TRUE(same_bits(dw.vec(), want)) << t->name;
    // Rows never named are untouched (row 1 here).
    for (int64_t d = 0; d < dim; ++d) EXPECT_EQ(dw[size_t(1 * dim + d)], w0[1 * dim + d]);
  }
  for (const KernelTable *t : simd_tables()) {
    for (int64_t d : odd_dims()) {
      const auto big = random_floats(n * d, uint64_t(d)), base = random_floats(vocab * d, 3);
      FBuf a(base), b(base), g(big);
      kernels::ref::embedding_bwd(a.data(), ids.data(), n, g.data(), d);
      t->embedding_bwd(b.data(), ids.data(), n, g.data(), d);
      EXPECT_TRUE(same_bits(a.vec(), b.vec())) << t->name << " dim=" << d;
    }
  }
}

}  // namespace
}  // namespace lmkit::test
