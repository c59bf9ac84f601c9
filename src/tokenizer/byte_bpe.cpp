// Byte-level BPE (GPT-2, Llama 3, Qwen2, Falcon, StarCoder, DeepSeek): pre-tokenizer pieces
// merged by rank over raw bytes, with a cache of frequent words. Not SentencePiece-style BPE
// (no "▁", no byte fallback pieces): see spm_bpe.cpp.
#include "core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace lmkit::tok {
namespace {

// The raw bytes a piece written in GPT-2's byte alphabet stands for ("Ġthe" -> " the").
// Characters outside the alphabet (some vocabularies carry a few) are kept as they are.
std::string unmap_piece(const std::string &p) {
  std::string out;
  out.reserve(p.size());
  for (size_t i = 0; i < p.size();) {
    size_t b = i;
    int byte = unicode::cp_to_byte(unicode::next_cp(p, i));
    if (byte >= 0)
      out += char(byte);
    else
      out.append(p, b, i - b);
  }
  return out;
}

struct Scratch {
  std::vector<BpeSymbol> syms;
  std::vector<BpeCandidate> heap;
  PreTokWork pre;
  std::string norm;
};

Scratch &scratch() {
  thread_local Scratch s;
  return s;
}

class ByteBpeTokenizer final : public TokenizerImpl {
 public:
  ByteBpeTokenizer(TokenizerSetup &&setup, ByteBpeModel &&m) : TokenizerImpl(std::move(setup)) {
    int32_t n = n_vocab();
    ignore_merges_ = m.ignore_merges;
    unk_id_ = m.unk_id;
    LMKIT_CHECK(unk_id_ >= -1 && unk_id_ < n, source_, ": unknown-token id ", unk_id_,
                " outside the vocabulary");
    bytes_.resize(size_t(n));
    // The model works on raw bytes: the vocabulary is un-mapped once here instead of mapping
    // every input byte to GPT-2's alphabet and back.
    for (int32_t id = 0; id < n; ++id) {
      const std::string &p = pieces_[size_t(id)];
      switch (types_[size_t(id)]) {
        case TokenType::Control:
        case TokenType::UserDefined:
          // Added tokens are matched and decoded as the literal text they are.
          bytes_[size_t(id)] = p;
          break;
        default:
          bytes_[size_t(id)] = unmap_piece(p);
          vocab_.insert(bytes_[size_t(id)], id);
      }
    }
    for (int b = 0; b < 256; ++b) byte_ids_[size_t(b)] = vocab_.find(std::string(1, char(b)));
    for (size_t r = 0; r < m.merges.size(); ++r) {
      const auto &mg = m.merges[r];
      for (int32_t id : mg)
        LMKIT_CHECK(id >= 0 && id < n, source_, ": merge ", r, " refers to token id ", id,
                    " outside the vocabulary");
      merges_.insert(mg[0], mg[1], int32_t(r), mg[2]);
    }
  }

 protected:
  void encode_segment(std::string_view text, bool at_start,
                      std::vector<int32_t> &out) const override {
    Scratch &s = scratch();
    std::string_view t = text;
    if (!normalizer_.empty()) {
      normalizer_.apply(text, s.norm);
      t = s.norm;
    }
    if (pretokenizer_.empty()) {
      encode_word(t, out, s);
      return;
    }
    pretokenizer_.run(t, at_start, s.pre);
    for (std::string_view piece : s.pre.pieces) encode_word(piece, out, s);
  }

 private:
  void encode_word(std::string_view word, std::vector<int32_t> &out, Scratch &s) const {
    if (word.empty()) return;
    if (word.size() == 1) {
      push_byte(uint8_t(word[0]), out);
      return;
    }
    if (ignore_merges_) {
      int32_t id = vocab_.find(word);
      if (id >= 0) {
        out.push_back(id);
        return;
      }
    }
    bool cacheable = word.size() <= WordCache::kMaxKey;
    if (cacheable && cache_.get(word, out)) return;
    size_t first = out.size();
    s.syms.clear();
    for (size_t i = 0; i < word.size(); ++i) {
      int32_t k = int32_t(s.syms.size());
      s.syms.push_back({int32_t(i), 1, byte_ids_[uint8_t(word[i])], k - 1, -1});
      if (k > 0) s.syms[size_t(k - 1)].next = k;
    }
    bpe_merge(s.syms, s.heap,
              [&](const BpeSymbol &l, const BpeSymbol &r, double *prio, int32_t *merged) {
                int32_t rank;
                if (l.id < 0 || r.id < 0 || !merges_.find(l.id, r.id, &rank, merged)) return false;
                *prio = rank;
                return true;
              });
    for (int32_t k = 0; k >= 0; k = s.syms[size_t(k)].next) {
      const BpeSymbol &sym = s.syms[size_t(k)];
      if (sym.id >= 0)
        out.push_back(sym.id);
      else
        push_byte(uint8_t(word[size_t(sym.start)]), out);
    }
    if (cacheable) cache_.put(word, out.data() + first, out.size() - first);
  }

  void push_byte(uint8_t b, std::vector<int32_t> &out) const {
    int32_t id = byte_ids_[b];
    // A vocabulary without this byte: HF emits the unknown token if there is one, else drops it.
    if (id < 0) id = unk_id_;
    if (id >= 0) out.push_back(id);
  }

  StringIdMap vocab_;  // raw bytes -> id, ordinary tokens only
  PairMap merges_;
  std::array<int32_t, 256> byte_ids_{};
  bool ignore_merges_ = false;
  int32_t unk_id_ = -1;
  WordCache cache_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_bpe(TokenizerSetup &&setup, ByteBpeModel &&model) {
  return std::make_unique<ByteBpeTokenizer>(std::move(setup), std::move(model));
}

}  // namespace lmkit::tok
