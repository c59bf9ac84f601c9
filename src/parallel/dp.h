// Data parallelism over MPI: the StepSync that lets several processes share each optimizer step
// of train() (train/trainer.h). Rank r of the data-parallel group runs a contiguous share of the
// step's micro-batches; every rank draws the same global batch, so the union is exactly what one
// process would run as gradient accumulation. Gradients are summed in buckets of whole layers:
// a bucket's all-reduce starts during backward, as soon as the last micro-batch's backward is
// done with its lowest layer (a step recorded on the tape at that layer's input), and completes
// after backward; the embeddings, final norm and classifier form the last bucket. Only rank 0
// writes files. Not the MPI layer (comm.h) and not the loop (trainer.h).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "parallel/comm.h"
#include "train/trainer.h"

namespace lmkit {

struct DataParallelOptions {
  size_t bucket_bytes = size_t(4) << 20;  // a bucket closes once it holds this many bytes
  bool overlap = true;                    // start buckets during backward (false: all after)
  // Fault injection for tests: this rank (-1: none) dies with SIGKILL, or hangs forever without
  // answering, when it reaches step `fault_step` of this process (1-based). From
  // LMKIT_FAULT_RANK_DIE=R:S and LMKIT_FAULT_RANK_HANG=R:S.
  int fault_rank = -1;
  int64_t fault_step = 0;
  bool fault_hang = false;
  static DataParallelOptions from_env();
};

class DataParallel final : public StepSync {
 public:
  DataParallel(mpi::Comm &comm, DataParallelOptions o = {});

  bool writer() const override { return comm_.rank() == 0; }
  // Rank r's share of n micro-batches: [r*n/size, (r+1)*n/size) (needs n >= size).
  std::pair<int64_t, int64_t> share(int64_t n) const override;
  const Hooks *watch_backward(ag::Context &ctx, std::span<const ParamRef> params) override;
  double reduce(std::span<const ParamRef> params, double loss) override;
  bool any(bool flag) override;
  std::string from_writer(const std::string &s) override;

  // What the last step did: buckets started during backward and after it, and the seconds
  // reduce() spent waiting for the sums.
  struct Stats {
    int64_t buckets_in_backward = 0, buckets_after = 0;
    double wait_s = 0;
  };
  const Stats &last_stats() const { return stats_; }
  int64_t n_buckets() const { return int64_t(buckets_.size()); }

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into the step's params
    int64_t ready_layer = -1;    // ready once backward is done with this layer (-1: after it)
    std::vector<float> buf;
    mpi::Request req;
    bool started = false;
  };
  void plan(std::span<const ParamRef> params);
  void start(Bucket &b, std::span<const ParamRef> params);
  void layer_done(int64_t layer);

  mpi::Comm &comm_;
  DataParallelOptions o_;
  std::vector<Bucket> buckets_;
  size_t n_params_ = 0;
  std::span<const ParamRef> params_;  // valid from watch_backward to reduce
  Hooks hooks_;
  ag::Context *ctx_ = nullptr;
  Stats stats_;
  int64_t steps_ = 0;
};

}  // namespace lmkit
