// The pipeline simulator: plays a schedule (schedule.h) with a cost model (FLOPs per chunk over
// device FLOP/s, activation transfers over link bandwidth, a data-parallel all-reduce at the end
// of the step) and accounts activation memory per stage, to project step time, bubble and memory
// at scales we cannot run here. Not a measurement: every number is a model's, stated in
// docs/PARALLEL.md; nothing here runs a model or talks MPI.
//
// Compute: per stage and chunk, forward FLOPs = micro_batch_size x layers_per_stage x
// layer_fwd_flops(start, len) (partition.h; + 2 len d V for the classifier on the last stage when
// n_vocab > 0), backward = 2x forward; time = FLOPs / (tp x device_flops x efficiency), plus, when
// tp > 1 and tp_bw > 0, Megatron sequence-parallel collectives (2 all-gathers + 2 reduce-scatters
// of the chunk's bf16 activations per layer, forward and again backward, ring cost (t-1)/t).
//
// Transfers: a chunk's bf16 activation (b len d 2 bytes, / tp as Megatron's scatter-gather sends
// it) over link_bw plus link_latency, the same for its gradient; sends do not block the sender
// (MPI_Isend), receives wait, one message at a time per link direction.
//
// Data parallel: after its last backward, each stage all-reduces its fp32 gradients over dp ranks
// (ring: 2 (dp-1)/dp x bytes / dp_bw + 2 (dp-1) x latency); the step ends when the last stage does.
//
// Memory, bytes per device, per layer of a chunk of len tokens at offset start (Korthikanti et
// al. 2022, "Reducing Activation Recomputation in Large Transformer Models", bf16, no
// recomputation, sequence parallel when tp > 1):
//   act_bytes_per_token_layer x b len d / tp        34: Megatron's count (attention 11, MLP 19,
//                                                   norms 4, per hidden unit per token)
//   + 2 v b len d / tp when k > 1                   the micro-batch's prefix K/V, kept as one
//                                                   contiguous copy (as the authors' code does);
//                                                   v = value_bytes (2: bf16)
//   + 5 a b len (start + len) / tp without flash    the attention scores (Megatron's 5 a s^2 b)
// (+ 4 b len V / tp of fp32 logits on the last stage when n_vocab > 0). During a micro-batch's
// backward with k > 1, a dK/dV accumulator covers the prefix still to be back-propagated
// (2 v b d bytes per token per layer / tp). Peak = max over the stage's action order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parallel/partition.h"
#include "parallel/schedule.h"

namespace lmkit::parallel {

struct SimConfig {
  ModelShape model;
  int64_t seq_len = 0;           // tokens per sequence
  int64_t micro_batch_size = 1;  // sequences per micro-batch (b)
  int pp = 1, dp = 1, tp = 1;    // devices = pp x dp x tp
  int n_micro = 1;               // micro-batches per step per data-parallel rank (m)
  ScheduleKind schedule = ScheduleKind::OneFOneB;
  int seq_chunks = 1;  // k (Seq1F1B, or GPipe over chunks)
  SeqSplit split = SeqSplit::Compute;
  double device_flops = 312e12;  // peak FLOP/s of one device (A100 bf16)
  double efficiency = 1.0;       // achieved share of device_flops
  double link_bw = 25e9;         // bytes/s per device between consecutive stages
  double link_latency = 0;       // seconds per message
  double dp_bw = 0;              // bytes/s for the data-parallel all-reduce (0: link_bw)
  double tp_bw = 0;              // bytes/s inside a TP group (0: TP traffic not modelled)
  bool flash_attention = true;   // false: keep the attention scores
  bool kv_grad_buffer = true;    // count Seq1F1B's dK/dV accumulator
  double act_bytes_per_token_layer = 34;
  // Bytes of one stored value (2: bf16; lmkit trains in fp32: 4): the prefix K/V copy is
  // 2 value_bytes b len d per layer, the dK/dV accumulator 2 value_bytes b d per token and layer.
  int value_bytes = 2;

  void validate() const;  // throws lmkit::Error naming the bad setting
};

struct SimResult {
  Schedule schedule;                           // what was played (just-in-time communication)
  ExecResult exec;                             // its timing
  std::vector<int64_t> chunk_lens;             // (k)
  double step_time_s = 0;                      // pipeline + the all-reduce tail
  double pipeline_time_s = 0;                  // the schedule's makespan
  double dp_allreduce_s = 0;                   // the longest stage's all-reduce
  double bubble_fraction = 0;                  // idle share of the pipeline's device time
  double bubble_closed_form = 0;               // (p-1)/(m k + p-1)
  std::vector<double> stage_busy_s;            // (p)
  std::vector<int> peak_inflight_chunks;       // (p)
  std::vector<double> peak_activation_bytes;   // (p) per device
  std::vector<double> chunk_activation_bytes;  // (k) per device, one chunk on the first stage
  std::vector<double> model_state_bytes;       // (p) per device: bf16 weights, fp32 grads, and
                                               // fp32 master + Adam moments sharded over dp
  double tokens_per_step = 0;
  double tokens_per_s = 0;
  double model_flops_per_step = 0;  // forward + backward FLOPs of the cost model, all devices
  double mfu = 0;                   // model_flops_per_step / (step time x devices x peak)
};

SimResult simulate(const SimConfig &c);

}  // namespace lmkit::parallel
