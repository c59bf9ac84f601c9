// End-to-end tests of the data verbs of the lmkit command line: `data stories`, `tokenizer
// train`, `data prepare`, their JSON outputs, and bad input (one line on stderr, exit code 1).
// Not tests of the algorithms: tests/train/ covers those.
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli_util.h"

namespace lmkit {
namespace {

using json = nlohmann::json;
using test::CliRun;
using test::expect_clean_error;
using test::lmkit;
using test::slurp;

TEST(CliData, Help) {
  for (const char *verb : {"tokenizer train", "data prepare", "data stories"}) {
    CliRun r = lmkit(std::string(verb) + " --help");
    EXPECT_EQ(r.code, 0) << verb;
    EXPECT_NE(r.out.find("--out"), std::string::npos) << verb;
  }
  EXPECT_NE(lmkit("data prepare --help").out.find("--val-fraction"), std::string::npos);
  EXPECT_NE(lmkit("tokenizer train --help").out.find("--vocab-size"), std::string::npos);
  CliRun top = lmkit("--help");
  EXPECT_NE(top.out.find("tokenizer"), std::string::npos);
  EXPECT_NE(top.out.find("data"), std::string::npos);
  expect_clean_error(lmkit("data"), "subcommand");
}

TEST(CliData, StoriesTokenizerPrepare) {
  test::TempDir d("cli-data");
  std::string stories = d / "stories.txt";
  CliRun s = lmkit("data stories --out " + stories + " --bytes 150000 --seed 3");
  ASSERT_EQ(s.code, 0) << s.err;
  std::string text = slurp(stories);
  EXPECT_GE(text.size(), 150000u);
  EXPECT_EQ(text.rfind("Once upon a time", 0) == 0 || text.rfind("There once", 0) == 0 ||
                text.find(" who lived near ") < 200,
            true);
  CliRun again = lmkit("data stories --out - --bytes 150000 --seed 3");
  EXPECT_EQ(again.out, text);

  CliRun t =
      lmkit("tokenizer train -i " + stories + " --vocab-size 600 -o " + (d / "tok") + " --json");
  ASSERT_EQ(t.code, 0) << t.err;
  json tj = json::parse(t.out);
  EXPECT_EQ(tj["vocab_size"], 600);
  EXPECT_EQ(tj["merges"], 600 - 257);
  EXPECT_TRUE(std::filesystem::exists(d / "tok/tokenizer.json"));
  EXPECT_TRUE(std::filesystem::exists(d / "tok/tokenizer_config.json"));
  // The tokenizer works with the rest of the CLI.
  CliRun tk = lmkit("tokenize -m " + (d / "tok") + "/tokenizer.json -p 'Once upon a time' --json");
  ASSERT_EQ(tk.code, 0) << tk.err;
  EXPECT_EQ(json::parse(tk.out)["ids"][0], 0);  // BOS

  CliRun p = lmkit("data prepare -t " + (d / "tok") + " -i " + stories + " -o " + (d / "data") +
                   " --val-fraction 0.1 --json");
  ASSERT_EQ(p.code, 0) << p.err;
  json pj = json::parse(p.out);
  EXPECT_GT(pj["train_tokens"].get<int64_t>(), 20000);
  EXPECT_GT(pj["val_tokens"].get<int64_t>(), 2000);
  EXPECT_GT(pj["unigram_entropy"].get<double>(), 1.0);
  EXPECT_TRUE(std::filesystem::exists(d / "data/meta.json"));
  EXPECT_TRUE(std::filesystem::exists(d / "data/train_000.bin"));
  EXPECT_TRUE(std::filesystem::exists(d / "data/val_000.bin"));
  EXPECT_TRUE(p.err.empty()) << p.err;  // no progress bar when stderr is not a terminal

  CliRun plain =
      lmkit("data prepare -t " + (d / "tok") + " -i " + stories + " -o " + (d / "data2"));
  ASSERT_EQ(plain.code, 0) << plain.err;
  EXPECT_NE(plain.out.find("unigram"), std::string::npos) << plain.out;
  EXPECT_NE(plain.out.find("MB/s"), std::string::npos) << plain.out;
}

TEST(CliData, BadInput) {
  test::TempDir d("cli-data");
  std::ofstream(d / "empty.txt").flush();
  std::ofstream(d / "garbage.bin", std::ios::binary) << std::string("\x00\x01\xFF\xFE", 4);
  std::ofstream(d / "ok.txt") << "Once upon a time there was a cat.\n\nThe end.\n";
  expect_clean_error(lmkit("tokenizer train -i " + (d / "empty.txt") + " -o " + (d / "t")),
                     "empty.txt: empty file");
  expect_clean_error(lmkit("tokenizer train -i " + (d / "garbage.bin") + " -o " + (d / "t")),
                     "garbage.bin: binary data");
  expect_clean_error(lmkit("tokenizer train -i " + (d / "nope.txt") + " -o " + (d / "t")),
                     "nope.txt: no such file");
  expect_clean_error(
      lmkit("tokenizer train -i " + (d / "ok.txt") + " -o " + (d / "t") + " --vocab-size 100"),
      "--vocab-size");
  ASSERT_EQ(lmkit("tokenizer train -i " + (d / "ok.txt") + " -o " + (d / "t")).code, 0);
  expect_clean_error(
      lmkit("data prepare -t " + (d / "t") + " -i " + (d / "garbage.bin") + " -o " + (d / "o")),
      "garbage.bin: binary data");
  expect_clean_error(
      lmkit("data prepare -t " + (d / "t") + " -i " + (d / "empty.txt") + " -o " + (d / "o")),
      "empty.txt: empty file");
  expect_clean_error(lmkit("data prepare -t " + (d / "t") + " -i " + (d / "ok.txt") + " -o " +
                           (d / "o") + " --val-fraction 0.9"),
                     "--val-fraction");
  expect_clean_error(
      lmkit("data prepare -t " + (d / "missing") + " -i " + (d / "ok.txt") + " -o " + (d / "o")),
      "missing: no such file");
  expect_clean_error(lmkit("data prepare -t " + (d / "t") + " -i " + (d / "ok.txt") + " -o " +
                           (d / "o") + " --val-fraction 0.1"),
                     "too few for a validation fraction");
  expect_clean_error(lmkit("data prepare -t " + (d / "t") + " -i " + (d / "ok.txt") + " -o " +
                           (d / "ok.txt") + " --val-fraction 0"),
                     "cannot create the output folder");
  expect_clean_error(lmkit("data stories --out " + (d / "s.txt") + " --bytes 0"), "--bytes");
}

}  // namespace
}  // namespace lmkit
