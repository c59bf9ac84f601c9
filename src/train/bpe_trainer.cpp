// BPE training over distinct words with incremental pair counts: each pair knows its count and
// the words it occurs in, so a merge touches only those words, and a max-heap with lazy
// re-insertion picks the next pair. Not HF's trainer: no continuing-subword prefix, no dropout,
// no limit on the alphabet (all 256 bytes are always tokens, so any text can be encoded).
#include "train/bpe_trainer.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "core/thread_pool.h"
#include "io/atomic_file.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/unicode.h"
#include "train/data.h"
#include "train/progress.h"

namespace lmkit {

namespace {

using json = nlohmann::json;

// Raw bytes in GPT-2's byte alphabet ("\n" -> "Ċ", " the" -> "Ġthe"), as tokenizer.json stores
// them.
std::string byte_map(std::string_view raw) {
  const auto &fwd = unicode::byte_to_cp();
  std::string out;
  out.reserve(raw.size() * 2);
  for (char c : raw) unicode::append_utf8(out, fwd[uint8_t(c)]);
  return out;
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
}

// Word counts of the texts: pre-tokenized with GPT-2's pattern after cutting out special-token
// text. Keys view the texts, which outlive the counting.
using WordCounts = std::unordered_map<std::string_view, int64_t>;

void count_words(std::string_view doc, const std::vector<std::string> &specials,
                 const tok::PreTokenizer &pre, tok::PreTokWork &work, WordCounts &counts,
                 int64_t &n_words) {
  while (!doc.empty()) {
    // The earliest special token in what is left (longest first at equal positions).
    size_t cut = doc.size(), cut_len = 0;
    for (const std::string &s : specials) {
      size_t at = doc.find(s);
      if (at < cut || (at == cut && at != std::string_view::npos && s.size() > cut_len)) {
        cut = at;
        cut_len = s.size();
      }
    }
    std::string_view text = doc.substr(0, cut);
    if (!text.empty()) {
      pre.run(text, true, work);
      for (std::string_view w : work.pieces) ++counts[w];
      n_words += int64_t(work.pieces.size());
    }
    doc.remove_prefix(std::min(doc.size(), cut + cut_len));
  }
}

struct Candidate {
  int64_t count;
  int32_t left, right;
};
// Heap order: the top is the highest count, ties to the smaller (left, right).
bool lower_priority(const Candidate &a, const Candidate &b) {
  if (a.count != b.count) return a.count < b.count;
  if (a.left != b.left) return a.left > b.left;
  return a.right > b.right;
}

struct PairInfo {
  int64_t count = 0;
  std::vector<int32_t>
      words;  // words it occurs in (may hold stale entries; no duplicates in a row)
};

}  // namespace

BpeVocab bpe_train(std::span<const std::string_view> texts, const BpeTrainOptions &opt) {
  const int32_t n_special = int32_t(opt.special_tokens.size());
  LMKIT_CHECK(opt.vocab_size >= n_special + 256, "BPE vocabulary size ", opt.vocab_size,
              " is too small: it must hold the 256 byte tokens and ", n_special,
              " special token(s), at least ", n_special + 256);
  LMKIT_CHECK(opt.vocab_size <= (int64_t(1) << 24), "BPE vocabulary size ", opt.vocab_size,
              " is too large (at most 16777216)");
  LMKIT_CHECK(opt.min_frequency >= 1, "min frequency must be at least 1, not ", opt.min_frequency);
  std::unordered_set<std::string> special_set, byte_spellings;
  for (int b = 0; b < 256; ++b) byte_spellings.insert(byte_map(std::string(1, char(b))));
  for (const std::string &s : opt.special_tokens) {
    LMKIT_CHECK(!s.empty(), "special tokens must not be empty");
    LMKIT_CHECK(unicode::utf8_find_invalid(s) == s.size(), "special token '", s,
                "' is not valid UTF-8");
    LMKIT_CHECK(special_set.insert(s).second, "special token '", s, "' is given twice");
    LMKIT_CHECK(!byte_spellings.count(s), "special token '", s,
                "' is spelled like a byte token of the vocabulary; pick another name");
  }
  for (size_t t = 0; t < texts.size(); ++t) {
    size_t bad = unicode::utf8_find_invalid(texts[t]);
    LMKIT_CHECK(bad == texts[t].size(), "training text ", t, ": invalid UTF-8 at byte ", bad);
  }

  // 1. Documents, pre-tokenized and counted per thread, then merged.
  std::vector<std::string_view> docs;
  for (std::string_view t : texts) split_documents(t, docs);
  tok::PreTokenizer pre;
  tok::pretokenizer_preset("gpt-2", pre);
  int n_threads = std::max(1, opt.n_threads);
  ThreadPool pool(n_threads);
  std::vector<WordCounts> local(size_t(pool.size()));
  std::vector<int64_t> local_words(size_t(pool.size()), 0);
  pool.parallel_for(int64_t(docs.size()), [&](int64_t b, int64_t e, int ti) {
    tok::PreTokWork work;
    for (int64_t d = b; d < e; ++d)
      count_words(docs[size_t(d)], opt.special_tokens, pre, work, local[size_t(ti)],
                  local_words[size_t(ti)]);
  });
  WordCounts counts = std::move(local[0]);
  for (size_t t = 1; t < local.size(); ++t)
    for (const auto &[w, c] : local[t]) counts[w] += c;
  BpeVocab v;
  v.n_special = n_special;
  v.add_bos = opt.add_bos;
  v.model_max_length = opt.model_max_length;
  for (int64_t n : local_words) v.n_words += n;
  v.n_unique_words = int64_t(counts.size());

  // Words in byte order, so that nothing below depends on hash-map iteration order.
  std::vector<std::pair<std::string_view, int64_t>> sorted(counts.begin(), counts.end());
  counts = {};
  std::sort(sorted.begin(), sorted.end());
  const int32_t first_byte = n_special;
  std::vector<int32_t> syms;                    // all words' symbols, back to back
  std::vector<int64_t> word_start, word_count;  // (n_words)
  std::vector<int32_t> word_len;
  for (const auto &[w, c] : sorted) {
    word_start.push_back(int64_t(syms.size()));
    word_len.push_back(int32_t(w.size()));
    word_count.push_back(c);
    for (char ch : w) syms.push_back(first_byte + uint8_t(ch));
  }
  sorted = {};

  // 2. The vocabulary so far, and the ordinary tokens by their bytes (to refuse a merge whose
  // result already exists).
  for (const std::string &s : opt.special_tokens) v.tokens.push_back(s);
  std::unordered_map<std::string, int32_t> by_bytes;
  for (int b = 0; b < 256; ++b) {
    v.tokens.emplace_back(1, char(b));
    by_bytes.emplace(v.tokens.back(), first_byte + b);
  }
  // Mapped spellings of the special tokens: a merged token must not collide with one in the
  // vocab object of tokenizer.json.
  std::unordered_set<std::string> special_spellings(opt.special_tokens.begin(),
                                                    opt.special_tokens.end());

  // 3. Pair counts and where each pair occurs.
  std::unordered_map<uint64_t, PairInfo> pairs;
  auto note = [&](int32_t a, int32_t b, int64_t c, int32_t w) {
    PairInfo &p = pairs[pair_key(a, b)];
    p.count += c;
    if (p.words.empty() || p.words.back() != w) p.words.push_back(w);
    return &p;
  };
  const int32_t n_words = int32_t(word_start.size());
  for (int32_t w = 0; w < n_words; ++w) {
    const int32_t *s = syms.data() + word_start[size_t(w)];
    for (int32_t i = 0; i + 1 < word_len[size_t(w)]; ++i)
      note(s[i], s[i + 1], word_count[size_t(w)], w);
  }
  std::vector<Candidate> heap;
  heap.reserve(pairs.size());
  for (const auto &[k, p] : pairs)
    heap.push_back({p.count, int32_t(k >> 32), int32_t(uint32_t(k))});
  std::make_heap(heap.begin(), heap.end(), lower_priority);

  // 4. Merges.
  int64_t target = opt.vocab_size;
  ProgressBar bar(target - int64_t(v.tokens.size()), "bpe", ProgressBar::Unit::Count, "merges");
  if (!opt.progress) bar.set_enabled(false);
  std::vector<int32_t> stamp(size_t(n_words), -1);  // the last merge that visited each word
  std::vector<uint64_t> fresh;                      // pairs made with the new token
  std::unordered_set<uint64_t> refused;
  while (int64_t(v.tokens.size()) < target && !heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), lower_priority);
    Candidate c = heap.back();
    heap.pop_back();
    uint64_t key = pair_key(c.left, c.right);
    auto it = pairs.find(key);
    if (it == pairs.end() || it->second.count <= 0) continue;
    if (it->second.count != c.count) {
      // Counts of existing pairs only go down (a merge creates pairs only with its new token),
      // so an outdated entry overstates the count: queue it again with the true one.
      heap.push_back({it->second.count, c.left, c.right});
      std::push_heap(heap.begin(), heap.end(), lower_priority);
      continue;
    }
    if (c.count < opt.min_frequency) break;
    if (refused.count(key)) continue;
    std::string bytes = v.tokens[size_t(c.left)] + v.tokens[size_t(c.right)];
    if (by_bytes.count(bytes) || special_spellings.count(byte_map(bytes))) {
      refused.insert(key);
      continue;
    }
    const int32_t merge_index = int32_t(v.merges.size());
    const int32_t id = int32_t(v.tokens.size());
    v.tokens.push_back(bytes);
    by_bytes.emplace(std::move(bytes), id);
    v.merges.emplace_back(c.left, c.right);

    std::vector<int32_t> where = std::move(it->second.words);
    fresh.clear();
    for (int32_t w : where) {
      if (stamp[size_t(w)] == merge_index) continue;
      stamp[size_t(w)] = merge_index;
      int32_t *s = syms.data() + word_start[size_t(w)];
      int32_t n = word_len[size_t(w)];
      bool has = false;
      for (int32_t i = 0; i + 1 < n && !has; ++i) has = s[i] == c.left && s[i + 1] == c.right;
      if (!has) continue;  // a stale entry: an earlier merge rewrote this occurrence
      const int64_t wc = word_count[size_t(w)];
      for (int32_t i = 0; i + 1 < n; ++i) pairs[pair_key(s[i], s[i + 1])].count -= wc;
      int32_t m = 0;
      for (int32_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == c.left && s[i + 1] == c.right) {
          s[m++] = id;
          i += 2;
        } else {
          s[m++] = s[i++];
        }
      }
      word_len[size_t(w)] = m;
      for (int32_t i = 0; i + 1 < m; ++i) {
        if (s[i] == id || s[i + 1] == id) {
          PairInfo *p = note(s[i], s[i + 1], wc, w);
          if (p->count == wc) fresh.push_back(pair_key(s[i], s[i + 1]));
        } else {
          pairs[pair_key(s[i], s[i + 1])].count += wc;
        }
      }
    }
    pairs.erase(key);
    for (uint64_t k : fresh) {
      auto f = pairs.find(k);
      if (f == pairs.end()) continue;
      heap.push_back({f->second.count, int32_t(k >> 32), int32_t(uint32_t(k))});
      std::push_heap(heap.begin(), heap.end(), lower_priority);
    }
    bar.update(int64_t(v.tokens.size()) - n_special - 256);
  }
  bar.finish();
  for (int32_t w = 0; w < n_words; ++w)
    v.n_text_tokens += word_count[size_t(w)] * word_len[size_t(w)];
  return v;
}

BpeVocab bpe_train_files(const std::vector<std::string> &paths, const BpeTrainOptions &opt) {
  LMKIT_CHECK(!paths.empty(), "no training files given");
  std::vector<std::string> texts;
  texts.reserve(paths.size());
  for (const std::string &p : paths) texts.push_back(read_text_file(p));
  std::vector<std::string_view> views(texts.begin(), texts.end());
  return bpe_train(views, opt);
}

// --- saving -------------------------------------------------------------------------------------

std::string bpe_tokenizer_json(const BpeVocab &v) {
  auto q = [](const std::string &s) { return json(s).dump(); };
  auto added = [&](int32_t id) {
    return str_cat("{\"id\": ", id, ", \"content\": ", q(v.tokens[size_t(id)]),
                   ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                   "\"normalized\": false, \"special\": true}");
  };
  std::string o;
  o += "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n";
  o += "  \"added_tokens\": [";
  for (int32_t id = 0; id < v.n_special; ++id) o += (id ? ",\n    " : "\n    ") + added(id);
  o += v.n_special ? "\n  ],\n" : "],\n";
  o += "  \"normalizer\": null,\n";
  o += "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
       "\"trim_offsets\": true, \"use_regex\": true},\n";
  if (v.add_bos && v.n_special > 0) {
    std::string bos = q(v.tokens[0]);
    auto special = [&](int type_id) {
      return str_cat("{\"SpecialToken\": {\"id\": ", bos, ", \"type_id\": ", type_id, "}}");
    };
    auto seq = [&](const char *name, int type_id) {
      return str_cat("{\"Sequence\": {\"id\": \"", name, "\", \"type_id\": ", type_id, "}}");
    };
    o += "  \"post_processor\": {\n    \"type\": \"TemplateProcessing\",\n";
    o += "    \"single\": [" + special(0) + ", " + seq("A", 0) + "],\n";
    o += "    \"pair\": [" + special(0) + ", " + seq("A", 0) + ", " + special(1) + ", " +
         seq("B", 1) + "],\n";
    o += "    \"special_tokens\": {" + bos + ": {\"id\": " + bos + ", \"ids\": [0], \"tokens\": [" +
         bos + "]}}\n  },\n";
  } else {
    o += "  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
         "\"trim_offsets\": false, \"use_regex\": true},\n";
  }
  o += "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
       "\"trim_offsets\": true, \"use_regex\": true},\n";
  o += "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
       "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
       "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"vocab\": {";
  for (int32_t id = 0; id < v.n_vocab(); ++id) {
    const std::string &t = v.tokens[size_t(id)];
    o += id ? ",\n      " : "\n      ";
    o += q(id < v.n_special ? t : byte_map(t));
    o += ": " + std::to_string(id);
  }
  o += "\n    },\n    \"merges\": [";
  for (size_t r = 0; r < v.merges.size(); ++r) {
    o += r ? ",\n      " : "\n      ";
    o += q(byte_map(v.tokens[size_t(v.merges[r].first)]) + " " +
           byte_map(v.tokens[size_t(v.merges[r].second)]));
  }
  o += v.merges.empty() ? "]\n  }\n}\n" : "\n    ]\n  }\n}\n";
  return o;
}

std::string bpe_tokenizer_config_json(const BpeVocab &v) {
  json::object_t cfg;
  json decoder = json::object();
  for (int32_t id = 0; id < v.n_special; ++id)
    decoder[std::to_string(id)] = {{"content", v.tokens[size_t(id)]},
                                   {"lstrip", false},
                                   {"normalized", false},
                                   {"rstrip", false},
                                   {"single_word", false},
                                   {"special", true}};
  cfg["added_tokens_decoder"] = decoder;
  cfg["add_bos_token"] = v.add_bos && v.n_special > 0;
  cfg["add_eos_token"] = false;
  if (v.n_special > 0) {
    cfg["bos_token"] = v.tokens[0];
    cfg["eos_token"] = v.tokens[0];
  }
  cfg["clean_up_tokenization_spaces"] = false;
  cfg["model_max_length"] = v.model_max_length;
  cfg["tokenizer_class"] = "PreTrainedTokenizerFast";
  return json(cfg).dump(2) + "\n";
}

void bpe_save(const BpeVocab &v, const std::string &dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  LMKIT_CHECK(!ec && std::filesystem::is_directory(dir), dir, ": cannot create folder (",
              ec ? ec.message() : "a file of that name exists", ")");
  write_file_atomic((std::filesystem::path(dir) / "tokenizer.json").string(),
                    bpe_tokenizer_json(v));
  write_file_atomic((std::filesystem::path(dir) / "tokenizer_config.json").string(),
                    bpe_tokenizer_config_json(v));
}

}  // namespace lmkit
