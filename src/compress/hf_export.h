// Hugging Face export of a model: a folder with config.json, model.safetensors,
// generation_config.json and the tokenizer files, built in a temporary sibling folder and
// renamed into place, so an interrupted run leaves nothing half-written. Not a layout change
// (gguf_export.h: to_hf_layout) and not a dtype conversion (quantize.h: convert_model).
#pragma once

#include <string>

#include "compress/quantize.h"
#include "compress/vocab.h"

namespace lmkit::compress {

// m must be in Hugging Face layout (to_hf_layout) with f32/f16/bf16 tensors. dir must not exist
// or be an empty folder; its parent must exist. vocab may be null (no tokenizer files).
void hf_write(const ModelTensors &m, const Vocab *vocab, const std::string &dir);

}  // namespace lmkit::compress
