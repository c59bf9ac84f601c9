// Weights: the tensors of one decoder, checked against its config and laid out for the kernels
// (matrices (out, in) in their file dtype and memory-mapped where possible, GGUF block types
// re-packed by kernels::pack_weight where the kernels want it; norms and biases f32).
// Not the forward pass (decoder.h) and not file parsing (io/).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "autograd/ops.h"
#include "core/tensor.h"
#include "model/config.h"

namespace lmkit {

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
  Tensor tok_embd;                    // (n_vocab, n_embd), file dtype (block types as packed)
  Tensor pos_embd;                    // (n_ctx_train, n_embd) f32, learned positions only
  Tensor output_norm, output_norm_b;  // (n_embd) f32
  Linear output;                      // (n_vocab, n_embd); shares tok_embd when tied
  Tensor rope_freqs;  // (rope_dim/2) f32 per-frequency divisors (GGUF llama3), or undefined
  std::vector<LayerWeights> layers;

  // Every tensor as loaded, canonical name first (for inspect and parameter counts): the very
  // tensors the fields hold (a q4_0 matrix appears as its packed q4_0x8 form).
  std::vector<std::pair<std::string, Tensor>> table;
  int64_t n_params() const;  // tied tensors counted once
};

// Where tensors come from: canonical names in, tensors (already in (out, in) layout) out.
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual std::optional<Tensor> get(const std::string &canonical) const = 0;
  // The tensor the loader expects to have `shape` (sources that make tensors use it; files
  // return what they hold and the loader checks the shape).
  virtual std::optional<Tensor> get(const std::string &canonical, const Shape &shape) const {
    (void)shape;
    return get(canonical);
  }
  virtual bool has(const std::string &canonical) const { return get(canonical).has_value(); }
  // How the tensor is named in the file, for messages: "model.safetensors: 'lm_head.weight'".
  virtual std::string describe(const std::string &canonical) const = 0;
  // The file's free-form metadata (safetensors __metadata__), empty when the format has none.
  virtual std::map<std::string, std::string> metadata() const { return {}; }
};

std::unique_ptr<TensorSource> tensor_source_hf(const std::string &dir, const std::string &arch);
std::unique_ptr<TensorSource> tensor_source_gguf(std::shared_ptr<const class GGUFFile> f);
std::unique_ptr<TensorSource> tensor_source_llama2c(std::shared_ptr<const struct Llama2cFile> f);
// Tensors already in memory, by canonical name and in (out, in) layout (converters and tests);
// `what` names them in messages.
std::unique_ptr<TensorSource> tensor_source_table(
    std::vector<std::pair<std::string, Tensor>> tensors, std::string what);

// Loads and checks every tensor the config needs; throws naming the tensor and the problem
// (missing, wrong shape, unsupported dtype). Matrices may be f32, f16, bf16 or a GGUF block
// type with a matmul kernel (q4_0, q4_1, q5_0, q5_1, q8_0, q4_K, q5_K, q6_K); a quantized
// token_embd is looked up row by row (kernels::embedding_lookup) and serves as the tied
// classifier too.
Weights weights_load(const ModelConfig &c, const TensorSource &src);

// Writes DIR/config.json and DIR/model.safetensors in Hugging Face layout (HF tensor names,
// GPT-2's Conv1D matrices transposed back), atomically file by file. DIR must exist. Throws for
// block-quantized tensors (safetensors has no such dtypes: dequantize first).
void weights_save_hf(const ModelConfig &c, const Weights &w, const std::string &dir);

// The same weights as contiguous, owned f32 tensors (fp32 master weights for training); block
// types are dequantized (so a quantized model can be fine-tuned from its dequantized values).
Weights weights_to_f32(const Weights &w);

}  // namespace lmkit
