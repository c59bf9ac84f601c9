// Tests of the pipeline simulator: its bubble matches the closed forms when its costs are even,
// its memory accounting is peak in-flight chunks x bytes per chunk, its transfer, all-reduce and
// FLOP numbers are the stated formulas, and it projects Seq1F1B's win in the paper's setting.
#include <gtest/gtest.h>

#include "core/error.h"
#include "parallel/simulate.h"

namespace lmkit::parallel {
namespace {

// Free communication, so only the schedule shapes the bubble.
SimConfig base(const std::string &model, int64_t seq, int pp, int m, ScheduleKind kind, int k) {
  SimConfig c;
  c.model = model_shape_named(model);
  c.seq_len = seq;
  c.pp = pp;
  c.n_micro = m;
  c.schedule = kind;
  c.seq_chunks = k;
  c.link_bw = 1e30;
  return c;
}

TEST(Simulate, BubbleMatchesTheClosedFormsFor1F1BAndGPipe) {
  for (ScheduleKind kind : {ScheduleKind::OneFOneB, ScheduleKind::GPipe})
    for (int p : {1, 2, 4, 8})
      for (int m = 1; m <= 8; ++m) {
        const SimResult r = simulate(base("2.7b", 4096, p, m, kind, 1));
        EXPECT_NEAR(r.bubble_fraction, double(p - 1) / (m + p - 1), 1e-12)
            << schedule_kind_name(kind) << " p " << p << " m " << m;
        EXPECT_DOUBLE_EQ(r.bubble_closed_form, double(p - 1) / (m + p - 1));
        EXPECT_DOUBLE_EQ(r.step_time_s, r.pipeline_time_s);  // dp = 1: no all-reduce
      }
}

TEST(Simulate, Seq1F1BBubbleMatchesTheClosedFormWhenChunksCostTheSame) {
  // Short sequences on a wide model: attention is < 0.2% of a chunk's FLOPs, so even chunks cost
  // (almost) the same and the bubble is (p-1)/(m k+p-1).
  for (int p : {1, 2, 4, 8})
    for (int m : {1, 2, 5, 8})
      for (int k : {1, 2, 4, 8}) {
        SimConfig c = base("30b", 64, p, m, ScheduleKind::Seq1F1B, k);
        c.split = SeqSplit::Even;
        const SimResult r = simulate(c);
        EXPECT_NEAR(r.bubble_fraction, bubble_closed_form(p, m, k), 2e-3)
            << "p " << p << " m " << m << " k " << k;
      }
}

TEST(Simulate, ComputeSplitRemovesTheExtraBubbleOfTheEvenSplit) {
  // At 64k tokens attention dominates: an even split makes later chunks costlier and leaves
  // bubbles beyond the closed form; the computation-wise split comes back to it.
  for (int k : {2, 4, 8}) {
    SimConfig c = base("30b", 65536, 8, 16, ScheduleKind::Seq1F1B, k);
    c.tp = 8;
    c.split = SeqSplit::Even;
    const SimResult even = simulate(c);
    c.split = SeqSplit::Compute;
    const SimResult comp = simulate(c);
    const double closed = bubble_closed_form(8, 16, k);
    EXPECT_GT(even.bubble_fraction, closed + 0.01) << k;
    EXPECT_NEAR(comp.bubble_fraction, closed, 2e-3) << k;
    EXPECT_LT(comp.step_time_s, even.step_time_s) << k;
  }
}

TEST(Simulate, PeakMemoryIsPeakInFlightTimesChunkBytes) {
  // 1F1B and GPipe: every chunk is a whole micro-batch of 34 b s d / tp bytes per layer.
  for (ScheduleKind kind : {ScheduleKind::OneFOneB, ScheduleKind::GPipe})
    for (int p : {1, 2, 4, 8})
      for (int m : {1, 3, 8}) {
        SimConfig c = base("7b", 8192, p, m, kind, 1);
        c.micro_batch_size = 2;
        c.tp = 2;
        const SimResult r = simulate(c);
        const double chunk = double(32 / p) * 34 * 2 * 8192 * 4096 / 2;
        ASSERT_EQ(r.chunk_activation_bytes.size(), 1u);
        EXPECT_DOUBLE_EQ(r.chunk_activation_bytes[0], chunk);
        for (int s = 0; s < p; ++s) {
          const int inflight = kind == ScheduleKind::GPipe ? m : std::min(p - s, m);
          EXPECT_EQ(r.peak_inflight_chunks[size_t(s)], inflight);
          EXPECT_DOUBLE_EQ(r.peak_activation_bytes[size_t(s)], inflight * chunk) << p << " " << m;
        }
      }
  // Seq1F1B, even chunks: (34 + 4 for the prefix K/V copy) b L d per layer and chunk, times the
  // peak in-flight chunks; the dK/dV accumulator adds at most 4 b s d per layer on top.
  for (int p : {1, 2, 4, 8})
    for (int m : {1, 3, 8})
      for (int k : {2, 4, 8}) {
        SimConfig c = base("7b", 8192, p, m, ScheduleKind::Seq1F1B, k);
        c.split = SeqSplit::Even;
        c.kv_grad_buffer = false;
        const SimResult r = simulate(c);
        const double layers = 32.0 / p;
        const double chunk = layers * 38 * (8192 / k) * 4096.0;
        for (double b : r.chunk_activation_bytes) EXPECT_DOUBLE_EQ(b, chunk);
        c.kv_grad_buffer = true;
        const SimResult with = simulate(c);
        for (int s = 0; s < p; ++s) {
          const int inflight = std::min(p - s + k - 1, m * k);
          EXPECT_EQ(r.peak_inflight_chunks[size_t(s)], inflight);
          EXPECT_DOUBLE_EQ(r.peak_activation_bytes[size_t(s)], inflight * chunk);
          EXPECT_GT(with.peak_activation_bytes[size_t(s)], inflight * chunk);
          EXPECT_LE(with.peak_activation_bytes[size_t(s)],
                    inflight * chunk + layers * 4 * 8192 * 4096.0);
        }
      }
  // In fp32 the K/V copy and the accumulator take twice the bytes.
  {
    SimConfig c = base("7b", 8192, 4, 8, ScheduleKind::Seq1F1B, 4);
    c.split = SeqSplit::Even;
    c.kv_grad_buffer = false;
    c.value_bytes = 4;
    const SimResult r = simulate(c);
    const double chunk = 8 * (34 + 8) * 2048 * 4096.0;
    for (double b : r.chunk_activation_bytes) EXPECT_DOUBLE_EQ(b, chunk);
    EXPECT_DOUBLE_EQ(r.peak_activation_bytes[0], 7 * chunk);
    c.value_bytes = 3;
    EXPECT_THROW(simulate(c), Error);
  }
  // Computation-wise chunks differ in size: the peak lies between the in-flight count times the
  // smallest and the largest chunk.
  SimConfig c = base("7b", 32768, 4, 8, ScheduleKind::Seq1F1B, 4);
  c.kv_grad_buffer = false;
  const SimResult r = simulate(c);
  const auto [lo, hi] =
      std::minmax_element(r.chunk_activation_bytes.begin(), r.chunk_activation_bytes.end());
  EXPECT_LT(*lo, *hi);
  for (int s = 0; s < 4; ++s) {
    EXPECT_GE(r.peak_activation_bytes[size_t(s)], r.peak_inflight_chunks[size_t(s)] * *lo);
    EXPECT_LE(r.peak_activation_bytes[size_t(s)], r.peak_inflight_chunks[size_t(s)] * *hi);
  }
}

TEST(Simulate, AttentionScoresWithoutFlashAttention) {
  // Megatron's 5 a s^2 b term per layer for a whole sequence (k = 1).
  SimConfig c = base("1.3b", 2048, 1, 1, ScheduleKind::OneFOneB, 1);
  c.flash_attention = false;
  const SimResult r = simulate(c);
  const double s = 2048, h = 2048, a = 16;
  EXPECT_DOUBLE_EQ(r.peak_activation_bytes[0], 24 * (34 * s * h + 5 * a * s * s));
}

TEST(Simulate, CostsFollowTheStatedFormulas) {
  // One stage, one micro-batch: time = 3 x forward FLOPs / (device FLOP/s x efficiency).
  SimConfig c = base("1.3b", 2048, 1, 1, ScheduleKind::OneFOneB, 1);
  c.device_flops = 100e12;
  c.efficiency = 0.5;
  SimResult r = simulate(c);
  const double fwd = 24 * layer_fwd_flops(c.model, 0, 2048);
  EXPECT_DOUBLE_EQ(r.step_time_s, 3 * fwd / 50e12);
  EXPECT_DOUBLE_EQ(r.model_flops_per_step, 3 * fwd);
  EXPECT_NEAR(r.mfu, 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(r.tokens_per_s, 2048 / r.step_time_s);

  // Two stages, one micro-batch: F0, transfer, F1, B1, transfer, B0 with transfers of
  // b s d 2 bytes over the link plus its latency.
  c.pp = 2;
  c.link_bw = 1e9;
  c.link_latency = 1e-3;
  r = simulate(c);
  const double half = 12 * layer_fwd_flops(c.model, 0, 2048) / 50e12;
  const double xfer = 2048.0 * 2048 * 2 / 1e9 + 1e-3;
  EXPECT_NEAR(r.pipeline_time_s, 6 * half + 2 * xfer, 1e-12);

  // Data parallel: each stage's ring all-reduce of fp32 gradients after its last backward.
  c.dp = 4;
  c.dp_bw = 2e9;
  r = simulate(c);
  const double grads = 12 * c.model.params_per_layer() * 4;
  const double ar = 2 * 3.0 / 4 * grads / 2e9 + 2 * 3 * 1e-3;
  EXPECT_NEAR(r.dp_allreduce_s, ar, 1e-12);
  // Stage 0 finishes last (its backward comes after stage 1's).
  EXPECT_NEAR(r.step_time_s, r.pipeline_time_s + ar, 1e-12);
  EXPECT_DOUBLE_EQ(r.tokens_per_step, 4 * 2048);
  // Model state: bf16 weights, fp32 gradients, fp32 master weights and Adam moments over dp.
  EXPECT_DOUBLE_EQ(r.model_state_bytes[0], 12 * c.model.params_per_layer() * (2 + 4 + 12 / 4.0));
}

TEST(Simulate, ProjectsTheSeq1F1BPaperSetting) {
  // 30B, 64k tokens, 64 A100s as TP 8 x PP 8 (the authors' script), 16 micro-batches of one
  // sequence. Seq1F1B with 4 computation-wise chunks beats 1F1B on time and needs well under
  // half its activation memory; 1F1B's first stage would not fit in 80 GB.
  SimConfig c = base("30b", 65536, 8, 16, ScheduleKind::OneFOneB, 1);
  c.tp = 8;
  c.link_bw = 25e9;
  c.device_flops = 312e12;
  c.efficiency = 0.5;
  const SimResult one = simulate(c);
  c.schedule = ScheduleKind::Seq1F1B;
  c.seq_chunks = 4;
  const SimResult seq = simulate(c);
  const double speedup = one.step_time_s / seq.step_time_s;
  EXPECT_GT(speedup, 1.1);
  EXPECT_LT(speedup, 1.35);
  EXPECT_LT(seq.peak_activation_bytes[0] / one.peak_activation_bytes[0], 0.5);
  EXPECT_GT(one.peak_activation_bytes[0] + one.model_state_bytes[0], 80e9);
  EXPECT_LT(seq.peak_activation_bytes[0] + seq.model_state_bytes[0], 80e9);
  EXPECT_EQ(one.peak_inflight_chunks[0], 8);
  EXPECT_EQ(seq.peak_inflight_chunks[0], 11);
}

TEST(Simulate, RejectsBadSettings) {
  auto expect_error = [](SimConfig c, const std::string &needle) {
    try {
      simulate(c);
      ADD_FAILURE() << "no error, expected: " << needle;
    } catch (const Error &e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const SimConfig ok = base("30b", 4096, 8, 8, ScheduleKind::Seq1F1B, 4);
  EXPECT_NO_THROW(simulate(ok));
  SimConfig c = ok;
  c.pp = 6;
  expect_error(c, "64 layers do not split evenly over 6 pipeline stages");
  c = ok;
  c.schedule = ScheduleKind::OneFOneB;
  expect_error(c, "1F1B over sequence chunks is --schedule seq1f1b");
  c = ok;
  c.seq_len = 3;
  expect_error(c, "cannot split 3 tokens into 4 chunks");
  c = ok;
  c.tp = 3;
  expect_error(c, "64 heads do not split evenly");
  c = ok;
  c.efficiency = 1.5;
  expect_error(c, "--efficiency must be in (0, 1]");
  c = ok;
  c.link_bw = 0;
  expect_error(c, "--link-bw must be positive");
  c = ok;
  c.n_micro = 0;
  expect_error(c, "--micro-batches");
}

}  // namespace
}  // namespace lmkit::parallel
