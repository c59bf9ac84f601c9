// load_model: opens a model from any file people have (Hugging Face folder, .gguf, llama2.c .bin)
// with its tokenizer. Not a converter: formats are read where they lie, memory-mapped.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "model/decoder.h"
#include "tokenizer/tokenizer.h"

namespace lmkit {

enum class ModelFormat { HuggingFace, GGUF, Llama2c };
const char *model_format_name(ModelFormat f);  // "hf", "gguf", "llama2c"

struct LoadedModel {
  std::shared_ptr<const Model> model;
  std::shared_ptr<const Tokenizer> tokenizer;  // null when none was found (llama2.c without -t)
  ModelFormat format = ModelFormat::HuggingFace;
  std::string path;
  std::map<std::string, std::string> metadata;  // safetensors __metadata__ (HF folders)
};

// path: a folder with config.json + safetensors (or a model.safetensors / config.json inside it),
// a .gguf file, or a llama2.c .bin. tokenizer_path overrides where the tokenizer comes from;
// when empty: the folder's tokenizer.json, the GGUF's vocabulary, or for llama2.c a
// tokenizer.bin / tok<N>.bin beside the checkpoint.
LoadedModel load_model(const std::string &path, const std::string &tokenizer_path = "");

// Only the tokenizer of a model path (no weights are read, so vocabulary-only GGUF files work);
// tokenizer_path overrides as above. Throws when none can be found.
std::shared_ptr<const Tokenizer> load_tokenizer_for(const std::string &path,
                                                    const std::string &tokenizer_path = "");

}  // namespace lmkit
