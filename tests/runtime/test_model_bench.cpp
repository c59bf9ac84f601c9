// Tests for runtime/model_bench and core/membw: what the benchmark counts and reads, never how
// fast anything runs (no timing asserts): streamed bytes against a formula from the config, the
// bench's tokens and logits against a plain Session run, the RAPL reader on a fake powercap tree,
// the report formats.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/membw.h"
#include "model/loader.h"
#include "runtime/model_bench.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "test_util.h"

namespace lmkit {
namespace {

std::string ref(const std::string &name) {
  return std::string(LMKIT_BUILD_DIR) + "/reference/" + name;
}
std::string stories() {
  return test::shared_dir() + "/models/stories260K/stories260K.bin";
}

// Options that make a run cheap: tiny prompt, small probe buffer, no warmup.
ModelBenchOptions tiny_options() {
  ModelBenchOptions o;
  o.n_prompt = 5;
  o.n_gen = 6;
  o.reps = 2;
  o.warmup = 0;
  o.bw_bytes = size_t(1) << 20;
  o.bw_passes = 2;
  o.powercap_dir = "/nonexistent-powercap";
  return o;
}

// Bytes a decoded token reads, written out from the config alone (the definition in
// model_bench.h): matrices in their dtype, norms and biases as f32, classifier whole, one
// embedding row (and one position row).
size_t expected_stream_bytes(const ModelConfig &c, size_t es) {
  const size_t d = size_t(c.n_embd), q = size_t(c.q_dim()), kv = size_t(c.kv_dim());
  const size_t ff = size_t(c.n_ff), V = size_t(c.n_vocab);
  const size_t norm = (c.norm == NormType::LayerNorm && c.norm_bias ? 2 : 1) * d * 4;
  size_t layer = 2 * norm;
  layer += (q + 2 * kv) * d * es + (c.qkv_bias ? (q + 2 * kv) * 4 : 0);
  layer += d * q * es + (c.attn_out_bias ? d * 4 : 0);
  const size_t n_mlp_in = c.mlp == MlpType::SwiGLU ? 2 : 1;
  layer += n_mlp_in * ff * d * es + (c.mlp_bias ? n_mlp_in * ff * 4 : 0);
  layer += d * ff * es + (c.mlp_bias ? d * 4 : 0);
  size_t total = size_t(c.n_layer) * layer + norm + V * d * es + d * es;
  if (c.pos == PosEncoding::Learned) total += d * 4;
  return total;
}

TEST(MemBandwidth, ReadsTheWholeBufferOnEveryThread) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    MemBandwidth b = membw_measure(pool, size_t(1) << 20, 3);
    EXPECT_EQ(b.bytes, size_t(1) << 20);
    EXPECT_EQ(b.threads, threads);
    EXPECT_EQ(b.passes, 3);
    EXPECT_GT(b.gbs, 0.0);
    EXPECT_GE(b.gbs, b.mean_gbs);
    EXPECT_FALSE(b.isa.empty());
    // Filled with i & 7: each group of 8 floats sums to 28, and every float was read once.
    EXPECT_EQ(b.checksum, double((size_t(1) << 20) / 4 / 8 * 28)) << threads;
  }
  ThreadPool pool(2);
  EXPECT_EQ(membw_measure(pool, 5000, 1).bytes, 8192u);  // whole pages
  EXPECT_THROW(membw_measure(pool, 4096, 0), Error);
}

TEST(MemBandwidth, DefaultSizeIsFourTimesTheCacheAndAtLeast256MiB) {
  const size_t mib = size_t(1) << 20;
  const size_t d = membw_default_bytes();
  EXPECT_GE(d, 256 * mib);
  EXPECT_LE(d, 2048 * mib);
  EXPECT_GE(d, std::min(4 * membw_llc_bytes(), 2048 * mib));
}

TEST(ModelBench, MeanAndSampleStddev) {
  MeanStd m = mean_std({1, 2, 3, 4});
  EXPECT_DOUBLE_EQ(m.mean, 2.5);
  EXPECT_NEAR(m.std, std::sqrt(5.0 / 3.0), 1e-12);
  EXPECT_EQ(mean_std({7}).std, 0.0);
  EXPECT_EQ(mean_std({}).mean, 0.0);
}

TEST(ModelBench, StreamBytesMatchTheConfig) {
  struct Case {
    std::string name;
    size_t es;
  };
  for (const Case &k :
       {Case{"llama_gqa_tied", 4}, Case{"llama_gqa_tied_f16", 2}, Case{"llama_gqa_tied_bf16", 2},
        Case{"llama_untied_scaled", 4}, Case{"gpt2", 4}, Case{"gpt2.gguf", 4},
        Case{"qwen2_bias", 4}, Case{"mistral_swa", 4}}) {
    LoadedModel lm = load_model(ref(k.name));
    EXPECT_EQ(model_stream_bytes(*lm.model), expected_stream_bytes(lm.model->config(), k.es))
        << k.name;
  }
  EXPECT_FALSE(load_model(ref("llama_untied_scaled")).model->config().tied_embeddings);
  EXPECT_TRUE(load_model(ref("llama_gqa_tied")).model->config().tied_embeddings);
}

TEST(ModelBench, StreamBytesOfStories260K) {
  LMKIT_REQUIRE_SHARED();
  LoadedModel lm = load_model(stories());
  const ModelConfig &c = lm.model->config();
  EXPECT_EQ(model_stream_bytes(*lm.model), expected_stream_bytes(c, 4));
  // dim 64, 5 layers, 8 heads / 4 KV heads, FFN 172, vocabulary 512, shared classifier.
  EXPECT_EQ(model_stream_bytes(*lm.model), 1040384u);
}

TEST(ModelBench, PromptIsReproducibleAndInTheVocabulary) {
  std::vector<int32_t> a = bench_prompt(337, 200, 7), b = bench_prompt(337, 200, 7);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, bench_prompt(337, 200, 8));
  ASSERT_EQ(a.size(), 200u);
  for (int32_t id : a) EXPECT_TRUE(id >= 0 && id < 337) << id;
  std::sort(a.begin(), a.end());
  EXPECT_GT(std::unique(a.begin(), a.end()) - a.begin(), 100);  // not one repeated id
}

TEST(ModelBench, ValidatesItsOptions) {
  ModelBenchOptions o = tiny_options();
  EXPECT_NO_THROW(o.validate(11));
  EXPECT_THROW(o.validate(10), Error);  // 5 + 6 positions
  o.n_prompt = 0;
  EXPECT_THROW(o.validate(0), Error);
  o = tiny_options();
  o.n_gen = 0;
  EXPECT_THROW(o.validate(0), Error);
  o = tiny_options();
  o.reps = 0;
  EXPECT_THROW(o.validate(0), Error);
  try {
    ModelBenchOptions big = tiny_options();
    big.n_prompt = 60;
    big.validate(64);
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("context of 64"), std::string::npos) << e.what();
  }
  LoadedModel lm = load_model(ref("gpt2"));  // 64 learned positions
  ModelBenchOptions o2 = tiny_options();
  o2.n_prompt = 60;
  EXPECT_THROW(model_bench_run(lm.model, 1, o2), Error);
}

// The bench's prompt and greedy continuation are exactly what a plain Session computes.
TEST(ModelBench, TokensAndLogitsMatchAPlainSession) {
  for (const char *name : {"llama_gqa_tied", "gpt2", "qwen2_bias.gguf"}) {
    LoadedModel lm = load_model(ref(name));
    for (int threads : {1, 2}) {
      ModelBenchOptions o = tiny_options();
      ModelBenchResult r = model_bench_run(lm.model, threads, o);
      const int64_t V = lm.model->config().n_vocab;
      EXPECT_EQ(r.prompt, bench_prompt(V, o.n_prompt, o.seed));
      ASSERT_EQ(r.generated.size(), size_t(o.n_gen + 1));

      Session s(lm.model, std::make_shared<ThreadPool>(threads), o.n_prompt + o.n_gen);
      const float *lg = s.eval(r.prompt);
      std::vector<int32_t> want = {argmax(lg, V)};
      for (int64_t i = 0; i < o.n_gen; ++i) {
        lg = s.eval(std::span<const int32_t>(&want.back(), 1));
        want.push_back(argmax(lg, V));
      }
      EXPECT_EQ(r.generated, want) << name << " threads " << threads;
      ASSERT_EQ(r.last_logits.size(), size_t(V));
      EXPECT_EQ(r.last_logits, std::vector<float>(lg, lg + V)) << name << " threads " << threads;
    }
  }
}

TEST(ModelBench, FiguresArePositiveAndConsistent) {
  LoadedModel lm = load_model(ref("llama_gqa_tied"));
  ModelBenchOptions o = tiny_options();
  o.reps = 3;
  o.warmup = 1;
  int calls = 0, last_done = -1, total = 0;
  ModelBenchResult r =
      model_bench_run(lm.model, 2, o, [&](std::string_view what, int done, int tot) {
        EXPECT_FALSE(what.empty());
        EXPECT_GE(done, last_done);
        last_done = done;
        total = tot;
        ++calls;
      });
  EXPECT_EQ(total, o.warmup + o.reps + 1);
  EXPECT_EQ(last_done, total);
  EXPECT_GE(calls, total);
  EXPECT_EQ(r.threads, 2);
  EXPECT_EQ(r.reps, 3);
  EXPECT_EQ(r.n_prompt, 5);
  EXPECT_EQ(r.n_gen, 6);
  EXPECT_EQ(r.model_type, "llama");
  EXPECT_EQ(r.dtype, "f32");
  EXPECT_EQ(r.n_params, lm.model->weights().n_params());
  EXPECT_FALSE(r.kernels.empty());
  EXPECT_GT(r.prefill_tok_s.mean, 0.0);
  EXPECT_GT(r.decode_tok_s.mean, 0.0);
  EXPECT_GT(r.ttft_ms.mean, 0.0);
  EXPECT_GE(r.prefill_tok_s.std, 0.0);
  EXPECT_GE(r.decode_tok_s.std, 0.0);
  EXPECT_GT(r.peak_rss_mb, 0.0);
  EXPECT_EQ(r.model_bytes, model_stream_bytes(*lm.model));
  EXPECT_GT(r.bandwidth.gbs, 0.0);
  EXPECT_EQ(r.bandwidth.threads, 2);
  EXPECT_EQ(r.bandwidth.bytes, o.bw_bytes);
  EXPECT_DOUBLE_EQ(r.achieved_gbs, double(r.model_bytes) * r.decode_tok_s.mean / 1e9);
  EXPECT_DOUBLE_EQ(r.pct_of_bound, 100.0 * r.achieved_gbs / r.bandwidth.gbs);
  EXPECT_FALSE(r.energy_mj_per_tok.has_value());  // no powercap tree at that path
}

TEST(PeakRss, ResetsAndSeesANewPeak) {
  const size_t before = peak_rss_bytes();
  EXPECT_GT(before, 0u);
  if (!peak_rss_reset()) GTEST_SKIP() << "/proc/self/clear_refs is not writable here";
  const size_t low = peak_rss_bytes();
  const size_t big = size_t(64) << 20;
  {
    std::vector<char> v(big);
    std::memset(v.data(), 1, big);
    volatile char sink = v[big / 2];
    (void)sink;
  }
  EXPECT_GE(peak_rss_bytes(), low + big - (size_t(4) << 20));
}

// A fake /sys/class/powercap: two packages (one also under intel-rapl-mmio), a core sub-domain
// and an unrelated zone.
struct FakePowercap {
  test::TempDir dir{"powercap"};
  void zone(const std::string &z, const std::string &name, const std::string &energy,
            const std::string &max_range = "") {
    std::filesystem::create_directories(dir / z);
    std::ofstream(dir / (z + "/name")) << name << "\n";
    if (!energy.empty()) std::ofstream(dir / (z + "/energy_uj")) << energy << "\n";
    if (!max_range.empty()) std::ofstream(dir / (z + "/max_energy_range_uj")) << max_range << "\n";
  }
  FakePowercap() {
    zone("intel-rapl:0", "package-0", "4900", "5000");
    zone("intel-rapl:0:0", "core", "123");
    zone("intel-rapl:1", "package-1", "10", "1000000");
    zone("intel-rapl-mmio:0", "package-0", "4900", "5000");
    zone("intel-rapl:2", "psys", "77");
    zone("intel-rapl:3", "package-3", "");  // no readable counter
  }
};

TEST(Rapl, ReadsPackageDomainsOnceAndHandlesWraparound) {
  FakePowercap fake;
  RaplCounter rapl(fake.dir.str());
  ASSERT_TRUE(rapl.available());
  EXPECT_EQ(rapl.n_domains(), 2u);
  auto v = rapl.read();
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->size(), 2u);
  EXPECT_DOUBLE_EQ(rapl.delta_uj({4900, 10}, {100, 30}), 200.0 + 20.0);  // package-0 wrapped
  EXPECT_DOUBLE_EQ(rapl.delta_uj({100, 10}, {300, 10}), 200.0);

  RaplCounter none("/nonexistent-powercap");
  EXPECT_FALSE(none.available());
  EXPECT_EQ(none.n_domains(), 0u);
}

TEST(Rapl, EnergyPerTokenWhenCountersAreReadable) {
  FakePowercap fake;  // counters that never move: 0 mJ per token, but a number, not n/a
  LoadedModel lm = load_model(ref("llama_gqa_tied"));
  ModelBenchOptions o = tiny_options();
  o.powercap_dir = fake.dir.str();
  ModelBenchResult r = model_bench_run(lm.model, 1, o);
  ASSERT_TRUE(r.energy_mj_per_tok.has_value());
  EXPECT_EQ(r.energy_mj_per_tok->mean, 0.0);
  nlohmann::ordered_json j = model_bench_json(r, "m");
  EXPECT_TRUE(j["energy_mj_per_tok"].is_number());
  EXPECT_NE(model_bench_markdown({r}, "m").find("0.000 ± 0.000 |"), std::string::npos);
}

TEST(ModelBench, JsonAndMarkdownShape) {
  LoadedModel lm = load_model(ref("gpt2"));
  std::vector<ModelBenchResult> rs;
  for (int t : {1, 2}) rs.push_back(model_bench_run(lm.model, t, tiny_options()));
  nlohmann::ordered_json j = model_bench_json(rs[1], "path/to/gpt2/");
  EXPECT_EQ(j["model"], "path/to/gpt2/");
  EXPECT_EQ(j["model_type"], "gpt2");
  EXPECT_EQ(j["threads"], 2);
  EXPECT_EQ(j["model_bytes"].get<size_t>(), model_stream_bytes(*lm.model));
  EXPECT_TRUE(j["model_bytes"].is_number_integer());
  for (const char *k :
       {"prefill_tok_s", "prefill_tok_s_std", "decode_tok_s", "decode_tok_s_std", "ttft_ms",
        "ttft_ms_std", "peak_rss_mb", "achieved_gbs", "bandwidth_gbs", "pct_of_bound"})
    EXPECT_TRUE(j[k].is_number()) << k;
  EXPECT_TRUE(j["energy_mj_per_tok"].is_null());
  EXPECT_TRUE(j["energy_mj_per_tok_std"].is_null());

  std::string md = model_bench_markdown(rs, "path/to/gpt2/");
  std::istringstream in(md);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 4u) << md;
  EXPECT_EQ(
      lines[0].rfind("| model | type | threads | prefill tok/s (p5) | decode tok/s (n6) |", 0), 0u)
      << lines[0];
  EXPECT_EQ(lines[1].rfind("|---|", 0), 0u);
  EXPECT_EQ(lines[2].rfind("| gpt2 | gpt2 f32 | 1 | ", 0), 0u) << lines[2];
  EXPECT_EQ(lines[3].rfind("| gpt2 | gpt2 f32 | 2 | ", 0), 0u) << lines[3];
  EXPECT_NE(lines[3].find("| n/a |"), std::string::npos);
  for (const std::string &l : lines) EXPECT_EQ(std::count(l.begin(), l.end(), '|'), 13) << l;
  EXPECT_EQ(model_bench_markdown({}, "x"), "");
}

}  // namespace
}  // namespace lmkit
