// Hook points: names, and patching (a listener's writes change the forward pass exactly as the
// equivalent computation would).
#include <map>

#include "core/error.h"
#include "model/loader.h"
#include "runtime/session.h"
#include "test_util.h"

namespace lmkit {
namespace {

std::string ref_dir() {
  return std::string(LMKIT_BUILD_DIR) + "/reference";
}

std::vector<float> copy_of(const Tensor &t) {
  Tensor c = t.contiguous();
  return std::vector<float>(c.f32(), c.f32() + c.numel());
}

TEST(Hooks, NamesAndErrors) {
  auto names = Hooks::names(2);
  EXPECT_EQ(names.size(), 2u * 16 + 1);
  EXPECT_EQ(names.front(), "blocks.0.hook_resid_pre");
  EXPECT_EQ(names.back(), "ln_final.hook_normalized");
  Hooks h;
  EXPECT_TRUE(h.empty());
  h.add("blocks.*.hook_mlp_out", [](const HookEvent &) {});
  h.add("blocks.3.attn.hook_pattern", [](const HookEvent &) {});
  EXPECT_TRUE(h.wants(HookPoint::MlpOut, 7));
  EXPECT_TRUE(h.wants(HookPoint::AttnPattern, 3));
  EXPECT_FALSE(h.wants(HookPoint::AttnPattern, 2));
  EXPECT_FALSE(h.wants(HookPoint::ResidPost, 0));
  EXPECT_THROW(h.add("blocks.1.hook_nope", [](const HookEvent &) {}), Error);
  EXPECT_THROW(h.add("resid_post", [](const HookEvent &) {}), Error);
  EXPECT_THROW(h.add("blocks.x.hook_mlp_out", [](const HookEvent &) {}), Error);
}

// Activation patching: replacing the residual stream entering block 1 with another prompt's
// makes every later value, and the logits, equal that other prompt's.
TEST(Hooks, ResidualPatchTransplantsARun) {
  LoadedModel lm = load_model(ref_dir() + "/llama_untied_scaled");
  auto pool = std::make_shared<ThreadPool>(2);
  const int64_t V = lm.model->config().n_vocab;
  std::vector<int32_t> a = {1, 50, 60, 70, 80}, b = {1, 90, 91, 92, 93};

  Session sb(lm.model, pool, 16);
  std::vector<float> resid_b;
  sb.hooks().add("blocks.1.hook_resid_pre",
                 [&](const HookEvent &ev) { resid_b = copy_of(ev.value); });
  const float *lb = sb.eval(b);
  std::vector<float> logits_b(lb, lb + V);

  Session sa(lm.model, pool, 16);
  const float *la0 = sa.eval(a);
  std::vector<float> logits_a(la0, la0 + V);
  EXPECT_GT(test::nmse(logits_a, logits_b), 1e-6);  // the prompts really differ

  Session patched(lm.model, pool, 16);
  patched.hooks().add("blocks.1.hook_resid_pre", [&](const HookEvent &ev) {
    ASSERT_EQ(ev.value.numel(), int64_t(resid_b.size()));
    std::copy(resid_b.begin(), resid_b.end(), ev.value.f32());
  });
  const float *lp = patched.eval(a);
  for (int64_t v = 0; v < V; ++v) ASSERT_FLOAT_EQ(lp[v], logits_b[size_t(v)]) << v;
}

// Patching the attention pattern: attending only to position 0 makes each head's output z
// equal the value vector of position 0 of its KV head.
TEST(Hooks, PatternPatchRecomputesAttentionOutput) {
  LoadedModel lm = load_model(ref_dir() + "/llama_gqa_tied");
  const ModelConfig &c = lm.model->config();
  auto pool = std::make_shared<ThreadPool>(1);
  Session s(lm.model, pool, 16);
  std::vector<float> v0, z;
  s.hooks().add("blocks.0.attn.hook_v", [&](const HookEvent &ev) { v0 = copy_of(ev.value); });
  s.hooks().add("blocks.0.attn.hook_pattern", [&](const HookEvent &ev) {
    EXPECT_EQ(ev.value.shape(), Shape({c.n_head, 4, 4}));
    float *p = ev.value.f32();
    for (int64_t i = 0; i < ev.value.numel(); ++i) p[i] = (i % 4 == 0) ? 1.0f : 0.0f;
  });
  s.hooks().add("blocks.0.attn.hook_z", [&](const HookEvent &ev) {
    EXPECT_EQ(ev.value.shape(), Shape({4, c.n_head, c.head_dim}));
    z = copy_of(ev.value);
  });
  s.eval(std::vector<int32_t>{1, 5, 9, 13});
  const int64_t hd = c.head_dim, group = c.n_head / c.n_head_kv;
  ASSERT_EQ(v0.size(), size_t(4 * c.n_head_kv * hd));
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t h = 0; h < c.n_head; ++h)
      for (int64_t d = 0; d < hd; ++d)
        ASSERT_FLOAT_EQ(z[size_t((i * c.n_head + h) * hd + d)],
                        v0[size_t((h / group) * hd + d)]);  // position 0's V
}

// Hooks fire once per layer for wildcard names, in order, with the chunk's positions.
TEST(Hooks, WildcardOrderAndPositions) {
  LoadedModel lm = load_model(ref_dir() + "/gpt2");
  auto pool = std::make_shared<ThreadPool>(1);
  Session s(lm.model, pool, 16);
  std::vector<int64_t> layers;
  std::vector<int32_t> pos;
  s.hooks().add("blocks.*.hook_resid_post", [&](const HookEvent &ev) {
    layers.push_back(ev.layer);
    pos.assign(ev.positions, ev.positions + ev.n_tokens);
  });
  s.eval(std::vector<int32_t>{1, 2, 3});
  s.eval(std::vector<int32_t>{4});
  EXPECT_EQ(layers.size(), size_t(2 * lm.model->config().n_layer));
  EXPECT_EQ(layers[0], 0);
  EXPECT_EQ(pos, std::vector<int32_t>{3});  // the second call's single token sits at position 3
}

}  // namespace
}  // namespace lmkit
