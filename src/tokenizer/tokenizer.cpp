// The tokenizer front end every model shares: UTF-8 checks, added-token matching, BOS/EOS,
// decoding and streaming. Not a vocabulary model: see spm_bpe, byte_bpe and wordpiece.cpp.
#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "core/error.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace lmkit {

void utf8_validate(std::string_view s) {
  size_t k = unicode::utf8_find_invalid(s);
  if (k != s.size()) fail("invalid UTF-8 at byte ", k);
}

const std::string &Tokenizer::piece(int32_t id) const {
  LMKIT_CHECK(id >= 0 && id < n_vocab(), "token id ", id, " out of range [0, ", n_vocab(), ")");
  return pieces_[size_t(id)];
}

int32_t Tokenizer::find_piece(std::string_view piece) const {
  for (size_t id = 0; id < pieces_.size(); ++id)
    if (pieces_[id] == piece) return int32_t(id);
  return -1;
}

TokenType Tokenizer::type(int32_t id) const {
  LMKIT_CHECK(id >= 0 && id < n_vocab(), "token id ", id, " out of range [0, ", n_vocab(), ")");
  return types_[size_t(id)];
}

bool Tokenizer::is_end_of_generation(int32_t id) const {
  if (id < 0) return false;
  if (id == eos_id_) return true;
  return std::binary_search(end_of_generation_.begin(), end_of_generation_.end(), id);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool keep_special) const {
  std::string raw;
  for (int32_t id : ids) raw += token_bytes(id, keep_special);
  size_t skip = strip_leading_space_ && !raw.empty() && raw[0] == ' ' ? 1 : 0;
  std::string out;
  out.reserve(raw.size());
  unicode::utf8_append_repaired(out, std::string_view(raw).substr(skip));
  return out;
}

namespace {

// Number of trailing bytes of s that begin a UTF-8 character still missing bytes (0..3).
size_t incomplete_tail(std::string_view s) {
  for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
    uint8_t c = uint8_t(s[s.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    if (c < 0x80) return 0;
    bool invalid = false;
    size_t ok = unicode::utf8_complete_prefix(s.substr(s.size() - back), &invalid);
    // A valid but unfinished start: the whole remainder is pending.
    return (ok == 0 && !invalid && size_t(unicode::utf8_len(c)) > back) ? back : 0;
  }
  return 0;
}

}  // namespace

std::string StreamDecoder::feed(int32_t id) {
  pending_ += tok_.token_bytes(id);
  if (at_start_ && !pending_.empty()) {
    // The dummy-prefix space goes once, at the very start of the stream, as in decode().
    if (tok_.strips_leading_space() && pending_[0] == ' ') pending_.erase(0, 1);
    at_start_ = false;
  }
  size_t keep = incomplete_tail(pending_);
  std::string out;
  unicode::utf8_append_repaired(out, std::string_view(pending_).substr(0, pending_.size() - keep));
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  unicode::utf8_append_repaired(out, pending_);
  pending_.clear();
  return out;
}

namespace tok {

bool is_end_of_turn_name(std::string_view p) {
  static const char *const names[] = {
      "<|eot_id|>",    "<|eom_id|>",    "<|im_end|>",      "<|end|>",
      "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<|END_OF_TURN_TOKEN|>",
      "<|return|>",    "<|call|>",      "<|eot|>",         "<｜end▁of▁sentence｜>",
  };
  for (const char *n : names)
    if (p == n) return true;
  return false;
}

// --- AddedTokenMatcher ------------------------------------------------------------------------

void AddedTokenMatcher::build(std::vector<AddedToken> tokens) {
  tokens_.clear();
  nodes_.assign(1, Node{});
  first_any_.fill(0);
  first_plain_.fill(0);
  for (auto &t : tokens) {
    if (t.content.empty()) continue;
    int32_t node = 0;
    for (char c : t.content) {
      auto &next = nodes_[size_t(node)].next;
      auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(uint8_t(c), INT32_MIN));
      if (it != next.end() && it->first == uint8_t(c)) {
        node = it->second;
      } else {
        int32_t child = int32_t(nodes_.size());
        next.insert(it, {uint8_t(c), child});
        nodes_.emplace_back();  // invalidates `next`; not used again
        node = child;
      }
    }
    if (nodes_[size_t(node)].token >= 0) continue;  // same text twice: the first one wins
    nodes_[size_t(node)].token = int32_t(tokens_.size());
    uint8_t c = uint8_t(t.content[0]);
    first_any_[c] = 1;
    if (!t.special) first_plain_[c] = 1;
    tokens_.push_back(std::move(t));
  }
}

namespace {

bool is_word_cp(uint32_t cp) {
  return cp == '_' || unicode::is_letter(cp) || unicode::is_number(cp);
}

}  // namespace

const AddedToken *AddedTokenMatcher::match_at(std::string_view text, size_t i,
                                              bool parse_special) const {
  // Walk the trie as far as the text follows it, remembering every token passed; the longest
  // acceptable one wins.
  int32_t ends[64];
  size_t n_ends = 0;
  int32_t node = 0;
  for (size_t k = i; k < text.size(); ++k) {
    const auto &next = nodes_[size_t(node)].next;
    auto it =
        std::lower_bound(next.begin(), next.end(), std::make_pair(uint8_t(text[k]), INT32_MIN));
    if (it == next.end() || it->first != uint8_t(text[k])) break;
    node = it->second;
    int32_t t = nodes_[size_t(node)].token;
    if (t >= 0) {
      if (n_ends < 64)
        ends[n_ends++] = t;
      else
        ends[63] = t;  // absurdly nested contents: keep the longest
    }
  }
  while (n_ends > 0) {
    const AddedToken &t = tokens_[size_t(ends[--n_ends])];
    if (t.special && !parse_special) continue;
    if (t.single_word) {
      // Only a whole word: no word character right before or right after the match.
      if (i > 0) {
        size_t b = i - 1;
        while (b > 0 && (uint8_t(text[b]) & 0xC0) == 0x80) --b;
        size_t j = b;
        if (is_word_cp(unicode::next_cp(text, j))) continue;
      }
      size_t e = i + t.content.size();
      if (e < text.size() && is_word_cp(unicode::next_cp(text, e))) continue;
    }
    return &t;
  }
  return nullptr;
}

// --- TokenizerImpl ----------------------------------------------------------------------------

TokenizerImpl::TokenizerImpl(TokenizerSetup &&s)
    : source_(std::move(s.source)),
      normalizer_(std::move(s.normalizer)),
      pretokenizer_(std::move(s.pretokenizer)) {
  LMKIT_CHECK(!s.pieces.empty(), source_, ": the vocabulary is empty");
  LMKIT_CHECK(s.pieces.size() == s.types.size(), source_, ": ", s.pieces.size(), " tokens but ",
              s.types.size(), " token types");
  LMKIT_CHECK(s.pieces.size() < size_t(INT32_MAX), source_, ": vocabulary too large");
  kind_ = s.kind;
  pieces_ = std::move(s.pieces);
  types_ = std::move(s.types);
  int32_t n = int32_t(pieces_.size());
  auto valid = [&](int32_t id) { return id >= -1 && id < n; };
  LMKIT_CHECK(valid(s.bos_id), source_, ": BOS id ", s.bos_id, " outside the vocabulary of ", n);
  LMKIT_CHECK(valid(s.eos_id), source_, ": EOS id ", s.eos_id, " outside the vocabulary of ", n);
  bos_id_ = s.bos_id;
  eos_id_ = s.eos_id;
  add_bos_ = s.add_bos && bos_id_ >= 0;
  add_eos_ = s.add_eos && eos_id_ >= 0;
  chat_template_ = std::move(s.chat_template);
  pre_ = std::move(s.pre);
  strip_leading_space_ = s.strip_leading_space;

  for (int32_t id : s.end_of_generation)
    if (id >= 0 && id < n) end_of_generation_.push_back(id);
  for (int32_t id = 0; id < n; ++id) {
    TokenType t = types_[size_t(id)];
    if ((t == TokenType::Control || t == TokenType::UserDefined) &&
        is_end_of_turn_name(pieces_[size_t(id)]))
      end_of_generation_.push_back(id);
  }
  if (eos_id_ >= 0) end_of_generation_.push_back(eos_id_);
  std::sort(end_of_generation_.begin(), end_of_generation_.end());
  end_of_generation_.erase(std::unique(end_of_generation_.begin(), end_of_generation_.end()),
                           end_of_generation_.end());

  for (const auto &t : s.added)
    LMKIT_CHECK(t.id >= 0 && t.id < n, source_, ": added token '", t.content, "' has id ", t.id,
                " outside the vocabulary of ", n);
  matcher_.build(std::move(s.added));
}

void TokenizerImpl::check_id(int32_t id) const {
  LMKIT_CHECK(id >= 0 && id < n_vocab(), "token id ", id, " out of range [0, ", n_vocab(), ")");
}

std::vector<int32_t> TokenizerImpl::encode(std::string_view text, bool add_special,
                                           bool parse_special) const {
  utf8_validate(text);
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && add_bos_) out.push_back(bos_id_);
  matcher_.split(
      text, parse_special,
      [&](std::string_view segment, bool at_start) { encode_segment(segment, at_start, out); },
      [&](int32_t id) { out.push_back(id); });
  if (add_special && add_eos_) out.push_back(eos_id_);
  return out;
}

std::string TokenizerImpl::token_bytes(int32_t id, bool keep_special) const {
  check_id(id);
  TokenType t = types_[size_t(id)];
  if (t == TokenType::Control || t == TokenType::Unknown) {
    if (!keep_special) return std::string();
    auto it = special_bytes_.find(id);
    return it != special_bytes_.end() ? it->second : pieces_[size_t(id)];
  }
  return bytes_[size_t(id)];
}

}  // namespace tok
}  // namespace lmkit
