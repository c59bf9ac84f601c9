// Pipeline-parallel training of the lmkit decoder over MPI: the StepSync behind
// `mpirun -np D*P lmkit train --dp D --pp P --pp-schedule S --seq-chunks K`. Each rank is one stage
// (a contiguous range of layers; the embedding on the first stage, the final norm, classifier and
// loss on the last) of one data-parallel replica. A step's micro-batches are shared over the
// replicas as in dp.h; within a replica the stages play a schedule (schedule.h) with the executor
// (pipeline.h), each micro-batch cut along the sequence into K chunks (Seq1F1B) whose keys and
// values are kept per micro-batch and layer for the later chunks, with their gradients flowing
// back as the chunks run backward, last chunk first. Every rank keeps the whole model and its
// optimizer state: after the pipeline, the gradients (each stage's own layers, zeros elsewhere)
// are summed over every rank, so every rank steps the same weights. What is split is the compute
// and the activation memory, not the weights. Not the executor (pipeline.h), not the schedules.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "autograd/ops.h"
#include "parallel/comm.h"
#include "parallel/dp.h"
#include "parallel/partition.h"
#include "parallel/pipeline.h"
#include "parallel/schedule.h"
#include "train/trainer.h"

namespace lmkit::parallel {

// Layers [first, last) of stage s: `layers` given per stage (empty: as even as possible, the
// earlier stages one layer larger when they do not divide). Throws for a bad split.
std::pair<int64_t, int64_t> stage_layers(int64_t n_layer, int n_stage, int stage,
                                         const std::vector<int64_t> &layers = {});

// The decoder as the partition's FLOP model sees it: a gated MLP's three matrices of width f count
// as the model's two of width 3f/2; grouped K/V heads are counted as full heads (an upper bound).
ModelShape model_shape_of(const ModelConfig &c);

// One stage of the lmkit decoder for the executor: the micro-batches of one step (B sequences of
// T tokens each), each cut into chunks of the given lengths.
class DecoderStage final : public PipelineStage {
 public:
  struct Setup {
    const Model *model = nullptr;
    ag::GradStore *grads = nullptr;
    ThreadPool *pool = nullptr;
    const RopeTable *rope = nullptr;        // covers T positions
    std::span<const MicroBatchView> micro;  // this replica's micro-batches of the step
    std::vector<int64_t> chunks;            // chunk lengths, summing to T
    int64_t first = 0, last = 0;            // this stage's layers
    int64_t n_targets = 0;                  // the loss is a mean over this many targets
    // Arenas to reuse, per chunk index (null: a new one per chunk). The caller keeps them across
    // steps: fresh memory costs a page fault per page, every step. Chunk c's arena serves only
    // chunk c of later micro-batches, whose allocations are the same sizes in the same order, so a
    // reused arena never skips a block that is too small and grows no further.
    std::vector<std::vector<std::unique_ptr<Arena>>> *spare = nullptr;
  };
  explicit DecoderStage(Setup s);

  int64_t boundary_floats(int mb, int chunk) const override;
  void forward(int mb, int chunk, std::span<const float> in, std::span<float> out) override;
  void backward(int mb, int chunk, std::span<const float> dout, std::span<float> din) override;
  size_t activation_bytes() const override;

  double loss_sum() const { return loss_; }  // summed losses x 1/n_targets (last stage)

 private:
  struct Unit {  // a chunk between its forward and its backward
    std::unique_ptr<Arena> arena;
    std::unique_ptr<ag::Context> ctx;
    std::vector<int32_t> tokens, targets, pos;
    std::vector<SeqRows> seqs;
    ag::Var in, out;
  };
  // Anonymous zero pages (mmap): they take memory only once written.
  struct ZeroPages {
    explicit ZeroPages(size_t n_floats);
    ~ZeroPages();
    ZeroPages(const ZeroPages &) = delete;
    ZeroPages &operator=(const ZeroPages &) = delete;
    float *data = nullptr;
    size_t bytes = 0;
  };
  // A micro-batch's K/V per layer and sequence, and their gradients. The gradients are written
  // only from the micro-batch's first backward on, so only then do they count (and take pages).
  struct Keep {
    std::vector<float> kv;
    std::unique_ptr<ZeroPages> grad;
    bool backward_started = false;
    std::vector<ag::KVStore> stores;
  };
  bool first_stage() const { return s_.first == 0; }
  bool last_stage() const { return s_.last == s_.model->config().n_layer; }

  Setup s_;
  std::vector<int64_t> starts_;
  std::map<std::pair<int, int>, Unit> units_;
  std::map<int, Keep> keep_;
  double loss_ = 0;
};

struct PipelineOptions {
  int pp = 1;  // stages per data-parallel replica
  ScheduleKind schedule = ScheduleKind::OneFOneB;
  int seq_chunks = 1;
  SeqSplit split = SeqSplit::Even;
  std::vector<int64_t> layers;  // per stage (empty: even)
};

// What a stage did over a run: summed over steps, the peaks over steps.
struct StageTotals {
  int64_t steps = 0;
  double wall_s = 0, busy_s = 0, idle_s = 0;
  double first_wall_s = 0;  // the first step's (it also grows the buffers)
  size_t peak_activation_bytes = 0;
  int peak_inflight = 0;
};

// The StepSync of a dp x pp grid of ranks (dp x pp = the world's size).
class PipelineParallel final : public StepSync {
 public:
  PipelineParallel(mpi::Comm &world, mpi::Grid &grid, PipelineOptions o,
                   DataParallelOptions dpo = {});

  bool writer() const override { return sum_.writer(); }
  std::pair<int64_t, int64_t> share(int64_t n) const override;
  const Hooks *watch_backward(ag::Context &, std::span<const ParamRef>) override { return nullptr; }
  double forward_backward(const Model &m, ag::GradStore &grads,
                          std::span<const MicroBatchView> micro, ThreadPool &pool, Arena &arena,
                          const RopeTable &rope, const AccumulateOptions &o) override;
  double reduce(std::span<const ParamRef> params, double loss) override;
  bool any(bool flag) override { return sum_.any(flag); }
  std::string from_writer(const std::string &s) override { return sum_.from_writer(s); }

  const StageTotals &totals() const { return totals_; }
  const std::vector<int64_t> &chunk_lengths() const { return chunks_; }
  // Every rank's totals, in rank order (collective: every rank must call it).
  std::vector<StageTotals> gather_totals();
  const mpi::Grid &grid() const { return grid_; }

 private:
  mpi::Comm &world_;
  mpi::Grid &grid_;
  PipelineOptions o_;
  DataParallel sum_;  // gradients and loss summed over every rank
  Schedule schedule_;
  std::vector<int64_t> chunks_;
  std::vector<std::vector<std::unique_ptr<Arena>>> arenas_;  // per chunk index, kept across steps
  StageTotals totals_;
};

// A table of the stages' totals (Markdown), and the same as JSON.
std::string stage_totals_table(const std::vector<StageTotals> &t, const mpi::Grid &g);
std::string stage_totals_json(const std::vector<StageTotals> &t, const mpi::Grid &g,
                              const PipelineOptions &o, const std::vector<int64_t> &chunks);

}  // namespace lmkit::parallel
