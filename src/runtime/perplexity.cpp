// Sliding-window scoring through the decoder and the fused cross-entropy (no (n, vocab) logits).
#include "runtime/perplexity.h"

#include <cmath>
#include <vector>

#include "autograd/ops.h"
#include "core/error.h"

namespace lmkit {

double PerplexityResult::ppl() const {
  return tokens > 0 ? std::exp(nll_sum / double(tokens)) : std::nan("");
}

PerplexityResult perplexity(const Model &m, std::span<const int32_t> ids, int64_t n_ctx,
                            ThreadPool &pool,
                            const std::function<void(int64_t, int64_t)> &progress) {
  const int64_t n = int64_t(ids.size());
  LMKIT_CHECK(n >= 2, "perplexity needs at least 2 tokens, the text has ", n);
  LMKIT_CHECK(n_ctx >= 2, "the context must hold at least 2 tokens, got ", n_ctx);
  const int64_t ctx = std::min(n_ctx, n), stride = std::max<int64_t>(1, ctx / 2);
  RopeTable rope(m, ctx);
  Arena arena;
  std::vector<int32_t> pos(static_cast<size_t>(ctx)), targets(static_cast<size_t>(ctx));
  for (int64_t i = 0; i < ctx; ++i) pos[size_t(i)] = int32_t(i);
  PerplexityResult r;
  int64_t scored_end = 1;  // ids[scored_end] is the next token to score
  const int64_t total = n - 1;
  for (int64_t begin = 0;; begin += stride) {
    const int64_t end = std::min(begin + ctx, n), len = end - begin;
    for (int64_t i = 0; i < len; ++i) {
      const int64_t t = begin + i + 1;  // the token position i predicts
      targets[size_t(i)] = t < end && t >= scored_end ? ids[size_t(t)] : -1;
    }
    arena.reset();
    ag::Context c(pool, arena);
    const SeqRows seq{0, len, -1};
    Batch b{ids.subspan(size_t(begin), size_t(len)), std::span<const int32_t>(pos.data(), size_t(len)),
            std::span<const SeqRows>(&seq, 1)};
    ag::Var h = m.hidden(c, b, rope, nullptr);
    ag::LossSum ls = ag::cross_entropy(c, h, m.classifier(), targets.data(), 1.0f);
    r.nll_sum += ls.sum;
    r.tokens += ls.count;
    ++r.windows;
    scored_end = end;
    if (progress) progress(scored_end - 1, total);
    if (end == n) break;
  }
  return r;
}

}  // namespace lmkit
