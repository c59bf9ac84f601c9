// Tests for runtime/: the sampler chain, stop strings, sessions and the generation loop.
#include <algorithm>
#include <cmath>
#include <map>

#include "core/error.h"
#include "model/loader.h"
#include "runtime/generate.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "test_util.h"

namespace lmkit {
namespace {

std::vector<float> logits_of(std::initializer_list<double> probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(float(std::log(p)));
  return l;
}

// Draw n samples and return the frequency of each id.
std::map<int32_t, double> frequencies(SamplerParams p, const std::vector<float> &logits, int n) {
  Sampler s(p);
  std::map<int32_t, double> f;
  for (int i = 0; i < n; ++i) f[s.sample(logits.data(), int64_t(logits.size()), {})] += 1.0 / n;
  return f;
}

TEST(Sampler, GreedyIsArgmaxFirstOnTies) {
  SamplerParams p;
  p.temperature = 0;
  Sampler s(p);
  std::vector<float> l = {0.1f, 3.0f, -1.0f, 3.0f};
  EXPECT_EQ(s.sample(l.data(), 4, {}), 1);
  EXPECT_EQ(argmax(l.data(), 4), 1);
}

TEST(Sampler, TemperatureOneFollowsSoftmax) {
  SamplerParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 3;
  auto f = frequencies(p, logits_of({0.5, 0.3, 0.2}), 20000);
  EXPECT_NEAR(f[0], 0.5, 0.015);
  EXPECT_NEAR(f[1], 0.3, 0.015);
  EXPECT_NEAR(f[2], 0.2, 0.015);
}

TEST(Sampler, LowTemperatureSharpens) {
  SamplerParams p;
  p.temperature = 0.5f;  // p^2 renormalised: 0.25/0.38, 0.09/0.38, 0.04/0.38
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  auto f = frequencies(p, logits_of({0.5, 0.3, 0.2}), 20000);
  EXPECT_NEAR(f[0], 0.25 / 0.38, 0.015);
  EXPECT_NEAR(f[2], 0.04 / 0.38, 0.01);
}

TEST(Sampler, TopKTopPMinPCut) {
  std::vector<float> l = logits_of({0.4, 0.3, 0.2, 0.1});
  SamplerParams p;
  p.temperature = 1.0f;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.top_k = 2;
  auto f = frequencies(p, l, 5000);
  EXPECT_EQ(f.count(2) + f.count(3), 0u);
  EXPECT_NEAR(f[0], 0.4 / 0.7, 0.03);
  p.top_k = 0;
  p.top_p = 0.65f;  // 0.4 + 0.3 >= 0.65: keeps two
  f = frequencies(p, l, 5000);
  EXPECT_EQ(f.size(), 2u);
  p.top_p = 1.0f;
  p.min_p = 0.6f;  // keeps p >= 0.24: ids 0 and 1
  f = frequencies(p, l, 5000);
  EXPECT_EQ(f.size(), 2u);
}

TEST(Sampler, TopKKeepsWhatAFullSortWouldInItsOrder) {
  // Many ties: the k best by logit, ties to the lower id, exactly as a sort of all of them.
  std::vector<float> l(1000);
  uint32_t s = 7;
  for (float &v : l) {
    s = s * 1664525u + 1013904223u;
    v = float((s >> 16) % 20);
  }
  std::vector<int32_t> order(l.size());
  for (size_t i = 0; i < l.size(); ++i) order[i] = int32_t(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return l[size_t(a)] > l[size_t(b)]; });
  for (int k : {1, 37, 999}) {
    SamplerParams p;
    p.temperature = 1.0f;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.top_k = k;
    Sampler smp(p);
    smp.sample(l.data(), int64_t(l.size()), {});
    const auto &c = smp.last_candidates();
    ASSERT_EQ(c.size(), size_t(k));
    for (int i = 0; i < k; ++i) EXPECT_EQ(c[size_t(i)].first, order[size_t(i)]) << "k=" << k;
  }
}

TEST(Sampler, RepetitionPenaltyAndSeed) {
  std::vector<float> l = {2.0f, 1.9f, -1.0f};
  SamplerParams p;
  p.temperature = 0;
  p.repeat_penalty = 1.5f;
  Sampler s(p);
  std::vector<int32_t> hist = {0};
  EXPECT_EQ(s.sample(l.data(), 3, hist), 1);  // 2.0 / 1.5 < 1.9
  EXPECT_EQ(s.sample(l.data(), 3, {}), 0);
  EXPECT_EQ(l[0], 2.0f);  // logits untouched
  SamplerParams q;
  q.temperature = 1.0f;
  q.seed = 99;
  std::vector<float> flat(50, 0.0f);
  Sampler a(q), b(q);
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(a.sample(flat.data(), 50, {}), b.sample(flat.data(), 50, {}));
  SamplerParams bad;
  bad.top_p = 1.5f;
  EXPECT_THROW(Sampler{bad}, Error);
  bad = {};
  bad.temperature = -1;
  EXPECT_THROW(Sampler{bad}, Error);
}

TEST(StopScan, FindsMatchesAndHoldsBackPrefixes) {
  std::vector<std::string> stop = {"</s>", "\nUser:"};
  EXPECT_EQ(stop_scan("hello </s> more", stop), std::make_pair(size_t(6), true));
  EXPECT_EQ(stop_scan("hello </", stop), std::make_pair(size_t(6), false));
  EXPECT_EQ(stop_scan("hello\nUs", stop), std::make_pair(size_t(5), false));
  EXPECT_EQ(stop_scan("hello", stop), std::make_pair(size_t(5), false));
  EXPECT_EQ(stop_scan("a\nUser: x", stop), std::make_pair(size_t(1), true));
  EXPECT_EQ(stop_scan("abc", {}), std::make_pair(size_t(3), false));
}

std::string ref_dir() {
  return std::string(LMKIT_BUILD_DIR) + "/reference";
}

TEST(Generate, StreamsTextEqualToFinalAndHonoursStops) {
  LoadedModel lm = load_model(ref_dir() + "/gpt2");
  ASSERT_NE(lm.tokenizer, nullptr);
  auto pool = std::make_shared<ThreadPool>(1);
  std::vector<int32_t> prompt = lm.tokenizer->encode("The cat sat on the mat");
  GenerateOptions opt;
  opt.max_tokens = 12;
  opt.sampling.temperature = 0;
  Session s(lm.model, pool, 64);
  std::string streamed;
  GenerateResult r = generate(s, *lm.tokenizer, prompt, opt, [&](std::string_view p) {
    streamed += p;
    return true;
  });
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(r.finish_reason, "length");
  EXPECT_EQ(r.tokens.size(), 12u);
  EXPECT_EQ(r.n_prompt, int64_t(prompt.size()));
  std::string full = lm.tokenizer->decode(r.tokens);
  EXPECT_EQ(r.text, full);

  // Stop before the text of the 4th..6th generated characters: generation ends there.
  ASSERT_GT(full.size(), 6u);
  opt.stop = {full.substr(3, 3)};
  Session s2(lm.model, pool, 64);
  GenerateResult r2 = generate(s2, *lm.tokenizer, prompt, opt);
  EXPECT_EQ(r2.finish_reason, "stop");
  EXPECT_EQ(r2.text, full.substr(0, full.find(opt.stop[0])));

  // The sink can stop early.
  Session s3(lm.model, pool, 64);
  int calls = 0;
  GenerateResult r3 =
      generate(s3, *lm.tokenizer, prompt, opt, [&](std::string_view) { return ++calls < 2; });
  EXPECT_EQ(r3.finish_reason, "stop");

  // Too many tokens for the context is an error, not a crash.
  Session small(lm.model, pool, 8);
  opt.stop.clear();
  EXPECT_THROW(generate(small, *lm.tokenizer, prompt, opt), Error);
}

TEST(Session, SyncReusesPrefixAndMatchesFreshRun) {
  LoadedModel lm = load_model(ref_dir() + "/llama_gqa_tied");
  auto pool = std::make_shared<ThreadPool>(2);
  const int64_t V = lm.model->config().n_vocab;
  std::vector<int32_t> a = {336, 274, 273, 269, 258, 315}, b = {336, 274, 273, 100, 101};
  Session s(lm.model, pool, 32);
  s.sync(a);
  EXPECT_EQ(s.n_last_eval(), 6);
  s.sync(b);
  EXPECT_EQ(s.n_last_eval(), 2);  // the common prefix (3 tokens) is reused
  const float *lg = s.sync(b);
  EXPECT_EQ(s.n_last_eval(), 1);  // all in the cache: only the last token re-runs for its logits
  std::vector<float> got(lg, lg + V);
  Session fresh(lm.model, pool, 32);
  const float *want = fresh.eval(b);
  for (int64_t v = 0; v < V; ++v) ASSERT_NEAR(got[size_t(v)], want[v], 1e-5) << v;
  EXPECT_THROW(s.eval(std::vector<int32_t>(40, 1)), Error);       // context overflow
  EXPECT_EQ(s.n_past(), 5);                                       // unchanged by the failure
  EXPECT_THROW(s.eval(std::vector<int32_t>{int32_t(V)}), Error);  // id out of range
}

}  // namespace
}  // namespace lmkit
