// End-to-end tests of `lmkit bench`: the JSON array and the Markdown table on real and reference
// models (fields, types, one entry per thread count), help text, and bad input. No timing asserts.
#include <sstream>

#include <nlohmann/json.hpp>

#include "apps/cli_util.h"
#include "model/loader.h"
#include "runtime/model_bench.h"

namespace lmkit {
namespace {

using json = nlohmann::json;

using test::CliRun;
using test::expect_clean_error;
using test::lmkit;

std::string ref(const std::string &name) {
  return std::string(LMKIT_BUILD_DIR) + "/reference/" + name;
}
std::string stories() {
  return test::shared_dir() + "/models/stories260K/stories260K.bin";
}

// Small and quick: a few tokens, a small bandwidth buffer, no warmup.
const std::string kQuick = " -p 4 -n 4 -r 2 --warmup 0 --bw-mib 4 --bw-passes 2";

std::vector<std::string> lines_of(const std::string &s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

void check_entry(const json &e, int threads, const std::string &type, size_t model_bytes) {
  EXPECT_EQ(e["threads"], threads);
  EXPECT_EQ(e["model_type"], type);
  EXPECT_EQ(e["n_prompt"], 4);
  EXPECT_EQ(e["n_gen"], 4);
  EXPECT_EQ(e["reps"], 2);
  ASSERT_TRUE(e["model_bytes"].is_number_integer());
  EXPECT_EQ(e["model_bytes"].get<size_t>(), model_bytes);
  for (const char *k : {"prefill_tok_s", "decode_tok_s", "ttft_ms", "peak_rss_mb", "bandwidth_gbs",
                        "achieved_gbs", "pct_of_bound"}) {
    ASSERT_TRUE(e[k].is_number()) << k;
    EXPECT_GT(e[k].get<double>(), 0.0) << k;
  }
  for (const char *k : {"prefill_tok_s_std", "decode_tok_s_std", "ttft_ms_std"}) {
    ASSERT_TRUE(e[k].is_number()) << k;
    EXPECT_GE(e[k].get<double>(), 0.0) << k;
  }
  EXPECT_NEAR(e["pct_of_bound"].get<double>(),
              100.0 * e["achieved_gbs"].get<double>() / e["bandwidth_gbs"].get<double>(), 1e-9);
  EXPECT_TRUE(e["energy_mj_per_tok"].is_null() || e["energy_mj_per_tok"].is_number());
  EXPECT_EQ(e["bandwidth_bytes"], 4 << 20);
}

TEST(CliBench, HelpStatesTheDefinitions) {
  CliRun r = lmkit("bench --help");
  ASSERT_EQ(r.code, 0);
  for (const char *s : {"--threads", "--json", "--reps", "-p", "-n", "prefill", "TTFT", "decode",
                        "model bytes", "% of bound", "energy_uj", "clear_refs"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s;
  EXPECT_NE(lmkit("--help").out.find("bench"), std::string::npos);
}

TEST(CliBench, JsonOnStories260K) {
  LMKIT_REQUIRE_SHARED();
  CliRun r = lmkit("bench -m " + stories() + kQuick + " --threads 1,2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");  // no progress bar with --json (nor off a terminal)
  json j = json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  const size_t bytes = model_stream_bytes(*load_model(stories()).model);
  EXPECT_EQ(bytes, 1040384u);
  check_entry(j[0], 1, "llama", bytes);
  check_entry(j[1], 2, "llama", bytes);
  EXPECT_EQ(j[0]["model"], stories());
  EXPECT_EQ(j[0]["dtype"], "f32");
  EXPECT_EQ(j[0]["n_params"], 260032);
}

TEST(CliBench, MarkdownOnStories260K) {
  LMKIT_REQUIRE_SHARED();
  CliRun r = lmkit("bench -m " + stories() + kQuick + " --threads 2");
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> l = lines_of(r.out);
  ASSERT_EQ(l.size(), 3u) << r.out;
  EXPECT_EQ(l[0],
            "| model | type | threads | prefill tok/s (p4) | decode tok/s (n4) | TTFT ms | "
            "peak RSS MB | model MB | GB/s | mem BW GB/s | % of bound | mJ/tok |");
  EXPECT_EQ(l[1], "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
  EXPECT_EQ(l[2].rfind("| stories260K.bin | llama f32 | 2 | ", 0), 0u) << l[2];
  EXPECT_NE(l[2].find(" ± "), std::string::npos);
  EXPECT_NE(l[2].find("| 1.04 |"), std::string::npos) << l[2];  // model MB
}

TEST(CliBench, ReferenceModelsOfEveryFamily) {
  for (auto [name, type] : {std::pair{"llama_gqa_tied.gguf", "llama"},
                            {"gpt2", "gpt2"},
                            {"qwen2_bias", "qwen2"},
                            {"llama_gqa_tied_f16", "llama"}}) {
    CliRun r = lmkit("bench -m " + ref(name) + kQuick + " --threads 1 --json");
    ASSERT_EQ(r.code, 0) << name << r.err;
    json j = json::parse(r.out);
    ASSERT_EQ(j.size(), 1u) << name;
    check_entry(j[0], 1, type, model_stream_bytes(*load_model(ref(name)).model));
  }
}

TEST(CliBench, BadInputGivesOneLineAndExitOne) {
  const std::string m = " -m " + ref("gpt2");
  expect_clean_error(lmkit("bench" + m + " --threads 0,x"), "--threads");
  expect_clean_error(lmkit("bench" + m + " --threads 1,,2"), "--threads");
  expect_clean_error(lmkit("bench" + m + " --threads 2,-1"), "--threads");
  expect_clean_error(lmkit("bench" + m + " --threads 5000"), "--threads");
  expect_clean_error(lmkit("bench" + m + " -p 0"), "n-prompt");
  expect_clean_error(lmkit("bench" + m + " -n 0"), "n-gen");
  expect_clean_error(lmkit("bench" + m + " -r 0"), "reps");
  expect_clean_error(lmkit("bench" + m + " -p 60 -n 10"), "context of 64");
  expect_clean_error(lmkit("bench -p 4"), "model");
  expect_clean_error(lmkit("bench -m /nonexistent/model"), "no such file");
  expect_clean_error(lmkit("bench -m " + ref("bad/truncated.gguf")), "truncated.gguf");
}

}  // namespace
}  // namespace lmkit
