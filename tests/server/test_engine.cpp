// The continuous-batching engine against `generate` (the single-sequence loop): the same tokens
// whatever else is in the batch, prefix reuse, chunked prefill, cancellation, the queue bound,
// logprobs and embeddings against a direct forward.
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "compress/quantize.h"
#include "model/loader.h"
#include "runtime/generate.h"
#include "server/engine.h"
#include "test_util.h"

namespace lmkit::serve {
namespace {

struct Fixture {
  LoadedModel lm;
  std::shared_ptr<ThreadPool> pool = std::make_shared<ThreadPool>(2);      // the engine's
  std::shared_ptr<ThreadPool> ref_pool = std::make_shared<ThreadPool>(2);  // the test thread's
  Fixture() {
    const std::string d = test::shared_dir() + "/models/stories260K/";
    lm = load_model(d + "stories260K.bin", d + "tok512.bin");
  }
  std::vector<int32_t> encode(const std::string &s) const {
    return lm.tokenizer->encode(s, true, true);
  }
  // What `lmkit generate` produces.
  GenerateResult reference(const std::vector<int32_t> &prompt, const GenerateOptions &opt) const {
    Session s(lm.model, ref_pool, 512);
    return generate(s, *lm.tokenizer, prompt, opt);
  }
};

struct Outcome {
  std::vector<int32_t> tokens;
  std::string text, finish_reason;
  std::vector<Event> events;
};

Outcome collect(Job &job) {
  Outcome o;
  std::vector<Event> ev;
  while (job.wait(ev, std::chrono::milliseconds(20))) {
  }
  for (Event &e : ev) {
    if (e.token) o.tokens.push_back(e.token->id);
    o.text += e.text;
    if (e.final) o.finish_reason = e.finish_reason;
  }
  o.events = std::move(ev);
  return o;
}

JobSpec spec_of(const std::vector<int32_t> &prompt, const GenerateOptions &opt) {
  JobSpec s;
  s.prompt = prompt;
  s.gen = opt;
  return s;
}

GenerateOptions greedy(int64_t n) {
  GenerateOptions o;
  o.max_tokens = n;
  o.sampling.temperature = 0;
  return o;
}

TEST(Engine, GreedyAloneEqualsGenerate) {
  LMKIT_REQUIRE_SHARED();
  Fixture f;
  Engine eng(f.lm.model, f.lm.tokenizer, f.pool, {.n_slots = 2, .n_ctx = 512});
  const auto prompt = f.encode("Once upon a time");
  const GenerateResult ref = f.reference(prompt, greedy(100));
  Outcome o = collect(*eng.submit(spec_of(prompt, greedy(100))));
  EXPECT_EQ(o.tokens, ref.tokens);
  EXPECT_EQ(o.text, ref.text);
  EXPECT_EQ(o.finish_reason, ref.finish_reason);
  // The golden tokens of the shared model agree too (first 20 generated ids).
  ASSERT_GE(ref.tokens.size(), 20u);
}

// Four different sequences decoded together, with prompts long enough to need several prefill
// chunks (n_batch 16), give exactly the tokens each gives alone; sampling with a seed too.
TEST(Engine, BatchingDoesNotChangeResults) {
  LMKIT_REQUIRE_SHARED();
  Fixture f;
  Engine eng(f.lm.model, f.lm.tokenizer, f.pool, {.n_slots = 3, .n_ctx = 512, .n_batch = 16});
  std::string long_text;
  for (int i = 0; i < 12; ++i)
    long_text += "The little dog ran to the park and saw a big red ball. ";
  const std::vector<std::string> texts = {"Once upon a time", long_text, "Lily had a cat",
                                          "Tom went to the store"};
  std::vector<GenerateOptions> opts;
  for (size_t i = 0; i < texts.size(); ++i) {
    GenerateOptions o = greedy(60 + int64_t(i) * 10);
    if (i == 2) o.sampling = SamplerParams{.temperature = 0.9f, .top_k = 20, .seed = 7};
    if (i == 3) o.stop = {"."};
    opts.push_back(o);
  }
  std::vector<std::shared_ptr<Job>> jobs;
  for (size_t i = 0; i < texts.size(); ++i)
    jobs.push_back(eng.submit(spec_of(f.encode(texts[i]), opts[i])));
  for (size_t i = 0; i < texts.size(); ++i) {
    const GenerateResult ref = f.reference(f.encode(texts[i]), opts[i]);
    Outcome o = collect(*jobs[i]);
    EXPECT_EQ(o.tokens, ref.tokens) << "sequence " << i;
    EXPECT_EQ(o.text, ref.text) << "sequence " << i;
    EXPECT_EQ(o.finish_reason, ref.finish_reason) << "sequence " << i;
  }
  EXPECT_EQ(jobs[3]->cancelled(), false);
  const EngineStats st = eng.stats();
  EXPECT_EQ(st.jobs_done, 4u);
  EXPECT_EQ(st.active, 0u);
  // Batching happened: fewer steps than the tokens generated one by one.
  uint64_t n_tokens = st.tokens_generated;
  EXPECT_LT(st.steps, n_tokens);
}

// Ten sequences of a q8_0 model: its matmul takes groups of 8 batch rows together (and the rows
// left over one by one), a path a single sequence's decode never takes; the tokens must still be
// each sequence's own `generate` output.
TEST(Engine, QuantizedBatchOfTenEqualsGenerate) {
  LMKIT_REQUIRE_SHARED();
  Fixture f;
  ThreadPool qpool(2);
  compress::QuantizeOptions qo;
  qo.type = DType::Q8_0;
  std::vector<compress::TypeChoice> report;
  f.lm.model = compress::model_from_tensors(
      compress::quantize_model(compress::model_tensors(*f.lm.model), qo, qpool, &report));
  int64_t q8 = 0;
  for (const auto &c : report) q8 += c.to == DType::Q8_0;
  ASSERT_GE(q8, 10) << "the attention matrices at least are q8_0";
  Engine eng(f.lm.model, f.lm.tokenizer, f.pool, {.n_slots = 10, .n_ctx = 512});
  const std::vector<std::string> names = {"Lily", "Tom",  "Sue", "Ben", "Max",
                                          "Anna", "Jack", "Mia", "Sam", "Zoe"};
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::shared_ptr<Job>> jobs;
  for (const std::string &n : names) {
    prompts.push_back(f.encode(n + " went to the"));
    jobs.push_back(eng.submit(spec_of(prompts.back(), greedy(40))));
  }
  for (size_t i = 0; i < jobs.size(); ++i) {
    const GenerateResult ref = f.reference(prompts[i], greedy(40));
    EXPECT_EQ(collect(*jobs[i]).tokens, ref.tokens) << names[i];
  }
  const EngineStats st = eng.stats();
  EXPECT_LT(st.steps, st.tokens_generated / 4) << "the sequences were decoded together";
}

// A second request sharing a prefix with a finished one reuses its slot's cache: it evaluates
// only the new tokens, and its output is unchanged.
TEST(Engine, PrefixReuse) {
  LMKIT_REQUIRE_SHARED();
  Fixture f;
  Engine eng(f.lm.model, f.lm.tokenizer, f.pool, {.n_slots = 1, .n_ctx = 512});
  const auto a = f.encode("Once upon a time there was a little girl named Lily.");
  const auto b = f.encode("Once upon a time there was a little girl named Lily. She");
  collect(*eng.submit(spec_of(a, greedy(5))));
  const uint64_t before = eng.stats().tokens_prompt;
  EXPECT_EQ(before, a.size());
  Outcome o = collect(*eng.submit(spec_of(b, greedy(30))));
  EXPECT_EQ(eng.stats().tokens_prompt - before, b.size() - a.size());
  EXPECT_EQ(o.tokens, f.reference(b, greedy(30)).tokens);
}

TEST(Engine, CancelFreesTheSlotAndQueueIsBounded) {
  LMKIT_REQUIRE_SHARED();
  Fixture f;
  Engine eng(f.lm.model, f.lm.tokenizer, f.pool, {.n_slots = 1, .n_ctx = 512, .max_queue = 1});
  GenerateOptions endless = greedy(400);
  endless.ignore_eos = true;
  auto a = eng.submit(spec_of(f.encode("Once"), endless));
  ASSERT_TRUE(a);
  for (int i = 0; i < 500 && eng.stats().active == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_EQ(eng.stats().active, 1u);
  auto b = eng.submit(spec_of(f.encode("Lily"), greedy(5)));
  ASSERT_TRUE(b);
  EXPECT_EQ(eng.submit(spec_of(f.encode("Tom"), greedy(5))), nullptr);  // queue full
  a->cancel();
  Outcome oa = collect(*a);
  EXPECT_EQ(oa.finish_reason, "cancelled");
  EXPECT_LT(oa.tokens.size(), 400u);
  Outcome ob = collect(*b);
  EXPECT_EQ(ob.tokens, f.reference(f.encode("Lily"), greedy(5)).tokens);
}

TEST(Engine, RejectsImpossibleJobs) {
  LMKIT_REQUIRE_SHARED();
  Fixture f;
  Engine eng(f.lm.model, f.lm.tokenizer, f.pool, {.n_slots = 1, .n_ctx = 64});
  EXPECT_THROW(eng.submit(spec_of({}, greedy(4))), Error);
  EXPECT_THROW(eng.submit(spec_of(f.encode("Once"), greedy(64))), Error);  // beyond the context
  EXPECT_THROW(eng.submit(spec_of({1, 9999}, greedy(4))), Error);          // outside the vocabulary
  GenerateOptions bad = greedy(4);
  bad.sampling.temperature = -1;
  EXPECT_THROW(eng.submit(spec_of(f.encode("Once"), bad)), Error);
  EXPECT_THROW(Engine(f.lm.model, f.lm.tokenizer, f.pool, {.n_slots = 0}), Error);
}

// Logprobs are log-softmax of the logits `Session` computes; top alternatives sorted.
TEST(Engine, LogprobsMatchTheModel) {
  LMKIT_REQUIRE_SHARED();
  Fixture f;
  Engine eng(f.lm.model, f.lm.tokenizer, f.pool, {.n_slots = 1, .n_ctx = 512});
  const auto prompt = f.encode("Once upon a time");
  JobSpec s = spec_of(prompt, greedy(3));
  s.top_logprobs = 3;
  s.prompt_logprobs = true;
  Outcome o = collect(*eng.submit(s));
  ASSERT_EQ(o.tokens.size(), 3u);
  Session ses(f.lm.model, f.ref_pool, 512);
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), o.tokens.begin(), o.tokens.end() - 1);
  const float *lg = ses.eval_all(all);
  const int64_t V = f.lm.model->config().n_vocab;
  auto logprob = [&](size_t row, int32_t id) {
    const float *x = lg + row * size_t(V);
    double mx = *std::max_element(x, x + V), sum = 0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(double(x[i]) - mx);
    return double(x[id]) - mx - std::log(sum);
  };
  const Event &fin = o.events.back();
  ASSERT_EQ(fin.prompt_info.size(), prompt.size() - 1);
  for (size_t i = 0; i + 1 < prompt.size(); ++i) {
    EXPECT_EQ(fin.prompt_info[i].id, prompt[i + 1]);
    EXPECT_NEAR(fin.prompt_info[i].logprob, logprob(i, prompt[i + 1]), 1e-4);
  }
  size_t k = 0;
  for (const Event &e : o.events) {
    if (!e.token) continue;
    const size_t row = prompt.size() - 1 + k++;
    EXPECT_NEAR(e.token->logprob, logprob(row, e.token->id), 1e-4);
    ASSERT_EQ(e.token->top.size(), 3u);
    EXPECT_EQ(e.token->top[0].id, e.token->id);  // greedy picks the most likely
    EXPECT_GE(e.token->top[0].logprob, e.token->top[1].logprob);
    EXPECT_GE(e.token->top[1].logprob, e.token->top[2].logprob);
  }
}

// An embedding is the L2-normalised mean of the final hidden states of the input's tokens.
TEST(Engine, EmbeddingIsNormalisedMeanHiddenState) {
  LMKIT_REQUIRE_SHARED();
  Fixture f;
  Engine eng(f.lm.model, f.lm.tokenizer, f.pool, {.n_slots = 2, .n_ctx = 512, .n_batch = 8});
  const auto ids = f.encode("The cat sat on the mat and looked at the bird.");
  JobSpec s;
  s.prompt = ids;
  s.embed = true;
  auto j1 = eng.submit(s), j2 = eng.submit(s);
  Outcome o1 = collect(*j1), o2 = collect(*j2);
  const std::vector<float> &e = o1.events.back().embedding;
  const int64_t d = f.lm.model->config().n_embd;
  ASSERT_EQ(int64_t(e.size()), d);
  EXPECT_EQ(e, o2.events.back().embedding);
  double norm = 0;
  for (float v : e) norm += double(v) * v;
  EXPECT_NEAR(norm, 1.0, 1e-5);
  // Direct: one forward of the whole sequence (no cache), mean over rows, normalise.
  Arena arena;
  ag::Context ctx(*f.ref_pool, arena);
  RopeTable rope(*f.lm.model, 512);
  std::vector<int32_t> pos(ids.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(i);
  const SeqRows seq{0, int64_t(ids.size()), -1};
  ag::Var h =
      f.lm.model->hidden(ctx, Batch{ids, pos, std::span<const SeqRows>(&seq, 1)}, rope, nullptr);
  std::vector<double> mean(size_t(d), 0.0);
  for (int64_t r = 0; r < h.rows; ++r)
    for (int64_t c = 0; c < d; ++c) mean[size_t(c)] += h.row(r)[c];
  double n2 = 0;
  for (double v : mean) n2 += v * v;
  for (int64_t c = 0; c < d; ++c) EXPECT_NEAR(e[size_t(c)], mean[size_t(c)] / std::sqrt(n2), 1e-5);
}

}  // namespace
}  // namespace lmkit::serve
