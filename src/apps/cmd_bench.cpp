// lmkit bench: llama-bench style measurements of one model at one or more thread counts, as a
// Markdown table or a JSON array. The measuring itself is runtime/model_bench (reusable); this
// file is flags, progress and printing.
#include <limits>
#include <thread>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "core/error.h"
#include "runtime/model_bench.h"
#include "train/progress.h"

namespace lmkit::app {

namespace {

struct BenchFlags {
  std::string model;
  std::string tokenizer;
  std::string threads;  // "1,2,4"; empty: every hardware thread
  int64_t n_prompt = 128;
  int64_t n_gen = 128;
  int reps = 5;
  int warmup = 1;
  int64_t seed = 1234;
  int64_t bw_mib = 0;
  int bw_passes = 10;
  bool json = false;
};

// "1,2,4" -> {1, 2, 4}; every entry an integer in [1, 1024].
std::vector<int> parse_threads(const std::string &s) {
  std::vector<int> out;
  if (s.empty()) return {std::max(1, int(std::thread::hardware_concurrency()))};
  size_t at = 0;
  while (true) {
    const size_t comma = s.find(',', at);
    const std::string item = s.substr(at, comma == std::string::npos ? comma : comma - at);
    size_t used = 0;
    long v = 0;
    try {
      v = std::stol(item, &used);
    } catch (...) {
      used = 0;
    }
    LMKIT_CHECK(!item.empty() && used == item.size() && v >= 1 && v <= 1024, "--threads '", s,
                "': '", item, "' is not a thread count in [1, 1024] (use a list like 1,2,4)");
    out.push_back(int(v));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

int run_bench(const BenchFlags &f) {
  const std::vector<int> threads = parse_threads(f.threads);
  ModelBenchOptions opt;
  opt.n_prompt = f.n_prompt;
  opt.n_gen = f.n_gen;
  opt.reps = f.reps;
  opt.warmup = f.warmup;
  opt.seed = uint64_t(f.seed);
  opt.bw_bytes = size_t(f.bw_mib) << 20;
  opt.bw_passes = f.bw_passes;
  opt.validate(0);                                    // flags alone, before the model is read
  LoadedModel lm = load_model(f.model, f.tokenizer);  // the tokenizer is not needed
  opt.validate(lm.model->config().n_ctx_train);

  std::vector<ModelBenchResult> results;
  for (int t : threads) {
    ProgressBar bar(opt.warmup + opt.reps + 1, str_cat("bench ", t, " thread", t > 1 ? "s" : ""),
                    ProgressBar::Unit::Count, "step");
    if (f.json) bar.set_enabled(false);
    results.push_back(model_bench_run(
        lm.model, t, opt, [&](std::string_view what, int done, int) { bar.update(done, what); }));
    const ModelBenchResult &r = results.back();
    bar.finish(str_cat("decode ", int64_t(r.decode_tok_s.mean), " tok/s"));
  }
  if (f.json) {
    nlohmann::ordered_json arr = nlohmann::ordered_json::array();
    for (const ModelBenchResult &r : results) arr.push_back(model_bench_json(r, lm.path));
    write_out(arr.dump(1) + "\n");
  } else {
    write_out(model_bench_markdown(results, lm.path));
  }
  return 0;
}

}  // namespace

void add_bench(CLI::App &app, Action &run) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App *cmd = app.add_subcommand(
      "bench",
      "Measure prefill and decode speed, time to first token, peak memory, and decode "
      "bandwidth against the machine's measured memory bandwidth");
  cmd->footer(
      "Definitions (mean ± sample stddev over --reps repetitions, after --warmup untimed ones):\n"
      "  prefill       one forward over p prompt tokens (random ids, --seed) into a fresh KV\n"
      "                cache; prefill tok/s = p / time\n"
      "  TTFT          prefill time + the greedy pick of the first token\n"
      "  decode        n single-token forwards after the prompt, each fed the previous greedy\n"
      "                pick; decode tok/s = n / time\n"
      "  peak RSS      VmHWM during this configuration's reps (reset through\n"
      "                /proc/self/clear_refs; the process's peak where that is refused), MB\n"
      "  model bytes   weight bytes one decoded token reads: every block tensor in its stored\n"
      "                dtype, the final norm, the classifier (the embedding again when tied)\n"
      "                and one embedding row; the KV cache is not counted\n"
      "  GB/s          model bytes x decode tok/s (achieved)\n"
      "  mem BW        read bandwidth measured in the same run on the same thread pool: the\n"
      "                best of --bw-passes sums of a buffer of max(256 MiB, 4 x L3)\n"
      "  % of bound    100 x achieved / measured (a model smaller than the cache can pass 100)\n"
      "  mJ/tok        RAPL package energy during decode / n, where\n"
      "                /sys/class/powercap/*/energy_uj is readable; n/a (JSON null) otherwise\n"
      "--json prints an array, one object per thread count: threads, prefill_tok_s,\n"
      "decode_tok_s, ttft_ms (each with a _std), peak_rss_mb, model_bytes, achieved_gbs,\n"
      "bandwidth_gbs, pct_of_bound, energy_mj_per_tok, model_type, dtype, kernels, ...\n");
  cmd->add_option("-m,--model", f->model,
                  "Model: a Hugging Face folder, a .gguf file or a llama2.c .bin")
      ->required();
  cmd->add_option("-t,--tokenizer", f->tokenizer, "Tokenizer (not needed: prompts are random ids)");
  cmd->add_option("-p,--n-prompt", f->n_prompt, "Prompt tokens (prefill)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  cmd->add_option("-n,--n-gen", f->n_gen, "Decoded tokens")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  cmd->add_option("--threads", f->threads,
                  "Thread counts, comma-separated: one configuration each (default: all "
                  "hardware threads)");
  cmd->add_option("-r,--reps", f->reps, "Timed repetitions per configuration")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--warmup", f->warmup, "Untimed repetitions first")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  cmd->add_option("--seed", f->seed, "Seed of the random prompt ids")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(0), std::numeric_limits<int64_t>::max()));
  cmd->add_option("--bw-mib", f->bw_mib,
                  "Bandwidth probe buffer in MiB (default 0: max(256, 4 x L3))")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd->add_option("--bw-passes", f->bw_passes, "Bandwidth probe passes (the best counts)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_flag("--json", f->json, "Print a JSON array, one object per thread count");
  cmd->callback([f, &run] { run = [f] { return run_bench(*f); }; });
}

}  // namespace lmkit::app
