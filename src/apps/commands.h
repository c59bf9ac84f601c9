// The lmkit command-line verbs: each registers its flags on a CLI11 subcommand and returns the
// action to run after parsing. Not a library API: apps/ is the top layer and nothing links it.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "model/loader.h"
#include "runtime/sampler.h"

namespace lmkit::app {

using Action = std::function<int()>;

// Each add_* creates its subcommand on `app` and sets `run` when that subcommand is chosen.
void add_generate(CLI::App &app, Action &run);
void add_chat(CLI::App &app, Action &run);
void add_tokenize(CLI::App &app, Action &run);
void add_inspect(CLI::App &app, Action &run);
void add_demo(CLI::App &app, Action &run);
void add_tokenizer(CLI::App &app, Action &run);  // tokenizer train
void add_data(CLI::App &app, Action &run);       // data prepare, data stories
void add_train(CLI::App &app, Action &run);
void add_eval(CLI::App &app, Action &run);      // eval ppl
void add_quantize(CLI::App &app, Action &run);  // quantize, convert
void add_bench(CLI::App &app, Action &run);
void add_simulate(CLI::App &app, Action &run);  // pipeline schedule simulator
void add_serve(CLI::App &app, Action &run);     // OpenAI-compatible HTTP server

// Flags shared by the verbs that load a model.
struct ModelFlags {
  std::string model;
  std::string tokenizer;
  int threads = 0;  // 0: every hardware thread
  void add_to(CLI::App *cmd, bool with_threads = true);
  int thread_count() const;
  LoadedModel load() const;  // model + tokenizer; throws if the model has no tokenizer
};

// Sampling flags shared by generate and chat.
struct SamplingFlags {
  float temperature = 0.8f;
  int top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repeat_penalty = 1.0f;
  int repeat_last_n = 64;
  int64_t seed = -1;  // -1: random
  void add_to(CLI::App *cmd);
  uint64_t resolved_seed() const;  // the seed to use (drawn once when -1)
  SamplerParams params() const;    // with the seed resolved
};

// Writes text to stdout immediately (streaming).
void write_out(std::string_view s);

}  // namespace lmkit::app
