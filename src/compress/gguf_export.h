// GGUF export of a model: the layout llama.cpp expects (architecture keys, tensor names, Q/K rows
// permuted for its adjacent-pair RoPE, llama3 RoPE scaling as rope_freqs.weight) and the file
// itself, written atomically. Also the inverse layout change for Hugging Face outputs. Not a
// quantizer (quantize.h chooses the types) and not a GGUF parser (io/gguf.h).
#pragma once

#include <string>

#include "compress/quantize.h"
#include "compress/vocab.h"

namespace lmkit::compress {

// general.architecture for a model: "llama" (llama and mistral: llama.cpp rotates adjacent
// pairs), "qwen2" (half pairs, as Hugging Face), "gpt2".
std::string gguf_arch(const ModelConfig &c);

// llama3 RoPE scaling settings (Hugging Face rope_scaling of type "llama3").
struct Llama3Rope {
  float factor = 0, low_freq_factor = 0, high_freq_factor = 0;
  int64_t orig_ctx = 0;
};

// The model in GGUF's conventions: for llama/mistral with half-paired RoPE (Hugging Face), the
// rows of attn_q and attn_k (weights and biases) are permuted within each head so that pair
// (i, i + d/2) becomes (2i, 2i + 1), and the config says interleaved; llama3 RoPE scaling
// becomes a rope_freqs.weight tensor of per-frequency divisors (no scaling in the config); a
// tied gpt2 gets output.weight as a copy of token_embd.weight (llama.cpp's gpt2 requires it).
// The result runs in lmkit with the same logits up to float rounding. llama3 (if not null)
// receives the scaling settings the config had (factor 0 when none).
ModelTensors to_gguf_layout(ModelTensors m, Llama3Rope *llama3 = nullptr);

// The inverse, for Hugging Face outputs: half-paired RoPE, rope_freqs back to llama3 settings
// (from the lmkit.rope.llama3.* keys this exporter writes; throws when they are missing), and
// "llama" with a sliding window named "mistral".
ModelTensors to_hf_layout(ModelTensors m, const Llama3Rope *llama3 = nullptr);
// The llama3 settings a GGUF written by gguf_write carries; false when it has none.
bool gguf_read_llama3_rope(const GGUFFile &f, Llama3Rope &out);

struct GGUFExportOptions {
  std::string name;              // general.name ("" = none)
  DType file_type = DType::F32;  // general.file_type (the --type asked for)
  Llama3Rope llama3;             // written as lmkit.rope.llama3.* when factor > 0
};

// Writes m (already in GGUF layout: to_gguf_layout) and the vocabulary (may be null) to path,
// atomically. Throws naming what GGUF cannot hold (an unknown architecture, a GELU-erf gpt2,
// per-layer sliding windows, llama MLP biases).
void gguf_write(const ModelTensors &m, const Vocab *vocab, const std::string &path,
                const GGUFExportOptions &opt = {});

}  // namespace lmkit::compress
