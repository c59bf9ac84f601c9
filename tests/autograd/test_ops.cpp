// Gradient checks of the differentiable ops (src/autograd/ops.h) against central finite
// differences: for every op, the tape's gradients of J = sum_i w_i y_i (w fixed, y the op's
// output) with respect to every input activation and every parameter equal (J(x + e) -
// J(x - e)) / 2e. The kernels' own backward passes are checked precisely in tests/kernels; this
// checks how the ops wire them (strides, slices, shared gradient buffers, in-place updates,
// RoPE's inverse rotation, the attention's sequences and GQA groups, the loss's chunking).
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "autograd/ops.h"
#include "core/rng.h"
#include "kernels/quant.h"
#include "test_util.h"

namespace lmkit {
namespace {

using ag::Context;
using ag::Var;

struct Input {
  int64_t rows, cols;
  std::vector<float> v;
};

// The objective J = sum_i w_i y_i over y's elements, w_i = cos(1.3 i + 0.5); when recording,
// w is also added to y's gradient (the seed of backward).
double weighted_sum(Context &c, Var y) {
  double j = 0;
  float *g = c.recording() && y.tracked() ? c.grad(y) : nullptr;
  const int64_t ldg = g ? c.grad_ld(y) : 0;
  for (int64_t r = 0; r < y.rows; ++r)
    for (int64_t k = 0; k < y.cols; ++k) {
      const double w = std::cos(1.3 * double(r * y.cols + k) + 0.5);
      j += w * double(y.row(r)[k]);
      if (g) g[r * ldg + k] += float(w);
    }
  return j;
}

// Builds the graph on Vars holding the inputs and returns J (seeding backward when recording).
using Graph = std::function<double(Context &, std::vector<Var> &)>;

// Checks every gradient of J with respect to `inputs` and `params` (registered as trainable).
void check_gradients(std::vector<Input> inputs, std::vector<Tensor> params, const Graph &f,
                     double eps = 1e-2, double tol = 2e-3) {
  ThreadPool pool(2);
  Arena arena(size_t(1) << 20);
  auto vars_of = [&](Context &c) {
    std::vector<Var> xs;
    for (const Input &in : inputs) {
      Var x = c.new_var(in.rows, in.cols);
      std::memcpy(x.data, in.v.data(), in.v.size() * 4);
      xs.push_back(x);
    }
    return xs;
  };
  // Analytic gradients from the tape.
  ag::GradStore grads;
  for (const Tensor &p : params) grads.add(p);
  std::vector<std::vector<float>> got_in;
  {
    Context c(pool, arena, /*recording=*/true, &grads);
    std::vector<Var> xs = vars_of(c);
    std::vector<float *> gx;
    for (const Var &x : xs) gx.push_back(c.grad(x));  // before backward() forgets the buffers
    f(c, xs);
    c.backward();
    for (size_t i = 0; i < xs.size(); ++i)
      got_in.emplace_back(gx[i], gx[i] + xs[i].rows * xs[i].cols);
  }
  auto objective = [&] {
    arena.reset();
    Context c(pool, arena);
    std::vector<Var> xs = vars_of(c);
    return f(c, xs);
  };
  // Numeric gradients, element by element. The scale is the largest gradient of the group.
  auto compare = [&](float *value, const float *analytic, int64_t n, const std::string &what) {
    std::vector<double> num(static_cast<size_t>(n));
    double scale = 1e-3;
    for (int64_t i = 0; i < n; ++i) {
      const float keep = value[i];
      value[i] = keep + float(eps);
      const double up = objective();
      value[i] = keep - float(eps);
      const double down = objective();
      value[i] = keep;
      num[size_t(i)] = (up - down) / (2 * eps);
      scale = std::max(scale, std::abs(num[size_t(i)]));
    }
    for (int64_t i = 0; i < n; ++i)
      ASSERT_NEAR(analytic[i], num[size_t(i)], tol * scale) << what << " element " << i;
  };
  for (size_t i = 0; i < inputs.size(); ++i)
    compare(inputs[i].v.data(), got_in[i].data(), int64_t(inputs[i].v.size()),
            "input " + std::to_string(i));
  for (size_t i = 0; i < params.size(); ++i)
    compare(params[i].f32(), grads.find(params[i].data()), params[i].numel(),
            "parameter " + std::to_string(i));
}

Input random_input(int64_t rows, int64_t cols, uint64_t seed, float scale = 1.0f) {
  Rng rng(seed);
  Input in{rows, cols, std::vector<float>(size_t(rows * cols))};
  for (float &x : in.v) x = scale * (2.0f * rng.uniform() - 1.0f);
  return in;
}

Tensor random_param(const Shape &shape, uint64_t seed, float scale = 0.5f, float offset = 0.0f) {
  Tensor t = Tensor::zeros(DType::F32, shape);
  Rng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.f32()[i] = offset + scale * (2.0f * rng.uniform() - 1.0f);
  return t;
}

TEST(OpsGrad, EmbeddingAndLearnedPositions) {
  Tensor table = random_param({7, 5}, 1), positions = random_param({4, 5}, 2);
  const std::vector<int32_t> ids = {3, 0, 3, 6}, pos = {0, 1, 2, 1};  // repeats accumulate
  check_gradients({}, {table, positions}, [&](Context &c, std::vector<Var> &) {
    Var x = ag::embedding(c, table, ids.data(), 4);
    ag::add_rows_(c, x, positions, pos.data());
    return weighted_sum(c, x);
  });
}

TEST(OpsGrad, Norms) {
  Tensor w = random_param({9}, 3, 0.3f, 1.0f), b = random_param({9}, 4);
  check_gradients({random_input(5, 9, 5)}, {w}, [&](Context &c, std::vector<Var> &x) {
    return weighted_sum(c, ag::rmsnorm(c, x[0], w, 1e-5f));
  });
  check_gradients({random_input(5, 9, 6)}, {w, b}, [&](Context &c, std::vector<Var> &x) {
    return weighted_sum(c, ag::layernorm(c, x[0], w, b, 1e-5f));
  });
}

TEST(OpsGrad, LinearWithAndWithoutBiasIntoAColumnSlice) {
  Linear l{random_param({6, 11}, 7), random_param({6}, 8)};
  Linear nb{random_param({3, 11}, 9), Tensor()};
  check_gradients(
      {random_input(4, 11, 10)}, {l.w, l.b, nb.w}, [&](Context &c, std::vector<Var> &x) {
        Var y = c.new_var(4, 9);  // [linear | linear without bias], as the fused QKV projection
        ag::linear_into(c, y.cols_slice(0, 6), x[0], l);
        ag::linear_into(c, y.cols_slice(6, 3), x[0], nb);
        return weighted_sum(c, y);
      });
}

TEST(OpsGrad, LinearsIntoRecordsOneLinearEach) {
  Linear l{random_param({6, 11}, 7), random_param({6}, 8)};
  Linear nb{random_param({3, 11}, 9), Tensor()};
  check_gradients({random_input(4, 11, 10)}, {l.w, l.b, nb.w},
                  [&](Context &c, std::vector<Var> &x) {
                    Var y = c.new_var(4, 9);
                    const Var parts[] = {y.cols_slice(0, 6), y.cols_slice(6, 3)};
                    const Linear *w[] = {&l, &nb};
                    ag::linears_into(c, parts, x[0], w);
                    return weighted_sum(c, y);
                  });
}

TEST(Ops, LinearsIntoEqualsOneLinearEachBitForBit) {
  // One dispatch over the concatenated outputs: the threads' ranges cross from one weight into
  // the next, and each output must still be exactly what linear_into gives it.
  ThreadPool pool(2);
  Arena arena(size_t(1) << 22);
  const int64_t K = 64, M = 19;
  for (DType t : {DType::F32, DType::Q8_0}) {
    std::vector<Linear> ws;
    int64_t seed = 20;
    for (int64_t N : {37, 20, 45}) {
      Tensor f = random_param({N, K}, uint64_t(seed++));
      if (t == DType::F32) {
        ws.push_back({f, random_param({N}, uint64_t(seed++))});
        continue;
      }
      Tensor q = Tensor::zeros(t, {N, K});
      const size_t rb = dtype_row_bytes(t, K);
      for (int64_t n = 0; n < N; ++n)
        kernels::quantize_row(t, f.f32() + n * K, q.data_as<char>() + rb * size_t(n), K);
      ws.push_back({q, Tensor()});
    }
    Context c(pool, arena);
    Var x = c.new_var(M, K);
    const Input in = random_input(M, K, 30);
    std::memcpy(x.data, in.v.data(), in.v.size() * 4);
    Var one = c.new_var(M, 102), all = c.new_var(M, 102);
    const Var parts[] = {all.cols_slice(0, 37), all.cols_slice(37, 20), all.cols_slice(57, 45)};
    const Linear *w[] = {&ws[0], &ws[1], &ws[2]};
    ag::linears_into(c, parts, x, w);
    ag::linear_into(c, one.cols_slice(0, 37), x, ws[0]);
    ag::linear_into(c, one.cols_slice(37, 20), x, ws[1]);
    ag::linear_into(c, one.cols_slice(57, 45), x, ws[2]);
    for (int64_t r = 0; r < M; ++r)
      EXPECT_EQ(std::memcmp(one.row(r), all.row(r), 102 * 4), 0) << dtype_name(t) << " row " << r;
  }
}

TEST(OpsGrad, RopeBothPairingsAndPartialRotation) {
  const int64_t n = 3, n_head = 2, head_dim = 8, rot_dim = 6;
  std::vector<float> cs(size_t(n * rot_dim / 2)), sn(cs.size());
  for (size_t i = 0; i < cs.size(); ++i) {
    cs[i] = float(std::cos(0.7 * double(i) + 0.2));
    sn[i] = float(std::sin(0.7 * double(i) + 0.2));
  }
  for (auto style : {kernels::RopeStyle::Interleaved, kernels::RopeStyle::Half}) {
    SCOPED_TRACE(int(style));
    check_gradients(
        {random_input(n, n_head * head_dim + 3, 11)}, {}, [&](Context &c, std::vector<Var> &x) {
          Var heads = x[0].cols_slice(3, n_head * head_dim);  // a column slice, as K inside QKV
          ag::rope_(c, heads, cs.data(), sn.data(), n_head, head_dim, rot_dim, style);
          return weighted_sum(c, x[0]);
        });
  }
}

TEST(OpsGrad, AttentionTwoSequencesGqaAndSlidingWindow) {
  const int64_t nh = 4, nkv = 2, hd = 5, q_dim = nh * hd, kv_dim = nkv * hd;
  const std::vector<int64_t> lens = {4, 3};
  const int64_t n = 7;
  std::vector<int32_t> pos;
  for (int64_t len : lens)
    for (int64_t t = 0; t < len; ++t) pos.push_back(int32_t(t));
  for (int64_t window : {int64_t(0), int64_t(2)}) {
    SCOPED_TRACE(window);
    check_gradients({random_input(n, q_dim + 2 * kv_dim, 12)}, {},
                    [&](Context &c, std::vector<Var> &x) {
                      Var qkv = x[0];
                      std::vector<ag::AttnSeq> seqs;
                      int64_t begin = 0;
                      for (int64_t len : lens) {
                        ag::AttnSeq a;
                        a.row_begin = begin;
                        a.row_end = begin + len;
                        a.k = qkv.row(begin) + q_dim;
                        a.v = qkv.row(begin) + q_dim + kv_dim;
                        a.ld_head = hd;
                        a.ld_row = qkv.ld;
                        a.n_kv = len;
                        a.in_batch = true;
                        seqs.push_back(a);
                        begin += len;
                      }
                      ag::AttnShape s{nh, nkv, hd, window, 1.0f / std::sqrt(float(hd))};
                      return weighted_sum(c, ag::attention(c, qkv, seqs, pos.data(), s));
                    });
  }
}

TEST(OpsGrad, ActivationsAndResidual) {
  check_gradients(
      {random_input(3, 10, 13), random_input(3, 10, 14)}, {},
      [&](Context &c, std::vector<Var> &x) { return weighted_sum(c, ag::swiglu(c, x[0], x[1])); });
  for (bool tanh_approx : {false, true})
    check_gradients({random_input(3, 10, 15)}, {}, [&](Context &c, std::vector<Var> &x) {
      return weighted_sum(c, ag::gelu(c, x[0], tanh_approx));
    });
  // The residual stream: x + f(x) with f = gelu, so x's gradient has both paths.
  check_gradients({random_input(3, 10, 16)}, {}, [&](Context &c, std::vector<Var> &x) {
    Var y = ag::gelu(c, x[0], true);
    return weighted_sum(c, ag::residual(c, x[0], y));
  });
}

TEST(OpsGrad, CrossEntropyTiedClassifierAndIgnoredTargets) {
  // The classifier shares the embedding table, as tied models do: both uses accumulate.
  Tensor table = random_param({13, 6}, 17);
  Linear head{table, Tensor()};
  const std::vector<int32_t> ids = {1, 4, 4, 12, 0}, targets = {4, -1, 12, 0, 7};
  check_gradients({random_input(5, 6, 18)}, {table}, [&](Context &c, std::vector<Var> &x) {
    Var h = ag::residual(c, ag::embedding(c, table, ids.data(), 5), x[0]);
    ag::LossSum ls = ag::cross_entropy(c, h, head, targets.data(), 1.0f);
    EXPECT_EQ(ls.count, 4);
    return ls.sum;
  });
}

}  // namespace
}  // namespace lmkit
