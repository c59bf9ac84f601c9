// lmkit train: train a model on prepared token shards (from scratch, or fine-tuning a model),
// with presets, a JSON config, a flag for every setting, and exact --resume.
#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "core/error.h"
#include "core/mmap.h"
#include "parallel/distributed.h"
#include "train/trainer.h"

namespace lmkit::app {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// One line of help per setting (the flag is the name with '-' for '_').
const std::map<std::string, std::string> &setting_help() {
  static const std::map<std::string, std::string> h = {
      {"family", "Architecture: llama, mistral, qwen2 or gpt2"},
      {"n_layer", "Transformer blocks"},
      {"n_embd", "Model width (d_model)"},
      {"n_head", "Attention heads"},
      {"n_head_kv", "Key/value heads (grouped-query attention; gpt2: = n-head)"},
      {"n_ff", "MLP hidden size"},
      {"context", "Training sequence length T"},
      {"tied", "Tie the classifier to the token embedding (true/false)"},
      {"rope_theta", "RoPE base frequency"},
      {"sliding_window", "Sliding-window attention size for mistral/qwen2 (0: none)"},
      {"init_from", "Fine-tune this model (any format lmkit loads) instead of a fresh one"},
      {"data", "Token shards made by `lmkit data prepare`"},
      {"batch_size", "Sequences per micro-batch"},
      {"grad_accum", "Micro-batches per optimizer step"},
      {"steps", "Optimizer steps"},
      {"tokens", "Token budget (overrides --steps: steps = tokens / (batch x accum x context))"},
      {"optimizer", "adamw or sgd"},
      {"lr", "Peak learning rate"},
      {"min_lr", "Final learning rate"},
      {"warmup", "Linear warmup steps"},
      {"schedule",
       "LR schedule after warmup: cosine, wsd (warmup-stable-decay) or constant (gpipe, 1f1b "
       "and seq1f1b name the pipeline schedule instead, as --pp-schedule)"},
      {"decay_frac", "wsd: fraction of the steps spent decaying"},
      {"weight_decay", "Decoupled weight decay (matrices only; not norms, biases, embeddings)"},
      {"beta1", "AdamW beta1"},
      {"beta2", "AdamW beta2"},
      {"eps", "AdamW epsilon"},
      {"momentum", "SGD momentum"},
      {"grad_clip", "Global gradient-norm clip (0: off)"},
      {"eval_interval", "Steps between validation evaluations"},
      {"eval_batches", "Validation batches per evaluation"},
      {"ckpt_interval", "Steps between checkpoints (0: final only)"},
      {"keep_ckpts", "Checkpoints to keep (0: all)"},
      {"log_interval", "Steps between metrics.jsonl lines"},
      {"seed", "Random seed (initialisation and data order)"},
      {"threads", "Threads (0: all hardware threads)"},
  };
  return h;
}

// A flag's text as the JSON type of the setting's default.
json parse_setting(const std::string &name, const std::string &text,
                   const nlohmann::ordered_json &like) {
  try {
    if (like.is_string()) return text;
    if (like.is_boolean()) {
      if (text == "true" || text == "1") return true;
      if (text == "false" || text == "0") return false;
      fail("expects true or false");
    }
    size_t used = 0;
    if (like.is_number_float()) {
      double v = std::stod(text, &used);
      LMKIT_CHECK(used == text.size(), "expects a number");
      return v;
    }
    LMKIT_CHECK(!text.empty() && text[0] != '-', "expects a non-negative integer");
    unsigned long long v = std::stoull(text, &used);
    LMKIT_CHECK(used == text.size(), "expects an integer");
    if (like.is_number_unsigned()) return uint64_t(v);
    return int64_t(v);
  } catch (const std::logic_error &) {
    fail("--", name, " ", text, ": expects a ", like.is_number_float() ? "number" : "integer");
  } catch (const Error &e) {
    fail("--", name, " ", text, ": ", e.what());
  }
}

struct TrainFlags {
  std::string out, preset, config, resume;
  bool quiet = false;
  int dp = 1, pp = 1, seq_chunks = 1;
  std::string pp_schedule = "1f1b", seq_split = "even";
  std::vector<int64_t> pp_layers;
  int64_t micro_batches = 0;
  CLI::Option *micro_batches_opt = nullptr;  // given or not
  CLI::Option *pp_schedule_opt = nullptr;
  double bucket_mb = 4, comm_timeout = 0;
  bool no_overlap = false;
  std::map<std::string, std::string> settings;  // flags given, by setting name
  std::map<std::string, CLI::Option *> options;
};

int run_train(const TrainFlags &f) {
  TrainConfig cfg;
  std::string run_dir = f.out;
  std::map<std::string, std::string> given;
  for (const auto &[name, opt] : f.options)
    if (opt->count() > 0) given[name] = f.settings.at(name);
  // `--schedule seq1f1b` (the pipeline schedules' names are not learning-rate schedules').
  std::string pp_schedule = f.pp_schedule;
  if (auto it = given.find("schedule");
      it != given.end() &&
      (it->second == "gpipe" || it->second == "1f1b" || it->second == "seq1f1b")) {
    LMKIT_CHECK(f.pp_schedule_opt->count() == 0, "--schedule ", it->second,
                " and --pp-schedule both name the pipeline schedule: give one");
    pp_schedule = it->second;
    given.erase(it);
  }
  if (!f.resume.empty()) {
    run_dir = f.resume;
    const std::string saved = run_dir + "/train_config.json";
    LMKIT_CHECK(fs::exists(saved), run_dir, ": not a training run (no train_config.json)");
    LMKIT_CHECK(f.preset.empty() && f.config.empty() && f.out.empty(),
                "--resume continues a run with its saved settings: drop --preset, --config, --out");
    json j;
    try {
      j = json::parse(read_file(saved));
    } catch (const json::exception &e) {
      fail(saved, ": not valid JSON (", e.what(), ")");
    }
    cfg.merge_json(j, saved);
    for (const auto &[name, text] : given)
      LMKIT_CHECK(name == "steps" || name == "tokens" || name == "threads",
                  "--resume keeps the run's settings; only --steps, --tokens and --threads may "
                  "change (got --",
                  name, ")");
  } else {
    LMKIT_CHECK(!run_dir.empty(), "--out DIR is required (where the run is written)");
    if (!f.preset.empty()) cfg = train_preset(f.preset);
    if (!f.config.empty()) {
      json j;
      try {
        j = json::parse(read_file(f.config));
      } catch (const json::exception &e) {
        fail(f.config, ": not valid JSON (", e.what(), ")");
      }
      cfg.merge_json(j, f.config);
    }
    LMKIT_CHECK(!fs::exists(run_dir + "/train_config.json"), run_dir,
                " already holds a training run; use --resume ", run_dir, " or another --out");
  }
  const nlohmann::ordered_json defaults = cfg.to_json();
  json over = json::object();
  for (const auto &[name, text] : given) over[name] = parse_setting(name, text, defaults.at(name));
  cfg.merge_json(over, "flags");
  // --micro-batches M: the micro-batches of one step over the whole data-parallel group (the
  // global batch is batch_size x M at any --dp); one process runs them as gradient accumulation.
  if (f.micro_batches_opt->count() > 0) {
    LMKIT_CHECK(f.micro_batches >= 1, "--micro-batches must be at least 1, got ", f.micro_batches);
    LMKIT_CHECK(!given.count("grad_accum") || cfg.grad_accum == f.micro_batches,
                "--micro-batches and --grad-accum name the same setting: give one");
    LMKIT_CHECK(f.resume.empty() || cfg.grad_accum == f.micro_batches, "--resume keeps the run's ",
                cfg.grad_accum, " micro-batches per step (got --micro-batches ", f.micro_batches,
                ")");
    cfg.grad_accum = f.micro_batches;
  }
  LMKIT_CHECK(f.dp >= 1, "--dp must be at least 1, got ", f.dp);
  LMKIT_CHECK(f.pp >= 1, "--pp must be at least 1, got ", f.pp);
  LMKIT_CHECK(f.seq_chunks >= 1, "--seq-chunks must be at least 1, got ", f.seq_chunks);
  LMKIT_CHECK(f.pp > 1 || (f.seq_chunks == 1 && f.pp_layers.empty()),
              "--seq-chunks and --pp-layers shape a pipeline: give --pp 2 or more");
  LMKIT_CHECK(pp_schedule != "1f1b" || f.seq_chunks == 1,
              "--pp-schedule 1f1b runs whole micro-batches; use --pp-schedule seq1f1b (or gpipe) "
              "with --seq-chunks ",
              f.seq_chunks);
  LMKIT_CHECK(f.bucket_mb > 0, "--bucket-mb must be positive, got ", f.bucket_mb);
  LMKIT_CHECK(f.comm_timeout >= 0, "--comm-timeout must not be negative");

  TrainOptions opt;
  opt.resume = !f.resume.empty();
  opt.progress = !f.quiet;
  opt.quiet = f.quiet;
  TrainResult r;
  ParallelOptions par;
  par.dp = f.dp;
  par.pipe.pp = f.pp;
  par.pipe.schedule = parallel::schedule_kind_parse(pp_schedule);
  par.pipe.seq_chunks = f.seq_chunks;
  par.pipe.split = parallel::seq_split_parse(f.seq_split);
  par.pipe.layers = f.pp_layers;
  par.bucket_bytes = std::max<size_t>(1, size_t(f.bucket_mb * 1024 * 1024));
  par.overlap = !f.no_overlap;
  par.comm_timeout = f.comm_timeout;
  if (wants_mpi(par)) {
    // Every rank has passed the checks above before MPI_Init returns anywhere, so rank 0 cannot
    // have written train_config.json yet when another rank looks for it.
    cfg.validate();
    if (!train_distributed(cfg, run_dir, opt, par, r)) return 0;  // only rank 0 reports
  } else {
    r = train(cfg, run_dir, opt);
  }
  if (!f.quiet) {
    std::string msg = str_cat("lmkit train: ", r.steps, " steps, loss ", r.final_loss);
    if (r.final_val_loss == r.final_val_loss)
      msg += str_cat(", validation loss ", r.final_val_loss, " (unigram baseline ",
                     r.unigram_val_loss, ")");
    msg += str_cat(", ", int64_t(r.tok_s), " tok/s, MFU ", int(100 * r.mfu), "% of ",
                   int(r.peak_gflops), " GFLOP/s\n");
    if (!r.final_dir.empty())
      msg += str_cat("  final model: ", r.final_dir, "\n  try: ./build/lmkit generate -m ",
                     r.final_dir, " -p \"Once upon a time\"\n");
    else
      msg +=
          str_cat("  stopped early; continue with: ./build/lmkit train --resume ", run_dir, "\n");
    std::fputs(msg.c_str(), stderr);
  }
  return 0;
}

}  // namespace

void add_train(CLI::App &app, Action &run) {
  auto f = std::make_shared<TrainFlags>();
  CLI::App *cmd = app.add_subcommand(
      "train", "Train a model on token shards (from scratch or fine-tuning), resumably");
  cmd->add_option("--out", f->out,
                  "Run folder: train_config.json, metrics.jsonl, loss.svg, "
                  "checkpoints/, final/");
  cmd->add_option("--preset", f->preset, str_cat("Start from a preset: ", train_preset_names()));
  cmd->add_option("--config", f->config,
                  "Start from a JSON file of settings (names as below, "
                  "with '_'); flags override it");
  cmd->add_option("--resume", f->resume,
                  "Continue RUN_DIR from its newest checkpoint, exactly as if never stopped");
  cmd->add_flag("--quiet", f->quiet, "No progress bar or summary");
  cmd->add_option("--dp", f->dp,
                  "Data-parallel ranks; launch with mpirun -np N (each runs a share of every "
                  "step's micro-batches; results equal one process within fp32 rounding)");
  cmd->add_option("--pp", f->pp,
                  "Pipeline stages per data-parallel replica (contiguous layers each); launch "
                  "with mpirun -np DP*PP");
  f->pp_schedule_opt =
      cmd->add_option("--pp-schedule", f->pp_schedule,
                      "Pipeline schedule: gpipe, 1f1b (default) or seq1f1b (Seq1F1B: 1F1B over "
                      "sequence chunks)");
  cmd->add_option("--seq-chunks", f->seq_chunks,
                  "Pipeline: cut each micro-batch along the sequence into K chunks (seq1f1b, "
                  "gpipe; default 1)");
  cmd->add_option("--seq-split", f->seq_split,
                  "Pipeline: chunk lengths even, or compute (equal FLOPs: later chunks, which "
                  "attend to longer prefixes, are shorter)");
  cmd->add_option("--pp-layers", f->pp_layers,
                  "Pipeline: layers per stage, e.g. 3,1 (default: as even as possible)")
      ->delimiter(',');
  f->micro_batches_opt = cmd->add_option(
      "--micro-batches", f->micro_batches,
      "Micro-batches per optimizer step over all ranks (global batch = batch-size x "
      "M; same as --grad-accum)");
  cmd->add_option("--bucket-mb", f->bucket_mb,
                  "Data parallel: MiB of gradients per all-reduce bucket (default 4)");
  cmd->add_flag("--no-overlap", f->no_overlap,
                "Data parallel: sum gradients after backward instead of during it");
  cmd->add_option("--comm-timeout", f->comm_timeout,
                  "Data parallel: seconds a rank waits for the others before it fails (default "
                  "300, or LMKIT_COMM_TIMEOUT)");
  const nlohmann::ordered_json defaults = TrainConfig{}.to_json();
  for (auto it = defaults.begin(); it != defaults.end(); ++it) {
    std::string flag = it.key();
    std::replace(flag.begin(), flag.end(), '_', '-');
    auto help = setting_help().find(it.key());
    const auto &v = it.value();
    f->options[it.key()] =
        cmd->add_option("--" + flag, f->settings[it.key()],
                        str_cat(help != setting_help().end() ? help->second : it.key(),
                                " (default ", v.dump(), ")"))
            ->type_name(v.is_string()         ? "TEXT"
                        : v.is_boolean()      ? "BOOL"
                        : v.is_number_float() ? "FLOAT"
                                              : "INT");
  }
  cmd->footer(
      "Settings apply in this order: defaults, --preset, --config, flags. Checkpoints are Hugging "
      "Face folders (config.json, model.safetensors, tokenizer.json) plus trainer_state.json and "
      "optimizer.safetensors; `lmkit generate -m RUN/final` runs the result. A run killed at any "
      "moment resumes with --resume RUN and gives the same losses, bit for bit, with the same "
      "thread count.");
  cmd->callback([f, &run] { run = [f] { return run_train(*f); }; });
}

}  // namespace lmkit::app
