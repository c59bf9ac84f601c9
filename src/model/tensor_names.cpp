// One row per tensor: canonical pattern -> Hugging Face pattern ({L} is the layer index).
#include "model/tensor_names.h"

#include <cctype>
#include <cstring>

namespace lmkit {

namespace {

struct Row {
  const char *ours;
  const char *hf;
  bool conv1d;
};

constexpr Row kLlamaRows[] = {
    {"token_embd.weight", "model.embed_tokens.weight", false},
    {"output_norm.weight", "model.norm.weight", false},
    {"output.weight", "lm_head.weight", false},
    {"blk.{L}.attn_norm.weight", "model.layers.{L}.input_layernorm.weight", false},
    {"blk.{L}.attn_q.weight", "model.layers.{L}.self_attn.q_proj.weight", false},
    {"blk.{L}.attn_q.bias", "model.layers.{L}.self_attn.q_proj.bias", false},
    {"blk.{L}.attn_k.weight", "model.layers.{L}.self_attn.k_proj.weight", false},
    {"blk.{L}.attn_k.bias", "model.layers.{L}.self_attn.k_proj.bias", false},
    {"blk.{L}.attn_v.weight", "model.layers.{L}.self_attn.v_proj.weight", false},
    {"blk.{L}.attn_v.bias", "model.layers.{L}.self_attn.v_proj.bias", false},
    {"blk.{L}.attn_output.weight", "model.layers.{L}.self_attn.o_proj.weight", false},
    {"blk.{L}.attn_output.bias", "model.layers.{L}.self_attn.o_proj.bias", false},
    {"blk.{L}.ffn_norm.weight", "model.layers.{L}.post_attention_layernorm.weight", false},
    {"blk.{L}.ffn_gate.weight", "model.layers.{L}.mlp.gate_proj.weight", false},
    {"blk.{L}.ffn_gate.bias", "model.layers.{L}.mlp.gate_proj.bias", false},
    {"blk.{L}.ffn_up.weight", "model.layers.{L}.mlp.up_proj.weight", false},
    {"blk.{L}.ffn_up.bias", "model.layers.{L}.mlp.up_proj.bias", false},
    {"blk.{L}.ffn_down.weight", "model.layers.{L}.mlp.down_proj.weight", false},
    {"blk.{L}.ffn_down.bias", "model.layers.{L}.mlp.down_proj.bias", false},
};

constexpr Row kGpt2Rows[] = {
    {"token_embd.weight", "transformer.wte.weight", false},
    {"position_embd.weight", "transformer.wpe.weight", false},
    {"output_norm.weight", "transformer.ln_f.weight", false},
    {"output_norm.bias", "transformer.ln_f.bias", false},
    {"output.weight", "lm_head.weight", false},
    {"blk.{L}.attn_norm.weight", "transformer.h.{L}.ln_1.weight", false},
    {"blk.{L}.attn_norm.bias", "transformer.h.{L}.ln_1.bias", false},
    {"blk.{L}.attn_qkv.weight", "transformer.h.{L}.attn.c_attn.weight", true},
    {"blk.{L}.attn_qkv.bias", "transformer.h.{L}.attn.c_attn.bias", false},
    {"blk.{L}.attn_output.weight", "transformer.h.{L}.attn.c_proj.weight", true},
    {"blk.{L}.attn_output.bias", "transformer.h.{L}.attn.c_proj.bias", false},
    {"blk.{L}.ffn_norm.weight", "transformer.h.{L}.ln_2.weight", false},
    {"blk.{L}.ffn_norm.bias", "transformer.h.{L}.ln_2.bias", false},
    {"blk.{L}.ffn_up.weight", "transformer.h.{L}.mlp.c_fc.weight", true},
    {"blk.{L}.ffn_up.bias", "transformer.h.{L}.mlp.c_fc.bias", false},
    {"blk.{L}.ffn_down.weight", "transformer.h.{L}.mlp.c_proj.weight", true},
    {"blk.{L}.ffn_down.bias", "transformer.h.{L}.mlp.c_proj.bias", false},
};

// "blk.12.attn_q.weight" -> ("blk.{L}.attn_q.weight", "12"); other names unchanged.
std::pair<std::string, std::string> to_pattern(const std::string &name) {
  if (name.rfind("blk.", 0) != 0) return {name, ""};
  size_t e = 4;
  while (e < name.size() && std::isdigit(static_cast<unsigned char>(name[e]))) ++e;
  if (e == 4) return {name, ""};
  return {"blk.{L}" + name.substr(e), name.substr(4, e - 4)};
}

}  // namespace

std::optional<ExternalName> hf_tensor_name(const std::string &arch, const std::string &canonical) {
  auto [pattern, layer] = to_pattern(canonical);
  auto lookup = [&](const auto &rows) -> std::optional<ExternalName> {
    for (const Row &r : rows) {
      if (pattern != r.ours) continue;
      std::string n = r.hf;
      if (size_t p = n.find("{L}"); p != std::string::npos) n.replace(p, 3, layer);
      return ExternalName{n, r.conv1d};
    }
    return std::nullopt;
  };
  if (arch == "gpt2") return lookup(kGpt2Rows);
  return lookup(kLlamaRows);
}

}  // namespace lmkit
