// Pipeline stages and sequence chunks (Model::hidden with a Stage, docs/PARALLEL.md) against the
// whole model in one piece: a 4-layer GQA llama with tied embeddings, cut into 2 or 4 stages of
// contiguous layers, each micro-batch split along the sequence into 1, 2 or 4 chunks (even and
// uneven, as Seq1F1B's compute-wise split makes them). Chunks run forward in order, keeping their
// keys and values in per-layer KV stores, and backward last chunk first, last stage first, each
// stage seeded with the gradient of the next stage's input. The loss and every parameter
// gradient must equal the unsplit model's up to fp32 reassociation (relative error <= 1e-5).
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include "model/loader.h"
#include "test_util.h"
#include "train/init.h"
#include "train/trainer.h"

namespace lmkit {
namespace {

constexpr int64_t kB = 2, kT = 16;

std::shared_ptr<Model> four_layer_model() {
  LoadedModel lm = load_model(std::string(LMKIT_BUILD_DIR) + "/reference/llama_gqa_tied");
  ModelConfig c = lm.model->config();
  c.n_layer = 4;
  return std::make_shared<Model>(c, weights_init(c, 5));
}

struct Result {
  double loss = 0;
  std::vector<std::vector<float>> grads;  // per trainable parameter
};

std::vector<std::vector<float>> copy_grads(const std::vector<ParamRef> &params) {
  std::vector<std::vector<float>> g;
  for (const ParamRef &p : params) g.emplace_back(p.grad.f32(), p.grad.f32() + p.grad.numel());
  return g;
}

struct Data {
  std::vector<int32_t> tokens, targets;  // kB sequences of kT, row-major
  Data() {
    for (int64_t i = 0; i < kB * kT; ++i) {
      tokens.push_back(int32_t((i * 37 + 11) % 384));
      targets.push_back(int32_t((i * 53 + 7) % 384));
    }
    targets[3] = -1;  // a row without a target
  }
};

Result whole(const Model &m, const std::vector<ParamRef> &params, ag::GradStore &grads,
             const Data &d) {
  grads.zero();
  ThreadPool pool(2);
  Arena arena;
  RopeTable rope(m, kT);
  std::vector<int32_t> pos;
  std::vector<SeqRows> seqs;
  for (int64_t b = 0; b < kB; ++b) {
    for (int64_t t = 0; t < kT; ++t) pos.push_back(int32_t(t));
    seqs.push_back({b * kT, (b + 1) * kT, -1});
  }
  ag::Context ctx(pool, arena, /*recording=*/true, &grads);
  ag::Var h = m.hidden(ctx, Batch{d.tokens, pos, seqs}, rope, nullptr);
  const int64_t n_targets =
      std::count_if(d.targets.begin(), d.targets.end(), [](int32_t t) { return t >= 0; });
  ag::LossSum ls =
      ag::cross_entropy(ctx, h, m.classifier(), d.targets.data(), float(1.0 / double(n_targets)));
  ctx.backward();
  return {ls.sum / double(n_targets), copy_grads(params)};
}

// One micro-batch through stages [cuts[s], cuts[s + 1]) in chunks of the given lengths.
Result staged(const Model &m, const std::vector<ParamRef> &params, ag::GradStore &grads,
              const Data &d, const std::vector<int64_t> &cuts, const std::vector<int64_t> &chunks) {
  grads.zero();
  const ModelConfig &c = m.config();
  const int64_t n_stages = int64_t(cuts.size()) - 1, n_chunks = int64_t(chunks.size());
  ThreadPool pool(2);
  RopeTable rope(m, kT);
  const int64_t n_targets =
      std::count_if(d.targets.begin(), d.targets.end(), [](int32_t t) { return t >= 0; });
  // One KV store per (layer, sequence), shared by the chunks of the micro-batch.
  const int64_t store_floats = c.n_head_kv * kT * c.head_dim;
  std::vector<std::vector<float>> mem;
  std::vector<ag::KVStore> stores;
  for (int64_t l = 0; l < c.n_layer; ++l)
    for (int64_t b = 0; b < kB; ++b) {
      ag::KVStore s;
      float *p[4];
      for (float *&q : p) {
        mem.emplace_back(size_t(store_floats), 0.0f);
        q = mem.back().data();
      }
      s.k = p[0];
      s.v = p[1];
      s.dk = p[2];
      s.dv = p[3];
      s.n_head_kv = c.n_head_kv;
      s.head_dim = c.head_dim;
      s.n_ctx = kT;
      stores.push_back(s);
    }
  struct Piece {
    std::unique_ptr<Arena> arena = std::make_unique<Arena>();
    std::unique_ptr<ag::Context> ctx;
    std::vector<int32_t> tokens, targets, pos;
    std::vector<SeqRows> seqs;
    ag::Var in, out;
    float *in_grad = nullptr;
  };
  std::vector<std::vector<Piece>> pieces(static_cast<size_t>(n_chunks));
  double loss = 0;
  int64_t t0 = 0;
  for (int64_t k = 0; k < n_chunks; ++k) {
    const int64_t tc = chunks[size_t(k)];
    pieces[size_t(k)].resize(size_t(n_stages));
    for (int64_t s = 0; s < n_stages; ++s) {
      Piece &p = pieces[size_t(k)][size_t(s)];
      for (int64_t b = 0; b < kB; ++b) {
        for (int64_t t = t0; t < t0 + tc; ++t) {
          p.tokens.push_back(d.tokens[size_t(b * kT + t)]);
          p.targets.push_back(d.targets[size_t(b * kT + t)]);
          p.pos.push_back(int32_t(t));
        }
        p.seqs.push_back({b * tc, (b + 1) * tc, -1});
      }
      p.ctx = std::make_unique<ag::Context>(pool, *p.arena, /*recording=*/true, &grads);
      Stage st;
      st.first = cuts[size_t(s)];
      st.last = cuts[size_t(s + 1)];
      st.kv = std::span<const ag::KVStore>(stores).subspan(size_t(st.first * kB),
                                                           size_t((st.last - st.first) * kB));
      if (s > 0) {  // the previous stage's output, received as this stage's input
        const ag::Var prev = pieces[size_t(k)][size_t(s - 1)].out;
        p.in = p.ctx->new_var(prev.rows, prev.cols);
        for (int64_t r = 0; r < prev.rows; ++r)
          std::copy(prev.row(r), prev.row(r) + prev.cols, p.in.row(r));
        p.in_grad = p.ctx->grad(p.in);
        st.input = p.in;
      }
      p.out = m.hidden(*p.ctx, Batch{p.tokens, p.pos, p.seqs}, rope, nullptr, nullptr, &st);
      if (s == n_stages - 1)
        loss += ag::cross_entropy(*p.ctx, p.out, m.classifier(), p.targets.data(),
                                  float(1.0 / double(n_targets)))
                    .sum;
    }
    t0 += tc;
  }
  EXPECT_EQ(t0, kT);
  // Backward: last chunk first (its attention adds into the earlier positions' dK/dV), and
  // within a chunk the last stage first, each seeding the stage before it.
  for (int64_t k = n_chunks - 1; k >= 0; --k)
    for (int64_t s = n_stages - 1; s >= 0; --s) {
      Piece &p = pieces[size_t(k)][size_t(s)];
      if (s < n_stages - 1) {
        const Piece &next = pieces[size_t(k)][size_t(s + 1)];
        float *g = p.ctx->grad(p.out);
        const int64_t ld = p.ctx->grad_ld(p.out);
        for (int64_t r = 0; r < p.out.rows; ++r)
          for (int64_t j = 0; j < p.out.cols; ++j)
            g[r * ld + j] += next.in_grad[r * next.in.cols + j];
      }
      p.ctx->backward();
    }
  return {loss / double(n_targets), copy_grads(params)};
}

TEST(PipelineStage, StagesAndSequenceChunksEqualTheWholeModel) {
  auto model = four_layer_model();
  ag::GradStore grads;
  const std::vector<ParamRef> params = trainable_params(*model, grads);
  const Data d;
  const Result want = whole(*model, params, grads, d);
  ASSERT_TRUE(std::isfinite(want.loss));
  const std::vector<std::vector<int64_t>> cuts = {{0, 4}, {0, 2, 4}, {0, 1, 2, 3, 4}, {0, 3, 4}};
  const std::vector<std::vector<int64_t>> splits = {{16}, {8, 8}, {4, 4, 4, 4}, {7, 5, 4}, {1, 15}};
  for (const auto &cut : cuts)
    for (const auto &split : splits) {
      SCOPED_TRACE(testing::Message() << cut.size() - 1 << " stages, " << split.size()
                                      << " chunks, first " << split[0]);
      const Result got = staged(*model, params, grads, d, cut, split);
      EXPECT_NEAR(got.loss, want.loss, 1e-5 * std::abs(want.loss));
      for (size_t i = 0; i < params.size(); ++i) {
        double diff = 0, scale = 0;
        for (size_t j = 0; j < want.grads[i].size(); ++j) {
          diff = std::max(diff, std::abs(double(got.grads[i][j]) - double(want.grads[i][j])));
          scale = std::max(scale, std::abs(double(want.grads[i][j])));
        }
        ASSERT_GT(scale, 0.0) << params[i].name;
        EXPECT_LE(diff, 1e-5 * scale) << params[i].name;
      }
    }
}

TEST(PipelineStage, BadStagesAreClearErrors) {
  auto model = four_layer_model();
  ThreadPool pool(1);
  Arena arena;
  RopeTable rope(*model, kT);
  const std::vector<int32_t> tokens = {1, 2, 3}, pos = {0, 1, 2}, late = {5, 6, 7};
  const std::vector<SeqRows> seqs = {{0, 3, -1}};
  ag::Context ctx(pool, arena);
  Stage st;
  st.first = 2;
  st.last = 5;  // past the last layer
  EXPECT_THROW(model->hidden(ctx, Batch{tokens, pos, seqs}, rope, nullptr, nullptr, &st), Error);
  st.last = 4;  // layer 2 without the residual stream
  EXPECT_THROW(model->hidden(ctx, Batch{tokens, pos, seqs}, rope, nullptr, nullptr, &st), Error);
  // A chunk past position 0 needs KV stores; without them it must start at 0.
  st.first = 0;
  EXPECT_THROW(model->hidden(ctx, Batch{tokens, late, seqs}, rope, nullptr, nullptr, &st), Error);
}

}  // namespace
}  // namespace lmkit
