// `lmkit quantize` and `lmkit convert` end to end: every type gives a file that generate and
// eval ppl run; conversions both ways; bad input (unknown type, missing model, unusable or
// occupied output, a full disk) gives one-line errors and leaves existing outputs intact.
#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "apps/cli_util.h"

namespace lmkit {
namespace {

using json = nlohmann::json;
using test::CliRun;
using test::expect_clean_error;
using test::lmkit;
namespace fs = std::filesystem;

std::string ref(const std::string &name) {
  return std::string(LMKIT_BUILD_DIR) + "/reference/" + name;
}

const char *kText =
    "The robot and the cat sat in the garden. The girl found the red ball under the tree, and "
    "the old cat slept on the wall until the rain stopped.\n";

double ppl_of(const std::string &model, const std::string &text_file) {
  CliRun r = lmkit("eval ppl -m " + model + " -f " + text_file + " --json --threads 2");
  EXPECT_EQ(r.code, 0) << r.err;
  if (r.code != 0) return NAN;
  return json::parse(r.out).at("ppl").get<double>();
}

TEST(CliQuantize, HelpDescribesBothVerbs) {
  CliRun q = lmkit("quantize --help");
  EXPECT_EQ(q.code, 0);
  EXPECT_NE(q.out.find("--type"), std::string::npos);
  EXPECT_NE(q.out.find("q4_K"), std::string::npos);
  EXPECT_NE(q.out.find("Type policy"), std::string::npos);
  CliRun c = lmkit("convert --help");
  EXPECT_EQ(c.code, 0);
  EXPECT_NE(c.out.find("--out"), std::string::npos);
  EXPECT_NE(c.out.find(".gguf"), std::string::npos);
}

// Every type: the file loads, generates and scores text; perplexity stays near f32's.
TEST(CliQuantize, EveryTypeRunsGenerateAndEvalPpl) {
  test::TempDir dir("cli-quant");
  std::ofstream(dir / "text.txt") << kText << kText;
  const double base = ppl_of(ref("llama_gqa_tied"), dir / "text.txt");
  ASSERT_TRUE(std::isfinite(base));
  for (const char *type :
       {"q8_0", "q6_K", "q5_K", "q5_1", "q5_0", "q4_K", "q4_1", "q4_0", "f16", "bf16", "f32"}) {
    SCOPED_TRACE(type);
    const std::string out = dir / (std::string(type) + ".gguf");
    CliRun q = lmkit("quantize -m " + ref("llama_gqa_tied") + " --type " + type + " -o " + out +
                     " --json --threads 2");
    ASSERT_EQ(q.code, 0) << q.err;
    const json j = json::parse(q.out);
    EXPECT_EQ(j.at("out"), out);
    EXPECT_TRUE(j.at("vocab").get<bool>());
    // Every tensor is listed; 1-D ones stay f32, the 172-wide ffn_down says why it is f16.
    bool saw_down = false;
    for (const json &t : j.at("tensors")) {
      const std::string name = t.at("name");
      if (name.find("norm") != std::string::npos) {
        EXPECT_EQ(t.at("to"), "f32") << name;
      }
      if (name == "blk.0.ffn_down.weight" && std::string(type) != "f32" &&
          std::string(type) != "bf16" && std::string(type) != "f16") {
        saw_down = true;
        EXPECT_EQ(t.at("to"), "f16");
        EXPECT_NE(t.at("note").get<std::string>().find("not a multiple"), std::string::npos);
      }
    }
    EXPECT_EQ(saw_down, std::string(type)[0] == 'q');
    CliRun g = lmkit("generate -m " + out + " -p \"The robot\" -n 8 --temp 0 --threads 2");
    EXPECT_EQ(g.code, 0) << g.err;
    // A random-weight model's perplexity means little (see the stories260K test below); it
    // must still be computed, finite and of the f32 model's order.
    const double p = ppl_of(out, dir / "text.txt");
    EXPECT_TRUE(std::isfinite(p) && p > 1.0) << p;
    EXPECT_LT(std::fabs(std::log(p / base)), 0.5) << type << ": ppl " << p << " vs f32 " << base;
  }
}

// A real model: perplexity of its own kind of text per type. Allowed increase of log(ppl):
// 1% for 8-bit and float types, 5% for the 5-bit ones, 20% for the 4-bit ones (measured on this
// text: q8_0 +0.3%, q5_0 +1.3%, q4_1 +5.2%, q4_0 +13%; a 260K-parameter model with 64-wide
// rows is far more sensitive than large ones, and q4_K/q5_K fall back to q5_0/q5_1 here).
TEST(CliQuantize, Stories260KPerplexityPerType) {
  LMKIT_REQUIRE_SHARED();
  test::TempDir dir("cli-ppl");
  const std::string m = test::shared_dir() + "/models/stories260K/stories260K.bin";
  std::ofstream(dir / "story.txt")
      << "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
         "park. One day, she saw a big, red ball. She wanted to play with it, but it was too "
         "high. Lily asked her mom to help her. Her mom said, \"Let us get it together.\" They "
         "got the ball and played all day. Lily was very happy.\n";
  const double base = ppl_of(m, dir / "story.txt");
  ASSERT_TRUE(std::isfinite(base));
  for (const std::string type :
       {"q8_0", "q6_K", "q5_K", "q5_1", "q5_0", "q4_K", "q4_1", "q4_0", "f16", "bf16"}) {
    const std::string out = dir / (type + ".gguf");
    CliRun q = lmkit("quantize -m " + m + " --type " + type + " -o " + out + " -q --threads 2");
    ASSERT_EQ(q.code, 0) << q.err;
    const double p = ppl_of(out, dir / "story.txt");
    const double allowed = type[1] == '4' ? 0.2 : type[1] == '5' ? 0.05 : 0.01;
    EXPECT_GE(p, base * 0.99) << type;
    EXPECT_LT(std::log(p / base), allowed) << type << ": ppl " << p << " vs f32 " << base;
  }
}

TEST(CliQuantize, ConvertBothWaysAndDefaultOutputName) {
  test::TempDir dir("cli-convert");
  CliRun a = lmkit("convert -m " + ref("qwen2_bias") + " -o " + dir / "q.gguf");
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_NE(a.out.find("wrote"), std::string::npos);
  CliRun b = lmkit("convert -m " + dir / "q.gguf" + " -o " + dir / "hf --type bf16 --json");
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(json::parse(b.out).at("format"), "hf");
  EXPECT_TRUE(fs::exists(dir / "hf/model.safetensors"));
  CliRun inspect = lmkit("inspect -m " + dir / "hf --json");
  ASSERT_EQ(inspect.code, 0) << inspect.err;
  EXPECT_EQ(json::parse(inspect.out).at("config").at("dtype"), "bf16");
  // Generation from the original and the round trip start the same (bf16 weights).
  auto gen = [](const std::string &m) {
    CliRun r = lmkit("generate -m " + m + " -p \"The robot\" -n 3 --temp 0 --json --threads 2");
    EXPECT_EQ(r.code, 0) << r.err;
    return r.code ? json() : json::parse(r.out).at("tokens");
  };
  EXPECT_EQ(gen(dir / "q.gguf"), gen(ref("qwen2_bias")));
  // No --out: NAME-TYPE.gguf beside the model.
  fs::copy(ref("gpt2"), dir / "gpt2", fs::copy_options::recursive);
  CliRun d = lmkit("quantize -m " + dir / "gpt2" + " --type q8_0 -q");
  ASSERT_EQ(d.code, 0) << d.err;
  EXPECT_TRUE(fs::exists(dir / "gpt2-q8_0.gguf"));
}

TEST(CliQuantize, BadInputGivesCleanErrors) {
  test::TempDir dir("cli-quant-bad");
  const std::string m = ref("llama_gqa_tied");
  expect_clean_error(lmkit("quantize -m " + m + " --type q9_9 -o " + dir / "x.gguf"),
                     "unknown --type 'q9_9'");
  expect_clean_error(lmkit("quantize -m " + m + " --type q8_K -o " + dir / "x.gguf"),
                     "unknown --type 'q8_K'");
  expect_clean_error(lmkit("convert -m " + m + " --type q4_0 -o " + dir / "x.gguf"),
                     "unknown --type 'q4_0' (types: f32, f16, bf16)");
  expect_clean_error(lmkit("quantize -m " + dir / "nope" + " --type q8_0 -o " + dir / "x.gguf"),
                     "no such file");
  expect_clean_error(lmkit("convert -m " + dir / "nope.gguf" + " -o " + dir / "x"), "no such file");
  expect_clean_error(lmkit("quantize -m " + m + " --type q8_0 -o " + dir / "x.safetensors"),
                     "give --out a .gguf name");
  // Output folder that cannot be: its "parent" is a file.
  std::ofstream(dir / "file") << "x";
  expect_clean_error(lmkit("quantize -m " + m + " --type q8_0 -o " + dir / "file/x.gguf"),
                     "does not exist");
  expect_clean_error(lmkit("convert -m " + m + " -o " + dir / "file/hf"), "does not exist");
  // The input itself.
  CliRun c = lmkit("convert -m " + m + " -o " + dir / "m.gguf");
  ASSERT_EQ(c.code, 0) << c.err;
  expect_clean_error(lmkit("quantize -m " + dir / "m.gguf" + " --type q8_0 -o " + dir / "m.gguf"),
                     "is the input model");
  // A folder that holds something is never overwritten.
  fs::create_directories(dir / "occupied");
  std::ofstream(dir / "occupied/keep") << "mine";
  expect_clean_error(lmkit("convert -m " + m + " -o " + dir / "occupied"), "not an empty folder");
  EXPECT_EQ(test::slurp(dir / "occupied/keep"), "mine");
  // A full disk in the middle of the write: an error, and the previous file is untouched.
  CliRun first = lmkit("quantize -m " + m + " --type q8_0 -o " + dir / "q.gguf -q");
  ASSERT_EQ(first.code, 0) << first.err;
  const std::string before = test::slurp(dir / "q.gguf");
  expect_clean_error(lmkit("quantize -m " + m + " --type q4_0 -o " + dir / "q.gguf -q", "",
                           "LMKIT_FAULT_DISK_FULL_AFTER=20000"),
                     "write failed");
  EXPECT_EQ(test::slurp(dir / "q.gguf"), before);
  expect_clean_error(
      lmkit("convert -m " + m + " -o " + dir / "hf", "", "LMKIT_FAULT_DISK_FULL_AFTER=20000"),
      "write failed");
  EXPECT_FALSE(fs::exists(dir / "hf"));
  for (const auto &e : fs::directory_iterator(dir.str()))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
}

}  // namespace
}  // namespace lmkit
