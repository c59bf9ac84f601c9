// Tests of rotary position embedding: ref against hand formulas for both pairings, tables vs ref.
// Not the frequency tables (their scaling variants are the model layer's business).
#include <gtest/gtest.h>

#include <cmath>
#include <complex>

#include "kernels/kernel_test_util.h"

namespace lmkit::test {
namespace {

using kernels::KernelTable;
using kernels::RopeStyle;

// cos/sin (n_tok, rot_dim/2) for positions p0, p0+1, ... with the usual base 10000.
void make_tables(std::vector<float> &cos, std::vector<float> &sin, int64_t n_tok, int64_t rot_dim,
                 int64_t p0) {
  const int64_t half = rot_dim / 2;
  cos.resize(n_tok * half);
  sin.resize(n_tok * half);
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double ang = double(p0 + t) * std::pow(10000.0, -2.0 * i / double(rot_dim));
      cos[t * half + i] = float(std::cos(ang));
      sin[t * half + i] = float(std::sin(ang));
    }
}

TEST(Rope, RefMatchesHandFormulas) {
  const int64_t n_tok = 3, n_head = 2, head_dim = 12, rot_dim = 8, ld = n_head * head_dim + 5;
  std::vector<float> cos, sin;
  make_tables(cos, sin, n_tok, rot_dim, 4);
  const auto x = random_floats(n_tok * ld, 9);
  for (RopeStyle style : {RopeStyle::Interleaved, RopeStyle::Half}) {
    auto y = x;
    kernels::ref::rope_fwd(y.data(), ld, cos.data(), sin.data(), n_tok, n_head, head_dim, rot_dim,
                           style);
    for (int64_t t = 0; t < n_tok; ++t) {
      for (int64_t h = 0; h < n_head; ++h) {
        const float *xh = x.data() + t * ld + h * head_dim;
        const float *yh = y.data() + t * ld + h * head_dim;
        const float *c = cos.data() + t * rot_dim / 2, *s = sin.data() + t * rot_dim / 2;
        for (int64_t d = 0; d < rot_dim; ++d) {
          double want;
          if (style == RopeStyle::Interleaved) {
            // GPT-J: (x_2i + i x_2i+1) * e^(i theta)
            const int64_t i = d / 2;
            std::complex<double> z(xh[2 * i], xh[2 * i + 1]), e(c[i], s[i]);
            want = d % 2 ? (z * e).imag() : (z * e).real();
          } else {
            // HF: x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1], cos/sin tiled twice
            const int64_t half = rot_dim / 2, i = d % half;
            const double rot = d < half ? -xh[d + half] : xh[d - half];
            want = xh[d] * double(c[i]) + rot * s[i];
          }
          EXPECT_NEAR(yh[d], want, 1e-6) << int(style) << " " << t << " " << h << " " << d;
        }
        for (int64_t d = rot_dim; d < head_dim; ++d) EXPECT_EQ(yh[d], xh[d]) << "not rotated";
      }
      for (int64_t d = n_head * head_dim; d < ld; ++d) EXPECT_EQ(y[t * ld + d], x[t * ld + d]);
    }
  }
}

TEST(Rope, EveryTableMatchesRef) {
  for (const KernelTable *t : simd_tables()) {
    for (RopeStyle style : {RopeStyle::Interleaved, RopeStyle::Half}) {
      for (int64_t head_dim : {2, 6, 8, 16, 34, 64, 80, 128, 256}) {
        for (int64_t rot_dim : {head_dim, head_dim / 2 - (head_dim / 2) % 2, int64_t(2)}) {
          if (rot_dim <= 0) continue;
          for (int64_t n_head : {1, 3}) {
            for (int64_t n_tok : {1, 5}) {
              SCOPED_TRACE(testing::Message()
                           << t->name << " style=" << int(style) << " hd=" << head_dim
                           << " rot=" << rot_dim << " heads=" << n_head << " tok=" << n_tok);
              const int64_t ld = n_head * head_dim + 3;
              std::vector<float> cos, sin;
              make_tables(cos, sin, n_tok, rot_dim, 17);
              FBuf cb(cos), sb(sin);
              const auto x = random_floats(n_tok * ld, uint64_t(head_dim + rot_dim), 2.0f);
              FBuf x0(x), x1(x);
              kernels::ref::rope_fwd(x0.data(), ld, cb.data(), sb.data(), n_tok, n_head, head_dim,
                                     rot_dim, style);
              t->rope_fwd(x1.data(), ld, cb.data(), sb.data(), n_tok, n_head, head_dim, rot_dim,
                          style);
              EXPECT_LE(nmse(x0.vec(), x1.vec()), kMaxNmse);
              // Everything outside the rotated dims is bit-for-bit untouched.
              for (int64_t tok = 0; tok < n_tok; ++tok) {
                for (int64_t d = 0; d < ld; ++d) {
                  if (d >= n_head * head_dim || d % head_dim >= rot_dim) {
                    ASSERT_EQ(x1[tok * ld + d], x[tok * ld + d]);
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}

TEST(Rope, PositionZeroIsIdentity) {
  std::vector<float> cos, sin;
  make_tables(cos, sin, 1, 64, 0);
  const auto x = random_floats(2 * 64, 4);
  for (const KernelTable *t : kernels::available()) {
    for (RopeStyle style : {RopeStyle::Interleaved, RopeStyle::Half}) {
      auto y = x;
      t->rope_fwd(y.data(), 128, cos.data(), sin.data(), 1, 2, 64, 64, style);
      EXPECT_EQ(y, x) << t->name;
    }
  }
}

}  // namespace
}  // namespace lmkit::test
