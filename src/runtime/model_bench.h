// model_bench: llama-bench / MELT style measurements of one model at one thread count: prefill
// and decode tokens/s, time to first token, peak resident memory, the bytes a decoded token
// streams, achieved GB/s against the machine's read bandwidth measured in the same run, and
// energy per token where RAPL counters are readable. Not the CLI (apps/cmd_bench.cpp) and never
// used for decisions inside the engine: these are reports.
//
// Definitions (also in `lmkit bench --help` and the README):
//   prefill   one forward over p prompt tokens (random ids, fixed seed) into a fresh KV cache;
//             prefill_tok_s = p / time.   TTFT = prefill time + the greedy pick of the first token.
//   decode    n single-token forwards after the prompt, each fed the previous greedy pick;
//             decode_tok_s = n / time.
//   model_bytes   bytes a decoded token reads from the weights: every tensor of every block
//             (matrices in their stored dtype, norms and biases), the final norm, the
//             classifier (the embedding matrix again when tied), one embedding row (and one
//             learned-position row). The KV cache is not counted.
//   achieved GB/s = model_bytes x decode_tok_s / 1e9; pct_of_bound = 100 x achieved / measured.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/membw.h"
#include "model/decoder.h"

namespace lmkit {

struct ModelBenchOptions {
  int64_t n_prompt = 128;  // p: prompt tokens (>= 1)
  int64_t n_gen = 128;     // n: decoded tokens (>= 1)
  int reps = 5;            // timed repetitions (>= 1)
  int warmup = 1;          // untimed repetitions first (page in the weights, warm the caches)
  uint64_t seed = 1234;    // prompt ids
  size_t bw_bytes = 0;     // bandwidth probe buffer; 0: membw_default_bytes()
  int bw_passes = 10;      // bandwidth probe passes (the best one counts)
  std::string powercap_dir = "/sys/class/powercap";  // where RAPL counters are looked for
  // Throws lmkit::Error naming the first bad value; n_ctx: the model's context.
  void validate(int64_t n_ctx) const;
};

struct MeanStd {
  double mean = 0, std = 0;  // std: sample standard deviation (0 for one value)
};
MeanStd mean_std(const std::vector<double> &v);

// Bytes read from the weights for one decoded token (see the definition above).
size_t model_stream_bytes(const Model &m);

// p prompt ids drawn uniformly from [0, n_vocab) with `seed` (the same ids for the same seed).
std::vector<int32_t> bench_prompt(int64_t n_vocab, int64_t p, uint64_t seed);

// Peak resident memory. peak_rss_reset() restarts the high-water mark (writes 5 to
// /proc/self/clear_refs) and says whether it could; peak_rss_bytes() reads VmHWM from
// /proc/self/status, falling back to getrusage's maxrss (the peak of the whole process).
bool peak_rss_reset();
size_t peak_rss_bytes();

// Package energy counters (RAPL, powercap `*/energy_uj` whose `name` starts with "package").
// Readable only where the kernel allows it (often root only); available() says so.
class RaplCounter {
 public:
  explicit RaplCounter(const std::string &powercap_dir = "/sys/class/powercap");
  bool available() const { return !domains_.empty(); }
  size_t n_domains() const { return domains_.size(); }
  // Each domain's counter in microjoules; nullopt when any read fails.
  std::optional<std::vector<double>> read() const;
  // Microjoules from `start` to `end` summed over the domains, allowing for a counter that
  // wrapped (once) at its max_energy_range_uj.
  double delta_uj(const std::vector<double> &start, const std::vector<double> &end) const;

 private:
  struct Domain {
    std::string energy_path;
    double max_range_uj = 0;
  };
  std::vector<Domain> domains_;
};

struct ModelBenchResult {
  // What ran.
  std::string model_type;  // config arch: "llama", "gpt2", ...
  std::string dtype;       // storage type of the matrices
  std::string kernels;     // active kernel table
  int64_t n_params = 0;
  int threads = 0;
  int64_t n_prompt = 0, n_gen = 0;
  int reps = 0;
  // Figures: mean and sample stddev over the repetitions.
  MeanStd prefill_tok_s, decode_tok_s, ttft_ms;
  std::optional<MeanStd> energy_mj_per_tok;  // decode energy / n; nullopt without RAPL
  double peak_rss_mb = 0;                    // MB (1e6 bytes) during the reps of this configuration
  bool peak_rss_per_config = false;          // false: the process's peak (clear_refs was refused)
  size_t model_bytes = 0;
  double achieved_gbs = 0;  // model_bytes x decode_tok_s.mean / 1e9
  MemBandwidth bandwidth;   // measured in this configuration (same pool)
  double pct_of_bound = 0;  // 100 x achieved_gbs / bandwidth.gbs
  // The last repetition's ids and final logits, to check against a plain Session run.
  std::vector<int32_t> prompt;     // (n_prompt)
  std::vector<int32_t> generated;  // (n_gen + 1): the first pick after the prompt, then n more
  std::vector<float> last_logits;  // (n_vocab) after the last decoded token
};

// Progress: `stage` ("bandwidth", "warmup", "rep"), done and total repetitions of that stage.
using ModelBenchProgress = std::function<void(std::string_view stage, int done, int total)>;

// Runs one configuration: a pool of `threads`, the bandwidth probe on it, then warmup and reps.
ModelBenchResult model_bench_run(const std::shared_ptr<const Model> &model, int threads,
                                 const ModelBenchOptions &opt,
                                 const ModelBenchProgress &progress = {});

// One JSON object per result (the fields `lmkit bench --json` prints); `model` names the model.
nlohmann::ordered_json model_bench_json(const ModelBenchResult &r, const std::string &model);
// A Markdown table, one row per result, with a header row.
std::string model_bench_markdown(const std::vector<ModelBenchResult> &rs, const std::string &model);

}  // namespace lmkit
