// The pipeline simulator: cost model, memory accounting and the step-time projection (the models
// are stated in simulate.h and docs/PARALLEL.md). Not a measurement and not an executor.
#include "parallel/simulate.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace lmkit::parallel {

void SimConfig::validate() const {
  model.validate();
  LMKIT_CHECK(seq_len >= 1, "the sequence length must be positive (got ", seq_len, ")");
  LMKIT_CHECK(micro_batch_size >= 1, "the micro-batch size must be positive (got ",
              micro_batch_size, ")");
  LMKIT_CHECK(pp >= 1 && pp <= 4096, "--pp must be in 1..4096 (got ", pp, ")");
  LMKIT_CHECK(dp >= 1 && dp <= 1 << 20, "--dp must be in 1..1048576 (got ", dp, ")");
  LMKIT_CHECK(tp >= 1 && tp <= 4096, "--tp must be in 1..4096 (got ", tp, ")");
  LMKIT_CHECK(n_micro >= 1 && n_micro <= 1 << 16, "--micro-batches must be in 1..65536 (got ",
              n_micro, ")");
  LMKIT_CHECK(seq_chunks >= 1 && seq_chunks <= 4096, "--seq-chunks must be in 1..4096 (got ",
              seq_chunks, ")");
  LMKIT_CHECK(double(pp) * n_micro * seq_chunks <= 2e7, "the schedule would have ",
              double(pp) * n_micro * seq_chunks,
              " stage x chunk units; at most 2e7 are simulated (fewer stages, micro-batches or "
              "chunks)");
  LMKIT_CHECK(schedule != ScheduleKind::OneFOneB || seq_chunks == 1,
              "1f1b runs whole micro-batches (got --seq-chunks ", seq_chunks,
              "); 1F1B over sequence chunks is --schedule seq1f1b");
  LMKIT_CHECK(model.n_layer % pp == 0, "the model's ", model.n_layer,
              " layers do not split evenly over ", pp, " pipeline stages");
  LMKIT_CHECK(model.n_head % tp == 0, "the model's ", model.n_head,
              " heads do not split evenly over tensor-parallel size ", tp);
  LMKIT_CHECK(seq_len >= seq_chunks, "cannot split ", seq_len, " tokens into ", seq_chunks,
              " chunks");
  LMKIT_CHECK(std::isfinite(device_flops) && device_flops > 0,
              "--device-flops must be positive (got ", device_flops, ")");
  LMKIT_CHECK(std::isfinite(efficiency) && efficiency > 0 && efficiency <= 1,
              "--efficiency must be in (0, 1] (got ", efficiency, ")");
  LMKIT_CHECK(std::isfinite(link_bw) && link_bw > 0, "--link-bw must be positive (got ", link_bw,
              ")");
  LMKIT_CHECK(std::isfinite(link_latency) && link_latency >= 0,
              "--latency must not be negative (got ", link_latency, ")");
  LMKIT_CHECK(std::isfinite(dp_bw) && dp_bw >= 0, "--dp-bw must not be negative (got ", dp_bw, ")");
  LMKIT_CHECK(std::isfinite(tp_bw) && tp_bw >= 0, "--tp-bw must not be negative (got ", tp_bw, ")");
  LMKIT_CHECK(std::isfinite(act_bytes_per_token_layer) && act_bytes_per_token_layer >= 0,
              "the activation bytes per token and layer must not be negative");
  LMKIT_CHECK(value_bytes == 2 || value_bytes == 4,
              "--value-bytes must be 2 (bf16) or 4 (fp32), got ", value_bytes);
}

SimResult simulate(const SimConfig &c) {
  c.validate();
  const int p = c.pp, m = c.n_micro, k = c.seq_chunks;
  const double b = double(c.micro_batch_size), d = double(c.model.n_embd);
  const double t = double(c.tp), heads = double(c.model.n_head), vocab = double(c.model.n_vocab);
  const double layers = double(c.model.n_layer / p);

  SimResult r;
  // The paper aligns chunk boundaries to the TP size so sequence parallelism splits them evenly.
  const int64_t align = c.seq_len >= int64_t(k) * c.tp ? c.tp : 1;
  r.chunk_lens = seq_split(c.split, c.model, c.seq_len, k, align);
  const std::vector<int64_t> starts = chunk_starts(r.chunk_lens);

  // Costs.
  const double flops_per_s = t * c.device_flops * c.efficiency;
  CostTable cost;
  cost.fwd.assign(size_t(p), std::vector<double>(size_t(k)));
  cost.bwd = cost.fwd;
  cost.xfer.assign(size_t(p - 1), std::vector<double>(size_t(k)));
  double step_flops_per_rank = 0;  // one data-parallel replica, one step
  for (int s = 0; s < p; ++s) {
    for (int ci = 0; ci < k; ++ci) {
      const double len = double(r.chunk_lens[size_t(ci)]);
      double fwd =
          b * layers * layer_fwd_flops(c.model, starts[size_t(ci)], r.chunk_lens[size_t(ci)]);
      if (s == p - 1) fwd += b * 2 * len * d * vocab;
      double tp_comm = 0;  // one pass (forward or backward): 4 ring collectives per layer
      if (c.tp > 1 && c.tp_bw > 0) tp_comm = layers * 4 * (t - 1) / t * (b * len * d * 2) / c.tp_bw;
      cost.fwd[size_t(s)][size_t(ci)] = fwd / flops_per_s + tp_comm;
      cost.bwd[size_t(s)][size_t(ci)] = 2 * fwd / flops_per_s + tp_comm;
      step_flops_per_rank += 3 * fwd * m;
    }
  }
  for (int s = 0; s + 1 < p; ++s)
    for (int ci = 0; ci < k; ++ci)
      cost.xfer[size_t(s)][size_t(ci)] =
          b * double(r.chunk_lens[size_t(ci)]) * d * 2 / t / c.link_bw + c.link_latency;

  r.schedule = schedule_make(c.schedule, p, m, k, CommPlacement::JustInTime);
  r.exec = schedule_execute(r.schedule, cost, SendMode::Buffered);
  LMKIT_CHECK(r.exec.completed, "internal: the ", schedule_kind_name(c.schedule),
              " schedule deadlocked: ", r.exec.stall);
  r.pipeline_time_s = r.exec.makespan;
  r.bubble_fraction = r.exec.bubble_fraction();
  r.bubble_closed_form = bubble_closed_form(p, m, k);
  r.stage_busy_s = r.exec.busy;

  // Data-parallel all-reduce of each stage's fp32 gradients, after its last backward.
  const double dp_bw = c.dp_bw > 0 ? c.dp_bw : c.link_bw;
  const double layer_params = c.model.params_per_layer();
  for (int s = 0; s < p; ++s) {
    double params = layers * layer_params;
    if (s == 0) params += vocab * d;      // token embedding
    if (s == p - 1) params += vocab * d;  // untied classifier
    params /= t;
    const double dpn = double(c.dp);
    const double ar =
        c.dp > 1 ? 2 * (dpn - 1) / dpn * params * 4 / dp_bw + 2 * (dpn - 1) * c.link_latency : 0.0;
    r.dp_allreduce_s = std::max(r.dp_allreduce_s, ar);
    r.step_time_s = std::max(r.step_time_s, r.exec.finish[size_t(s)] + ar);
    r.model_state_bytes.push_back(params * (2 + 4 + 12 / dpn));
  }

  // Activation memory: walk each stage's actions.
  auto chunk_bytes = [&](int s, int ci) {
    const double len = double(r.chunk_lens[size_t(ci)]), start = double(starts[size_t(ci)]);
    const double kv = k > 1 ? 2.0 * c.value_bytes : 0.0;  // the prefix K/V copy
    double per_layer = b * len * d * (c.act_bytes_per_token_layer + kv);
    if (!c.flash_attention) per_layer += 5 * heads * b * len * (start + len);
    double bytes = layers * per_layer;
    if (s == p - 1) bytes += 4 * b * len * vocab;
    return bytes / t;
  };
  auto kv_grad_bytes = [&](int64_t tokens) {
    return c.kv_grad_buffer && k > 1 ? layers * 2 * c.value_bytes * b * double(tokens) * d / t
                                     : 0.0;
  };
  for (int ci = 0; ci < k; ++ci) r.chunk_activation_bytes.push_back(chunk_bytes(0, ci));
  r.peak_inflight_chunks = schedule_peak_inflight(r.schedule);
  for (int s = 0; s < p; ++s) {
    double held = 0, dkv = 0, peak = 0;
    for (const Action &a : r.schedule.stages[size_t(s)]) {
      if (a.op == Op::Forward) {
        held += chunk_bytes(s, a.chunk);
        peak = std::max(peak, held + dkv);
      } else if (a.op == Op::Backward) {
        // While chunk c runs backward, the accumulator covers the tokens before it (allocated by
        // the micro-batch's last chunk) and its own accumulated dK/dV.
        const size_t ci = size_t(a.chunk);
        const int64_t during = starts[ci] + (a.chunk + 1 < k ? r.chunk_lens[ci] : 0);
        peak = std::max(peak, held + kv_grad_bytes(during));
        held -= chunk_bytes(s, a.chunk);
        dkv = kv_grad_bytes(starts[ci]);
      }
    }
    r.peak_activation_bytes.push_back(peak);
  }

  r.tokens_per_step = double(m) * b * double(c.seq_len) * double(c.dp);
  r.tokens_per_s = r.tokens_per_step / r.step_time_s;
  r.model_flops_per_step = step_flops_per_rank * double(c.dp);
  r.mfu = r.model_flops_per_step / (r.step_time_s * double(p) * double(c.dp) * t * c.device_flops);
  return r;
}

}  // namespace lmkit::parallel
