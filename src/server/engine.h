// Engine: continuous batching for `lmkit serve`. Requests (jobs) wait in a bounded queue, take a
// KV-cache slot when one is free, and are then decoded together: every step is ONE batched forward
// holding one row per decoding sequence plus prompt chunks of sequences still in prefill (so a
// long prompt never stalls the others), after which each sequence samples with its own sampler and
// stop rules (runtime's Continuation, the same as `lmkit generate`). New jobs join between steps
// and finished ones leave. The forward's bits do not depend on the batch (each output row is its
// own dot products), so a sequence's tokens are the same alone or among others.
// Not HTTP and not the OpenAI schema (openai.h); not a sampler (runtime/).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/thread_pool.h"
#include "model/decoder.h"
#include "runtime/generate.h"
#include "tokenizer/tokenizer.h"

namespace lmkit::serve {

// log p(token) under the model's own distribution (softmax of the raw logits: no temperature,
// penalty or truncation), and the most likely alternatives.
struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0;
};
struct TokenInfo {
  int32_t id = 0;
  float logprob = 0;
  std::vector<TokenLogprob> top;  // best first
};

struct JobSpec {
  std::vector<int32_t> prompt;   // at least one token
  GenerateOptions gen;           // max_tokens, sampling (with seed), stop strings, ignore_eos
  int top_logprobs = -1;         // < 0: no logprobs; else the chosen token's and this many others
  bool prompt_logprobs = false;  // logprobs of the prompt tokens too (completions' echo)
  bool embed = false;  // run the prompt only; the result is its mean-pooled, L2-normalised
                       // final hidden state (after the final norm); no generation
};

struct Event {
  std::string text;                // text this token released (may be empty)
  std::optional<TokenInfo> token;  // the generated token (absent in the final event)
  bool final = false;
  // Final event only: "stop", "length", "cancelled" or "error" (then `error` says why).
  std::string finish_reason, error;
  int64_t n_prompt = 0, n_completion = 0;
  std::vector<float> embedding;        // embed jobs
  std::vector<TokenInfo> prompt_info;  // prompt_logprobs: one per prompt token after the first
};

// One request's side of the engine: the engine's worker pushes events, the request's thread takes
// them. cancel() is safe from any thread; the slot is freed before the next step.
class Job {
 public:
  // Moves the available events into `out` (waiting up to `timeout` for the first). Returns false
  // once the final event has been taken.
  bool wait(std::vector<Event> &out, std::chrono::milliseconds timeout);
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

 private:
  friend class Engine;
  void push(Event e);
  JobSpec spec_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  bool final_pushed_ = false, final_taken_ = false;
  std::atomic<bool> cancelled_{false};
  double t_submit_ = 0;
};

struct EngineOptions {
  int n_slots = 4;        // sequences decoded together (KV-cache slots)
  int64_t n_ctx = 0;      // positions per slot; <= 0: the model's training context
  int64_t n_batch = 256;  // rows per step (decode rows first, then prompt chunks)
  size_t max_queue = 64;  // jobs waiting for a slot; submit() refuses beyond
};

// Prometheus-style counters (monotonic) and gauges, read by /metrics.
struct EngineStats {
  uint64_t jobs_done = 0, tokens_prompt = 0, tokens_generated = 0, steps = 0;
  size_t queued = 0, active = 0;
  double decode_tok_s = 0;  // generated tokens per second over the last few seconds
  // Time to first token: cumulative counts of jobs with TTFT <= each bound (seconds).
  static constexpr double kTtftBounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  std::vector<uint64_t> ttft_buckets = std::vector<uint64_t>(std::size(kTtftBounds) + 1);
  double ttft_sum = 0;
  uint64_t ttft_count = 0;
};

class Engine {
 public:
  Engine(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tok,
         std::shared_ptr<ThreadPool> pool, EngineOptions opt);
  ~Engine();  // stops the worker (queued and running jobs end as "cancelled")
  Engine(const Engine &) = delete;
  Engine &operator=(const Engine &) = delete;

  int64_t n_ctx() const { return n_ctx_; }
  const Model &model() const { return *model_; }
  const Tokenizer &tokenizer() const { return *tok_; }

  // Queues a job; nullptr when the queue is full. Throws lmkit::Error for a job that can never
  // run (empty prompt, prompt + max_tokens beyond the context, bad sampling values).
  std::shared_ptr<Job> submit(JobSpec spec);
  EngineStats stats() const;

 private:
  struct Seq;
  void run();
  void admit(std::vector<std::shared_ptr<Job>> &incoming);
  void step();
  void finish(Seq &s, const std::string &reason, const std::string &error = {});
  void record_ttft(double seconds);
  void deliver();  // hands the outbox's events to their jobs (after the stats count them)

  std::shared_ptr<const Model> model_;
  std::shared_ptr<const Tokenizer> tok_;
  std::shared_ptr<ThreadPool> pool_;
  EngineOptions opt_;
  int64_t n_ctx_;
  KVCache cache_;
  RopeTable rope_;
  Arena arena_;
  std::vector<std::vector<int32_t>> slot_tokens_;  // tokens whose K/V each slot holds
  std::vector<std::unique_ptr<Seq>> active_;
  std::vector<float> logits_;
  std::vector<std::pair<std::shared_ptr<Job>, Event>> outbox_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  EngineStats stats_;
  std::deque<std::pair<double, int64_t>> recent_;  // (time, tokens) of recent steps
  std::thread worker_;
};

}  // namespace lmkit::serve
