// Session: one conversation with a model: its State (KV cache), the tokens it holds, and the
// logits of the last one. Shares the Model (weights) with other sessions. Not thread-safe: one
// session is driven by one caller at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "model/decoder.h"
#include "model/hooks.h"

namespace lmkit {

class Session {
 public:
  // n_ctx: positions the KV cache holds (clamped to the model's training context when <= 0).
  Session(std::shared_ptr<const Model> model, std::shared_ptr<ThreadPool> pool, int64_t n_ctx,
          int64_t n_batch = 256);

  const Model &model() const { return *model_; }
  int64_t n_ctx() const { return state_.n_ctx(); }
  int64_t n_past() const { return int64_t(tokens_.size()); }
  const std::vector<int32_t> &tokens() const { return tokens_; }
  ThreadPool &pool() { return *pool_; }
  Hooks &hooks() { return hooks_; }

  // Appends tokens and runs them; returns the logits (n_vocab) after the last one. Throws if the
  // context would overflow or an id is out of range (the session is unchanged then).
  const float *eval(std::span<const int32_t> tokens);
  // Logits for every appended token ((n, n_vocab), valid until the next call).
  const float *eval_all(std::span<const int32_t> tokens);
  // Keeps only the first n tokens (the cache beyond is simply overwritten later).
  void rewind(int64_t n);
  // Makes the session hold exactly `tokens`, reusing the longest common prefix already in the
  // cache, and returns the logits after the last one (at least one token is re-run).
  const float *sync(std::span<const int32_t> tokens);
  const float *logits() const { return logits_.data(); }
  // Tokens the last eval/eval_all/sync actually ran (sync skips a reused prefix).
  int64_t n_last_eval() const { return n_last_eval_; }

 private:
  std::shared_ptr<const Model> model_;
  std::shared_ptr<ThreadPool> pool_;
  State state_;
  Hooks hooks_;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_;
  std::vector<float> all_logits_;
  int64_t n_last_eval_ = 0;
};

}  // namespace lmkit
