// Vocab: a tokenizer as the data converters move between formats (tokens, scores or merges,
// token types, special ids, flags, chat template), read from a GGUF's tokenizer.ggml.* keys, a
// Hugging Face tokenizer.json folder or a llama2.c tokenizer .bin, and written as GGUF
// tokenizer.ggml.* keys or as tokenizer.json + tokenizer_config.json. Not a tokenizer: encoding
// lives in tokenizer/, which loads what these functions write.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/gguf.h"

namespace lmkit::compress {

struct Vocab {
  // "llama": SentencePiece-style BPE ranked by scores; "gpt2": byte-level BPE ranked by merges
  // (llama.cpp's tokenizer.ggml.model names). Other models ("bert") pass through GGUF only.
  std::string model;
  std::string pre;  // gpt2: the pre-tokenizer preset ("gpt-2", "llama3", "qwen2", ...)
  std::vector<std::string> tokens;  // (n)
  std::vector<float> scores;        // (n) llama; empty for gpt2
  // (n) GGUF token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
  std::vector<int32_t> types;
  std::vector<std::string> merges;  // gpt2: "left right", by rank
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = false, add_eos = false;
  bool add_space_prefix = true;  // llama: a "▁" in front of the text
  std::string chat_template;
  // The other tokenizer.* keys of a GGUF source, written back verbatim to a GGUF.
  std::vector<std::pair<std::string, GGUFValue>> extra;
  // A Hugging Face source folder: its tokenizer files are copied as they are to HF outputs.
  std::string hf_dir;
};

Vocab vocab_from_gguf(const GGUFFile &f);
// dir holds tokenizer.json (+ tokenizer_config.json, generation_config.json). A SentencePiece
// style BPE (Metaspace / Prepend + Replace) gets scores from its merge ranks, -(rank + 1) for
// the piece a merge makes, so that llama.cpp's score-ordered merging follows the merge list.
Vocab vocab_from_hf(const std::string &dir);
// llama2.c's tokenizer .bin: its scores, pieces with "▁" for spaces, <unk>/<s>/</s> at 0/1/2.
Vocab vocab_from_llama2c(const std::string &path, int64_t n_vocab);

// Pads the token list to n tokens with "[PAD{id}]" of type unused (as llama.cpp's converter
// does: its token_embd rows and vocabulary must agree). Throws when the vocabulary is larger.
void vocab_pad(Vocab &v, int64_t n);

// tokenizer.ggml.* (and tokenizer.chat_template) keys. Throws for what GGUF readers cannot load
// back (a byte-level pre-tokenizer that matches no llama.cpp preset).
void vocab_to_gguf(const Vocab &v, GGUFWriter &w);

// DIR/tokenizer.json and DIR/tokenizer_config.json (or, for a Hugging Face source, copies of its
// tokenizer files). The result is loaded back and checked to tokenize as the source does.
void vocab_to_hf(const Vocab &v, const std::string &dir);

}  // namespace lmkit::compress
