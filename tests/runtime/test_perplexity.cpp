// Perplexity: the full-context score equals the PyTorch reference's log-softmax of its logits;
// sliding windows score every token once with the documented context.
#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "model/loader.h"
#include "runtime/perplexity.h"
#include "runtime/session.h"
#include "test_util.h"

namespace lmkit {
namespace {

using json = nlohmann::json;
std::string ref_dir() { return std::string(LMKIT_BUILD_DIR) + "/reference"; }

double log_softmax_at(const float *l, int64_t V, int32_t t) {
  double mx = l[0];
  for (int64_t v = 1; v < V; ++v) mx = std::max(mx, double(l[v]));
  double s = 0;
  for (int64_t v = 0; v < V; ++v) s += std::exp(double(l[v]) - mx);
  return double(l[t]) - mx - std::log(s);
}

TEST(Perplexity, FullContextMatchesReferenceLogits) {
  for (const char *name : {"llama_gqa_tied", "gpt2", "mistral_swa"}) {
    SCOPED_TRACE(name);
    json e = json::parse(std::ifstream(ref_dir() + "/" + std::string(name) + "/expected.json"));
    std::vector<int32_t> ids = e["prompt_ids"].get<std::vector<int32_t>>();
    double want = 0;
    for (size_t t = 0; t + 1 < ids.size(); ++t) {
      std::vector<float> l = e["logits"][t].get<std::vector<float>>();
      want -= log_softmax_at(l.data(), int64_t(l.size()), ids[t + 1]);
    }
    LoadedModel lm = load_model(ref_dir() + "/" + name);
    ThreadPool pool(2);
    PerplexityResult r = perplexity(*lm.model, ids, 64, pool);
    EXPECT_EQ(r.tokens, int64_t(ids.size()) - 1);
    EXPECT_EQ(r.windows, 1);
    EXPECT_NEAR(r.nll_sum, want, 1e-4 * std::max(1.0, std::abs(want)));
    EXPECT_NEAR(r.ppl(), std::exp(want / double(r.tokens)), 1e-4 * r.ppl());
  }
}

// With a context of 4, windows start every 2 tokens: [0,4) scores 1..3, [2,6) scores 4..5, ...
// Recompute that schedule by hand with sessions and compare.
TEST(Perplexity, SlidingWindowsScoreEachTokenOnce) {
  LoadedModel lm = load_model(ref_dir() + "/llama_gqa_tied");
  const int64_t V = lm.model->config().n_vocab;
  std::vector<int32_t> ids = {336, 274, 273, 269, 258, 315, 263, 288, 276};
  auto pool = std::make_shared<ThreadPool>(1);
  PerplexityResult r = perplexity(*lm.model, ids, 4, *pool);
  EXPECT_EQ(r.tokens, 8);
  EXPECT_EQ(r.windows, 4);  // [0,4) [2,6) [4,8) [6,9)
  double want = 0;
  int64_t scored = 1;
  for (int64_t begin = 0;; begin += 2) {
    const int64_t end = std::min<int64_t>(begin + 4, 9);
    Session s(lm.model, pool, 4);
    const float *l = s.eval_all(std::span<const int32_t>(ids).subspan(size_t(begin), size_t(end - begin)));
    for (int64_t t = std::max(scored, begin + 1); t < end; ++t)
      want -= log_softmax_at(l + (t - 1 - begin) * V, V, ids[size_t(t)]);
    scored = end;
    if (end == 9) break;
  }
  EXPECT_NEAR(r.nll_sum, want, 1e-4);
  EXPECT_THROW(perplexity(*lm.model, std::vector<int32_t>{1}, 4, *pool), Error);
}

}  // namespace
}  // namespace lmkit
