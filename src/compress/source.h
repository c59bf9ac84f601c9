// ModelSource: a model opened for conversion — the runnable model (any format load_model
// reads) plus what a converter needs besides it: the vocabulary as data, the llama3 RoPE
// settings of a GGUF lmkit wrote, a name. Not a loader of its own: model/loader.h does that.
#pragma once

#include <optional>
#include <string>

#include "compress/gguf_export.h"
#include "compress/vocab.h"
#include "model/loader.h"

namespace lmkit::compress {

struct ModelSource {
  LoadedModel lm;
  std::optional<Vocab> vocab;  // none when the model comes without a tokenizer
  Llama3Rope llama3;           // factor 0 unless a GGUF carries lmkit.rope.llama3.*
  std::string name;            // for general.name: the folder or file name without extension
};

// path: anything load_model reads; tokenizer_path overrides where the vocabulary comes from
// (a tokenizer.json folder or file, a .gguf, a llama2.c .bin), as -t does everywhere.
ModelSource open_source(const std::string &path, const std::string &tokenizer_path = "");

}  // namespace lmkit::compress
