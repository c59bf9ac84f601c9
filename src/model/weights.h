// Weights: the tensors of one decoder, checked against its config and laid out for the kernels
// (matrices (out, in) in their file dtype and memory-mapped where possible; norms and biases f32).
// Not the forward pass (decoder.h) and not file parsing (io/).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace lmkit {

// y = x W^T + b.
struct Linear {
  Tensor w;  // (out, in), f32/f16/bf16, rows contiguous
  Tensor b;  // (out) f32, or undefined when there is no bias
  int64_t n_out() const { return w.dim(0); }
  int64_t n_in() const { return w.dim(1); }
  bool has_bias() const { return b.data() != nullptr; }
};

struct LayerWeights {
  Tensor attn_norm, attn_norm_b;  // (n_embd) f32; _b only for LayerNorm
  Linear wq, wk, wv;              // (q_dim, n_embd), (kv_dim, n_embd) x2; unused when fused
  Linear wqkv;                    // fused (q_dim + 2 kv_dim, n_embd) (GPT-2), else undefined
  Linear wo;                      // (n_embd, q_dim)
  Tensor ffn_norm, ffn_norm_b;    // (n_embd) f32
  Linear w_gate;                  // (n_ff, n_embd), SwiGLU only
  Linear w_up;                    // (n_ff, n_embd)
  Linear w_down;                  // (n_embd, n_ff)
  bool fused_qkv() const { return wqkv.w.data() != nullptr; }
};

struct Weights {
  Tensor tok_embd;                    // (n_vocab, n_embd), file dtype
  Tensor pos_embd;                    // (n_ctx_train, n_embd) f32, learned positions only
  Tensor output_norm, output_norm_b;  // (n_embd) f32
  Linear output;                      // (n_vocab, n_embd); shares tok_embd when tied
  Tensor rope_freqs;  // (rope_dim/2) f32 per-frequency divisors (GGUF llama3), or undefined
  std::vector<LayerWeights> layers;

  // Every tensor as loaded, canonical name first (for inspect and parameter counts).
  std::vector<std::pair<std::string, Tensor>> table;
  int64_t n_params() const;  // tied tensors counted once
};

// Where tensors come from: canonical names in, tensors (already in (out, in) layout) out.
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual std::optional<Tensor> get(const std::string &canonical) const = 0;
  // How the tensor is named in the file, for messages: "model.safetensors: 'lm_head.weight'".
  virtual std::string describe(const std::string &canonical) const = 0;
  // The file's free-form metadata (safetensors __metadata__), empty when the format has none.
  virtual std::map<std::string, std::string> metadata() const { return {}; }
};

std::unique_ptr<TensorSource> tensor_source_hf(const std::string &dir, const std::string &arch);
std::unique_ptr<TensorSource> tensor_source_gguf(std::shared_ptr<const class GGUFFile> f);
std::unique_ptr<TensorSource> tensor_source_llama2c(std::shared_ptr<const struct Llama2cFile> f);

// Loads and checks every tensor the config needs; throws naming the tensor and the problem
// (missing, wrong shape, unsupported dtype).
Weights weights_load(const ModelConfig &c, const TensorSource &src);

}  // namespace lmkit
