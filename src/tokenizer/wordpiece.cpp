// WordPiece (BERT and its descendants): greedy longest-match-first over each pre-tokenized
// word, "##" continuation pieces, [UNK] for words it cannot cover. Not a BPE: no merges and no
// scores; the BERT normalizer and pre-tokenizer live in pretokenize.cpp.
#include "core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace lmkit::tok {
namespace {

const std::string kSpaceSymbol = "\xE2\x96\x81";  // "▁"

class WordPieceTokenizer final : public TokenizerImpl {
 public:
  WordPieceTokenizer(TokenizerSetup &&setup, WordPieceModel &&m)
      : TokenizerImpl(std::move(setup)), model_(std::move(m)) {
    int32_t n = n_vocab();
    LMKIT_CHECK(model_.unk_id >= -1 && model_.unk_id < n, source_, ": unknown-token id ",
                model_.unk_id, " outside the vocabulary");
    bytes_.resize(size_t(n));
    const std::string &prefix = model_.continuing_prefix;
    for (int32_t id = 0; id < n; ++id) {
      const std::string &p = pieces_[size_t(id)];
      TokenType t = types_[size_t(id)];
      if (t == TokenType::Control || t == TokenType::Unknown) {
        special_bytes_[id] = " " + p;  // specials read as separate words: "[CLS] hello [SEP]"
        continue;
      }
      std::string_view key;
      bool initial;
      if (model_.ggml_convention) {
        bool bracketed = p.size() >= 2 && p.front() == '[' && p.back() == ']';
        initial = bracketed || p.compare(0, kSpaceSymbol.size(), kSpaceSymbol) == 0;
        key = std::string_view(p).substr(initial && !bracketed ? kSpaceSymbol.size() : 0);
      } else {
        initial =
            prefix.empty() || p.size() <= prefix.size() || p.compare(0, prefix.size(), prefix) != 0;
        key = std::string_view(p).substr(initial ? 0 : prefix.size());
      }
      if (key.empty()) continue;
      (initial ? initial_ : continuation_).insert(key, id);
      bytes_[size_t(id)] = initial ? " " + std::string(key) : std::string(key);
      max_piece_ = std::max(max_piece_, key.size());
    }
  }

 protected:
  void encode_segment(std::string_view text, bool at_start,
                      std::vector<int32_t> &out) const override {
    thread_local std::string norm;
    thread_local PreTokWork w;
    std::string_view t = text;
    if (!normalizer_.empty()) {
      normalizer_.apply(text, norm);
      t = norm;
    }
    if (pretokenizer_.empty()) {
      encode_word(t, out);
      return;
    }
    pretokenizer_.run(t, at_start, w);
    for (std::string_view word : w.pieces) encode_word(word, out);
  }

 private:
  void encode_word(std::string_view word, std::vector<int32_t> &out) const {
    if (word.empty()) return;
    int64_t n_chars = 0;
    for (char c : word) n_chars += (uint8_t(c) & 0xC0) != 0x80;
    if (n_chars > model_.max_input_chars_per_word) {
      if (model_.unk_id >= 0) out.push_back(model_.unk_id);
      return;
    }
    size_t first = out.size();
    size_t start = 0;
    while (start < word.size()) {
      const StringIdMap &map = start == 0 ? initial_ : continuation_;
      // Longest piece first; no piece is longer than max_piece_ bytes.
      size_t end = std::min(word.size(), start + max_piece_);
      while (end < word.size() && (uint8_t(word[end]) & 0xC0) == 0x80) --end;
      int32_t found = -1;
      while (end > start) {
        found = map.find(word.substr(start, end - start));
        if (found >= 0) break;
        do --end;
        while (end > start && (uint8_t(word[end]) & 0xC0) == 0x80);
      }
      if (found < 0) {
        // One uncoverable stretch makes the whole word unknown, as in BERT.
        out.resize(first);
        if (model_.unk_id >= 0) out.push_back(model_.unk_id);
        return;
      }
      out.push_back(found);
      start = end;
    }
  }

  WordPieceModel model_;
  StringIdMap initial_, continuation_;
  size_t max_piece_ = 1;
};

}  // namespace

std::unique_ptr<Tokenizer> make_wordpiece(TokenizerSetup &&setup, WordPieceModel &&model) {
  return std::make_unique<WordPieceTokenizer>(std::move(setup), std::move(model));
}

}  // namespace lmkit::tok
