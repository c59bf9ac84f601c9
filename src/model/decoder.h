// Model and State: one generic decoder-only transformer driven by ModelConfig (llama, mistral,
// qwen2, gpt2 are flags, not classes), and the per-sequence state it runs on (KV cache and
// activation buffers, sized once). Not sampling or generation loops: those live in runtime/.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/tensor.h"
#include "core/thread_pool.h"
#include "model/config.h"
#include "model/hooks.h"
#include "model/weights.h"

namespace lmkit {

class Model;

// Everything one sequence needs to run: KV cache for n_ctx positions, and activation buffers
// for up to n_batch tokens per forward call (longer inputs are processed in chunks).
// Allocated once; forward() allocates nothing unless hooks listen.
class State {
 public:
  State(const Model &m, int64_t n_ctx, int64_t n_batch = 256, int n_threads = 1);

  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_batch() const { return n_batch_; }
  size_t kv_bytes() const { return k_.nbytes() + v_.nbytes(); }

 private:
  friend class Model;
  int64_t n_ctx_, n_batch_;
  Tensor k_, v_;                // (n_layer, n_head_kv, n_ctx, head_dim)
  Tensor rope_cos_, rope_sin_;  // (n_ctx, rope_dim/2)
  // Activations for one chunk of up to n_batch tokens.
  Tensor x_;                    // (n_batch, n_embd)   residual stream
  Tensor h_;                    // (n_batch, n_embd)   normalised input of a sub-block
  Tensor qkv_;                  // (n_batch, q_dim + 2*kv_dim)
  Tensor z_;                    // (n_batch, q_dim)    attention output per head, before W_O
  Tensor out_;                  // (n_batch, n_embd)   sub-block output before the residual add
  Tensor gate_;                 // (n_batch, n_ff)
  Tensor up_;                   // (n_batch, n_ff)
  Tensor scratch_;              // (n_threads, n_ctx)  attention scores, one row per thread
  std::vector<int32_t> pos_;    // (n_batch) positions of the current chunk
  std::vector<float> pattern_;  // (n_head, n_batch, n_ctx), only when a pattern hook listens
};

class Model {
 public:
  Model(ModelConfig c, Weights w);

  const ModelConfig &config() const { return cfg_; }
  const Weights &weights() const { return w_; }
  // RoPE inverse frequencies after scaling (rope_dim/2), in double precision.
  const std::vector<double> &rope_inv_freq() const { return inv_freq_; }

  // Runs tokens at positions [pos, pos + n) of one sequence, writing their K/V into st's cache.
  // logits: (n_vocab) for the last token, or (n, n_vocab) for every token when all_logits.
  // Throws lmkit::Error for an id outside the vocabulary or a position past the context.
  void forward(State &st, std::span<const int32_t> tokens, int64_t pos, float *logits,
               bool all_logits, ThreadPool &pool, const Hooks *hooks = nullptr) const;

 private:
  void forward_chunk(State &st, const int32_t *tokens, int64_t n, int64_t pos, float *logits,
                     bool all_logits, ThreadPool &pool, const Hooks *hooks) const;

  ModelConfig cfg_;
  Weights w_;
  std::vector<double> inv_freq_;
};

}  // namespace lmkit
