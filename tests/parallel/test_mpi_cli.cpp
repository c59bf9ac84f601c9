// `mpirun -np 2 lmkit train --dp 2` end to end: ten steps give the loss curve of one process on
// the same global batch (relative error <= 1e-5); a rank killed with SIGKILL ends the whole job
// quickly with a non-zero exit, and --resume from the last checkpoint reproduces the run; a rank
// that hangs is caught by the communicator's timeout with a one-line error; launch mistakes are
// clear errors.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "apps/cli_util.h"

namespace lmkit {
namespace {

using json = nlohmann::json;
using test::CliRun;
using test::lmkit;
namespace fs = std::filesystem;

const std::string &data_dir() {
  return test::story_data("mpi-data", 200000, 300);
}

struct Timed {
  CliRun run;
  double seconds;
};

// `[env] mpirun -np N lmkit ARGS`, timed.
Timed mpirun(int n, const std::string &args, const std::string &env = "") {
  const auto t0 = std::chrono::steady_clock::now();
  CliRun r = lmkit(args, "",
                   env + (env.empty() ? "" : " ") + LMKIT_MPIRUN +
                       " --oversubscribe --allow-run-as-root -np " + std::to_string(n));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {r, s};
}

// Settings shared by every run: the tiny model, one thread per rank (results depend on the thread
// count), 4 micro-batches of 4 sequences per step.
const std::string kBase =
    " --preset tiny --batch-size 4 --context 32 --threads 1 --eval-interval 5 --eval-batches 2 "
    "--quiet";
const std::string kRun = kBase + " --micro-batches 4";

std::map<int64_t, json> metrics(const std::string &run) {
  std::map<int64_t, json> out;
  std::istringstream in(test::slurp(run + "/metrics.jsonl"));
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line);
    j.erase("tok_s");
    j.erase("mfu");
    out[j["step"].get<int64_t>()] = j;
  }
  return out;
}

// Same steps, learning rates and token counts; loss, gradient norm and validation loss within
// rel_tol of each other (0: identical).
void expect_same_curve(const std::map<int64_t, json> &got, const std::map<int64_t, json> &want,
                       double rel_tol) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto &[step, w] : want) {
    SCOPED_TRACE(step);
    ASSERT_TRUE(got.count(step));
    const json &g = got.at(step);
    EXPECT_EQ(g["lr"], w["lr"]);
    EXPECT_EQ(g["tokens"], w["tokens"]);
    EXPECT_EQ(g.contains("val_loss"), w.contains("val_loss"));
    for (const char *k : {"loss", "grad_norm", "val_loss"}) {
      if (!w.contains(k)) continue;
      const double a = g[k].get<double>(), b = w[k].get<double>();
      if (rel_tol == 0)
        EXPECT_EQ(a, b) << k;
      else
        EXPECT_LE(std::abs(a - b), rel_tol * std::abs(b)) << k << ": " << a << " vs " << b;
    }
  }
}

TEST(MpiTrain, TenStepsOfTwoRanksGiveTheLossCurveOfOneProcess) {
  test::TempDir dir("mpi-curve");
  const std::string d = data_dir();
  CliRun one = lmkit("train --data " + d + " --out " + dir / "one --steps 10" + kRun);
  ASSERT_EQ(one.code, 0) << one.err;
  Timed two = mpirun(2, "train --dp 2 --bucket-mb 0.01 --data " + d + " --out " + dir / "two" +
                            " --steps 10" + kRun);
  ASSERT_EQ(two.run.code, 0) << two.run.err;
  const auto want = metrics(dir / "one");
  ASSERT_EQ(want.size(), 10u);
  expect_same_curve(metrics(dir / "two"), want, 1e-5);
  // Rank 0 alone wrote: one metrics line per step, the final model, the checkpoint.
  EXPECT_TRUE(fs::exists(dir / "two/final/model.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "two/checkpoints/step_00000010"));
}

TEST(MpiTrain, AKilledRankEndsTheJobAndResumeReproducesTheRun) {
  test::TempDir dir("mpi-kill");
  const std::string d = data_dir();
  const std::string run = " --steps 8 --ckpt-interval 2 --keep-ckpts 0" + kRun;
  Timed ref = mpirun(2, "train --dp 2 --data " + d + " --out " + dir / "ref" + run);
  ASSERT_EQ(ref.run.code, 0) << ref.run.err;

  // Rank 1 dies with SIGKILL in its 5th step: rank 0 must not wait for it.
  Timed killed = mpirun(2, "train --dp 2 --data " + d + " --out " + dir / "a" + run,
                        "LMKIT_FAULT_RANK_DIE=1:5");
  EXPECT_NE(killed.run.code, 0);
  EXPECT_LT(killed.seconds, 30) << "the surviving rank hung";
  EXPECT_NE(killed.run.err.find("exited on signal 9"), std::string::npos) << killed.run.err;
  EXPECT_TRUE(fs::exists(dir / "a/checkpoints/step_00000004"));
  EXPECT_FALSE(fs::exists(dir / "a/checkpoints/step_00000006"));

  // Resumed with the same ranks: the uninterrupted run, bit for bit.
  Timed resumed = mpirun(2, "train --dp 2 --resume " + dir / "a" + " --quiet");
  ASSERT_EQ(resumed.run.code, 0) << resumed.run.err;
  expect_same_curve(metrics(dir / "a"), metrics(dir / "ref"), 0);

  // The same checkpoint resumed by one process: the same run within fp32 reassociation.
  Timed again = mpirun(2, "train --dp 2 --data " + d + " --out " + dir / "b" + run,
                       "LMKIT_FAULT_RANK_DIE=0:7");
  EXPECT_NE(again.run.code, 0);
  CliRun alone = lmkit("train --resume " + dir / "b" + " --quiet");
  ASSERT_EQ(alone.code, 0) << alone.err;
  expect_same_curve(metrics(dir / "b"), metrics(dir / "ref"), 1e-5);
}

TEST(MpiTrain, AHungRankIsCaughtByTheTimeout) {
  test::TempDir dir("mpi-hang");
  Timed hung = mpirun(2,
                      "train --dp 2 --comm-timeout 2 --data " + data_dir() + " --out " + dir / "a" +
                          " --steps 6" + kRun,
                      "LMKIT_FAULT_RANK_HANG=1:3");
  EXPECT_NE(hung.run.code, 0);
  EXPECT_LT(hung.seconds, 30) << "the job hung";
  EXPECT_NE(hung.run.err.find("lmkit: error: rank 0: gradient all-reduce got no answer from the "
                              "other ranks in 2 s (a rank died or hangs)\n"),
            std::string::npos)
      << hung.run.err;
}

// Pipeline runs: a 4-layer tiny model, 4 micro-batches of 4 x 32 tokens.
const std::string kPipe = kRun + " --n-layer 4";

TEST(MpiTrain, PipelineRunsGiveTheLossCurveOfOneProcess) {
  test::TempDir dir("mpi-pp-curve");
  const std::string d = data_dir();
  CliRun one = lmkit("train --data " + d + " --out " + dir / "one --steps 10" + kPipe);
  ASSERT_EQ(one.code, 0) << one.err;
  const auto want = metrics(dir / "one");
  ASSERT_EQ(want.size(), 10u);
  struct Layout {
    int ranks;
    std::string flags, name;
  };
  const Layout layouts[] = {
      {4, "--pp 4 --pp-schedule 1f1b", "pp4-1f1b"},
      {4, "--pp 4 --pp-schedule seq1f1b --seq-chunks 4 --seq-split compute", "pp4-seq"},
      {4, "--dp 2 --pp 2 --schedule seq1f1b --seq-chunks 2", "dp2pp2-seq"},  // the name
      {2, "--pp 2 --pp-schedule gpipe --seq-chunks 2 --pp-layers 3,1", "pp2-gpipe"}};
  for (const Layout &l : layouts) {
    SCOPED_TRACE(l.flags);
    Timed r = mpirun(l.ranks, "train " + l.flags + " --data " + d + " --out " + dir / l.name +
                                  " --steps 10" + kPipe);
    ASSERT_EQ(r.run.code, 0) << r.run.err;
    expect_same_curve(metrics(dir / l.name), want, 1e-5);
    EXPECT_TRUE(fs::exists(dir / (l.name + "/final/model.safetensors")));
    // Every stage's report, gathered by rank 0.
    const json p = json::parse(test::slurp(dir / (l.name + "/pipeline.json")));
    ASSERT_EQ(p["stages"].size(), size_t(l.ranks));
    EXPECT_NE((l.flags + " ").find(" " + p["schedule"].get<std::string>() + " "), std::string::npos)
        << p["schedule"];
    for (const json &st : p["stages"]) {
      EXPECT_EQ(st["steps"], 10);
      EXPECT_GT(st["busy_s"].get<double>(), 0);
      EXPECT_GT(st["peak_activation_bytes"].get<int64_t>(), 0);
      EXPECT_NEAR(st["busy_s"].get<double>() + st["idle_s"].get<double>(),
                  st["wall_s"].get<double>(), 1e-6);
    }
  }
  // Without --quiet, rank 0 prints the stage table once.
  std::string noisy = kPipe;
  noisy.erase(noisy.find(" --quiet"), 8);
  Timed shown =
      mpirun(2, "train --pp 2 --data " + d + " --out " + dir / "shown" + " --steps 2" + noisy);
  ASSERT_EQ(shown.run.code, 0) << shown.run.err;
  EXPECT_NE(shown.run.err.find("lmkit train: pipeline stages (1f1b, 1 chunks per micro-batch)\n"
                               "| rank | replica | stage |"),
            std::string::npos)
      << shown.run.err;
}

TEST(MpiTrain, APipelineRankKilledEndsTheJobAndResumeReproducesTheRun) {
  test::TempDir dir("mpi-pp-kill");
  const std::string d = data_dir();
  const std::string run =
      " --pp 2 --pp-schedule seq1f1b --seq-chunks 2 --steps 8 "
      "--ckpt-interval 2 --keep-ckpts 0" +
      kPipe;
  Timed ref = mpirun(2, "train --data " + d + " --out " + dir / "ref" + run);
  ASSERT_EQ(ref.run.code, 0) << ref.run.err;
  // The last stage dies in its 5th step, while the first waits for its gradients.
  Timed killed =
      mpirun(2, "train --data " + d + " --out " + dir / "a" + run, "LMKIT_FAULT_RANK_DIE=1:5");
  EXPECT_NE(killed.run.code, 0);
  EXPECT_LT(killed.seconds, 30) << "the surviving rank hung";
  EXPECT_TRUE(fs::exists(dir / "a/checkpoints/step_00000004"));
  EXPECT_FALSE(fs::exists(dir / "a/checkpoints/step_00000006"));
  Timed resumed = mpirun(
      2, "train --pp 2 --pp-schedule seq1f1b --seq-chunks 2 --resume " + dir / "a" + " --quiet");
  ASSERT_EQ(resumed.run.code, 0) << resumed.run.err;
  expect_same_curve(metrics(dir / "a"), metrics(dir / "ref"), 0);
}

TEST(MpiTrain, LaunchMistakesAreClearErrors) {
  test::TempDir dir("mpi-usage");
  const std::string d = data_dir();
  test::expect_clean_error(lmkit("train --dp 2 --data " + d + " --out " + dir / "a" + kRun),
                           "--dp 2 needs 2 processes: launch with mpirun -np 2 lmkit train");
  Timed r = mpirun(2, "train --dp 3 --data " + d + " --out " + dir / "b" + kRun);
  EXPECT_NE(r.run.code, 0);
  EXPECT_NE(r.run.err.find("lmkit: error: rank 0: --dp 3 x --pp 1 = 3 ranks, but the job has 2 "
                           "(launch with mpirun -np 3)"),
            std::string::npos)
      << r.run.err;
  r = mpirun(2, "train --data " + d + " --out " + dir / "c" + kRun);  // forgot --dp
  EXPECT_NE(r.run.code, 0);
  EXPECT_NE(r.run.err.find("lmkit: error: rank 0: --dp 1 x --pp 1 = 1 ranks, but the job has 2 "
                           "(launch with mpirun -np 1)"),
            std::string::npos)
      << r.run.err;
  r = mpirun(2, "train --dp 2 --data " + d + " --out " + dir / "d" + kBase + " --micro-batches 1");
  EXPECT_NE(r.run.code, 0);
  EXPECT_NE(r.run.err.find("lmkit: error: --micro-batches 1 cannot feed 2 data-parallel ranks"),
            std::string::npos)
      << r.run.err;
  EXPECT_FALSE(fs::exists(dir / "d/metrics.jsonl"));
  // Pipeline mistakes.
  test::expect_clean_error(lmkit("train --pp 2 --data " + d + " --out " + dir / "e" + kPipe),
                           "--pp 2 needs 2 processes: launch with mpirun -np 2");
  test::expect_clean_error(
      lmkit("train --seq-chunks 2 --data " + d + " --out " + dir / "f" + kPipe),
      "--seq-chunks and --pp-layers shape a pipeline: give --pp 2 or more");
  test::expect_clean_error(
      lmkit("train --pp 2 --seq-chunks 2 --data " + d + " --out " + dir / "g" + kPipe),
      "--pp-schedule 1f1b runs whole micro-batches");
  test::expect_clean_error(
      lmkit("train --pp 2 --pp-schedule zigzag --data " + d + " --out " + dir / "h" + kPipe),
      "zigzag");
  test::expect_clean_error(lmkit("train --pp 2 --schedule gpipe --pp-schedule 1f1b --data " + d +
                                 " --out " + dir / "k" + kPipe),
                           "--schedule gpipe and --pp-schedule both name the pipeline schedule");
  r = mpirun(2, "train --pp 2 --pp-layers 3,2 --data " + d + " --out " + dir / "i" + kPipe);
  EXPECT_NE(r.run.code, 0);
  EXPECT_NE(r.run.err.find(": --pp-layers adds up to 5 layers; the model has 4"), std::string::npos)
      << r.run.err;
  r = mpirun(4, "train --pp 2 --data " + d + " --out " + dir / "j" + kPipe);  // 4 ranks, 2 stages
  EXPECT_NE(r.run.code, 0);
  EXPECT_NE(r.run.err.find("--dp 1 x --pp 2 = 2 ranks, but the job has 4"), std::string::npos)
      << r.run.err;
}

}  // namespace
}  // namespace lmkit
