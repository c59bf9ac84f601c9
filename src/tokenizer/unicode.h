// Unicode helpers the tokenizers need: UTF-8 decoding and repair, general categories, simple
// lowercasing, accent stripping (NFD minus nonspacing marks), GPT-2's byte-to-unicode map.
// Not a Unicode library: no composition (NFC/NFKC), no case folding, no grapheme segmentation.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lmkit::unicode {

// General categories, in the order of unicode_tables_gen.py.
// clang-format off
enum class Category : uint8_t {
  Cc, Cf, Cs, Co, Cn, Lu, Ll, Lt, Lm, Lo, Mn, Mc, Me, Nd, Nl, No, Pc, Pd, Ps, Pe, Pi, Pf, Po,
  Sm, Sc, Sk, So, Zs, Zl, Zp,
};
// clang-format on

Category category(uint32_t cp);
inline bool is_letter(uint32_t cp) {
  Category c = category(cp);
  return c >= Category::Lu && c <= Category::Lo;
}
inline bool is_number(uint32_t cp) {  // Nd, Nl, No: Rust's char::is_numeric
  Category c = category(cp);
  return c >= Category::Nd && c <= Category::No;
}
inline bool is_punctuation(uint32_t cp) {  // P*: Rust's char::is_punctuation
  Category c = category(cp);
  return c >= Category::Pc && c <= Category::Po;
}
inline bool is_other(uint32_t cp) {  // C*: what BERT calls control characters
  return category(cp) <= Category::Cn;
}
inline bool is_nonspacing_mark(uint32_t cp) {
  return category(cp) == Category::Mn;
}
// The White_Space property (Rust's char::is_whitespace).
bool is_whitespace(uint32_t cp);
// !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~
inline bool is_ascii_punctuation(uint32_t cp) {
  return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
         (cp >= 0x7B && cp <= 0x7E);
}
// The CJK ideograph blocks BERT surrounds with spaces.
bool is_cjk_ideograph(uint32_t cp);

// Simple lowercase mapping of one code point.
uint32_t to_lower(uint32_t cp);
// Appends the full lowercase of cp (U+0130 becomes two code points, as in Rust's to_lowercase).
void append_lower(std::string &out, uint32_t cp);
// Appends cp's canonical decomposition with the nonspacing marks (Mn) removed: "é" -> "e",
// Hangul syllables -> conjoining jamo, a lone combining mark -> nothing.
void append_stripped(std::string &out, uint32_t cp);

// --- UTF-8 --------------------------------------------------------------------------------

// Length of the sequence a lead byte starts (1 for continuation or invalid bytes, so that
// callers walking already-validated text never loop forever).
inline int utf8_len(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}
// Decodes the code point at s[i] of valid UTF-8 and advances i past it.
inline uint32_t next_cp(std::string_view s, size_t &i) {
  uint8_t c = uint8_t(s[i]);
  if (c < 0x80) {
    ++i;
    return c;
  }
  int n = utf8_len(c);
  if (i + size_t(n) > s.size()) n = 1;  // defensive: truncated input decodes byte-wise
  uint32_t cp = n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : n == 4 ? (c & 0x07) : c;
  for (int k = 1; k < n; ++k) cp = (cp << 6) | (uint8_t(s[i + size_t(k)]) & 0x3F);
  i += size_t(n);
  return cp;
}
void append_utf8(std::string &out, uint32_t cp);

// Byte offset of the first invalid UTF-8 byte (overlong forms, surrogates and code points above
// U+10FFFF are invalid), or s.size() when the whole string is valid.
size_t utf8_find_invalid(std::string_view s);
// Length of a valid prefix of s that ends on a character boundary, with a truncated but so far
// valid trailing sequence left out (it may complete with more bytes). Invalid bytes inside the
// prefix are not skipped: the prefix stops at the first one.
size_t utf8_complete_prefix(std::string_view s, bool *stopped_at_invalid);
// Copies s with each maximal invalid subsequence replaced by U+FFFD.
void utf8_append_repaired(std::string &out, std::string_view s);

// --- GPT-2 byte-level alphabet ----------------------------------------------------------------

// The code point GPT-2's bytes_to_unicode() assigns to each byte.
const std::array<uint32_t, 256> &byte_to_cp();
// The byte a code point of that alphabet stands for, or -1 when it is not part of it.
int cp_to_byte(uint32_t cp);

}  // namespace lmkit::unicode
