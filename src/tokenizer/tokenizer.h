// Tokenizer: text <-> token ids for the vocabularies real models ship: SentencePiece-style BPE
// with scores and byte fallback, byte-level BPE with per-model pre-tokenizer regexes, WordPiece.
// Loaded from GGUF metadata, Hugging Face tokenizer.json (+ tokenizer_config.json) or a llama2.c
// tokenizer .bin. Not a trainer (train/ will hold the BPE trainer) and not a chat formatter (see
// chat_template.h).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lmkit {

class GGUFFile;

// Token kinds, numbered as GGUF's tokenizer.ggml.token_type.
enum class TokenType : int32_t {
  Normal = 1,
  Unknown = 2,
  Control = 3,      // BOS, EOS, <|im_start|>: never produced from plain text
  UserDefined = 4,  // added tokens matched literally in text
  Unused = 5,
  Byte = 6,  // <0x0A> byte-fallback pieces
};

enum class TokenizerKind { SentencePieceBPE, ByteLevelBPE, WordPiece };

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text -> ids. add_special: add BOS/EOS (or [CLS]/[SEP]) as the file's settings say.
  // parse_special: text of control/user-defined tokens ("<|im_end|>") maps to those tokens;
  // when false, such text is tokenized as ordinary text. Throws lmkit::Error on invalid UTF-8.
  // Note: user-defined tokens (HF added tokens with "special": false, GGUF token_type 4) are
  // matched even when parse_special is false, as HF tokenizers and llama.cpp do; the reference
  // ids of some vocabularies (DeepSeek's "ü"...) depend on it. Thread-safe.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                                      bool parse_special = true) const = 0;

  // The bytes a token stands for in decoded text ("▁the" -> " the", "<0x0A>" -> "\n", "Ġthe" ->
  // " the", WordPiece "##ing" -> "ing" and "the" -> " the"). Control tokens give "" unless
  // keep_special. May be an incomplete UTF-8 sequence (byte pieces).
  virtual std::string token_bytes(int32_t id, bool keep_special = false) const = 0;

  // Ids -> text: the joined token bytes, minus one leading space when strips_leading_space()
  // (SentencePiece's dummy prefix, WordPiece's word separator). Invalid UTF-8 left by byte pieces
  // becomes U+FFFD.
  std::string decode(std::span<const int32_t> ids, bool keep_special = false) const;
  // Whether decoding drops one leading space from the start of the text.
  bool strips_leading_space() const { return strip_leading_space_; }

  // The raw vocabulary string of a token, as stored in the file ("▁the", "Ġthe", "<0x0A>").
  const std::string &piece(int32_t id) const;
  // The id whose piece() is exactly `piece` ("<|im_end|>"), or -1. A linear scan: for setting
  // things up (stop tokens, chat markers), not for per-token work.
  int32_t find_piece(std::string_view piece) const;
  TokenType type(int32_t id) const;
  int32_t n_vocab() const { return int32_t(pieces_.size()); }
  TokenizerKind kind() const { return kind_; }

  int32_t bos_id() const { return bos_id_; }  // -1 when none
  int32_t eos_id() const { return eos_id_; }  // -1 when none
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  // True for tokens that end a generation: EOS, and end-of-turn tokens such as <|eot_id|>,
  // <|im_end|>, <end_of_turn> when the vocabulary has them.
  bool is_end_of_generation(int32_t id) const;
  // The chat template (Jinja source) from tokenizer_config.json or GGUF
  // tokenizer.chat_template; empty when the files carry none.
  const std::string &chat_template() const { return chat_template_; }
  // Pre-tokenizer name ("llama3", "gpt-2", ...) for byte-level BPE; "" otherwise.
  const std::string &pre() const { return pre_; }

 protected:
  TokenizerKind kind_ = TokenizerKind::SentencePieceBPE;
  std::vector<std::string> pieces_;
  std::vector<TokenType> types_;
  int32_t bos_id_ = -1, eos_id_ = -1;
  bool add_bos_ = false, add_eos_ = false;
  std::vector<int32_t> end_of_generation_;
  std::string chat_template_;
  std::string pre_;
  bool strip_leading_space_ = false;
};

// Incremental decoding for streaming: feed ids one at a time, get back the text that is complete
// (whole UTF-8 characters only; a character split across tokens comes out once it is whole).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer &tok) : tok_(tok) {}
  std::string feed(int32_t id);  // text now complete ("" while a character is incomplete)
  std::string flush();           // whatever is pending (invalid trailing bytes as U+FFFD)

 private:
  const Tokenizer &tok_;
  std::string pending_;
  bool at_start_ = true;  // no text emitted yet (the leading-space rule applies)
};

// Loaders. Each throws lmkit::Error naming the file and the problem.
std::unique_ptr<Tokenizer> tokenizer_from_gguf(const GGUFFile &f);
// `path` is a tokenizer.json file or a folder holding tokenizer.json (and optionally
// tokenizer_config.json for BOS/EOS settings and the chat template).
std::unique_ptr<Tokenizer> tokenizer_from_hf(const std::string &path);
// llama2.c tokenizer .bin (tok512.bin, tokenizer.bin): SentencePiece BPE, always adds BOS.
// n_vocab <= 0 reads tokens up to the end of the file (the format does not store the count).
std::unique_ptr<Tokenizer> tokenizer_from_llama2c(const std::string &path, int32_t n_vocab);
// Any of the above, chosen from the path (a .gguf, a .bin, a .json or a folder).
std::unique_ptr<Tokenizer> tokenizer_load(const std::string &path);

// Validates UTF-8; throws lmkit::Error("invalid UTF-8 at byte N") if it is not.
void utf8_validate(std::string_view s);

}  // namespace lmkit
