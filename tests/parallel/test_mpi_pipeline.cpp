// The pipeline executor over MPI, run as 4 ranks under mpirun (ctest: mpi_pipeline_library): a
// stack of residual MLP blocks built from the autograd ops (embedding on the first stage,
// classifier + cross-entropy on the last) is split into contiguous stages, and GPipe, 1F1B and
// Seq1F1B (k = 2, 3: row chunks, which an MLP treats independently) played by run_stage give the
// loss and every parameter gradient of one process running the whole model (relative error
// <= 1e-5), for pp = 4 and for a dp 2 x pp 2 grid; each stage reports its peak in-flight chunks
// (the schedule's count) and activation memory, and busy + idle = wall time.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>

#include "autograd/ops.h"
#include "core/error.h"
#include "core/rng.h"
#include "parallel/comm.h"
#include "parallel/mpi_test.h"
#include "parallel/pipeline.h"

namespace lmkit::parallel {
namespace {

constexpr int64_t kD = 16, kH = 24, kV = 11, kLayers = 4, kRows = 12, kMicro = 4;

Tensor random_tensor(Rng &rng, Shape shape, float scale) {
  Tensor t = Tensor::zeros(DType::F32, shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = scale * (2 * rng.uniform() - 1);
  return t;
}

// The whole model's weights (every rank builds the same ones) and data.
struct Net {
  Tensor emb;
  std::vector<Linear> w1, w2;
  Linear cls;
  std::vector<int32_t> tokens, targets;  // (kMicro * kRows)
  Net() {
    Rng rng(3);
    emb = random_tensor(rng, {kV, kD}, 0.5f);
    for (int64_t l = 0; l < kLayers; ++l) {
      w1.push_back({random_tensor(rng, {kH, kD}, 0.3f), random_tensor(rng, {kH}, 0.1f)});
      w2.push_back({random_tensor(rng, {kD, kH}, 0.3f), Tensor()});
    }
    cls = {random_tensor(rng, {kV, kD}, 0.3f), Tensor()};
    for (int64_t i = 0; i < kMicro * kRows; ++i) {
      tokens.push_back(int32_t(rng.next_u64() % kV));
      targets.push_back(int32_t(rng.next_u64() % kV));
    }
  }
  // Registers the parameters of layers [l0, l1) (+ embedding, + classifier) in g.
  void add_params(ag::GradStore &g, int64_t l0, int64_t l1, bool first, bool last) const {
    if (first) g.add(emb);
    for (int64_t l = l0; l < l1; ++l) {
      g.add(w1[size_t(l)].w);
      g.add(w1[size_t(l)].b);
      g.add(w2[size_t(l)].w);
    }
    if (last) g.add(cls.w);
  }
  ag::Var blocks(ag::Context &c, ag::Var x, int64_t l0, int64_t l1) const {
    for (int64_t l = l0; l < l1; ++l) {
      ag::Var h = ag::gelu(c, ag::linear(c, x, w1[size_t(l)]), false);
      x = ag::residual(c, x, ag::linear(c, h, w2[size_t(l)]));
    }
    return x;
  }
};

float grad_scale() {
  return float(1.0 / double(kMicro * kRows));
}

// Layers [l0, l1) of Net as a pipeline stage; a chunk is a contiguous share of a micro-batch's
// rows.
class MlpStage final : public PipelineStage {
 public:
  MlpStage(const Net &net, ag::GradStore &g, int stage, int n_stage, int k)
      : net_(net), g_(g), first_(stage == 0), last_(stage == n_stage - 1), k_(k) {
    l0_ = kLayers * stage / n_stage;
    l1_ = kLayers * (stage + 1) / n_stage;
  }
  int64_t rows(int c) const { return row0(c + 1) - row0(c); }
  int64_t row0(int c) const { return kRows * c / k_; }
  int64_t boundary_floats(int, int c) const override { return rows(c) * kD; }

  void forward(int mb, int c, std::span<const float> in, std::span<float> out) override {
    Unit &u = units_[{mb, c}];
    u.arena = std::make_unique<Arena>(size_t(1) << 20);
    u.ctx = std::make_unique<ag::Context>(pool_, *u.arena, true, &g_);
    ag::Context &ctx = *u.ctx;
    const int64_t n = rows(c), at = mb * kRows + row0(c);
    if (first_) {
      u.x = ag::embedding(ctx, net_.emb, net_.tokens.data() + at, n);
    } else {
      u.x = ctx.new_var(n, kD);
      std::memcpy(u.x.data, in.data(), in.size_bytes());
    }
    u.y = net_.blocks(ctx, u.x, l0_, l1_);
    if (last_)
      loss += ag::cross_entropy(ctx, u.y, net_.cls, net_.targets.data() + at, grad_scale()).sum;
    else
      std::memcpy(out.data(), u.y.data, out.size_bytes());
  }
  void backward(int mb, int c, std::span<const float> dout, std::span<float> din) override {
    auto it = units_.find({mb, c});
    ASSERT_NE(it, units_.end());
    Unit &u = it->second;
    if (!last_) std::memcpy(u.ctx->grad(u.y), dout.data(), dout.size_bytes());
    // The residual stream shares one gradient buffer: after backward it holds dL/d(input).
    float *gx = first_ ? nullptr : u.ctx->grad(u.x);
    u.ctx->backward();
    if (gx) std::memcpy(din.data(), gx, din.size_bytes());
    units_.erase(it);
  }
  size_t activation_bytes() const override {
    size_t b = 0;
    for (const auto &[key, u] : units_) b += u.arena->used();
    return b;
  }
  double loss = 0;

 private:
  struct Unit {
    std::unique_ptr<Arena> arena;
    std::unique_ptr<ag::Context> ctx;
    ag::Var x, y;
  };
  const Net &net_;
  ag::GradStore &g_;
  bool first_, last_;
  int k_;
  int64_t l0_ = 0, l1_ = 0;
  ThreadPool pool_{1};
  std::map<std::pair<int, int>, Unit> units_;
};

double rel_l2(const float *a, const float *ref, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    num += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

void check(ScheduleKind kind, int dp, int pp, int k) {
  SCOPED_TRACE(testing::Message() << schedule_kind_name(kind) << " dp " << dp << " pp " << pp
                                  << " k " << k);
  const Net net;
  // One process, the whole model.
  ag::GradStore ref;
  net.add_params(ref, 0, kLayers, true, true);
  double ref_loss = 0;
  {
    ThreadPool pool(1);
    for (int64_t mb = 0; mb < kMicro; ++mb) {
      Arena arena;
      ag::Context c(pool, arena, true, &ref);
      ag::Var x = ag::embedding(c, net.emb, net.tokens.data() + mb * kRows, kRows);
      x = net.blocks(c, x, 0, kLayers);
      ref_loss +=
          ag::cross_entropy(c, x, net.cls, net.targets.data() + mb * kRows, grad_scale()).sum;
      c.backward();
    }
  }
  // The pipeline.
  mpi::Grid grid = mpi::make_grid(test::mpi_world(), dp, pp);
  const Schedule s = schedule_make(kind, pp, int(kMicro), k);
  ag::GradStore g;
  const int64_t l0 = kLayers * grid.stage / pp, l1 = kLayers * (grid.stage + 1) / pp;
  net.add_params(g, l0, l1, grid.stage == 0, grid.stage == pp - 1);
  MlpStage stage(net, g, grid.stage, pp, k);
  const StageReport r = run_stage(s, grid.pp, stage);

  for (const auto &[param, grad] : g.all()) {
    const float *want = ref.find(param);
    ASSERT_NE(want, nullptr);
    EXPECT_LE(rel_l2(grad.f32(), want, grad.numel()), 1e-5) << "stage " << grid.stage;
    double mass = 0;
    for (int64_t i = 0; i < grad.numel(); ++i) mass += std::abs(want[i]);
    EXPECT_GT(mass, 0) << "a gradient of zeros proves nothing";
  }
  if (grid.stage == pp - 1) {
    EXPECT_NEAR(stage.loss, ref_loss, 1e-5 * std::abs(ref_loss));
  }
  // Reports: the schedule's in-flight count, memory that grows with it, consistent times.
  EXPECT_EQ(r.peak_inflight, schedule_peak_inflight(s)[size_t(grid.stage)]);
  EXPECT_GT(r.peak_activation_bytes, 0u);
  EXPECT_GT(r.busy_s, 0);
  EXPECT_NEAR(r.busy_s + r.idle_s, r.wall_s, 1e-9);
  EXPECT_EQ(stage.activation_bytes(), 0u) << "every chunk's activations are released";
}

TEST(MpiPipeline, GPipeAnd1F1BEqualOneProcess) {
  ASSERT_EQ(test::mpi_world().size(), 4) << "run under mpirun -np 4";
  check(ScheduleKind::GPipe, 1, 4, 1);
  check(ScheduleKind::OneFOneB, 1, 4, 1);
  check(ScheduleKind::GPipe, 2, 2, 1);
  check(ScheduleKind::OneFOneB, 2, 2, 1);
}

TEST(MpiPipeline, Seq1F1BOverRowChunksEqualsOneProcess) {
  check(ScheduleKind::Seq1F1B, 1, 4, 2);
  check(ScheduleKind::Seq1F1B, 1, 4, 3);
  check(ScheduleKind::Seq1F1B, 2, 2, 2);
}

TEST(MpiPipeline, PeakMemoryFollowsTheSchedule) {
  // GPipe keeps every micro-batch on stage 0; 1F1B at most pp of them.
  const Net net;
  mpi::Grid grid = mpi::make_grid(test::mpi_world(), 1, 4);
  size_t peak[2];
  int i = 0;
  for (ScheduleKind kind : {ScheduleKind::GPipe, ScheduleKind::OneFOneB}) {
    ag::GradStore g;
    net.add_params(g, grid.stage, grid.stage + 1, grid.stage == 0, grid.stage == 3);
    MlpStage st(net, g, grid.stage, 4, 1);
    peak[i++] =
        run_stage(schedule_make(kind, 4, int(kMicro), 1), grid.pp, st).peak_activation_bytes;
  }
  // kMicro = 4 = pp: stage 0 holds all 4 either way; the last stage holds 4 vs 1.
  if (grid.stage == 3) {
    EXPECT_EQ(peak[0], 4 * peak[1]);
  }
  if (grid.stage == 0) {
    EXPECT_EQ(peak[0], peak[1]);
  }
}

}  // namespace
}  // namespace lmkit::parallel
