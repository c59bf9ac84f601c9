// Sampling stages over a candidate list; greedy never touches the RNG.
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace lmkit {

void SamplerParams::validate() const {
  LMKIT_CHECK(std::isfinite(temperature) && temperature >= 0.0f, "temperature must be >= 0, got ",
              temperature);
  LMKIT_CHECK(top_p > 0.0f && top_p <= 1.0f, "top-p must be in (0, 1], got ", top_p);
  LMKIT_CHECK(min_p >= 0.0f && min_p <= 1.0f, "min-p must be in [0, 1], got ", min_p);
  LMKIT_CHECK(top_k >= 0, "top-k must be >= 0, got ", top_k);
  LMKIT_CHECK(std::isfinite(repeat_penalty) && repeat_penalty > 0.0f,
              "repeat penalty must be > 0, got ", repeat_penalty);
  LMKIT_CHECK(repeat_last_n >= 0, "repeat-last-n must be >= 0, got ", repeat_last_n);
}

int32_t argmax(const float *x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return int32_t(best);
}

Sampler::Sampler(const SamplerParams &p) : p_(p), rng_(p.seed) {
  p_.validate();
}

int32_t Sampler::sample(const float *logits, int64_t n_vocab, std::span<const int32_t> history) {
  const float *lg = logits;
  // Repetition penalty (CTRL-style, as llama.cpp): divide positive logits, multiply negative.
  if (p_.repeat_penalty != 1.0f && p_.repeat_last_n > 0 && !history.empty()) {
    penalized_.assign(logits, logits + n_vocab);
    size_t from =
        history.size() > size_t(p_.repeat_last_n) ? history.size() - size_t(p_.repeat_last_n) : 0;
    seen_.assign(history.begin() + std::ptrdiff_t(from), history.end());
    std::sort(seen_.begin(), seen_.end());
    seen_.erase(std::unique(seen_.begin(), seen_.end()), seen_.end());
    for (int32_t t : seen_) {
      if (t < 0 || t >= n_vocab) continue;
      float &v = penalized_[size_t(t)];
      v = v > 0 ? v / p_.repeat_penalty : v * p_.repeat_penalty;
    }
    lg = penalized_.data();
  }
  if (p_.temperature <= 0.0f) {
    int32_t t = argmax(lg, n_vocab);
    cand_.assign(1, {t, 1.0f});
    return t;
  }
  // Candidates sorted by logit. by_logit is a strict total order (ties go to the lower id), so
  // the top k and their order are those of a full sort.
  auto by_logit = [](const auto &a, const auto &b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  };
  if (p_.top_k > 0 && p_.top_k < n_vocab) {
    // One pass with a heap of the k best so far, its worst on top: most logits lose one
    // comparison with that worst, so this costs about n_vocab comparisons, not a sort.
    const size_t k = size_t(p_.top_k);
    cand_.clear();
    for (int64_t i = 0; i < n_vocab; ++i) {
      const std::pair<int32_t, float> c{int32_t(i), lg[i]};
      if (cand_.size() < k) {
        cand_.push_back(c);
        std::push_heap(cand_.begin(), cand_.end(), by_logit);
      } else if (by_logit(c, cand_.front())) {
        std::pop_heap(cand_.begin(), cand_.end(), by_logit);
        cand_.back() = c;
        std::push_heap(cand_.begin(), cand_.end(), by_logit);
      }
    }
    std::sort_heap(cand_.begin(), cand_.end(), by_logit);
  } else {
    cand_.resize(size_t(n_vocab));
    for (int64_t i = 0; i < n_vocab; ++i) cand_[size_t(i)] = {int32_t(i), lg[i]};
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  // Softmax at temperature 1 for the top-p / min-p cuts (as llama.cpp orders them).
  auto softmax = [&](float temp) {
    const float mx = cand_[0].second;
    double sum = 0;
    probs_.resize(cand_.size());
    for (size_t i = 0; i < cand_.size(); ++i) {
      probs_[i] = float(std::exp(double(cand_[i].second - mx) / temp));
      sum += probs_[i];
    }
    for (float &p : probs_) p = float(p / sum);
  };
  softmax(1.0f);
  if (p_.top_p < 1.0f) {
    double cum = 0;
    size_t keep = cand_.size();
    for (size_t i = 0; i < probs_.size(); ++i) {
      cum += probs_[i];
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
    cand_.resize(keep);
  }
  if (p_.min_p > 0.0f) {
    const float cut = p_.min_p * probs_[0];
    size_t keep = 1;
    while (keep < cand_.size() && probs_[keep] >= cut) ++keep;
    cand_.resize(keep);
  }
  softmax(p_.temperature);
  for (size_t i = 0; i < cand_.size(); ++i) cand_[i].second = probs_[i];
  // Draw: inverse CDF over the kept candidates.
  double r = rng_.uniform_double(), cum = 0;
  for (const auto &c : cand_) {
    cum += c.second;
    if (r < cum) return c.first;
  }
  return cand_.back().first;
}

}  // namespace lmkit
