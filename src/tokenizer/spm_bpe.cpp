// SentencePiece-style BPE (Llama 1/2, Mistral, llama2.c): characters merged by piece score or
// merge rank, "▁" for spaces, unknown characters as <0xXX> byte pieces. Also home of the BPE
// engine's hash maps and word cache. Not SentencePiece's unigram model and not its protobuf.
#include <cstring>

#include "core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace lmkit::tok {

// --- StringIdMap ------------------------------------------------------------------------------

void StringIdMap::grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.empty() ? 64 : old.size() * 2, Slot{});
  size_t mask = slots_.size() - 1;
  for (const Slot &s : old) {
    if (s.id < 0) continue;
    size_t i = s.hash & mask;
    while (slots_[i].id >= 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

bool StringIdMap::insert(std::string_view key, int32_t id) {
  if ((n_ + 1) * 2 > slots_.size()) grow();  // load factor <= 1/2 keeps probes short
  uint64_t h = hash_bytes(key);
  size_t mask = slots_.size() - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    Slot &s = slots_[i];
    if (s.id < 0) {
      s.hash = h;
      s.offset = uint32_t(arena_.size());
      s.length = uint32_t(key.size());
      s.id = id;
      arena_.append(key);
      ++n_;
      return true;
    }
    if (s.hash == h && std::string_view(arena_).substr(s.offset, s.length) == key) return false;
  }
}

int32_t StringIdMap::find(std::string_view key) const {
  if (slots_.empty()) return -1;
  uint64_t h = hash_bytes(key);
  size_t mask = slots_.size() - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    const Slot &s = slots_[i];
    if (s.id < 0) return -1;
    if (s.hash == h && s.length == key.size() &&
        std::string_view(arena_).substr(s.offset, s.length) == key)
      return s.id;
  }
}

// --- PairMap ----------------------------------------------------------------------------------

void PairMap::grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.empty() ? 64 : old.size() * 2, Slot{});
  size_t mask = slots_.size() - 1;
  for (const Slot &s : old) {
    if (s.rank < 0) continue;
    size_t i = mix(s.key) & mask;
    while (slots_[i].rank >= 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

void PairMap::insert(int32_t left, int32_t right, int32_t rank, int32_t merged) {
  if ((n_ + 1) * 2 > slots_.size()) grow();
  uint64_t key = pack(left, right);
  size_t mask = slots_.size() - 1;
  for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
    Slot &s = slots_[i];
    if (s.rank < 0) {
      s = Slot{key, rank, merged};
      ++n_;
      return;
    }
    if (s.key == key) return;  // a repeated merge keeps its first (best) rank, as HF does
  }
}

// --- WordCache --------------------------------------------------------------------------------

bool WordCache::get(std::string_view key, std::vector<int32_t> &out) const {
  uint64_t h = hash_bytes(key) | 1;
  Shard &sh = shards_[h >> 60];
  std::lock_guard<std::mutex> lock(sh.mu);
  if (sh.slots.empty()) return false;
  size_t mask = sh.slots.size() - 1;
  for (size_t i = (h >> 1) & mask;; i = (i + 1) & mask) {
    const Slot &s = sh.slots[i];
    if (s.hash == 0) return false;
    if (s.hash == h && s.key_length == key.size() &&
        std::memcmp(sh.keys.data() + s.key_offset, key.data(), key.size()) == 0) {
      out.insert(out.end(), sh.ids.begin() + s.ids_offset, sh.ids.begin() + s.ids_offset + s.n_ids);
      return true;
    }
  }
}

void WordCache::put(std::string_view key, const int32_t *ids, size_t n) const {
  if (key.size() > kMaxKey || n > 0xFFFF) return;
  uint64_t h = hash_bytes(key) | 1;
  Shard &sh = shards_[h >> 60];
  std::lock_guard<std::mutex> lock(sh.mu);
  if (sh.slots.empty() || sh.used >= kMaxSlots / 2) {
    sh.slots.assign(kMinSlots, Slot{});
    sh.keys.clear();
    sh.ids.clear();
    sh.used = 0;
  } else if (sh.used >= sh.slots.size() / 2) {
    std::vector<Slot> old(sh.slots.size() * 2);
    old.swap(sh.slots);
    size_t mask = sh.slots.size() - 1;
    for (const Slot &s : old) {
      if (s.hash == 0) continue;
      size_t i = (s.hash >> 1) & mask;
      while (sh.slots[i].hash != 0) i = (i + 1) & mask;
      sh.slots[i] = s;
    }
  }
  size_t mask = sh.slots.size() - 1;
  size_t i = (h >> 1) & mask;
  for (; sh.slots[i].hash != 0; i = (i + 1) & mask) {
    const Slot &s = sh.slots[i];
    if (s.hash == h && s.key_length == key.size() &&
        std::memcmp(sh.keys.data() + s.key_offset, key.data(), key.size()) == 0)
      return;  // another thread got there first
  }
  Slot &s = sh.slots[i];
  s.hash = h;
  s.key_offset = uint32_t(sh.keys.size());
  s.key_length = uint16_t(key.size());
  s.ids_offset = uint32_t(sh.ids.size());
  s.n_ids = uint16_t(n);
  sh.keys.append(key);
  sh.ids.insert(sh.ids.end(), ids, ids + n);
  ++sh.used;
}

// --- SentencePiece-style tokenizer ------------------------------------------------------------

namespace {

// "<0x0A>" -> 10; -1 when the piece is not of that form.
int parse_byte_piece(const std::string &p) {
  if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  int hi = hex(p[3]), lo = hex(p[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

struct BpeScratch {
  std::vector<BpeSymbol> syms;
  std::vector<BpeCandidate> heap;
  void add(int32_t start, int32_t len, int32_t id) {
    int32_t k = int32_t(syms.size());
    syms.push_back({start, len, id, k - 1, -1});
    if (k > 0) syms[size_t(k - 1)].next = k;
  }
};

BpeScratch &bpe_scratch() {
  thread_local BpeScratch s;
  return s;
}

class SpmBpeTokenizer final : public TokenizerImpl {
 public:
  SpmBpeTokenizer(TokenizerSetup &&setup, SpmModel &&m) : TokenizerImpl(std::move(setup)) {
    model_ = std::move(m);
    int32_t n = n_vocab();
    LMKIT_CHECK(model_.use_merges || int32_t(model_.scores.size()) == n, source_, ": ",
                model_.scores.size(), " scores for ", n, " tokens");
    LMKIT_CHECK(model_.unk_id >= -1 && model_.unk_id < n, source_, ": unknown-token id ",
                model_.unk_id, " outside the vocabulary");
    byte_ids_.fill(-1);
    bytes_.resize(size_t(n));
    const std::string &sp = model_.space_symbol;
    // Cutting the text into words before each "▁" that follows another character changes
    // nothing when no piece has a character followed by "▁" inside it (no merge can then span
    // such a cut), and it lets whole words be cached. Llama's vocabulary qualifies.
    split_words_ = pretokenizer_.empty() && !sp.empty();
    for (int32_t id = 0; id < n; ++id) {
      const std::string &p = pieces_[size_t(id)];
      TokenType t = types_[size_t(id)];
      int b = t == TokenType::Byte ? parse_byte_piece(p) : -1;
      if (b >= 0) {
        if (byte_ids_[size_t(b)] < 0) byte_ids_[size_t(b)] = id;
        bytes_[size_t(id)] = std::string(1, char(b));
        continue;
      }
      bytes_[size_t(id)] = unescape(p);
      // Control, unknown and byte pieces are never the result of merging text.
      if (t != TokenType::Normal && t != TokenType::UserDefined && t != TokenType::Unused) continue;
      vocab_.insert(p, id);
      for (size_t pos = sp.empty() ? std::string::npos : p.find(sp, 1);
           split_words_ && pos != std::string::npos; pos = p.find(sp, pos + 1)) {
        bool after_space = pos >= sp.size() && p.compare(pos - sp.size(), sp.size(), sp) == 0;
        if (!after_space) split_words_ = false;
      }
    }
    for (size_t r = 0; r < model_.merges.size(); ++r) {
      const auto &mg = model_.merges[r];
      for (int32_t id : mg)
        LMKIT_CHECK(id >= 0 && id < n, source_, ": merge ", r, " refers to token id ", id,
                    " outside the vocabulary");
      merges_.insert(mg[0], mg[1], int32_t(r), mg[2]);
    }
    model_.merges.clear();
    model_.merges.shrink_to_fit();
    if (!model_.use_merges) {
      // Score mode asks "is left+right a piece?" for every candidate pair. For two symbols
      // that are pieces themselves the answer is fixed, so it is tabulated once here: every
      // split of every piece into two pieces. Only characters missing from the vocabulary
      // still need the text lookup.
      for (int32_t id = 0; id < n; ++id) {
        TokenType t = types_[size_t(id)];
        if (t != TokenType::Normal && t != TokenType::UserDefined && t != TokenType::Unused)
          continue;
        std::string_view p = pieces_[size_t(id)];
        for (size_t k = 1; k < p.size(); ++k) {
          if ((uint8_t(p[k]) & 0xC0) == 0x80) continue;
          int32_t l = vocab_.find(p.substr(0, k)), r = vocab_.find(p.substr(k));
          if (l >= 0 && r >= 0) merges_.insert(l, r, 0, id);
        }
      }
    }
    for (int b = 0; b < 128; ++b) ascii_ids_[size_t(b)] = vocab_.find(std::string(1, char(b)));
  }

 protected:
  void encode_segment(std::string_view text, bool at_start,
                      std::vector<int32_t> &out) const override {
    thread_local std::string norm;
    std::string_view t = text;
    if (!normalizer_.empty()) {
      normalizer_.apply(text, norm);
      t = norm;
    }
    if (!pretokenizer_.empty()) {
      thread_local PreTokWork w;
      pretokenizer_.run(t, at_start, w);
      for (std::string_view piece : w.pieces) encode_word(piece, out);
      return;
    }
    if (!split_words_) {
      encode_word(t, out);
      return;
    }
    const std::string &sp = model_.space_symbol;
    size_t start = 0;
    for (size_t pos = t.find(sp, 1); pos != std::string_view::npos; pos = t.find(sp, pos + 1)) {
      // Cut before a "▁" that follows something else; runs of "▁" stay together.
      if (pos >= start + sp.size() && t.compare(pos - sp.size(), sp.size(), sp) == 0) continue;
      if (pos > start) {
        encode_word(t.substr(start, pos - start), out);
        start = pos;
      }
    }
    encode_word(t.substr(start), out);
  }

 private:
  std::string unescape(const std::string &p) const {
    const std::string &sp = model_.space_symbol;
    if (sp.empty() || sp == " ") return p;
    std::string s;
    for (size_t i = 0; i < p.size();) {
      if (p.compare(i, sp.size(), sp) == 0) {
        s += ' ';
        i += sp.size();
      } else {
        s += p[i++];
      }
    }
    return s;
  }

  bool all_bytes_known(std::string_view bytes) const {
    if (!model_.byte_fallback) return false;
    for (char c : bytes)
      if (byte_ids_[uint8_t(c)] < 0) return false;
    return true;
  }

  void encode_word(std::string_view word, std::vector<int32_t> &out) const {
    if (word.empty()) return;
    bool cacheable = word.size() <= WordCache::kMaxKey;
    if (cacheable && cache_.get(word, out)) return;
    size_t first = out.size();
    BpeScratch &w = bpe_scratch();
    w.syms.clear();
    for (size_t i = 0; i < word.size();) {
      size_t b = i;
      i += std::min(size_t(unicode::utf8_len(uint8_t(word[i]))), word.size() - i);
      std::string_view ch = word.substr(b, i - b);
      int32_t id =
          i - b == 1 && uint8_t(ch[0]) < 128 ? ascii_ids_[uint8_t(ch[0])] : vocab_.find(ch);
      if (id < 0 && model_.use_merges) {
        // HF's BPE falls back to byte pieces before merging (they then rarely merge further).
        if (all_bytes_known(ch)) {
          for (size_t k = b; k < i; ++k) w.add(int32_t(k), 1, byte_ids_[uint8_t(word[k])]);
          continue;
        }
        if (model_.unk_id < 0) continue;  // HF drops a character it cannot represent
        if (model_.fuse_unk && !w.syms.empty() && w.syms.back().id == model_.unk_id) {
          w.syms.back().len += int32_t(i - b);
          continue;
        }
        id = model_.unk_id;
      }
      w.add(int32_t(b), int32_t(i - b), id);
    }
    if (model_.use_merges) {
      bpe_merge(w.syms, w.heap,
                [&](const BpeSymbol &l, const BpeSymbol &r, double *prio, int32_t *merged) {
                  int32_t rank;
                  if (l.id < 0 || r.id < 0 || !merges_.find(l.id, r.id, &rank, merged))
                    return false;
                  *prio = rank;
                  return true;
                });
    } else {
      bpe_merge(w.syms, w.heap,
                [&](const BpeSymbol &l, const BpeSymbol &r, double *prio, int32_t *merged) {
                  int32_t id, unused;
                  if (l.id >= 0 && r.id >= 0) {
                    if (!merges_.find(l.id, r.id, &unused, &id)) return false;
                  } else {
                    id = vocab_.find(word.substr(size_t(l.start), size_t(l.len + r.len)));
                    if (id < 0) return false;
                  }
                  *prio = -double(model_.scores[size_t(id)]);
                  *merged = id;
                  return true;
                });
    }
    // Symbol 0 always survives (merges keep the left symbol), so the list starts there.
    for (int32_t k = w.syms.empty() ? -1 : 0; k >= 0; k = w.syms[size_t(k)].next) {
      const BpeSymbol &s = w.syms[size_t(k)];
      if (s.id >= 0) {
        out.push_back(s.id);
        continue;
      }
      // A character the vocabulary lacks (score mode): its UTF-8 bytes as byte pieces.
      std::string_view bytes = word.substr(size_t(s.start), size_t(s.len));
      if (all_bytes_known(bytes)) {
        for (char c : bytes) out.push_back(byte_ids_[uint8_t(c)]);
      } else if (model_.unk_id >= 0) {
        out.push_back(model_.unk_id);
      }
    }
    if (cacheable) cache_.put(word, out.data() + first, out.size() - first);
  }

  SpmModel model_;
  StringIdMap vocab_;
  PairMap merges_;  // rank mode: the merges list; score mode: every piece's two-piece splits
  std::array<int32_t, 256> byte_ids_;
  std::array<int32_t, 128> ascii_ids_;  // vocab_ lookups of one-byte characters
  bool split_words_ = false;
  WordCache cache_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_spm_bpe(TokenizerSetup &&setup, SpmModel &&model) {
  return std::make_unique<SpmBpeTokenizer>(std::move(setup), std::move(model));
}

}  // namespace lmkit::tok
