// lmkit simulate: play a pipeline schedule (GPipe, 1F1B, Seq1F1B) with a cost model and print the
// projected step time, bubble and peak activation memory per stage. Flags and printing only: the
// models live in parallel/simulate.h. Not a measurement: nothing is trained or sent over MPI.
#include <cmath>
#include <cstdio>
#include <limits>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "core/error.h"
#include "parallel/simulate.h"

namespace lmkit::app {

namespace {

struct SimulateFlags {
  std::string model;
  int64_t layers = 0, hidden = 0, heads = 0, ffn = 0, vocab = -1;
  int64_t seq = 0;
  int64_t micro_batch_size = 1;
  int pp = 1, dp = 1, tp = 1, micro = 1, chunks = 1;
  std::string schedule = "1f1b";
  std::string split = "compute";
  std::string device_flops = "312e12", link_bw = "25e9", dp_bw = "0", tp_bw = "0";
  double efficiency = 1.0, latency = 0.0, act_bytes = 34;
  int value_bytes = 2;
  bool no_flash = false, no_kv_grad = false;
  bool json = false, timeline = false, show_schedule = false;
};

// "312e12", "312T", "25G", "1.5e9": a positive or zero number with an optional k/M/G/T/P suffix
// (powers of 1000).
double parse_si(const std::string &flag, const std::string &s) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (...) {
    used = 0;
  }
  std::string rest = used ? s.substr(used) : std::string();
  double scale = 1;
  if (rest.size() == 1) {
    switch (rest[0]) {
      case 'k':
        scale = 1e3;
        break;
      case 'M':
        scale = 1e6;
        break;
      case 'G':
        scale = 1e9;
        break;
      case 'T':
        scale = 1e12;
        break;
      case 'P':
        scale = 1e15;
        break;
      default:
        scale = 0;
    }
    if (scale > 0) rest.clear();
  }
  LMKIT_CHECK(used > 0 && rest.empty() && std::isfinite(v) && v >= 0, flag, " '", s,
              "' is not a number (examples: 312e12, 312T, 25G)");
  return v * scale;
}

parallel::SimConfig config_from(const SimulateFlags &f) {
  using namespace parallel;
  SimConfig c;
  if (!f.model.empty()) {
    c.model = model_shape_named(f.model);
  } else {
    LMKIT_CHECK(f.layers > 0 && f.hidden > 0 && f.heads > 0,
                "give --model SIZE or all of --layers, --hidden and --heads");
  }
  if (f.layers > 0) c.model.n_layer = f.layers;
  if (f.hidden > 0) c.model.n_embd = f.hidden;
  if (f.heads > 0) c.model.n_head = f.heads;
  if (f.layers > 0 || f.hidden > 0 || f.heads > 0)
    c.model.name = f.model.empty() ? "custom" : f.model + " (modified)";
  c.model.n_ff = f.ffn > 0 ? f.ffn : 4 * c.model.n_embd;
  if (f.vocab >= 0) c.model.n_vocab = f.vocab;
  c.seq_len = f.seq;
  c.micro_batch_size = f.micro_batch_size;
  c.pp = f.pp;
  c.dp = f.dp;
  c.tp = f.tp;
  c.n_micro = f.micro;
  c.schedule = schedule_kind_parse(f.schedule);
  c.seq_chunks = f.chunks;
  c.split = seq_split_parse(f.split);
  c.device_flops = parse_si("--device-flops", f.device_flops);
  c.efficiency = f.efficiency;
  c.link_bw = parse_si("--link-bw", f.link_bw);
  c.link_latency = f.latency;
  c.dp_bw = parse_si("--dp-bw", f.dp_bw);
  c.tp_bw = parse_si("--tp-bw", f.tp_bw);
  c.flash_attention = !f.no_flash;
  c.kv_grad_buffer = !f.no_kv_grad;
  c.act_bytes_per_token_layer = f.act_bytes;
  c.value_bytes = f.value_bytes;
  return c;
}

std::string gib(double bytes) {
  return str_cat(std::round(bytes / double(1 << 30) * 100) / 100, " GiB");
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

int run_simulate(const SimulateFlags &f) {
  using namespace parallel;
  const SimConfig c = config_from(f);
  const SimResult r = simulate(c);
  const int devices = c.pp * c.dp * c.tp;
  if (f.json) {
    nlohmann::ordered_json j;
    j["step_time_s"] = r.step_time_s;
    j["bubble_fraction"] = r.bubble_fraction;
    j["peak_activation_bytes"] = nlohmann::json::array();
    for (double b : r.peak_activation_bytes)
      j["peak_activation_bytes"].push_back(int64_t(std::llround(b)));
    j["schedule"] = schedule_kind_name(c.schedule);
    j["model"] = c.model.name;
    j["layers"] = c.model.n_layer;
    j["hidden"] = c.model.n_embd;
    j["heads"] = c.model.n_head;
    j["ffn"] = c.model.n_ff;
    j["vocab"] = c.model.n_vocab;
    j["seq"] = c.seq_len;
    j["micro_batch_size"] = c.micro_batch_size;
    j["pp"] = c.pp;
    j["dp"] = c.dp;
    j["tp"] = c.tp;
    j["devices"] = devices;
    j["micro_batches"] = c.n_micro;
    j["seq_chunks"] = c.seq_chunks;
    j["seq_split"] = seq_split_name(c.split);
    j["chunk_lengths"] = r.chunk_lens;
    j["pipeline_time_s"] = r.pipeline_time_s;
    j["dp_allreduce_s"] = r.dp_allreduce_s;
    j["bubble_closed_form"] = r.bubble_closed_form;
    j["stage_busy_s"] = r.stage_busy_s;
    j["peak_inflight_chunks"] = r.peak_inflight_chunks;
    j["chunk_activation_bytes"] = nlohmann::json::array();
    for (double b : r.chunk_activation_bytes)
      j["chunk_activation_bytes"].push_back(int64_t(std::llround(b)));
    j["model_state_bytes"] = nlohmann::json::array();
    for (double b : r.model_state_bytes) j["model_state_bytes"].push_back(int64_t(std::llround(b)));
    j["tokens_per_step"] = int64_t(std::llround(r.tokens_per_step));
    j["tokens_per_s"] = r.tokens_per_s;
    j["model_flops_per_step"] = r.model_flops_per_step;
    j["mfu"] = r.mfu;
    write_out(j.dump() + "\n");
    return 0;
  }
  std::string out;
  out += str_cat("schedule   ", schedule_kind_name(c.schedule));
  if (c.seq_chunks > 1)
    out += str_cat(", ", c.seq_chunks, " sequence chunks (", seq_split_name(c.split), " split)");
  out += "\n";
  const double params = c.model.params_per_layer() * double(c.model.n_layer) +
                        2 * double(c.model.n_vocab) * double(c.model.n_embd);
  out += str_cat("model      ", c.model.name, ": ", c.model.n_layer, " layers, hidden ",
                 c.model.n_embd, ", ", c.model.n_head, " heads, MLP ", c.model.n_ff, ", ",
                 fixed(params / 1e9, 2), "B parameters",
                 c.model.n_vocab > 0 ? str_cat(", vocabulary ", c.model.n_vocab)
                                     : std::string(" (embedding and classifier not modelled)"),
                 "\n");
  out += str_cat("layout     pp ", c.pp, " x dp ", c.dp, " x tp ", c.tp, " = ", devices,
                 " devices; ", c.n_micro, " micro-batches of ", c.micro_batch_size, " x ",
                 c.seq_len, " tokens per data-parallel rank (", int64_t(r.tokens_per_step),
                 " tokens per step)\n");
  if (c.seq_chunks > 1) {
    out += "chunks    ";
    for (int64_t l : r.chunk_lens) out += str_cat(" ", l);
    out += " tokens\n";
  }
  out += str_cat("costs      ", c.device_flops / 1e12, " TFLOP/s x ", c.efficiency,
                 " per device; stage links ", c.link_bw / 1e9, " GB/s + ", c.link_latency * 1e6,
                 " us per message\n");
  out +=
      str_cat("step time  ", fixed(r.step_time_s, 4), " s (pipeline ", fixed(r.pipeline_time_s, 4),
              " s; data-parallel all-reduce ", fixed(r.dp_allreduce_s, 4), " s)\n");
  out += str_cat("bubble     ", fixed(100 * r.bubble_fraction, 2),
                 " % (closed form (p-1)/(mk+p-1): ", fixed(100 * r.bubble_closed_form, 2), " %)\n");
  out += str_cat("throughput ", int64_t(std::llround(r.tokens_per_s)), " tokens/s, MFU ",
                 fixed(100 * r.mfu, 1), " %\n");
  out += "\nstage  busy s      idle %   peak in-flight  peak activations  model state\n";
  for (int s = 0; s < c.pp; ++s) {
    char line[200];
    std::snprintf(line, sizeof line, "%-6d %-11s %-8s %-15d %-17s %s\n", s,
                  fixed(r.stage_busy_s[size_t(s)], 4).c_str(),
                  fixed(100 * (1 - r.stage_busy_s[size_t(s)] / r.pipeline_time_s), 2).c_str(),
                  r.peak_inflight_chunks[size_t(s)],
                  gib(r.peak_activation_bytes[size_t(s)]).c_str(),
                  gib(r.model_state_bytes[size_t(s)]).c_str());
    out += line;
  }
  out +=
      "(in-flight counts chunks whose forward has run and backward has not; bytes are per "
      "device)\n";
  if (f.show_schedule) out += "\n" + schedule_format(r.schedule);
  if (f.timeline) out += "\n" + schedule_timeline(r.schedule, r.exec, 160);
  write_out(out);
  return 0;
}

}  // namespace

void add_simulate(CLI::App &app, Action &run) {
  auto f = std::make_shared<SimulateFlags>();
  CLI::App *cmd = app.add_subcommand(
      "simulate",
      "Project step time, bubble and activation memory of a pipeline schedule (cost model)");
  const int64_t big = int64_t(1) << 40;
  cmd->add_option("--model", f->model,
                  "Named size: 1.3b, 2.7b, 7b, 13b, 30b (the Seq1F1B paper's layer / hidden / "
                  "head counts)");
  cmd->add_option("--layers", f->layers, "Decoder layers (overrides --model)")
      ->check(CLI::Range(int64_t(1), big));
  cmd->add_option("--hidden", f->hidden, "Hidden size d (overrides --model)")
      ->check(CLI::Range(int64_t(1), big));
  cmd->add_option("--heads", f->heads, "Attention heads (overrides --model)")
      ->check(CLI::Range(int64_t(1), big));
  cmd->add_option("--ffn", f->ffn, "MLP hidden size (default 4 x hidden)")
      ->check(CLI::Range(int64_t(1), big));
  cmd->add_option("--vocab", f->vocab,
                  "Vocabulary: adds the embedding to the first stage and an untied classifier "
                  "(FLOPs, fp32 logits) to the last (default 0: not modelled)")
      ->check(CLI::Range(int64_t(0), big));
  cmd->add_option("--seq", f->seq, "Tokens per sequence")
      ->required()
      ->check(CLI::Range(int64_t(1), big));
  cmd->add_option("--micro-batch-size", f->micro_batch_size,
                  "Sequences per micro-batch (default 1)")
      ->check(CLI::Range(int64_t(1), big));
  cmd->add_option("--pp", f->pp, "Pipeline stages (default 1)")->check(CLI::Range(1, 4096));
  cmd->add_option("--dp", f->dp, "Data-parallel replicas (default 1)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--tp", f->tp,
                  "Tensor-parallel devices per stage, Megatron-style with sequence parallelism "
                  "(default 1)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--micro-batches", f->micro, "Micro-batches per step per data-parallel rank (m)")
      ->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--schedule", f->schedule, "gpipe, 1f1b or seq1f1b (default 1f1b)");
  cmd->add_option("--seq-chunks", f->chunks,
                  "Sequence chunks per micro-batch k (seq1f1b; also gpipe; default 1)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--seq-split", f->split,
                  "even (equal token counts) or compute (equal FLOPs given each chunk's prefix; "
                  "default)");
  cmd->add_option("--device-flops", f->device_flops,
                  "Peak FLOP/s of one device, e.g. 312e12 or 312T (default: A100 bf16, 312T)");
  cmd->add_option("--efficiency", f->efficiency,
                  "Share of the peak that compute achieves (default 1)");
  cmd->add_option("--link-bw", f->link_bw,
                  "Bytes/s per device between consecutive stages, e.g. 25e9 or 25G (default 25G)");
  cmd->add_option("--latency", f->latency, "Seconds per point-to-point message (default 0)");
  cmd->add_option("--dp-bw", f->dp_bw,
                  "Bytes/s for the data-parallel all-reduce (default: --link-bw)");
  cmd->add_option("--tp-bw", f->tp_bw,
                  "Bytes/s inside a tensor-parallel group (default 0: TP traffic not modelled)");
  cmd->add_flag("--no-flash-attn", f->no_flash,
                "Keep the attention scores (Megatron's 5 a s^2 b bytes per layer) instead of "
                "FlashAttention's O(s) state");
  cmd->add_flag("--no-kv-grad-buffer", f->no_kv_grad,
                "Do not count Seq1F1B's dK/dV accumulator during a micro-batch's backward");
  cmd->add_option(
         "--act-bytes", f->act_bytes,
         "Activation bytes per token, layer and hidden unit (default 34, Megatron's count)")
      ->check(CLI::Range(0.0, 1e6));
  cmd->add_option("--value-bytes", f->value_bytes,
                  "Bytes per stored value of the prefix K/V copy and the dK/dV accumulator: 2 "
                  "(bf16, default) or 4 (fp32, as lmkit trains)");
  cmd->add_flag("--json", f->json,
                "Print {\"step_time_s\", \"bubble_fraction\", \"peak_activation_bytes\": [per "
                "stage], ...}");
  cmd->add_flag("--timeline", f->timeline, "Draw the schedule's timeline (text)");
  cmd->add_flag("--show-schedule", f->show_schedule, "Print every stage's compute actions");
  cmd->footer(
      "Plays the schedule's per-stage action lists in a discrete-event executor. Cost model, per "
      "layer, for a chunk of L tokens at offset s: forward FLOPs = L (8 d^2 + 4 d ffn) + 4 d (L s "
      "+ L (L+1)/2) (causal attention), backward = 2 x forward, time = FLOPs / (tp x device-flops "
      "x efficiency). Transfers: b L d bf16 bytes / tp over --link-bw (+ --latency); sends do not "
      "block. Data parallel: ring all-reduce of fp32 gradients, 2 (dp-1)/dp x bytes / --dp-bw, "
      "after each stage's last backward. Memory per device: 34 b L d / tp bytes per layer per "
      "in-flight chunk (Korthikanti et al. 2022), + 4 b L d / tp for the prefix K/V copy when "
      "k > 1, + 5 a b L (s+L) / tp with --no-flash-attn; a dK/dV accumulator during a "
      "micro-batch's backward. Bubble = 1 - busy / (stages x pipeline time). Step time = pipeline "
      "+ all-reduce tail. See docs/PARALLEL.md.");
  cmd->callback([f, &run] { run = [f] { return run_simulate(*f); }; });
}

}  // namespace lmkit::app
