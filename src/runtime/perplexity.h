// Perplexity of a text under a model, with sliding windows for texts longer than the context.
// Not a benchmark harness: one text, one number (and its parts).
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "core/thread_pool.h"
#include "model/decoder.h"

namespace lmkit {

struct PerplexityResult {
  int64_t tokens = 0;  // predicted tokens: every token but the first
  double nll_sum = 0;  // sum of -log p(token | its context), natural log
  double ppl() const;  // exp(nll_sum / tokens)
  int64_t windows = 0;
};

// Scores ids[1..] given what precedes them. Windows of n_ctx tokens (each run from position 0)
// start every n_ctx/2 tokens; each token is scored once, in the first window that holds it at a
// position that was not scored before, so every token after the first window sees at least
// n_ctx/2 tokens of context. progress(done, total) is called after each window.
PerplexityResult perplexity(const Model &m, std::span<const int32_t> ids, int64_t n_ctx,
                            ThreadPool &pool,
                            const std::function<void(int64_t, int64_t)> &progress = {});

}  // namespace lmkit
