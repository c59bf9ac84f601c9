// Sampler chain: turns logits into the next token. Stages run in a fixed, documented order:
// repetition penalty -> top-k -> top-p -> min-p -> temperature -> draw (or greedy argmax when
// temperature is 0). Not a decoding strategy (beam search, speculative): those sit above it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/rng.h"

namespace lmkit {

struct SamplerParams {
  float temperature = 0.8f;     // <= 0: greedy (argmax after the penalty)
  int32_t top_k = 40;           // <= 0: off
  float top_p = 0.95f;          // >= 1: off
  float min_p = 0.05f;          // <= 0: off; keeps tokens with p >= min_p * p_max
  float repeat_penalty = 1.0f;  // 1: off; > 1 discourages tokens seen in the last repeat_last_n
  int32_t repeat_last_n = 64;
  uint64_t seed = 0;

  // Throws lmkit::Error for values outside their ranges (negative temperature, top_p > 1, ...).
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams &p);
  const SamplerParams &params() const { return p_; }

  // Picks a token from logits (n_vocab); `history` are the tokens so far (for the penalty).
  // logits are not modified.
  int32_t sample(const float *logits, int64_t n_vocab, std::span<const int32_t> history);

  // The probabilities the last draw used, for logprobs: (id, p) sorted by p descending.
  const std::vector<std::pair<int32_t, float>> &last_candidates() const { return cand_; }

 private:
  SamplerParams p_;
  Rng rng_;
  std::vector<std::pair<int32_t, float>> cand_;  // (id, logit), then (id, prob)
  std::vector<float> penalized_;
  std::vector<float> probs_;
  std::vector<int32_t> seen_;
};

// Index of the largest value (the first one on ties).
int32_t argmax(const float *x, int64_t n);

}  // namespace lmkit
