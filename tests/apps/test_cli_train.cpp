// End-to-end training through the CLI: a run killed with SIGKILL (at random moments and in the
// middle of a checkpoint write) and resumed gives the same losses, bit for bit, as an
// uninterrupted run; checkpoints load in `lmkit generate` and in the PyTorch reference; bad
// settings, corrupt checkpoints and a full disk give clear errors and leave checkpoints intact.
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "apps/cli_util.h"
#include "model/loader.h"
#include "runtime/session.h"

namespace lmkit {
namespace {

using json = nlohmann::json;
using test::CliRun;
using test::expect_clean_error;
using test::lmkit;
namespace fs = std::filesystem;

const std::string &data_dir() {
  return test::story_data("train-data", 300000, 400);
}

const std::string kRun =
    "--preset tiny --steps 30 --ckpt-interval 10 --eval-interval 10 "
    "--eval-batches 2 --keep-ckpts 0 --threads 2 --quiet";

// The deterministic part of every metrics line, by step (tok_s and mfu are timings).
std::map<int64_t, std::string> losses(const std::string &run) {
  std::map<int64_t, std::string> out;
  std::istringstream in(test::slurp(run + "/metrics.jsonl"));
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line);
    j.erase("tok_s");
    j.erase("mfu");
    out[j["step"].get<int64_t>()] = j.dump();
  }
  return out;
}

TEST(CliTrain, ResumeAfterSigkillIsBitExact) {
  test::TempDir dir("resume");
  const std::string d = data_dir();
  CliRun ref = lmkit("train --data " + d + " --out " + dir / "ref" + " " + kRun);
  ASSERT_EQ(ref.code, 0) << ref.err;
  const auto want = losses(dir / "ref");
  ASSERT_EQ(want.size(), 30u);

  // Killed in the middle of the 2nd checkpoint write (model written, state not yet).
  CliRun killed = lmkit("train --data " + d + " --out " + dir / "a" + " " + kRun, "",
                        "LMKIT_FAULT_KILL_IN_CHECKPOINT=2");
  EXPECT_EQ(killed.code, 128 + 9);
  EXPECT_FALSE(fs::exists(dir / "a/checkpoints/step_00000020"));
  CliRun resumed = lmkit("train --resume " + dir / "a" + " --quiet");
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(losses(dir / "a"), want);

  // Killed with SIGKILL at an arbitrary moment once K steps are logged, then resumed.
  for (int k : {13, 24}) {
    SCOPED_TRACE(k);
    const std::string run = dir / ("k" + std::to_string(k));
    const std::string script = std::string(LMKIT_BUILD_DIR) + "/lmkit train --data " + d +
                               " --out " + run + " " + kRun + " & pid=$!; while [ \"$(cat " + run +
                               "/metrics.jsonl 2>/dev/null | wc -l)\" -lt " + std::to_string(k) +
                               " ]; do sleep 0.01; done; kill -9 $pid; wait $pid";
    const int st = std::system(("bash -c '" + script + "' >/dev/null 2>&1").c_str());
    EXPECT_NE(st, 0);  // it was killed, not finished
    CliRun r = lmkit("train --resume " + run + " --quiet");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(losses(run), want);
  }

  // The final model loads and generates.
  CliRun g =
      lmkit("generate -m " + dir / "ref/final" + " -p 'Once upon a time' -n 8 --temp 0 --json");
  ASSERT_EQ(g.code, 0) << g.err;
  EXPECT_EQ(json::parse(g.out)["tokens"].size(), 8u);
}

// A checkpoint lmkit writes is a Hugging Face folder the PyTorch reference reads, with the same
// logits.
TEST(CliTrain, CheckpointLoadsInPyTorchReference) {
  test::TempDir dir("pt");
  for (const char *family : {"llama", "gpt2"}) {
    SCOPED_TRACE(family);
    const std::string run = dir / family;
    CliRun r = lmkit("train --data " + data_dir() + " --out " + run + " --family " + family +
                     " --n-head-kv 4 --steps 5 --quiet --threads 1");
    ASSERT_EQ(r.code, 0) << r.err;
    const std::vector<int32_t> ids = {0, 5, 17, 42, 100, 7};
    std::string ids_s;
    for (int32_t i : ids) ids_s += (ids_s.empty() ? "" : ",") + std::to_string(i);
    const std::string script =
        std::string(LMKIT_SOURCE_DIR) + "/tests/reference/check_checkpoint.py";
    const std::string cmd =
        "/usr/bin/python3 " + script + " " + run + "/final " + ids_s + " > " + dir / "logits.json";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    json want = json::parse(test::slurp(dir / "logits.json"));
    LoadedModel lm = load_model(run + "/final");
    auto pool = std::make_shared<ThreadPool>(1);
    Session s(lm.model, pool, 16);
    const float *got = s.eval_all(ids);
    const int64_t V = lm.model->config().n_vocab;
    ASSERT_EQ(want["logits"].size(), ids.size());
    double diff = 0, scale = 0;
    for (size_t t = 0; t < ids.size(); ++t)
      for (int64_t v = 0; v < V; ++v) {
        const double w = want["logits"][t][size_t(v)].get<double>();
        diff = std::max(diff, std::abs(double(got[int64_t(t) * V + v]) - w));
        scale = std::max(scale, std::abs(w));
      }
    EXPECT_LE(diff, 1e-4 * std::max(1.0, scale));
  }
}

// The README's main command, shortened: every stage runs, the model lands in OUT/final in HF
// layout, the output states the validation loss next to the unigram baseline, and the printed
// next steps work. (The full demo, 1000 steps, runs in CI as the README's first command.)
TEST(CliTrain, DemoTrainsAndTellsWhatToDoNext) {
  test::TempDir dir("demo");
  const std::string out = dir / "d";
  CliRun r = lmkit("demo --out " + out + " --steps 40 --corpus-bytes 300000 --threads 2");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char *f : {"config.json", "model.safetensors", "tokenizer.json"})
    EXPECT_TRUE(fs::exists(out + "/final/" + f)) << f;
  const size_t at = r.out.find("validation loss ");
  ASSERT_NE(at, std::string::npos) << r.out;
  double val = 0, unigram = 0;
  ASSERT_EQ(
      std::sscanf(r.out.c_str() + at, "validation loss %lf nats/token vs %lf", &val, &unigram), 2)
      << r.out;
  EXPECT_LT(val, unigram);  // even 40 steps learn the unigram distribution and more
  for (const char *next : {"lmkit generate -m ", "lmkit chat -m ", "lmkit eval ppl -m "})
    EXPECT_NE(r.out.find(next), std::string::npos) << next;
  CliRun g = lmkit("generate -m " + out + "/final -p 'Once upon a time' -n 5 --temp 0");
  EXPECT_EQ(g.code, 0) << g.err;
}

TEST(CliTrain, BadSettingsAndFilesGiveClearErrors) {
  test::TempDir dir("badtrain");
  const std::string d = data_dir();
  expect_clean_error(lmkit("train --data " + d + " --out " + dir / "x" + " --n-head 3"),
                     "does not divide n_embd");
  expect_clean_error(lmkit("train --data " + d + " --out " + dir / "x" + " --context 0"),
                     "context must be at least 2");
  expect_clean_error(lmkit("train --data " + d + " --out " + dir / "x" + " --lr abc"), "--lr");
  expect_clean_error(lmkit("train --data " + d + " --out " + dir / "x" + " --preset nope"),
                     "unknown preset");
  expect_clean_error(lmkit("train --data /nonexistent --out " + dir / "x"), "/nonexistent");
  expect_clean_error(lmkit("train --resume " + dir / "nothing-here"), "not a training run");

  // A normal run tells how many bytes a checkpoint takes.
  const std::string bad = dir / "corrupt";
  ASSERT_EQ(lmkit("train --data " + d + " --out " + bad + " " + kRun).code, 0);
  auto bytes_in = [](const std::string &p) {
    uintmax_t n = 0;
    for (const auto &e : fs::recursive_directory_iterator(p))
      if (e.is_regular_file()) n += e.file_size();
    return n;
  };
  const uintmax_t ckpt = bytes_in(bad + "/checkpoints/step_00000010");
  const uintmax_t small =
      fs::file_size(bad + "/train_config.json") + 2 * fs::file_size(bad + "/loss.svg");

  // A full disk during the second checkpoint: a clear error, the first checkpoint intact.
  const std::string run = dir / "disk";
  CliRun full = lmkit("train --data " + d + " --out " + run + " " + kRun, "",
                      "LMKIT_FAULT_DISK_FULL_AFTER=" + std::to_string(small + ckpt + ckpt / 2));
  expect_clean_error(full, "No space left on device");
  ASSERT_TRUE(fs::exists(run + "/checkpoints/step_00000010/model.safetensors"));
  EXPECT_FALSE(fs::exists(run + "/checkpoints/step_00000020"));
  EXPECT_EQ(lmkit("generate -m " + run + "/checkpoints/step_00000010 -p hi -n 2").code, 0);
  for (const auto &e : fs::directory_iterator(run + "/checkpoints"))
    EXPECT_EQ(e.path().filename().string().rfind(".tmp", 0), std::string::npos);
  // It resumes from that checkpoint and finishes like an uninterrupted run.
  CliRun resumed = lmkit("train --resume " + run + " --quiet");
  EXPECT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(losses(run), losses(bad));

  // A corrupt checkpoint on resume: a clear error naming the file.
  fs::resize_file(bad + "/checkpoints/step_00000030/model.safetensors", 100);
  expect_clean_error(lmkit("train --resume " + bad), "model.safetensors");
}

}  // namespace
}  // namespace lmkit
