// End-to-end decode benchmark: greedy generation on a real model, tokens/s over repetitions
// (median and spread), with the scalar reference kernels measured in the same run as a baseline.
// Not a test: it asserts nothing. Compare with llama2.c using bench/decode_vs_llama2c.sh.
//
// Usage: bench_decode MODEL [TOKENIZER] [--n N] [--threads T] [--reps R] [--json]
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/kernels.h"
#include "model/loader.h"
#include "runtime/generate.h"

using namespace lmkit;

namespace {

struct Stats {
  double median, min, max;
};

Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

// Decode tok/s of each repetition: a fresh session, prompt prefilled, n greedy tokens.
std::vector<double> measure(const LoadedModel &lm, int threads, int64_t n, int reps) {
  auto pool = std::make_shared<ThreadPool>(threads);
  std::vector<int32_t> prompt = lm.tokenizer->encode("Once upon a time");
  std::vector<double> out;
  for (int r = 0; r < reps + 1; ++r) {
    Session s(lm.model, pool, int64_t(prompt.size()) + n);
    GenerateOptions opt;
    opt.max_tokens = n;
    opt.ignore_eos = true;
    opt.sampling.temperature = 0;
    GenerateResult res = generate(s, *lm.tokenizer, prompt, opt);
    if (r > 0) out.push_back(res.decode_tok_s());  // the first run warms caches
  }
  return out;
}

}  // namespace

int main(int argc, char **argv) {
  try {
    std::string model, tok;
    int64_t n = 255;
    int threads = 1, reps = 10;
    bool json = false;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto next = [&]() -> std::string {
        LMKIT_CHECK(i + 1 < argc, a, " needs a value");
        return argv[++i];
      };
      if (a == "--n")
        n = std::stoll(next());
      else if (a == "--threads")
        threads = std::stoi(next());
      else if (a == "--reps")
        reps = std::stoi(next());
      else if (a == "--json")
        json = true;
      else if (model.empty())
        model = a;
      else
        tok = a;
    }
    LMKIT_CHECK(!model.empty(),
                "usage: bench_decode MODEL [TOKENIZER] [--n N] [--threads T] "
                "[--reps R] [--json]");
    LoadedModel lm = load_model(model, tok);
    LMKIT_CHECK(lm.tokenizer, "no tokenizer for ", model);
    const kernels::KernelTable &fast = kernels::active();
    Stats ours = stats(measure(lm, threads, n, reps));
    // Baseline in the same process: the scalar reference kernels.
    kernels::set_active(kernels::require("ref"));
    Stats base = stats(measure(lm, threads, n, std::max(1, reps / 4)));
    if (json) {
      std::printf(
          "{\"model\": \"%s\", \"threads\": %d, \"n\": %lld, \"kernels\": \"%s\", "
          "\"decode_tok_s\": %.1f, \"decode_tok_s_min\": %.1f, \"decode_tok_s_max\": "
          "%.1f, \"ref_decode_tok_s\": %.1f}\n",
          model.c_str(), threads, (long long)n, fast.name, ours.median, ours.min, ours.max,
          base.median);
    } else {
      std::printf("| kernels | threads | decode tok/s (median) | min | max | vs ref |\n");
      std::printf("|---|---|---|---|---|---|\n");
      std::printf("| %s | %d | %.1f | %.1f | %.1f | %.2fx |\n", fast.name, threads, ours.median,
                  ours.min, ours.max, ours.median / base.median);
      std::printf("| ref | %d | %.1f | %.1f | %.1f | 1.00x |\n", threads, base.median, base.min,
                  base.max);
    }
    return 0;
  } catch (const Error &e) {
    std::fprintf(stderr, "bench_decode: error: %s\n", e.what());
    return 1;
  }
}
