// Internal plumbing shared by the tokenizers and their loaders: the description a loader fills
// in (TokenizerSetup + a model struct), the common encode driver with added-token matching, and
// the factories of the three models. Not public API: include tokenizer.h from outside.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

namespace lmkit::tok {

// A token matched literally in the text before normalization (HF "added_tokens", GGUF
// control and user-defined tokens).
struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;  // matched only when parse_special; otherwise always matched
  bool lstrip = false, rstrip = false, single_word = false;
};

// Finds added tokens in text, leftmost-longest (HF's Aho-Corasick LeftmostLongest order), with a
// byte trie so that hundreds of "<|reserved_...|>" tokens cost one walk per '<', not hundreds.
class AddedTokenMatcher {
 public:
  void build(std::vector<AddedToken> tokens);
  bool empty() const { return tokens_.empty(); }
  // Calls text_fn(segment, at_start) for the text between matches and token_fn(id) for each
  // match, in order. at_start: the segment begins at byte 0 of `text`.
  template <typename TextFn, typename TokenFn>
  void split(std::string_view text, bool parse_special, TextFn &&text_fn, TokenFn &&token_fn) const;

 private:
  struct Node {
    int32_t token = -1;                             // index into tokens_ ending here
    std::vector<std::pair<uint8_t, int32_t>> next;  // (byte, node), sorted by byte
  };
  const AddedToken *match_at(std::string_view text, size_t i, bool parse_special) const;
  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_;                               // nodes_[0] is the root
  std::array<uint8_t, 256> first_any_{}, first_plain_{};  // some token / some non-special token
};

// Everything a loader knows that is not the vocabulary model itself.
struct TokenizerSetup {
  std::string source;  // file name, for messages
  TokenizerKind kind = TokenizerKind::SentencePieceBPE;
  std::vector<std::string> pieces;  // (n_vocab)
  std::vector<TokenType> types;     // (n_vocab)
  int32_t bos_id = -1, eos_id = -1;
  bool add_bos = false, add_eos = false;
  std::vector<int32_t> end_of_generation;  // besides eos
  std::string chat_template;
  std::string pre;
  bool strip_leading_space = false;
  std::vector<AddedToken> added;
  Normalizer normalizer;
  PreTokenizer pretokenizer;
};

// The common base of the three models: validation, added tokens, BOS/EOS, the decode tables.
class TokenizerImpl : public Tokenizer {
 public:
  explicit TokenizerImpl(TokenizerSetup &&s);
  std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                              bool parse_special = true) const final;
  std::string token_bytes(int32_t id, bool keep_special = false) const final;

 protected:
  // Encodes one stretch of text between added tokens; at_start: it begins the whole input.
  virtual void encode_segment(std::string_view text, bool at_start,
                              std::vector<int32_t> &out) const = 0;
  void check_id(int32_t id) const;

  std::string source_;
  Normalizer normalizer_;
  PreTokenizer pretokenizer_;
  // What each token decodes to; control and unknown tokens map to "" here and to
  // special_bytes_ when keep_special is asked for. Filled in by the subclasses.
  std::vector<std::string> bytes_;  // (n_vocab)
  std::unordered_map<int32_t, std::string> special_bytes_;

 private:
  AddedTokenMatcher matcher_;
};

// SentencePiece-style BPE over characters, with byte fallback.
struct SpmModel {
  // Score mode (llama.cpp GGUF, llama2.c): merge the adjacent pair whose concatenation is a
  // piece with the highest score. Rank mode (HF tokenizer.json): merge by the merges list.
  bool use_merges = false;
  std::vector<float> scores;                   // (n_vocab) score mode
  std::vector<std::array<int32_t, 3>> merges;  // (n_merges) left, right, merged; rank mode
  std::string space_symbol = "\xE2\x96\x81";   // how the vocabulary writes ' ' ("▁")
  bool byte_fallback = true;
  int32_t unk_id = -1;
  bool fuse_unk = false;
};

// Byte-level BPE (GPT-2 family): the pieces are written in GPT-2's byte alphabet.
struct ByteBpeModel {
  std::vector<std::array<int32_t, 3>> merges;  // left, right, merged, by rank
  bool ignore_merges = false;                  // a word that is a piece maps to it directly
  int32_t unk_id = -1;
};

// WordPiece (BERT).
struct WordPieceModel {
  std::string continuing_prefix = "##";
  // llama.cpp's GGUF form: word-initial pieces carry a leading "▁" and continuation pieces
  // carry nothing (HF's "##ing" is stored as "ing"), bracketed specials are left alone.
  bool ggml_convention = false;
  int32_t unk_id = -1;
  int64_t max_input_chars_per_word = 100;
};

std::unique_ptr<Tokenizer> make_spm_bpe(TokenizerSetup &&setup, SpmModel &&model);
std::unique_ptr<Tokenizer> make_byte_bpe(TokenizerSetup &&setup, ByteBpeModel &&model);
std::unique_ptr<Tokenizer> make_wordpiece(TokenizerSetup &&setup, WordPieceModel &&model);

// Names of tokens that end a turn in chat models (<|eot_id|>, <|im_end|>, ...).
bool is_end_of_turn_name(std::string_view piece);

// --- template definition ----------------------------------------------------------------------

template <typename TextFn, typename TokenFn>
void AddedTokenMatcher::split(std::string_view text, bool parse_special, TextFn &&text_fn,
                              TokenFn &&token_fn) const {
  size_t seg_start = 0, i = 0, n = text.size();
  const auto &first = parse_special ? first_any_ : first_plain_;
  if (!tokens_.empty()) {
    while (i < n) {
      if (!first[uint8_t(text[i])]) {
        ++i;
        continue;
      }
      const AddedToken *t = match_at(text, i, parse_special);
      if (!t) {
        ++i;
        continue;
      }
      size_t b = i, e = i + t->content.size();
      auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
      if (t->lstrip)
        while (b > seg_start && is_space(text[b - 1])) --b;
      if (t->rstrip)
        while (e < n && is_space(text[e])) ++e;
      if (b > seg_start) text_fn(text.substr(seg_start, b - seg_start), seg_start == 0);
      token_fn(t->id);
      seg_start = i = e;
    }
  }
  if (seg_start < n) text_fn(text.substr(seg_start), seg_start == 0);
}

}  // namespace lmkit::tok
