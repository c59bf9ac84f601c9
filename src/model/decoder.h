// Model: one generic decoder-only transformer driven by ModelConfig (llama, mistral, qwen2, gpt2
// are flags, not classes), written in autograd ops so the same code runs inference (single or
// batched sequences over a KV cache) and training (recorded for backward). State: what one
// sequence needs to run (cache, rope table, activation arena). Not sampling or generation loops
// (runtime/), and not optimisation (train/).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "autograd/ops.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "model/config.h"
#include "model/hooks.h"
#include "model/kv_cache.h"
#include "model/weights.h"

namespace lmkit {

// Rows [begin, end) of a batch that belong to one sequence. slot >= 0: the sequence's keys and
// values live in that KV-cache slot (the rows' own K/V are appended there first). slot == -1:
// the rows are the whole sequence from position 0 and attend among themselves (training).
struct SeqRows {
  int64_t begin = 0, end = 0;
  int32_t slot = -1;
};

struct Batch {
  std::span<const int32_t> tokens;  // (n)
  std::span<const int32_t> pos;     // (n) absolute position of each row
  std::span<const SeqRows> seqs;    // covering rows [0, n) in order
};

// A pipeline stage's share of a forward (pipeline parallelism, docs/PARALLEL.md): layers
// [first, last) only, the embedding when first == 0 and the final norm when last == n_layer.
// With `kv`, every sequence of the batch is a chunk of a longer one (Seq1F1B): its rows may start
// past position 0, its keys and values go into its KVStore and it attends to all the store holds
// up to its last position, so earlier chunks' keys are kept, not recomputed. kv holds one store
// per (layer, sequence): kv[(l - first) * n_seqs + s]. Without kv, sequences attend within the
// batch as usual.
struct Stage {
  int64_t first = 0, last = -1;  // last -1: n_layer
  ag::Var input;                 // the residual stream entering layer `first` (first > 0)
  std::span<const ag::KVStore> kv;
};

class Model;

// One sequence's inference state: KV cache (one slot), RoPE table and activation arena, sized
// once. forward() allocates nothing after its first call unless a hook listens.
class State {
 public:
  State(const Model &m, int64_t n_ctx, int64_t n_batch = 256);
  int64_t n_ctx() const { return cache_.n_ctx(); }
  int64_t n_batch() const { return n_batch_; }
  size_t kv_bytes() const { return cache_.bytes(); }

 private:
  friend class Model;
  int64_t n_batch_;
  KVCache cache_;
  RopeTable rope_;
  Arena arena_;
  std::vector<int32_t> pos_;
};

class Model {
 public:
  Model(ModelConfig c, Weights w);

  const ModelConfig &config() const { return cfg_; }
  const Weights &weights() const { return w_; }
  // RoPE inverse frequencies after scaling (rope_dim/2), in double precision.
  const std::vector<double> &rope_inv_freq() const { return inv_freq_; }

  // Runs the blocks and the final norm over a batch of rows; returns the normalised hidden states
  // (n, n_embd) — the input of the classifier. `cache` is needed when any sequence has a slot;
  // `rope` must cover every position in the batch. Records for backward when ctx records.
  // `stage` (optional) runs a part of the model instead (see Stage); then the result is the
  // residual stream after layer last - 1, normalised only when that is the last layer.
  ag::Var hidden(ag::Context &ctx, const Batch &b, const RopeTable &rope, KVCache *cache,
                 const Hooks *hooks = nullptr, const Stage *stage = nullptr) const;
  // logits (rows.size(), n_vocab) of the selected rows of h, in one matmul.
  void logits(ag::Context &ctx, ag::Var h, std::span<const int64_t> rows, float *out) const;
  const Linear &classifier() const { return w_.output; }

  // Single-sequence inference: tokens at positions [pos, pos + n), their K/V appended to st's
  // cache. logits: (n_vocab) for the last token, or (n, n_vocab) for every token when all_logits.
  // Throws lmkit::Error for an id outside the vocabulary or a position past the context.
  void forward(State &st, std::span<const int32_t> tokens, int64_t pos, float *logits,
               bool all_logits, ThreadPool &pool, const Hooks *hooks = nullptr) const;

  // Checks a batch against the model and cache (ids, positions, row coverage); throws.
  void validate(const Batch &b, const RopeTable &rope, const KVCache *cache,
                const Stage *stage = nullptr) const;

 private:
  ModelConfig cfg_;
  Weights w_;
  std::vector<double> inv_freq_;
};

}  // namespace lmkit
