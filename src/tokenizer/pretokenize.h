// Text preparation before a vocabulary model runs: normalizers (Prepend, Replace, Lowercase,
// BERT cleaning...) and pre-tokenizers (regex splits, ByteLevel, Digits, Punctuation, Metaspace,
// BERT), with the semantics of Hugging Face tokenizers so that tokenizer.json files mean what
// they say. Not the models: BPE and WordPiece live in spm_bpe/byte_bpe/wordpiece.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lmkit::tok {

// A PCRE2 pattern compiled once (UTF + UCP, JIT when available) and shared by all threads.
class Regex {
 public:
  // Throws lmkit::Error("<what>: bad regex '<pattern>': <pcre2 message> at offset N").
  Regex(const std::string &pattern, const std::string &what, bool literal = false);
  ~Regex();
  Regex(const Regex &) = delete;
  Regex &operator=(const Regex &) = delete;

  // Appends the [begin, end) byte spans of all non-overlapping matches in s (which must be
  // valid UTF-8), leftmost first. Empty matches are skipped.
  void find_all(std::string_view s, std::vector<std::pair<uint32_t, uint32_t>> &out) const;
  const std::string &pattern() const { return pattern_; }

 private:
  struct Code;
  std::unique_ptr<Code> code_;
  std::string pattern_;
};

// What happens to the matched delimiters when a piece is split (HF's SplitDelimiterBehavior).
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
// When Metaspace / ByteLevel put a space in front of a piece.
enum class PrependScheme { Always, First, Never };

struct NormalizerStep {
  enum class Kind { Prepend, Replace, Lowercase, Strip, StripAccents, Bert, Identity };
  Kind kind = Kind::Identity;
  std::string text;                    // Prepend: the prefix; Replace: the replacement
  std::shared_ptr<const Regex> regex;  // Replace: the pattern
  bool strip_left = false, strip_right = false;
  // Bert
  bool clean_text = true, handle_chinese_chars = true, strip_accents = true, lowercase = true;
};

class Normalizer {
 public:
  void add(NormalizerStep s) { steps_.push_back(std::move(s)); }
  bool empty() const { return steps_.empty(); }
  // Normalizes one segment of text (the text between two added tokens).
  void apply(std::string_view in, std::string &out) const;
  std::string describe() const;

 private:
  std::vector<NormalizerStep> steps_;
};

struct PreTokStep {
  enum class Kind {
    Split,            // regex or literal: regex, behavior, invert
    ByteLevel,        // add_prefix_space, use_regex (GPT-2's pattern)
    Digits,           // individual_digits
    Punctuation,      // behavior
    Whitespace,       // \w+|[^\w\s]+, the rest removed
    WhitespaceSplit,  // split on whitespace, removed
    Bert,             // whitespace removed, punctuation isolated
    Metaspace,        // replacement, prepend, split
    CharDelimiter,    // delimiter, removed
  };
  Kind kind = Kind::Split;
  std::shared_ptr<const Regex> regex;
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool add_prefix_space = false;
  bool use_regex = true;
  bool individual_digits = false;
  std::string replacement = "\xE2\x96\x81";  // U+2581 "▁"
  PrependScheme prepend = PrependScheme::Always;
  bool split = true;
  uint32_t delimiter = ' ';
};

// Bump allocator for text that steps rewrite (mapped bytes, "▁" for spaces): blocks never move,
// so views into them stay valid until reset(), and a run allocates nothing once warm.
class PieceArena {
 public:
  char *alloc(size_t n);
  std::string_view copy(std::string_view s);
  void reset() { block_ = used_ = 0; }

 private:
  std::vector<std::unique_ptr<char[]>> blocks_;
  std::vector<size_t> sizes_;
  size_t block_ = 0, used_ = 0;
};

// Scratch space for one encode call, reused across segments and calls.
struct PreTokWork {
  std::vector<std::string_view> pieces, next, words;
  PieceArena arena;
  std::vector<std::pair<uint32_t, uint32_t>> matches;
  std::string scratch;
  void clear() {
    pieces.clear();
    arena.reset();
  }
};

class PreTokenizer {
 public:
  void add(PreTokStep s) { steps_.push_back(std::move(s)); }
  bool empty() const { return steps_.empty(); }
  bool has_byte_level() const;
  // Splits one normalized segment into pieces (views into `text` or into w.store). Byte-level
  // steps do not leave mapped text behind: pieces always come back as raw bytes, which is what
  // the byte-level BPE works on (its vocabulary is un-mapped at load time).
  void run(std::string_view text, bool at_start, PreTokWork &w) const;
  // A canonical one-line description ("Split(/.../,Isolated)|ByteLevel(regex=0)") used to
  // recognise well-known pipelines in tokenizer.json files.
  std::string describe() const;

 private:
  std::vector<PreTokStep> steps_;
};

// The GPT-2 pattern ByteLevel(use_regex=true) splits with.
extern const char *const kGpt2Pattern;
// The named pre-tokenizers of GGUF's tokenizer.ggml.pre, as Hugging Face defines them in
// the models' tokenizer.json. Returns false for an unknown name.
bool pretokenizer_preset(const std::string &name, PreTokenizer &out);
// Names pretokenizer_preset() knows, for error messages.
std::string pretokenizer_preset_names();

}  // namespace lmkit::tok
