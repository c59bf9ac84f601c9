// End-to-end tests of `lmkit simulate`: the JSON fields and their values against the closed forms,
// the text report and timeline, help, and bad flags (one line "lmkit: error: ...", exit code 1).
#include <nlohmann/json.hpp>

#include "apps/cli_util.h"

namespace lmkit {
namespace {

using json = nlohmann::json;
using test::CliRun;
using test::expect_clean_error;
using test::lmkit;

TEST(CliSimulate, HelpNamesEveryFlagAndTheModels) {
  CliRun r = lmkit("simulate --help");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char *s : {"--model",         "--layers",     "--hidden",     "--heads",
                        "--seq",           "--pp",         "--dp",         "--tp",
                        "--micro-batches", "--schedule",   "--seq-chunks", "--seq-split",
                        "--device-flops",  "--efficiency", "--link-bw",    "--latency",
                        "--json",          "--timeline",   "1.3b",         "30b",
                        "gpipe",           "seq1f1b",      "34 b L d",     "docs/PARALLEL.md"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s;
  EXPECT_NE(lmkit("--help").out.find("simulate"), std::string::npos);
}

TEST(CliSimulate, JsonFieldsMatchTheClosedForms) {
  // 1F1B, 4 stages, 8 micro-batches, free links: bubble (p-1)/(m+p-1) = 3/11; stage r holds
  // 4 - r micro-batches of 34 s d bytes per layer (16 layers per stage of a 2.7b).
  CliRun r = lmkit(
      "simulate --model 2.7b --seq 2048 --pp 4 --micro-batches 8 --schedule 1f1b --link-bw 1e30 "
      "--json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const json j = json::parse(r.out);
  ASSERT_TRUE(j["step_time_s"].is_number());
  EXPECT_GT(j["step_time_s"].get<double>(), 0);
  EXPECT_NEAR(j["bubble_fraction"].get<double>(), 3.0 / 11.0, 1e-12);
  ASSERT_TRUE(j["peak_activation_bytes"].is_array());
  ASSERT_EQ(j["peak_activation_bytes"].size(), 4u);
  for (int s = 0; s < 4; ++s) {
    ASSERT_TRUE(j["peak_activation_bytes"][size_t(s)].is_number_integer());
    EXPECT_EQ(j["peak_activation_bytes"][size_t(s)].get<int64_t>(),
              int64_t(4 - s) * 8 * 34 * 2048 * 2560);
    EXPECT_EQ(j["peak_inflight_chunks"][size_t(s)], 4 - s);
  }
  EXPECT_EQ(j["schedule"], "1f1b");
  EXPECT_EQ(j["layers"], 32);
  EXPECT_EQ(j["tokens_per_step"], 8 * 2048);

  // Seq1F1B over 4 chunks, wide model and short sequence (chunks cost almost the same):
  // (p-1)/(m k+p-1) = 3/35.
  r = lmkit(
      "simulate --layers 8 --hidden 8192 --heads 8 --seq 64 --pp 4 --micro-batches 8 "
      "--schedule seq1f1b --seq-chunks 4 --seq-split even --link-bw 1e30 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json s = json::parse(r.out);
  EXPECT_NEAR(s["bubble_fraction"].get<double>(), 3.0 / 35.0, 2e-3);
  EXPECT_EQ(s["chunk_lengths"], json::parse("[16,16,16,16]"));
  EXPECT_EQ(s["peak_inflight_chunks"], json::parse("[7,6,5,4]"));
  EXPECT_EQ(s["model"], "custom");
}

TEST(CliSimulate, Seq1F1BBeats1F1BInThePapersSetting) {
  const std::string common =
      "simulate --model 30b --seq 65536 --pp 8 --tp 8 --micro-batches 16 --efficiency 0.5 --json";
  CliRun a = lmkit(common + " --schedule 1f1b");
  CliRun b = lmkit(common + " --schedule seq1f1b --seq-chunks 4 --seq-split compute");
  ASSERT_EQ(a.code, 0) << a.err;
  ASSERT_EQ(b.code, 0) << b.err;
  const json ja = json::parse(a.out), jb = json::parse(b.out);
  EXPECT_LT(jb["step_time_s"].get<double>(), ja["step_time_s"].get<double>());
  EXPECT_LT(jb["bubble_fraction"].get<double>(), ja["bubble_fraction"].get<double>());
  EXPECT_LT(jb["peak_activation_bytes"][0].get<double>(),
            0.5 * ja["peak_activation_bytes"][0].get<double>());
  EXPECT_EQ(jb["devices"], 64);
}

TEST(CliSimulate, TextReportAndTimeline) {
  CliRun r = lmkit(
      "simulate --layers 4 --hidden 4096 --heads 4 --seq 16 --pp 2 --micro-batches 2 "
      "--link-bw 1e30 --timeline --show-schedule");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char *s : {"step time", "bubble", "33.33 %", "peak activations",
                        "stage 0: F0 F1 B0 B1", "stage 0 |AB..aa.bb|", "stage 1 |.AaaBbb..|"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
}

TEST(CliSimulate, BadFlagsGiveOneLineErrors) {
  const std::string ok = "simulate --model 30b --seq 4096 --pp 8 --micro-batches 8 ";
  expect_clean_error(lmkit(ok + "--schedule zb"), "unknown schedule 'zb'");
  expect_clean_error(lmkit("simulate --model 31b --seq 4096"), "unknown model size '31b'");
  expect_clean_error(lmkit("simulate --seq 4096"), "give --model SIZE or all of");
  expect_clean_error(lmkit("simulate --model 30b"), "--seq");
  expect_clean_error(lmkit(ok + "--schedule 1f1b --seq-chunks 4"), "--schedule seq1f1b");
  expect_clean_error(lmkit("simulate --model 30b --seq 4096 --pp 6"), "do not split evenly over 6");
  expect_clean_error(lmkit(ok + "--link-bw fast"), "--link-bw 'fast' is not a number");
  expect_clean_error(lmkit(ok + "--efficiency 2"), "--efficiency must be in (0, 1]");
  expect_clean_error(lmkit(ok + "--seq-split flops --schedule seq1f1b --seq-chunks 2"),
                     "unknown sequence split 'flops'");
  expect_clean_error(lmkit(ok + "--pp 0"), "--pp");
  expect_clean_error(lmkit(ok + "--bogus"), "--bogus");
  // SI suffixes are accepted.
  EXPECT_EQ(lmkit(ok + "--device-flops 312T --link-bw 25G --json").code, 0);
}

}  // namespace
}  // namespace lmkit
