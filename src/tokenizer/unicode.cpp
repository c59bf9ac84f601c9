// Unicode helpers for the tokenizers: category lookup, lowercasing, accent stripping, UTF-8.
// Not a normalizer: composition forms (NFC/NFKC) are out of scope (see pretokenize.cpp).
#include "tokenizer/unicode.h"

#include <algorithm>
#include <memory>
#include <vector>

namespace lmkit::unicode {
namespace {

#include "tokenizer/unicode_tables.inc"

// Two-stage lookup built once from the run table: the category of cp is
// blocks[index[cp >> 8]][cp & 255]. Blocks are shared, so the table stays around 40 KiB.
struct CategoryTable {
  std::vector<uint16_t> index;                   // (0x1100)
  std::vector<std::array<uint8_t, 256>> blocks;  // (n_unique_blocks, 256)

  CategoryTable() {
    constexpr size_t n_runs = sizeof(kCategoryRunStart) / sizeof(kCategoryRunStart[0]);
    static_assert(n_runs == sizeof(kCategoryRunValue));
    index.resize(0x1100);
    size_t run = 0;
    std::array<uint8_t, 256> block{};
    for (uint32_t hi = 0; hi < 0x1100; ++hi) {
      for (uint32_t lo = 0; lo < 256; ++lo) {
        uint32_t cp = (hi << 8) | lo;
        while (run + 1 < n_runs && kCategoryRunStart[run + 1] <= cp) ++run;
        block[lo] = kCategoryRunValue[run];
      }
      auto it = std::find(blocks.begin(), blocks.end(), block);
      index[hi] = uint16_t(it - blocks.begin());
      if (it == blocks.end()) blocks.push_back(block);
    }
  }
};

const CategoryTable &category_table() {
  static const CategoryTable table;
  return table;
}

}  // namespace

Category category(uint32_t cp) {
  if (cp < 0x80) {
    // The ASCII range is hot in every tokenizer: answer it without touching the table.
    static constexpr auto ascii = [] {
      std::array<uint8_t, 128> a{};
      size_t run = 0;
      constexpr size_t n = sizeof(kCategoryRunStart) / sizeof(kCategoryRunStart[0]);
      for (uint32_t c = 0; c < 128; ++c) {
        while (run + 1 < n && kCategoryRunStart[run + 1] <= c) ++run;
        a[c] = kCategoryRunValue[run];
      }
      return a;
    }();
    return Category(ascii[cp]);
  }
  if (cp > 0x10FFFF) return Category::Cn;
  const CategoryTable &t = category_table();
  return Category(t.blocks[t.index[cp >> 8]][cp & 255]);
}

bool is_whitespace(uint32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool is_cjk_ideograph(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

uint32_t to_lower(uint32_t cp) {
  if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  constexpr size_t n = sizeof(kLowerRuns) / sizeof(kLowerRuns[0]);
  // Last run whose first code point is <= cp.
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (kLowerRuns[mid].first <= cp)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0) return cp;
  const LowerRun &r = kLowerRuns[lo - 1];
  if (cp > r.last || (cp - r.first) % r.stride != 0) return cp;
  return uint32_t(int64_t(cp) + r.delta);
}

void append_lower(std::string &out, uint32_t cp) {
  if (cp == 0x130) {  // LATIN CAPITAL LETTER I WITH DOT ABOVE: "i" + COMBINING DOT ABOVE
    out += 'i';
    append_utf8(out, 0x307);
    return;
  }
  append_utf8(out, to_lower(cp));
}

void append_stripped(std::string &out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
    return;
  }
  if (cp >= 0xAC00 && cp <= 0xD7A3) {
    // Hangul syllables decompose arithmetically (Unicode 3.12) into leading consonant, vowel
    // and optional trailing consonant; none of them is a mark, so all are kept.
    uint32_t s = cp - 0xAC00;
    append_utf8(out, 0x1100 + s / (21 * 28));
    append_utf8(out, 0x1161 + (s % (21 * 28)) / 28);
    if (s % 28) append_utf8(out, 0x11A7 + s % 28);
    return;
  }
  if (is_nonspacing_mark(cp)) return;
  constexpr size_t n = sizeof(kStripRows) / sizeof(kStripRows[0]);
  const StripRow *end = kStripRows + n;
  const StripRow *it =
      std::lower_bound(kStripRows, end, cp, [](const StripRow &r, uint32_t c) { return r.cp < c; });
  if (it == end || it->cp != cp) {
    append_utf8(out, cp);
    return;
  }
  for (uint32_t c : it->to)
    if (c) append_utf8(out, c);
}

void append_utf8(std::string &out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

namespace {

// Length of the valid sequence starting at s[i]: > 0 when complete and valid, 0 when the bytes
// so far are a valid but truncated start (only possible at the end of s), and -k when the first
// k bytes form a maximal invalid subpart (Unicode's "substitution of maximal subparts").
int utf8_check_one(std::string_view s, size_t i) {
  uint8_t c = uint8_t(s[i]);
  if (c < 0x80) return 1;
  int n;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // no overlongs
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return -1;
  }
  for (int k = 1; k < n; ++k) {
    if (i + size_t(k) >= s.size()) return 0;
    uint8_t b = uint8_t(s[i + size_t(k)]);
    uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return -k;
  }
  return n;
}

}  // namespace

size_t utf8_find_invalid(std::string_view s) {
  size_t i = 0, n = s.size();
  while (i < n) {
    // Skip ASCII eight bytes at a time: most text is mostly ASCII.
    while (i + 8 <= n) {
      uint64_t w;
      std::copy_n(s.data() + i, 8, reinterpret_cast<char *>(&w));
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    int r = utf8_check_one(s, i);
    if (r <= 0) return i;
    i += size_t(r);
  }
  return n;
}

size_t utf8_complete_prefix(std::string_view s, bool *stopped_at_invalid) {
  size_t i = 0;
  *stopped_at_invalid = false;
  while (i < s.size()) {
    int r = utf8_check_one(s, i);
    if (r == 0) return i;
    if (r < 0) {
      *stopped_at_invalid = true;
      return i;
    }
    i += size_t(r);
  }
  return i;
}

void utf8_append_repaired(std::string &out, std::string_view s) {
  size_t i = 0, start = 0;
  while (i < s.size()) {
    int r = utf8_check_one(s, i);
    if (r > 0) {
      i += size_t(r);
      continue;
    }
    out.append(s.data() + start, i - start);
    out += "\xEF\xBF\xBD";
    // A truncated sequence at the end is one maximal subpart: everything left.
    i = r == 0 ? s.size() : i + size_t(-r);
    start = i;
  }
  out.append(s.data() + start, s.size() - start);
}

const std::array<uint32_t, 256> &byte_to_cp() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    // Printable Latin-1 bytes stand for themselves; the others (controls, space, DEL, NBSP,
    // soft hyphen) are moved to U+0100 upwards so that every byte is a visible character.
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      t[b] = printable ? b : next++;
    }
    return t;
  }();
  return table;
}

int cp_to_byte(uint32_t cp) {
  static const std::array<int16_t, 324> inverse = [] {
    std::array<int16_t, 324> inv{};
    inv.fill(-1);
    const auto &fwd = byte_to_cp();
    for (int b = 0; b < 256; ++b) inv[fwd[size_t(b)]] = int16_t(b);
    return inv;
  }();
  return cp < inverse.size() ? inverse[cp] : -1;
}

}  // namespace lmkit::unicode
