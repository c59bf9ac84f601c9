// Tensor-name tables: lmkit's canonical names (GGUF's: "blk.3.attn_q.weight") mapped to each
// format's names (HF: "model.layers.3.self_attn.q_proj.weight"), per architecture.
// Not the loader: weights.cpp asks these tables, then checks shapes and converts.
#pragma once

#include <optional>
#include <string>

namespace lmkit {

struct ExternalName {
  std::string name;
  bool conv1d = false;  // stored (in, out) as GPT-2's Conv1D: transpose to (out, in) on load
};

// The Hugging Face name of a canonical tensor for an architecture ("llama", "mistral", "qwen2",
// "gpt2"), or nullopt if the architecture has no such tensor.
std::optional<ExternalName> hf_tensor_name(const std::string &arch, const std::string &canonical);

}  // namespace lmkit
