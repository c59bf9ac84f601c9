// Normalizers and pre-tokenizers with Hugging Face tokenizers' semantics, on PCRE2 (UTF + UCP).
// Not a regex engine of our own: patterns from tokenizer.json (written for Oniguruma) run on
// PCRE2, whose syntax agrees on everything these patterns use (\p{..}, (?i:), lookahead).
#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace lmkit::tok {

using Span = std::pair<uint32_t, uint32_t>;

// ---------------------------------------------------------------------------------------------
// Regex

struct Regex::Code {
  pcre2_code *code = nullptr;
  ~Code() { pcre2_code_free(code); }
};

namespace {

// Per-thread match state: match data sized for the whole-match pair only (captures are never
// read) and a JIT stack large enough for long pieces (the default 32 KiB overflows on
// patterns like \s+(?!\S) over megabytes of whitespace).
struct MatchScratch {
  pcre2_match_data *data = nullptr;
  pcre2_match_context *context = nullptr;
  pcre2_jit_stack *stack = nullptr;
  MatchScratch() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    if (context && stack) pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchScratch() {
    pcre2_match_data_free(data);
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
  }
};

MatchScratch &match_scratch() {
  thread_local MatchScratch s;
  LMKIT_CHECK(s.data && s.context, "tokenizer: out of memory for regex match data");
  return s;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  int n = pcre2_get_error_message(code, buf, sizeof(buf));
  return n < 0 ? str_cat("PCRE2 error ", code) : std::string(reinterpret_cast<char *>(buf));
}

}  // namespace

Regex::Regex(const std::string &pattern, const std::string &what, bool literal)
    : code_(std::make_unique<Code>()), pattern_(pattern) {
  // PCRE2_LITERAL refuses PCRE2_UCP (there are no classes to apply it to).
  uint32_t options = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  int err = 0;
  PCRE2_SIZE offset = 0;
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options,
                              &err, &offset, nullptr);
  if (!code_->code)
    fail(what, ": bad regex '", pattern, "': ", pcre2_message(err), " at offset ", offset);
  // JIT is an optimisation only: without it (unsupported CPU, SELinux) matching still works.
  pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE);
}

Regex::~Regex() = default;

void Regex::find_all(std::string_view s, std::vector<Span> &out) const {
  if (s.empty()) return;
  MatchScratch &ms = match_scratch();
  auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t start = 0;
  while (start < s.size()) {
    int rc =
        pcre2_match(code_->code, subject, s.size(), start, PCRE2_NO_UTF_CHECK, ms.data, ms.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) fail("tokenizer: regex '", pattern_, "' failed: ", pcre2_message(rc));
    const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(ms.data);
    size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(uint32_t(b), uint32_t(e));
      start = e;
    } else {
      // An empty match yields no piece; step over one character like Oniguruma's find_iter.
      if (b >= s.size()) break;
      start = b + size_t(unicode::utf8_len(uint8_t(s[b])));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Normalizer

namespace {

void apply_bert(const NormalizerStep &st, std::string_view in, std::string &out) {
  size_t i = 0;
  std::string tmp;
  while (i < in.size()) {
    uint32_t cp = unicode::next_cp(in, i);
    if (st.clean_text) {
      bool ws = cp == '\t' || cp == '\n' || cp == '\r';
      if (!ws && (cp == 0 || cp == 0xFFFD || unicode::is_other(cp))) continue;
      if (ws || unicode::is_whitespace(cp)) cp = ' ';
    }
    bool pad = st.handle_chinese_chars && unicode::is_cjk_ideograph(cp);
    if (pad) out += ' ';
    // Stripping and lowercasing are per-character maps, so they compose character by
    // character in HF's order: strip accents first, then lowercase what is left.
    if (cp < 0x80) {
      out += char(st.lowercase && cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    } else if (st.strip_accents) {
      tmp.clear();
      unicode::append_stripped(tmp, cp);
      if (!st.lowercase) {
        out += tmp;
      } else {
        for (size_t k = 0; k < tmp.size();) unicode::append_lower(out, unicode::next_cp(tmp, k));
      }
    } else if (st.lowercase) {
      unicode::append_lower(out, cp);
    } else {
      unicode::append_utf8(out, cp);
    }
    if (pad) out += ' ';
  }
}

void apply_step(const NormalizerStep &st, std::string_view in, std::string &out) {
  using K = NormalizerStep::Kind;
  switch (st.kind) {
    case K::Identity:
      out.append(in);
      return;
    case K::Prepend:
      // HF Prepend leaves empty text alone: "" must stay "" (no lone "▁" token).
      if (!in.empty()) out += st.text;
      out.append(in);
      return;
    case K::Replace: {
      std::vector<Span> m;
      st.regex->find_all(in, m);
      size_t prev = 0;
      for (auto [b, e] : m) {
        out.append(in.substr(prev, b - prev));
        out += st.text;
        prev = e;
      }
      out.append(in.substr(prev));
      return;
    }
    case K::Lowercase:
      for (size_t i = 0; i < in.size();) unicode::append_lower(out, unicode::next_cp(in, i));
      return;
    case K::Strip: {
      size_t b = 0, e = in.size();
      if (st.strip_left) {
        while (b < e) {
          size_t k = b;
          if (!unicode::is_whitespace(unicode::next_cp(in, k))) break;
          b = k;
        }
      }
      if (st.strip_right) {
        while (e > b) {
          size_t k = e - 1;
          while (k > b && (uint8_t(in[k]) & 0xC0) == 0x80) --k;
          size_t j = k;
          if (!unicode::is_whitespace(unicode::next_cp(in, j))) break;
          e = k;
        }
      }
      out.append(in.substr(b, e - b));
      return;
    }
    case K::StripAccents:
      for (size_t i = 0; i < in.size();) unicode::append_stripped(out, unicode::next_cp(in, i));
      return;
    case K::Bert:
      apply_bert(st, in, out);
      return;
  }
}

}  // namespace

void Normalizer::apply(std::string_view in, std::string &out) const {
  out.clear();
  if (steps_.empty()) {
    out.append(in);
    return;
  }
  std::string tmp;
  std::string_view cur = in;
  for (size_t k = 0; k < steps_.size(); ++k) {
    std::string &dst = (k % 2 == steps_.size() % 2) ? tmp : out;  // the last step writes out
    dst.clear();
    apply_step(steps_[k], cur, dst);
    cur = dst;
  }
}

std::string Normalizer::describe() const {
  std::string d;
  for (const auto &s : steps_) {
    if (!d.empty()) d += '|';
    d += std::to_string(int(s.kind));
  }
  return d;
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer

char *PieceArena::alloc(size_t n) {
  while (block_ < blocks_.size() && sizes_[block_] - used_ < n) {
    ++block_;
    used_ = 0;
  }
  if (block_ == blocks_.size()) {
    size_t size = std::max<size_t>(n, 64 * 1024);
    blocks_.push_back(std::make_unique<char[]>(size));
    sizes_.push_back(size);
    used_ = 0;
  }
  char *p = blocks_[block_].get() + used_;
  used_ += n;
  return p;
}

std::string_view PieceArena::copy(std::string_view s) {
  char *p = alloc(s.size());
  if (!s.empty()) std::memcpy(p, s.data(), s.size());
  return {p, s.size()};
}

namespace {

struct Seg {
  uint32_t b, e;
  bool match;
};

// Splits `piece` around the delimiter spans `m` (sorted, non-empty, non-overlapping) the way
// HF's NormalizedString::split does, appending the surviving non-empty pieces to `out`.
void split_piece(std::string_view piece, const std::vector<Span> &m, SplitBehavior behavior,
                 bool invert, std::vector<std::string_view> &out) {
  if (m.empty()) {
    // No delimiter: the piece survives whole unless inversion makes it one to remove.
    if (!(invert && behavior == SplitBehavior::Removed)) out.push_back(piece);
    return;
  }
  if (behavior == SplitBehavior::Isolated) {
    // The common case, without the bookkeeping: every stretch survives (invert is moot).
    uint32_t prev = 0;
    for (auto [b, e] : m) {
      if (b > prev) out.push_back(piece.substr(prev, b - prev));
      out.push_back(piece.substr(b, e - b));
      prev = e;
    }
    if (prev < piece.size()) out.push_back(piece.substr(prev));
    return;
  }
  thread_local std::vector<Seg> segs;
  segs.clear();
  uint32_t prev = 0;
  for (auto [b, e] : m) {
    if (b > prev) segs.push_back({prev, b, invert});
    segs.push_back({b, e, !invert});
    prev = e;
  }
  if (prev < piece.size()) segs.push_back({prev, uint32_t(piece.size()), invert});

  thread_local std::vector<Span> res;
  res.clear();
  switch (behavior) {
    case SplitBehavior::Isolated:
      for (const Seg &s : segs) res.emplace_back(s.b, s.e);
      break;
    case SplitBehavior::Removed:
      for (const Seg &s : segs)
        if (!s.match) res.emplace_back(s.b, s.e);
      break;
    case SplitBehavior::Contiguous: {
      bool prev_match = false;
      for (const Seg &s : segs) {
        if (s.match == prev_match && !res.empty())
          res.back().second = s.e;
        else
          res.emplace_back(s.b, s.e);
        prev_match = s.match;
      }
      break;
    }
    case SplitBehavior::MergedWithPrevious: {
      bool prev_match = false;
      for (const Seg &s : segs) {
        if (s.match && !prev_match && !res.empty())
          res.back().second = s.e;
        else
          res.emplace_back(s.b, s.e);
        prev_match = s.match;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool prev_match = false;
      for (size_t k = segs.size(); k-- > 0;) {
        const Seg &s = segs[k];
        if (s.match && !prev_match && !res.empty())
          res.back().first = s.b;
        else
          res.emplace_back(s.b, s.e);
        prev_match = s.match;
      }
      std::reverse(res.begin(), res.end());
      break;
    }
  }
  for (auto [b, e] : res)
    if (e > b) out.push_back(piece.substr(b, e - b));
}

// One delimiter span per character satisfying pred (HF's Fn(char) -> bool patterns).
template <typename Pred>
void char_matches(std::string_view s, Pred pred, std::vector<Span> &m) {
  size_t i = 0;
  while (i < s.size()) {
    size_t b = i;
    uint32_t cp = unicode::next_cp(s, i);
    if (pred(cp)) m.emplace_back(uint32_t(b), uint32_t(i));
  }
}

// Occurrences of a literal string.
void literal_matches(std::string_view s, std::string_view lit, std::vector<Span> &m) {
  if (lit.empty()) return;
  size_t pos = 0;
  while ((pos = s.find(lit, pos)) != std::string_view::npos) {
    m.emplace_back(uint32_t(pos), uint32_t(pos + lit.size()));
    pos += lit.size();
  }
}

const Regex &gpt2_regex() {
  static const Regex re(kGpt2Pattern, "ByteLevel pre-tokenizer");
  return re;
}

const Regex &whitespace_regex() {
  static const Regex re("\\w+|[^\\w\\s]+", "Whitespace pre-tokenizer");
  return re;
}

bool is_bert_punct(uint32_t cp) {
  return unicode::is_ascii_punctuation(cp) || unicode::is_punctuation(cp);
}

// Writes the GPT-2 alphabet form of raw bytes into the arena.
std::string_view byte_map(std::string_view raw, PieceArena &arena) {
  const auto &fwd = unicode::byte_to_cp();
  char *out = arena.alloc(raw.size() * 2);
  size_t n = 0;
  for (char c : raw) {
    uint32_t cp = fwd[uint8_t(c)];
    if (cp < 0x80) {
      out[n++] = char(cp);
    } else {  // the alphabet stays below U+0800: two bytes
      out[n++] = char(0xC0 | (cp >> 6));
      out[n++] = char(0x80 | (cp & 0x3F));
    }
  }
  return {out, n};
}

// Inverse of byte_map; characters outside the byte alphabet (added by later steps) are kept.
std::string_view byte_unmap(std::string_view mapped, PieceArena &arena) {
  char *out = arena.alloc(mapped.size());
  size_t n = 0;
  for (size_t i = 0; i < mapped.size();) {
    size_t b = i;
    int byte = unicode::cp_to_byte(unicode::next_cp(mapped, i));
    if (byte >= 0) {
      out[n++] = char(byte);
    } else {
      std::memcpy(out + n, mapped.data() + b, i - b);
      n += i - b;
    }
  }
  return {out, n};
}

}  // namespace

const char *const kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

bool PreTokenizer::has_byte_level() const {
  for (const auto &s : steps_)
    if (s.kind == PreTokStep::Kind::ByteLevel) return true;
  return false;
}

void PreTokenizer::run(std::string_view text, bool at_start, PreTokWork &w) const {
  w.clear();
  if (text.empty()) return;
  w.pieces.push_back(text);
  bool mapped = false;
  using K = PreTokStep::Kind;
  for (size_t si = 0; si < steps_.size(); ++si) {
    const PreTokStep &st = steps_[si];
    w.next.clear();
    for (size_t p = 0; p < w.pieces.size(); ++p) {
      std::string_view piece = w.pieces[p];
      w.matches.clear();
      switch (st.kind) {
        case K::Split:
          st.regex->find_all(piece, w.matches);
          split_piece(piece, w.matches, st.behavior, st.invert, w.next);
          break;
        case K::ByteLevel:
          if (st.add_prefix_space && (piece.empty() || piece[0] != ' ')) {
            char *buf = w.arena.alloc(piece.size() + 1);
            buf[0] = ' ';
            std::memcpy(buf + 1, piece.data(), piece.size());
            piece = std::string_view(buf, piece.size() + 1);
          }
          if (st.use_regex) {
            gpt2_regex().find_all(piece, w.matches);
            split_piece(piece, w.matches, SplitBehavior::Isolated, false, w.next);
          } else {
            w.next.push_back(piece);
          }
          break;
        case K::Digits:
          char_matches(piece, unicode::is_number, w.matches);
          split_piece(piece, w.matches,
                      st.individual_digits ? SplitBehavior::Isolated : SplitBehavior::Contiguous,
                      false, w.next);
          break;
        case K::Punctuation:
          char_matches(piece, is_bert_punct, w.matches);
          split_piece(piece, w.matches, st.behavior, false, w.next);
          break;
        case K::Whitespace:
          whitespace_regex().find_all(piece, w.matches);
          split_piece(piece, w.matches, SplitBehavior::Removed, true, w.next);
          break;
        case K::WhitespaceSplit:
          char_matches(piece, unicode::is_whitespace, w.matches);
          split_piece(piece, w.matches, SplitBehavior::Removed, false, w.next);
          break;
        case K::CharDelimiter: {
          uint32_t d = st.delimiter;
          char_matches(
              piece, [d](uint32_t c) { return c == d; }, w.matches);
          split_piece(piece, w.matches, SplitBehavior::Removed, false, w.next);
          break;
        }
        case K::Bert: {
          char_matches(piece, unicode::is_whitespace, w.matches);
          size_t first = w.next.size();
          split_piece(piece, w.matches, SplitBehavior::Removed, false, w.next);
          // Second pass over the pieces just produced: isolate punctuation.
          w.words.assign(w.next.begin() + std::ptrdiff_t(first), w.next.end());
          w.next.resize(first);
          for (std::string_view word : w.words) {
            w.matches.clear();
            char_matches(word, is_bert_punct, w.matches);
            split_piece(word, w.matches, SplitBehavior::Isolated, false, w.next);
          }
          break;
        }
        case K::Metaspace: {
          std::string &s = w.scratch;
          s.clear();
          for (char c : piece) {
            if (c == ' ')
              s += st.replacement;
            else
              s += c;
          }
          // HF checks after replacing spaces: " Hello" becomes "▁Hello", not "▁▁Hello".
          bool prepend = st.prepend == PrependScheme::Always ||
                         (st.prepend == PrependScheme::First && at_start && p == 0);
          if (prepend && s.compare(0, st.replacement.size(), st.replacement) != 0)
            s.insert(0, st.replacement);
          std::string_view ms = w.arena.copy(s);
          if (st.split) {
            literal_matches(ms, st.replacement, w.matches);
            split_piece(ms, w.matches, SplitBehavior::MergedWithNext, false, w.next);
          } else {
            w.next.push_back(ms);
          }
          break;
        }
      }
    }
    std::swap(w.pieces, w.next);
    // Later steps see byte-level text as HF does (Falcon's digit splits run on mapped text,
    // where bytes such as 0xBD read as '½'); when ByteLevel is the last step there is nothing
    // to map, which is the common and fast case.
    if (st.kind == K::ByteLevel && !mapped && si + 1 < steps_.size()) {
      for (auto &piece : w.pieces) piece = byte_map(piece, w.arena);
      mapped = true;
    }
  }
  if (mapped)
    for (auto &piece : w.pieces) piece = byte_unmap(piece, w.arena);
}

std::string PreTokenizer::describe() const {
  std::string d;
  for (const auto &s : steps_) {
    if (!d.empty()) d += '|';
    switch (s.kind) {
      case PreTokStep::Kind::Split:
        d += str_cat("Split(", s.regex->pattern(), ",", int(s.behavior), ",", s.invert, ")");
        break;
      case PreTokStep::Kind::ByteLevel:
        d += str_cat("ByteLevel(", s.add_prefix_space, ",", s.use_regex, ")");
        break;
      case PreTokStep::Kind::Digits:
        d += str_cat("Digits(", s.individual_digits, ")");
        break;
      case PreTokStep::Kind::Punctuation:
        d += str_cat("Punctuation(", int(s.behavior), ")");
        break;
      default:
        d += str_cat("Kind", int(s.kind));
    }
  }
  return d;
}

// ---------------------------------------------------------------------------------------------
// Presets: the pre_tokenizer sections of the models' own tokenizer.json files.

namespace {

const char *const kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char *const kQwen2Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char *const kGpt4oPattern =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+"
    "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char *const kTekkenPattern =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|"
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// DeepSeek LLM's letter class: the cased letters (Lu, Ll, Lt) of Unicode, as ranges. The
// patterns hold the characters themselves, as the model's tokenizer.json does, so that such a
// file is recognised as this preset. (U+1F7D, U+1FBE, U+2126, U+212A... are the originals;
// NFC-normalizing this text would turn them into other letters and break the ranges.)
const char *const kDeepseekLetters =
    "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF"
    "\u01C4-\u0293\u0295-\u02AF\u0370-\u0373\u0376\u0377\u037B-\u037D"
    "\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481"
    "\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD"
    "\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77"
    "\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45"
    "\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D"
    "\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC"
    "\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4"
    "\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D"
    "\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139"
    "\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B"
    "\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D"
    "\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E"
    "\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A"
    "\uFF41-\uFF5A\U00010400-\U0001044F\U000104B0-\U000104D3\U000104D8-\U000104FB"
    "\U00010C80-\U00010CB2\U00010CC0-\U00010CF2\U000118A0-\U000118DF\U0001E900-\U0001E943]+";
const char *const kDeepseekPunct =
    "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+";
const char *const kDeepseekCjk = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+";
const char *const kDeepseek3Cjk = "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+";
const char *const kDeepseek3Main =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"
    "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

PreTokStep split_step(const char *pattern) {
  PreTokStep s;
  s.kind = PreTokStep::Kind::Split;
  // Presets are shared by every tokenizer that uses them: compile each pattern once.
  static std::vector<std::pair<const char *, std::shared_ptr<const Regex>>> cache;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  for (auto &[p, re] : cache)
    if (p == pattern) {
      s.regex = re;
      return s;
    }
  s.regex = std::make_shared<Regex>(pattern, "pre-tokenizer preset");
  cache.emplace_back(pattern, s.regex);
  return s;
}

PreTokStep byte_level_step(bool use_regex) {
  PreTokStep s;
  s.kind = PreTokStep::Kind::ByteLevel;
  s.use_regex = use_regex;
  return s;
}

PreTokStep digits_step(bool individual) {
  PreTokStep s;
  s.kind = PreTokStep::Kind::Digits;
  s.individual_digits = individual;
  return s;
}

const char *const kPresetNames =
    "gpt-2 (also gpt2, default, mpt, olmo, jais, phi-2), llama3 (llama-bpe, dbrx, smaug-bpe), "
    "qwen2 (stablelm2), falcon, starcoder (refact, command-r, smollm, codeshell), "
    "deepseek-llm, deepseek-coder, deepseek-v3, gpt-4o, tekken";

}  // namespace

std::string pretokenizer_preset_names() {
  return kPresetNames;
}

bool pretokenizer_preset(const std::string &name, PreTokenizer &out) {
  auto is = [&](std::initializer_list<const char *> names) {
    for (const char *n : names)
      if (name == n) return true;
    return false;
  };
  out = PreTokenizer();
  if (is({"gpt-2", "gpt2", "default", "", "mpt", "olmo", "jais", "phi-2"})) {
    out.add(byte_level_step(true));
  } else if (is({"llama3", "llama-bpe", "llama-v3", "dbrx", "smaug-bpe"})) {
    out.add(split_step(kLlama3Pattern));
    out.add(byte_level_step(false));
  } else if (is({"qwen2", "stablelm2"})) {
    out.add(split_step(kQwen2Pattern));
    out.add(byte_level_step(false));
  } else if (is({"falcon"})) {
    PreTokStep punct;
    punct.kind = PreTokStep::Kind::Punctuation;
    punct.behavior = SplitBehavior::Contiguous;
    out.add(punct);
    out.add(byte_level_step(true));
    out.add(digits_step(false));
    out.add(split_step("[0-9][0-9][0-9]"));
  } else if (is({"starcoder", "refact", "command-r", "smollm", "codeshell"})) {
    out.add(digits_step(true));
    out.add(byte_level_step(true));
  } else if (is({"deepseek-llm"})) {
    out.add(split_step("[\r\n]"));
    out.add(split_step(kDeepseekLetters));
    out.add(split_step(kDeepseekPunct));
    out.add(split_step("\\s+$"));
    out.add(split_step(kDeepseekCjk));
    out.add(digits_step(true));
    out.add(byte_level_step(false));
  } else if (is({"deepseek-coder"})) {
    out.add(split_step("[\r\n]"));
    out.add(split_step("\\s?\\p{L}+"));
    out.add(split_step("\\s?\\p{P}+"));
    out.add(split_step(kDeepseekCjk));
    out.add(digits_step(true));
    out.add(byte_level_step(false));
  } else if (is({"deepseek-v3"})) {
    out.add(split_step("\\p{N}{1,3}"));
    out.add(split_step(kDeepseek3Cjk));
    out.add(split_step(kDeepseek3Main));
    out.add(byte_level_step(false));
  } else if (is({"gpt-4o"})) {
    out.add(split_step(kGpt4oPattern));
    out.add(byte_level_step(false));
  } else if (is({"tekken"})) {
    out.add(split_step(kTekkenPattern));
    out.add(byte_level_step(false));
  } else {
    return false;
  }
  return true;
}

}  // namespace lmkit::tok
