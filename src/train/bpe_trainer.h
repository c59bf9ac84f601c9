// Byte-level BPE training (GPT-2 style): pre-tokenize with GPT-2's pattern, count words, merge the
// most frequent adjacent pair until the vocabulary is full, and save a standard Hugging Face
// tokenizer.json + tokenizer_config.json that lmkit and HF tokenizers both load. Not an encoder:
// load the saved files with tokenizer_from_hf() to tokenize.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lmkit {

struct BpeTrainOptions {
  // Final vocabulary size, counting the special tokens and the 256 byte tokens. Training stops
  // early (with a smaller vocabulary) when no pair occurs min_frequency times any more.
  int64_t vocab_size = 8192;
  int64_t min_frequency = 2;
  // Special tokens take ids 0..k-1, in this order; they are never produced from plain text
  // (their text in the training data is cut out before counting). The first one is the BOS and
  // EOS token: documents are separated by it in token shards, and a tokenizer saved with
  // add_bos puts it in front of every encoded text.
  std::vector<std::string> special_tokens = {"<|endoftext|>"};
  bool add_bos = true;
  int64_t model_max_length = 2048;  // tokenizer_config.json's model_max_length
  int n_threads = 1;                // for pre-tokenizing and counting
  bool progress = true;             // a progress bar on stderr when it is a terminal
};

// A trained vocabulary. Ids: special tokens, then the 256 single bytes in byte order, then one
// token per merge in the order learned.
struct BpeVocab {
  std::vector<std::string> tokens;                  // (n_vocab) raw bytes; specials as text
  std::vector<std::pair<int32_t, int32_t>> merges;  // (n_merges) by rank; merge r makes token
                                                    // n_special + 256 + r
  int32_t n_special = 0;
  bool add_bos = true;
  int64_t model_max_length = 2048;
  // Statistics of the training text: words counted, distinct words, and how many tokens the
  // text comes to with the final merges (what the saved tokenizer produces for it).
  int64_t n_words = 0, n_unique_words = 0, n_text_tokens = 0;

  int32_t n_vocab() const { return int32_t(tokens.size()); }
  int32_t bos_id() const { return n_special > 0 ? 0 : -1; }
};

// Trains on the given texts (valid UTF-8; invalid bytes are an error naming the text index).
// Deterministic: the same texts and options give the same vocabulary for any n_threads.
//   Choice of merge: the pair with the highest count; ties go to the pair whose left token has
//   the smaller id, then the right token (older tokens first, bytes in byte order).
//   A pair whose bytes spell an existing token is never merged (HF's trainer would give that
//   token a second merge); every token therefore has exactly one merge that makes it, and
//   rank-ordered encoding (HF tokenizers, lmkit) reproduces the segmentation learned here.
//   Texts are split into documents at blank lines (split_documents in data.h), as data_prepare
//   encodes them.
BpeVocab bpe_train(std::span<const std::string_view> texts, const BpeTrainOptions &opt);

// Reads the files (each checked to be text, see read_text_file in data.h) and trains on them.
BpeVocab bpe_train_files(const std::vector<std::string> &paths, const BpeTrainOptions &opt);

// The tokenizer.json text: model BPE (vocab in GPT-2's byte alphabet, merges as "a b" strings),
// pre_tokenizer and decoder ByteLevel, post_processor TemplateProcessing (BOS first) when
// add_bos else ByteLevel, and the special tokens as added_tokens.
std::string bpe_tokenizer_json(const BpeVocab &v);
// tokenizer_config.json: bos/eos token, add_bos_token, model_max_length,
// PreTrainedTokenizerFast, added_tokens_decoder.
std::string bpe_tokenizer_config_json(const BpeVocab &v);
// Writes both files into `dir` (created if missing), each atomically.
void bpe_save(const BpeVocab &v, const std::string &dir);

}  // namespace lmkit
