// ModelConfig: the architecture as data. One flat struct describes every decoder lmkit runs
// (llama, mistral, qwen2, gpt2); HF config.json, GGUF metadata and llama2.c headers map onto it.
// Not the weights (weights.h) and not the runtime settings (context size, threads: runtime/).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/dtype.h"
#include "kernels/kernels.h"

namespace lmkit {

class GGUFFile;
struct Llama2cHeader;

enum class NormType { RMSNorm, LayerNorm };
enum class PosEncoding { RoPE, Learned };
enum class MlpType { SwiGLU, GELU, GELUTanh };
enum class RopeScaling { None, Linear, Llama3 };

struct ModelConfig {
  std::string arch;     // "llama", "mistral", "qwen2", "gpt2"
  int64_t n_vocab = 0;  // rows of the embedding / classifier
  int64_t n_embd = 0;   // d_model
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;  // < n_head: grouped-query attention
  int64_t head_dim = 0;   // usually n_embd / n_head
  int64_t n_ff = 0;       // MLP hidden size
  int64_t n_ctx_train = 0;

  NormType norm = NormType::RMSNorm;
  float norm_eps = 1e-5f;
  PosEncoding pos = PosEncoding::RoPE;
  MlpType mlp = MlpType::SwiGLU;

  float rope_theta = 10000.0f;
  kernels::RopeStyle rope_style = kernels::RopeStyle::Half;
  int64_t rope_dim = 0;  // rotated dims per head (== head_dim unless partial rotary)
  RopeScaling rope_scaling = RopeScaling::None;
  float rope_factor = 1.0f;
  float rope_low_freq_factor = 1.0f;   // llama3 scaling
  float rope_high_freq_factor = 4.0f;  // llama3 scaling
  int64_t rope_orig_ctx = 0;           // llama3 scaling: original_max_position_embeddings

  bool qkv_bias = false;       // q/k/v projections have biases (qwen2, gpt2)
  bool attn_out_bias = false;  // attention output projection has a bias (gpt2)
  bool mlp_bias = false;       // MLP projections have biases (gpt2)
  bool norm_bias = false;      // LayerNorm has a bias (gpt2)
  bool tied_embeddings = false;

  // Sliding-window attention per layer (0 = full causal attention); empty = none anywhere.
  std::vector<int64_t> sliding_window;

  int32_t bos_id = -1, eos_id = -1;
  DType dtype = DType::F32;  // storage type of the big matrices, for display

  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }
  int64_t window(int64_t layer) const {
    return sliding_window.empty() ? 0 : sliding_window[size_t(layer)];
  }

  // Throws lmkit::Error naming the first inconsistency (heads not dividing dims, zero sizes...).
  void validate() const;
  // Every field as name -> JSON value (inspect, --json), in declaration order.
  nlohmann::ordered_json to_json() const;
};

// The model_type values lmkit runs, for error messages: "llama, mistral, qwen2, gpt2".
const char *supported_model_types();

// Hugging Face config.json (parsed). `where` names the file in errors.
ModelConfig config_from_hf(const nlohmann::json &j, const std::string &where);
// The Hugging Face config.json for a config (what transformers' config classes write for the
// model_type), so checkpoints lmkit writes load in lmkit and in PyTorch/HF.
nlohmann::ordered_json config_to_hf(const ModelConfig &c);
// GGUF metadata (general.architecture = llama | qwen2 | gpt2).
ModelConfig config_from_gguf(const GGUFFile &f);
// llama2.c header: llama architecture, interleaved RoPE with theta 10000.
ModelConfig config_from_llama2c(const Llama2cHeader &h);

}  // namespace lmkit
