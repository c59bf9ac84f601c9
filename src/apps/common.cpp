// Shared flag sets and helpers of the CLI verbs.
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "apps/commands.h"
#include "core/error.h"

namespace lmkit::app {

void ModelFlags::add_to(CLI::App *cmd, bool with_threads) {
  cmd->add_option("-m,--model", model,
                  "Model: a Hugging Face folder, a .gguf file or a llama2.c .bin")
      ->required();
  cmd->add_option("-t,--tokenizer", tokenizer,
                  "Tokenizer file or folder (default: the model's own; for llama2.c a "
                  "tokenizer.bin or tok<N>.bin beside it)");
  if (with_threads)
    cmd->add_option("--threads", threads, "Threads (default: all hardware threads)")
        ->check(CLI::Range(0, 1024));
}

int ModelFlags::thread_count() const {
  if (threads > 0) return threads;
  return std::max(1, int(std::thread::hardware_concurrency()));
}

LoadedModel ModelFlags::load() const {
  LoadedModel lm = load_model(model, tokenizer);
  LMKIT_CHECK(lm.tokenizer != nullptr, model, ": no tokenizer found; pass one with -t");
  return lm;
}

void SamplingFlags::add_to(CLI::App *cmd) {
  cmd->add_option("--temp", temperature, "Temperature; 0 = greedy")
      ->capture_default_str()
      ->check(CLI::Range(0.0f, 100.0f));
  cmd->add_option("--top-k", top_k, "Keep the k most likely tokens; 0 = off")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 30));
  cmd->add_option("--top-p", top_p, "Nucleus sampling: smallest set with this mass; 1 = off")
      ->capture_default_str()
      ->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--min-p", min_p, "Drop tokens below min-p x the top probability; 0 = off")
      ->capture_default_str()
      ->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--repeat-penalty", repeat_penalty, "Penalty for repeated tokens; 1 = off")
      ->capture_default_str()
      ->check(CLI::Range(0.01f, 100.0f));
  cmd->add_option("--repeat-last-n", repeat_last_n, "Tokens the repeat penalty looks back over")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 30));
  cmd->add_option("--seed", seed, "Random seed (default: a random one, printed with --json)")
      ->check(CLI::Range(int64_t(-1), std::numeric_limits<int64_t>::max()));
}

uint64_t SamplingFlags::resolved_seed() const {
  if (seed >= 0) return uint64_t(seed);
  static const uint64_t drawn =
      std::random_device{}() ^
      uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
  return drawn & 0x7fffffffffffffffull;
}

SamplerParams SamplingFlags::params() const {
  SamplerParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.repeat_penalty = repeat_penalty;
  p.repeat_last_n = repeat_last_n;
  p.seed = resolved_seed();
  return p;
}

void write_out(std::string_view s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

}  // namespace lmkit::app
