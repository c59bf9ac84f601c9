// End-to-end tests of the lmkit command line: help on every verb, the golden generation through
// the CLI, JSON outputs, and bad input (one line on stderr, exit code 1, never a crash).
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "apps/cli_util.h"

namespace lmkit {
namespace {

using json = nlohmann::json;

using test::CliRun;
using test::expect_clean_error;
using test::lmkit;
using test::slurp;

std::string ref(const std::string &name) {
  return std::string(LMKIT_BUILD_DIR) + "/reference/" + name;
}
std::string stories() { return test::shared_dir() + "/models/stories260K"; }

TEST(Cli, HelpOnEveryVerb) {
  CliRun top = lmkit("--help");
  EXPECT_EQ(top.code, 0);
  for (const char *verb : {"demo", "generate", "chat", "tokenize", "inspect"}) {
    EXPECT_NE(top.out.find(verb), std::string::npos) << verb;
    CliRun r = lmkit(std::string(verb) + " --help");
    EXPECT_EQ(r.code, 0) << verb;
    EXPECT_NE(r.out.find("--"), std::string::npos) << verb;
  }
  EXPECT_NE(lmkit("generate --help").out.find("--top-p"), std::string::npos);
  CliRun none = lmkit("");
  EXPECT_EQ(none.code, 1);
  expect_clean_error(lmkit("frobnicate"), "frobnicate");
}

TEST(Cli, GoldenGenerateJson) {
  LMKIT_REQUIRE_SHARED();
  CliRun r = lmkit("generate -m " + stories() + "/stories260K.bin -t " + stories() +
                   "/tok512.bin -p 'Once upon a time' -n 256 --temp 0 --threads 1 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  std::istringstream in(slurp(stories() + "/ref_greedy_once_upon_a_time_n256.ids"));
  std::vector<int32_t> ids;
  for (int32_t v; in >> v;) ids.push_back(v);
  EXPECT_EQ(j["prompt_tokens"].get<std::vector<int32_t>>(),
            std::vector<int32_t>(ids.begin(), ids.begin() + 5));
  auto toks = j["tokens"].get<std::vector<int32_t>>();
  ASSERT_EQ(toks.size(), 256u);
  ASSERT_EQ(ids.size(), 257u);  // BOS, 4 prompt tokens, 252 continuation tokens
  EXPECT_EQ(std::vector<int32_t>(toks.begin(), toks.begin() + 252),
            std::vector<int32_t>(ids.begin() + 5, ids.end()));
  std::string txt = slurp(stories() + "/ref_greedy_once_upon_a_time_n256.txt");
  std::string cont = txt.substr(std::string("Once upon a time").size());
  cont.pop_back();  // run.c's final newline
  EXPECT_EQ(j["text"].get<std::string>().substr(0, cont.size()), cont);
  EXPECT_GT(j["decode_tok_s"].get<double>(), 0.0);
  EXPECT_GT(j["prefill_tok_s"].get<double>(), 0.0);
  EXPECT_EQ(j["finish_reason"], "length");

  // Plain mode streams the prompt and the continuation.
  CliRun p = lmkit("generate -m " + stories() +
                   "/stories260K.bin -p 'Once upon a time' -n 252 "
                   "--temp 0");
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_EQ(p.out, txt);
}

TEST(Cli, GenerateOnEveryReferenceFormat) {
  for (const char *m : {"llama_gqa_tied", "llama_gqa_tied.gguf", "qwen2_bias", "qwen2_bias.gguf",
                        "gpt2", "gpt2.gguf", "mistral_swa", "llama_gqa_tied_bf16"}) {
    CliRun r = lmkit("generate -m " + ref(m) + " -p 'The cat' -n 5 --temp 0 --json");
    ASSERT_EQ(r.code, 0) << m << r.err;
    json j = json::parse(r.out);
    EXPECT_EQ(j["tokens"].size(), 5u) << m;
  }
  // HF folder and its GGUF conversion agree token for token.
  CliRun a = lmkit("generate -m " + ref("qwen2_bias") + " -p 'The cat' -n 8 --temp 0 --json");
  CliRun b = lmkit("generate -m " + ref("qwen2_bias.gguf") + " -p 'The cat' -n 8 --temp 0 --json");
  EXPECT_EQ(json::parse(a.out)["tokens"], json::parse(b.out)["tokens"]);
}

TEST(Cli, TokenizeAndInspect) {
  LMKIT_REQUIRE_SHARED();
  CliRun r = lmkit("tokenize -m " + test::shared_dir() +
                   "/tokenizers/ggml-vocab-gpt-2.gguf -p 'Hello world' --raw --json");
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["ids"], json::array({15496, 995}));
  EXPECT_EQ(j["pieces"], json::array({"Hello", "\u0120world"}));
  CliRun t = lmkit("tokenize -m " + stories() + "/stories260K.bin -p 'Once upon a time'");
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_EQ(t.out, "1 403 407 261 378\n");

  CliRun i = lmkit("inspect -m " + ref("llama_gqa_tied") + " --json --hooks");
  ASSERT_EQ(i.code, 0) << i.err;
  json ij = json::parse(i.out);
  EXPECT_EQ(ij["format"], "hf");
  EXPECT_EQ(ij["config"]["n_head_kv"], 2);
  EXPECT_TRUE(ij["config"]["tied_embeddings"].get<bool>());
  EXPECT_EQ(ij["n_params"],
            384 * 64 + 2 * (64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 64 + 3 * 172 * 64) + 64);
  EXPECT_NE(std::find(ij["hooks"].begin(), ij["hooks"].end(), "blocks.1.attn.hook_pattern"),
            ij["hooks"].end());
  CliRun plain = lmkit("inspect -m " + stories() + "/stories260K.bin");
  ASSERT_EQ(plain.code, 0) << plain.err;
  EXPECT_NE(plain.out.find("blk.4.ffn_down.weight"), std::string::npos);
}

TEST(Cli, ChatReadsTurnsFromStdin) {
  // qwen2_bias carries a ChatML template; gpt2 has none (the plain fallback).
  for (const char *m : {"qwen2_bias", "gpt2"}) {
    CliRun r = lmkit("chat -m " + ref(m) + " --temp 0 -n 6", "hello there\nand again\n/exit\n");
    EXPECT_EQ(r.code, 0) << m << r.err;
    EXPECT_GE(std::count(r.out.begin(), r.out.end(), '\n'), 2) << m;
  }
}

TEST(Cli, BadInputGivesOneLineAndExitOne) {
  expect_clean_error(lmkit("generate -m /nonexistent/model -p hi"), "no such file");
  expect_clean_error(lmkit("generate -m " + ref("bad/truncated.gguf") + " -p hi"),
                     "past the end of the file");
  expect_clean_error(lmkit("generate -m " + ref("bad/unknown_arch") + " -p hi"), "bloomz-unknown");
  expect_clean_error(lmkit("generate -m " + ref("bad/wrong_shape") + " -p hi"), "has shape");
  expect_clean_error(lmkit("generate -m " + ref("bad/missing_tensor") + " -p hi"), "missing");
  expect_clean_error(lmkit("generate -m " + ref("bad/truncated_llama2c.bin") + " -p hi"),
                     "truncated");
  expect_clean_error(lmkit("generate -m " + ref("gpt2") + " -p hi -n -5"), "-n");
  expect_clean_error(lmkit("generate -m " + ref("gpt2") + " -p hi -n 100000"), "context");
  expect_clean_error(lmkit("generate -m " + ref("gpt2") + " -p \"$(printf 'bad \\377 utf8')\""),
                     "UTF-8");
  expect_clean_error(lmkit("generate -m " + ref("gpt2") + " -p hi --temp -1"), "temp");
  expect_clean_error(lmkit("generate -m " + ref("gpt2") + " -p hi --top-p 3"), "top-p");
  expect_clean_error(lmkit("generate -m " + ref("gpt2") + " -p hi --bogus"), "bogus");
  expect_clean_error(lmkit("generate -p hi"), "model");
  expect_clean_error(lmkit("tokenize -m " + ref("gpt2") + " -f /nonexistent.txt"), "nonexistent");
  LMKIT_REQUIRE_SHARED();
  expect_clean_error(
      lmkit("generate -m " + test::shared_dir() + "/tokenizers/ggml-vocab-gpt-2.gguf -p hi"),
      "no tensors");
}

}  // namespace
}  // namespace lmkit
