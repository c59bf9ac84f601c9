// MPI tests at the library level, run as 2 ranks under mpirun (ctest: mpi_dp_library): the
// communicator (ranks, grid split, send/recv, all-reduce, broadcast, a timeout that names the
// operation) and data-parallel gradients: each rank runs its share of a step's micro-batches and
// after the bucketed all-reduce every parameter gradient and the loss equal one process
// accumulating all of them (relative error <= 1e-5), with buckets started during backward.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <thread>

#include "core/error.h"
#include "core/rng.h"
#include "parallel/comm.h"
#include "parallel/dp.h"
#include "parallel/mpi_test.h"
#include "train/init.h"
#include "train/trainer.h"

namespace lmkit {
namespace {

TEST(MpiComm, RanksSendRecvAllReduceBroadcast) {
  mpi::Comm &w = test::mpi_world();
  ASSERT_EQ(w.size(), 2) << "run under mpirun -np 2";
  const int me = w.rank(), other = 1 - me;
  // Point to point, both directions, a buffer larger than one eager message.
  std::vector<float> out(100003), in(out.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = float(me * 1000000 + int(i));
  if (me == 0) {
    w.send(out, other, 7);
    w.recv(in, other, 8);
  } else {
    w.recv(in, other, 7);
    w.send(out, other, 8);
  }
  for (size_t i = 0; i < in.size(); i += 997) ASSERT_EQ(in[i], float(other * 1000000 + int(i)));
  // All-reduce sums in place.
  std::vector<float> v = {1.0f + float(me), 2.5f, -float(me)};
  w.all_reduce_sum(v);
  EXPECT_EQ(v, (std::vector<float>{3.0f, 5.0f, -1.0f}));
  double d = 0.25 * (me + 1);
  w.all_reduce_sum(std::span<double>(&d, 1));
  EXPECT_EQ(d, 0.75);
  // Broadcast a string from either root.
  EXPECT_EQ(w.broadcast(me == 1 ? "from one" : "ignored", 1), "from one");
  EXPECT_EQ(w.broadcast(me == 0 ? std::string(5000, 'x') : "", 0), std::string(5000, 'x'));
  EXPECT_EQ(w.broadcast("", 0), "");
  w.barrier();
}

TEST(MpiComm, GridSplitsDataAndPipelineGroups) {
  mpi::Comm &w = test::mpi_world();
  // dp 2 x pp 1: both ranks in one data-parallel group, each its own pipeline.
  mpi::Grid g = mpi::make_grid(w, 2, 1);
  EXPECT_EQ(g.dp.size(), 2);
  EXPECT_EQ(g.dp.rank(), w.rank());
  EXPECT_EQ(g.pp.size(), 1);
  EXPECT_EQ(g.stage, 0);
  // dp 1 x pp 2: one pipeline of two stages.
  mpi::Grid h = mpi::make_grid(w, 1, 2);
  EXPECT_EQ(h.pp.size(), 2);
  EXPECT_EQ(h.stage, w.rank());
  EXPECT_EQ(h.dp.size(), 1);
  std::vector<float> x = {float(w.rank())};
  h.pp.all_reduce_sum(x);
  EXPECT_EQ(x[0], 1.0f);
  // A grid that does not match the job is a clear error.
  try {
    mpi::make_grid(w, 4, 1);
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(),
                 "--dp 4 x --pp 1 = 4 ranks, but the job has 2 (launch with mpirun -np 4)");
  }
}

TEST(MpiComm, AWaitWithoutAnAnswerTimesOutWithAClearError) {
  mpi::Comm &w = test::mpi_world();
  static std::vector<float> late(4);  // the abandoned receive completes into this later
  if (w.rank() == 0) {
    w.set_timeout(0.3);
    try {
      w.recv(late, 1, 99);
      ADD_FAILURE() << "no timeout";
    } catch (const Error &e) {
      EXPECT_STREQ(e.what(),
                   "receive got no answer from the other ranks in 0.3 s (a rank died or "
                   "hangs)");
    }
    w.set_timeout(60);
  }
  w.barrier();
  if (w.rank() == 1) w.send(std::vector<float>(4, 1.0f), 0, 99);
  w.barrier();
}

// ---- data parallel ---------------------------------------------------------------------------

struct Fixture {
  std::unique_ptr<Model> model;
  std::vector<int32_t> tokens, targets;
  int64_t M, B, T;
  Fixture(int64_t m, int64_t b, int64_t t, const std::string &family = "llama") : M(m), B(b), T(t) {
    TrainConfig tc;  // the "tiny" preset
    tc.family = family;
    if (family == "gpt2") tc.n_head_kv = tc.n_head;
    tc.n_layer = 3;
    ModelConfig mc = train_model_config(tc, 97, 0, 0);
    model = std::make_unique<Model>(mc, weights_init(mc, 5));
    Rng rng(11);
    tokens.resize(size_t(M * B * T));
    targets.resize(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = int32_t(rng.next_u64() % 97);
      targets[i] = int32_t(rng.next_u64() % 97);
    }
  }
  std::vector<MicroBatchView> micro(int64_t first, int64_t last) const {
    std::vector<MicroBatchView> v;
    for (int64_t a = first; a < last; ++a)
      v.push_back({std::span<const int32_t>(tokens).subspan(size_t(a * B * T), size_t(B * T)),
                   std::span<const int32_t>(targets).subspan(size_t(a * B * T), size_t(B * T)), B,
                   T});
    return v;
  }
};

double rel_l2(const Tensor &a, const Tensor &ref) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double d = double(a.f32()[i]) - double(ref.f32()[i]);
    num += d * d;
    den += double(ref.f32()[i]) * double(ref.f32()[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// One step on both paths; every gradient and the loss must agree.
void expect_same_step(const Fixture &f, DataParallelOptions o, int64_t want_in_backward) {
  ThreadPool pool(1);
  Arena arena;
  RopeTable rope(*f.model, f.T);
  // One process, every micro-batch.
  ag::GradStore ref_grads;
  std::vector<ParamRef> ref_params = trainable_params(*f.model, ref_grads);
  const auto all = f.micro(0, f.M);
  const double ref_loss = accumulate_gradients(*f.model, ref_grads, all, pool, arena, rope);
  // This rank's share, then the sum over the ranks.
  DataParallel dp(test::mpi_world(), o);
  ag::GradStore grads;
  std::vector<ParamRef> params = trainable_params(*f.model, grads);
  const auto [first, last] = dp.share(f.M);
  AccumulateOptions acc;
  acc.n_targets = f.M * f.B * f.T;
  acc.last_hooks = [&](ag::Context &ctx) { return dp.watch_backward(ctx, params); };
  const double local =
      accumulate_gradients(*f.model, grads, f.micro(first, last), pool, arena, rope, acc);
  const double loss = dp.reduce(params, local);
  EXPECT_LE(std::abs(loss - ref_loss), 1e-5 * std::abs(ref_loss)) << loss << " vs " << ref_loss;
  ASSERT_EQ(params.size(), ref_params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    ASSERT_EQ(params[i].name, ref_params[i].name);
    EXPECT_LE(rel_l2(params[i].grad, ref_params[i].grad), 1e-5) << params[i].name;
    double ref_norm = 0;
    for (int64_t j = 0; j < params[i].grad.numel(); ++j)
      ref_norm += std::abs(ref_params[i].grad.f32()[j]);
    EXPECT_GT(ref_norm, 0) << params[i].name << ": a gradient of zeros proves nothing";
  }
  EXPECT_EQ(dp.last_stats().buckets_in_backward, want_in_backward);
  EXPECT_EQ(dp.last_stats().buckets_in_backward + dp.last_stats().buckets_after, dp.n_buckets());
  // Every rank holds the same sums, bit for bit (the optimizer then keeps them in step).
  std::vector<float> mine;
  for (const ParamRef &p : params)
    mine.insert(mine.end(), p.grad.f32(), p.grad.f32() + p.grad.numel());
  std::vector<float> theirs = mine;
  test::mpi_world()
      .broadcast(std::string(reinterpret_cast<const char *>(mine.data()), mine.size() * 4), 0)
      .copy(reinterpret_cast<char *>(theirs.data()), mine.size() * 4);
  EXPECT_EQ(std::memcmp(mine.data(), theirs.data(), mine.size() * 4), 0);
}

TEST(MpiDataParallel, GradientsEqualOneProcessWithOverlappedBuckets) {
  Fixture f(4, 2, 16);
  DataParallelOptions o;
  o.bucket_bytes = 1;  // a bucket per layer: 3 start during backward, the tail after it
  expect_same_step(f, o, 3);
}

TEST(MpiDataParallel, GradientsEqualOneProcessUnevenShareGpt2) {
  Fixture f(3, 2, 12, "gpt2");  // rank 0 runs 1 micro-batch, rank 1 runs 2
  DataParallelOptions o;
  o.bucket_bytes = 300000;  // layers 2+1 (about 316 KB), then layer 0
  expect_same_step(f, o, 2);
}

TEST(MpiDataParallel, GradientsEqualOneProcessWithoutOverlap) {
  Fixture f(2, 3, 16);
  DataParallelOptions o;
  o.overlap = false;
  expect_same_step(f, o, 0);
}

TEST(MpiDataParallel, SharesAndAgreement) {
  DataParallel dp(test::mpi_world());
  const int r = test::mpi_world().rank();
  using Range = std::pair<int64_t, int64_t>;
  EXPECT_EQ(dp.share(4), r == 0 ? Range(0, 2) : Range(2, 4));
  EXPECT_EQ(dp.share(5), r == 0 ? Range(0, 2) : Range(2, 5));
  EXPECT_EQ(dp.writer(), r == 0);
  EXPECT_TRUE(dp.any(r == 1));
  EXPECT_FALSE(dp.any(false));
  EXPECT_EQ(dp.from_writer(r == 0 ? "ckpt/step_4" : "other"), "ckpt/step_4");
  try {
    dp.share(1);
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(),
                 "--micro-batches 1 cannot feed 2 data-parallel ranks (each needs at "
                 "least one micro-batch per step)");
  }
}

}  // namespace
}  // namespace lmkit
