// The pipeline executor over MPI: one rank per stage runs its list of schedule actions
// (schedule.h: forward / backward of a chunk of a micro-batch, send / receive of an activation or
// its gradient) with point-to-point messages between neighbouring stages, and reports busy and
// idle time and its peak activation memory. It runs any schedule (GPipe, 1F1B, Seq1F1B) over any
// PipelineStage. Not the model split itself: a stage of the lmkit decoder needs the decoder to
// run a range of blocks on an incoming residual stream (docs/PARALLEL.md); not the schedules.
#pragma once

#include <cstdint>
#include <span>

#include "parallel/comm.h"
#include "parallel/schedule.h"

namespace lmkit::parallel {

// What the executor needs of one stage's share of a model.
class PipelineStage {
 public:
  virtual ~PipelineStage() = default;
  // Floats of the activation (mb, chunk) passes to the next stage (and of its gradient).
  virtual int64_t boundary_floats(int mb, int chunk) const = 0;
  // Runs the stage's layers on (mb, chunk). `in`: the previous stage's output (empty on the first
  // stage); the output goes to `out` (empty on the last stage, which computes the loss instead).
  virtual void forward(int mb, int chunk, std::span<const float> in, std::span<float> out) = 0;
  // Backward of (mb, chunk): `dout` is the gradient of its output (empty on the last stage);
  // `din` receives the gradient of its input (empty on the first stage). Parameter gradients
  // accumulate.
  virtual void backward(int mb, int chunk, std::span<const float> dout, std::span<float> din) = 0;
  // Bytes of activations the stage holds now (kept for backward).
  virtual size_t activation_bytes() const = 0;
};

struct StageReport {
  double wall_s = 0, busy_s = 0, idle_s = 0;  // idle: waiting for messages
  size_t peak_activation_bytes = 0;           // largest activation_bytes() after a forward
  int peak_inflight = 0;                      // most chunks forwarded and not yet backwarded
};

// Runs stage `stage` (the rank of `pp`, which must have s.n_stage ranks) of schedule s.
StageReport run_stage(const Schedule &s, mpi::Comm &pp, PipelineStage &m);

}  // namespace lmkit::parallel
