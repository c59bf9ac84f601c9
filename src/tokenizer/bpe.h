// The BPE merge engine shared by the SentencePiece-style and byte-level tokenizers: a linked
// list of symbols and a priority queue of candidate pairs, plus the flat hash maps it looks
// things up in and a thread-safe cache of whole words. Not a tokenizer by itself (no vocabulary
// files, no pre-tokenization) and not a trainer.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace lmkit::tok {

inline uint64_t hash_bytes(std::string_view s) {
  // Eight bytes per step with multiply-xorshift mixing: pieces and words are short, and this
  // runs for every word looked up in the cache.
  uint64_t h = 0x9E3779B97F4A7C15ull ^ s.size();
  const char *p = s.data();
  size_t n = s.size();
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  if (n) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 29;
  }
  h *= 0xd6e8feb86659fd93ull;
  h ^= h >> 32;
  return h;
}

// String -> id with open addressing; keys live in one arena, lookups take a string_view and
// never allocate (the SentencePiece merge loop looks up every candidate pair's text).
class StringIdMap {
 public:
  // Keeps the first id for a key inserted twice; returns whether the key was new.
  bool insert(std::string_view key, int32_t id);
  int32_t find(std::string_view key) const;  // -1 when absent
  size_t size() const { return n_; }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t offset = 0, length = 0;
    int32_t id = -1;  // -1: empty slot
  };
  void grow();
  std::vector<Slot> slots_;
  std::string arena_;
  size_t n_ = 0;
};

// (left id, right id) -> (rank, merged id): the merge table of rank-ordered BPE.
class PairMap {
 public:
  void insert(int32_t left, int32_t right, int32_t rank, int32_t merged);
  bool find(int32_t left, int32_t right, int32_t *rank, int32_t *merged) const {
    if (slots_.empty()) return false;
    uint64_t key = pack(left, right);
    size_t mask = slots_.size() - 1;
    for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
      const Slot &s = slots_[i];
      if (s.rank < 0) return false;
      if (s.key == key) {
        *rank = s.rank;
        *merged = s.merged;
        return true;
      }
    }
  }
  size_t size() const { return n_; }

 private:
  struct Slot {
    uint64_t key = 0;
    int32_t rank = -1;  // -1: empty slot
    int32_t merged = -1;
  };
  static uint64_t pack(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  static uint64_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
  }
  void grow();
  std::vector<Slot> slots_;
  size_t n_ = 0;
};

// One symbol of a word being merged: a byte span of the word and its token id (-1 while the
// span is not a vocabulary piece). Merged-away symbols have len 0.
struct BpeSymbol {
  int32_t start, len, id, prev, next;
};

struct BpeCandidate {
  double priority;  // lower merges first: the rank, or minus the piece's score
  int32_t left, right, size, merged;
};

// Merges adjacent symbols until no candidate pair is left. pair(l, r, &priority, &merged)
// says whether symbols l and r can merge, with which priority and into which id. Ties go to
// the leftmost pair, as in SentencePiece, llama.cpp and HF tokenizers. O(n log n) in the
// number of symbols.
template <typename PairFn>
void bpe_merge(std::vector<BpeSymbol> &syms, std::vector<BpeCandidate> &heap, PairFn &&pair) {
  auto worse = [](const BpeCandidate &a, const BpeCandidate &b) {
    return a.priority > b.priority || (a.priority == b.priority && a.left > b.left);
  };
  heap.clear();
  auto candidate = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return false;
    double priority;
    int32_t merged;
    if (!pair(syms[size_t(l)], syms[size_t(r)], &priority, &merged)) return false;
    heap.push_back({priority, l, r, syms[size_t(l)].len + syms[size_t(r)].len, merged});
    return true;
  };
  auto try_add = [&](int32_t l, int32_t r) {
    if (candidate(l, r)) std::push_heap(heap.begin(), heap.end(), worse);
  };
  for (size_t i = 0; i + 1 < syms.size(); ++i) candidate(int32_t(i), int32_t(i + 1));
  std::make_heap(heap.begin(), heap.end(), worse);  // O(n) for the initial pairs
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    BpeCandidate c = heap.back();
    heap.pop_back();
    BpeSymbol &l = syms[size_t(c.left)];
    BpeSymbol &r = syms[size_t(c.right)];
    // Stale candidate: one side was merged into something else since it was queued. A live
    // left symbol still pointing at the same right neighbour with the same total length is
    // exactly the pair that was queued (symbols only grow to the right).
    if (l.len == 0 || r.len == 0 || l.next != c.right || l.len + r.len != c.size) continue;
    l.len += r.len;
    l.id = c.merged;
    l.next = r.next;
    if (r.next >= 0) syms[size_t(r.next)].prev = c.left;
    r.len = 0;
    try_add(l.prev, c.left);
    try_add(c.left, l.next);
  }
}

// Thread-safe cache of word -> token ids: sharded open-addressing tables over flat arenas (no
// allocation per entry), so that many encoding threads rarely wait on one another. A full
// shard is simply cleared: words follow Zipf's law, so the frequent ones come back at once.
class WordCache {
 public:
  static constexpr size_t kMaxKey = 64;  // longer words are rare and not worth keeping
  bool get(std::string_view key, std::vector<int32_t> &out) const;
  void put(std::string_view key, const int32_t *ids, size_t n) const;

 private:
  struct Slot {
    uint64_t hash = 0;  // 0: empty (real hashes have the low bit set)
    uint32_t key_offset = 0, ids_offset = 0;
    uint16_t key_length = 0, n_ids = 0;
  };
  struct Shard {
    std::mutex mu;
    std::vector<Slot> slots;  // power of two, grown up to kMaxSlots
    std::string keys;
    std::vector<int32_t> ids;
    size_t used = 0;
  };
  static constexpr size_t kShards = 16;
  // Per shard: starts small, doubles when half full, is cleared once at kMaxSlots (then it
  // holds 16K words, 256K over all shards: a large vocabulary's worth of frequent words).
  static constexpr size_t kMinSlots = 1 << 10, kMaxSlots = 1 << 15;
  mutable std::array<Shard, kShards> shards_;
};

}  // namespace lmkit::tok
