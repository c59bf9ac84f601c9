// Tests of the BPE trainer: the saved tokenizer.json loads (lmkit's loader) and round-trips any
// UTF-8, special tokens behave, encoding the training text gives exactly what a slow textbook
// BPE encoder (written here, independent of the tokenizer layer's merge engine) gives with the
// learned merges, ties break as documented, and training is deterministic.
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/rng.h"
#include "test_util.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "train/bpe_trainer.h"
#include "train/data.h"
#include "train/story_corpus.h"

namespace lmkit {
namespace {

using json = nlohmann::json;

BpeTrainOptions options(int64_t vocab, int threads = 1) {
  BpeTrainOptions o;
  o.vocab_size = vocab;
  o.n_threads = threads;
  o.progress = false;
  return o;
}

BpeVocab train_on(const std::string &text, const BpeTrainOptions &o) {
  std::string_view v = text;
  return bpe_train(std::span<const std::string_view>(&v, 1), o);
}

std::unique_ptr<Tokenizer> save_and_load(const BpeVocab &v, const test::TempDir &dir) {
  bpe_save(v, dir.str());
  return tokenizer_from_hf(dir.str());
}

// The textbook encoder: start from bytes, repeatedly find the adjacent pair with the lowest
// merge rank and merge all its occurrences left to right, until no pair has a rank.
class SlowEncoder {
 public:
  explicit SlowEncoder(const BpeVocab &v) : v_(v) {
    for (size_t i = 0; i < v.merges.size(); ++i)
      rank_[{v.tokens[size_t(v.merges[i].first)], v.tokens[size_t(v.merges[i].second)]}] = i;
    for (size_t id = size_t(v.n_special); id < v.tokens.size(); ++id)
      ids_[v.tokens[id]] = int32_t(id);
    tok::pretokenizer_preset("gpt-2", pre_);
  }

  std::vector<int32_t> encode(std::string_view text) {
    tok::PreTokWork work;
    pre_.run(text, true, work);
    std::vector<int32_t> out;
    for (std::string_view w : work.pieces) {
      auto it = memo_.find(w);
      if (it == memo_.end()) it = memo_.emplace(std::string(w), encode_word(w)).first;
      out.insert(out.end(), it->second.begin(), it->second.end());
    }
    return out;
  }

 private:
  std::vector<int32_t> encode_word(std::string_view word) const {
    std::vector<std::string> parts;
    for (char c : word) parts.emplace_back(1, c);
    for (;;) {
      size_t best = SIZE_MAX;
      for (size_t i = 0; i + 1 < parts.size(); ++i) {
        auto it = rank_.find({parts[i], parts[i + 1]});
        if (it != rank_.end()) best = std::min(best, it->second);
      }
      if (best == SIZE_MAX) break;
      const std::string &a = v_.tokens[size_t(v_.merges[best].first)];
      const std::string &b = v_.tokens[size_t(v_.merges[best].second)];
      std::vector<std::string> next;
      for (size_t i = 0; i < parts.size();) {
        if (i + 1 < parts.size() && parts[i] == a && parts[i + 1] == b) {
          next.push_back(a + b);
          i += 2;
        } else {
          next.push_back(parts[i++]);
        }
      }
      parts = std::move(next);
    }
    std::vector<int32_t> ids;
    for (const std::string &p : parts) {
      auto it = ids_.find(p);
      EXPECT_NE(it, ids_.end()) << p;
      ids.push_back(it == ids_.end() ? -1 : it->second);
    }
    return ids;
  }

  const BpeVocab &v_;
  std::map<std::pair<std::string, std::string>, size_t> rank_;
  std::map<std::string, int32_t> ids_;
  std::map<std::string, std::vector<int32_t>, std::less<>> memo_;
  tok::PreTokenizer pre_;
};

// Random valid UTF-8: ASCII, whitespace runs, Latin, CJK, emoji, combining marks, controls.
std::string random_utf8(Rng &rng, size_t n_chars) {
  static const uint32_t kPicks[] = {'a',     'Z',  ' ',  '\n', '\t',   '\r',   '0',      '9',
                                    '.',     '\'', 0xE9, 0xFC, 0x301,  0x4E2D, 0x65E5,   0x1F642,
                                    0x1F1EB, 0x7F, 0x1,  0xA0, 0x2028, 0xFEFF, 0x10FFFF, 0x3000};
  std::string s;
  for (size_t i = 0; i < n_chars; ++i) {
    uint64_t r = rng.next_u64();
    uint32_t cp = r % 3 == 0 ? kPicks[(r >> 8) % std::size(kPicks)]
                             : uint32_t(0x20 + (r >> 8) % 0x5F);  // printable ASCII
    if (r % 17 == 0) {
      cp = uint32_t((r >> 20) % 0x10FFFF);
      if (cp >= 0xD800 && cp < 0xE000) cp = 'x';  // no surrogates
    }
    if (cp == 0) cp = ' ';
    unicode::append_utf8(s, cp);
  }
  return s;
}

TEST(BpeTrainer, LoadsAndRoundTripsAnyUtf8) {
  std::string corpus = story_corpus(1, 200000);
  BpeVocab v = train_on(corpus, options(700));
  ASSERT_EQ(v.n_vocab(), 700);
  EXPECT_EQ(v.merges.size(), 700u - 257u);
  test::TempDir dir("bpe");
  auto tok = save_and_load(v, dir);
  ASSERT_EQ(tok->n_vocab(), 700);
  EXPECT_EQ(tok->kind(), TokenizerKind::ByteLevelBPE);
  EXPECT_EQ(tok->pre(), "gpt-2");
  EXPECT_EQ(tok->bos_id(), 0);
  EXPECT_EQ(tok->eos_id(), 0);
  EXPECT_TRUE(tok->add_bos());
  EXPECT_FALSE(tok->add_eos());
  EXPECT_TRUE(tok->is_end_of_generation(0));
  EXPECT_EQ(tok->piece(0), "<|endoftext|>");
  EXPECT_EQ(tok->type(0), TokenType::Control);
  for (int32_t id = 1; id < tok->n_vocab(); ++id)
    ASSERT_EQ(tok->token_bytes(id), v.tokens[size_t(id)]) << id;

  Rng rng(42);
  for (int i = 0; i < 300; ++i) {
    std::string s = random_utf8(rng, size_t(1 + i % 60));
    std::vector<int32_t> ids = tok->encode(s, false, false);
    ASSERT_EQ(tok->decode(ids), s) << i;
    for (int32_t id : ids) ASSERT_GT(id, 0);  // plain text never yields the special token
  }
  // Text that BPE never saw still encodes (every byte is a token).
  std::string odd = "\xF0\x9F\x99\x82 \xE6\x97\xA5\xE6\x9C\xAC Zebra-42!";
  EXPECT_EQ(tok->decode(tok->encode(odd, false, false)), odd);
}

TEST(BpeTrainer, SpecialTokens) {
  std::string corpus = story_corpus(2, 50000);
  // The special token's text in the training data is cut out, not learned.
  corpus += "\n\nx<|endoftext|>y<|endoftext|><|endoftext|><|endoftext|>\n";
  BpeTrainOptions o = options(600);
  o.special_tokens = {"<|endoftext|>", "<|pad|>"};
  BpeVocab v = train_on(corpus, o);
  for (size_t id = size_t(v.n_special) + 256; id < v.tokens.size(); ++id)
    EXPECT_EQ(v.tokens[id].find('|'), std::string::npos) << v.tokens[id];
  test::TempDir dir("bpe");
  auto tok = save_and_load(v, dir);
  EXPECT_EQ(tok->find_piece("<|pad|>"), 1);
  EXPECT_EQ(tok->type(1), TokenType::Control);

  std::vector<int32_t> ids = tok->encode("Once upon a time<|endoftext|>The end.", true, true);
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids[0], 0);                                 // BOS
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 0), 2);  // and the one in the text
  EXPECT_EQ(tok->decode(ids), "Once upon a timeThe end.");
  EXPECT_EQ(tok->decode(ids, /*keep_special=*/true),
            "<|endoftext|>Once upon a time<|endoftext|>The end.");
  // parse_special = false: the text is plain text.
  std::vector<int32_t> plain = tok->encode("a<|endoftext|>b", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 0), 0);
  EXPECT_EQ(tok->decode(plain), "a<|endoftext|>b");

  // Without BOS: nothing is added, the post-processor is ByteLevel.
  o.add_bos = false;
  BpeVocab nb = train_on(corpus, o);
  test::TempDir dir2("bpe");
  auto tok2 = save_and_load(nb, dir2);
  EXPECT_FALSE(tok2->add_bos());
  EXPECT_EQ(tok2->eos_id(), 0);
  EXPECT_NE(tok2->encode("Once", true, true).at(0), 0);
}

TEST(BpeTrainer, EncodingTheTrainingTextReplaysTheMerges) {
  std::string corpus = story_corpus(3, 120000) + "\n\nZebras zig-zag: 12345 6789, ÿ ü ü ü!\n";
  BpeVocab v = train_on(corpus, options(900));
  test::TempDir dir("bpe");
  auto tok = save_and_load(v, dir);
  std::vector<std::string_view> docs;
  split_documents(corpus, docs);
  SlowEncoder slow(v);
  int64_t total = 0;
  for (std::string_view d : docs) {
    std::vector<int32_t> ids = tok->encode(d, false, false);
    ASSERT_EQ(ids, slow.encode(d)) << d.substr(0, 80);
    total += int64_t(ids.size());
  }
  // The trainer's own count of the final segmentation agrees.
  EXPECT_EQ(total, v.n_text_tokens);
}

TEST(BpeTrainer, RandomSmallAlphabetMatchesTextbookEncoder) {
  // Words over {a, b, c} with every pair frequent: thousands of merges, many candidate merges
  // whose result already exists (and is refused), long tie chains.
  Rng rng(7);
  std::string text;
  for (int i = 0; i < 4000; ++i) {
    text += ' ';
    size_t len = 1 + rng.next_u64() % 14;
    for (size_t k = 0; k < len; ++k) text += char('a' + rng.next_u64() % 3);
    if (i % 50 == 49) text += "\n\n";
  }
  BpeTrainOptions o = options(5000);
  o.min_frequency = 1;
  BpeVocab v = train_on(text, o);
  EXPECT_GT(v.merges.size(), 1000u);
  std::set<std::string> distinct(v.tokens.begin(), v.tokens.end());
  EXPECT_EQ(distinct.size(), v.tokens.size());
  for (size_t r = 0; r < v.merges.size(); ++r) {
    auto [a, b] = v.merges[r];
    int32_t made = v.n_special + 256 + int32_t(r);
    ASSERT_LT(a, made);
    ASSERT_LT(b, made);
    ASSERT_EQ(v.tokens[size_t(made)], v.tokens[size_t(a)] + v.tokens[size_t(b)]);
  }
  test::TempDir dir("bpe");
  auto tok = save_and_load(v, dir);
  std::vector<std::string_view> docs;
  split_documents(text, docs);
  SlowEncoder slow(v);
  int64_t total = 0;
  for (std::string_view d : docs) {
    std::vector<int32_t> ids = tok->encode(d, false, false);
    ASSERT_EQ(ids, slow.encode(d));
    total += int64_t(ids.size());
  }
  EXPECT_EQ(total, v.n_text_tokens);
}

TEST(BpeTrainer, TiesGoToOlderTokens) {
  // Words "ab" and " cd", once each: pairs (a,b), (' ',c), (c,d) all count 1. Ties go to the
  // smaller left id: ' ' (byte 32) first, then 'a', then the new " c" with 'd'.
  BpeTrainOptions o = options(1000);
  o.min_frequency = 1;
  BpeVocab v = train_on("ab cd", o);
  ASSERT_EQ(v.merges.size(), 3u);
  auto tok = [&](int32_t id) { return v.tokens[size_t(id)]; };
  EXPECT_EQ(tok(v.merges[0].first) + "|" + tok(v.merges[0].second), " |c");
  EXPECT_EQ(tok(v.merges[1].first) + "|" + tok(v.merges[1].second), "a|b");
  EXPECT_EQ(tok(v.merges[2].first) + "|" + tok(v.merges[2].second), " c|d");
  // A higher count wins over a smaller id: (x,y) occurs 3 times, (' ',x) twice.
  BpeVocab w = train_on("xy xy xy zq", o);
  EXPECT_EQ(w.tokens[size_t(w.merges[0].first)] + w.tokens[size_t(w.merges[0].second)], "xy");
}

TEST(BpeTrainer, MinFrequencyStopsEarly) {
  BpeTrainOptions o = options(1000);
  o.min_frequency = 3;
  BpeVocab v = train_on("hello hello hello world", o);
  // The pairs of "hello" occur 3 times (" hello" twice, "hello" once): "hello" is learned. The
  // space before it (twice) and "world" (once) are not.
  EXPECT_NE(std::find(v.tokens.begin(), v.tokens.end(), "hello"), v.tokens.end());
  EXPECT_EQ(v.n_vocab(), 257 + 4);
  for (const std::string &t : v.tokens) EXPECT_EQ(t.find("wo"), std::string::npos) << t;
  EXPECT_LT(v.n_vocab(), 1000);
  EXPECT_EQ(v.n_words, 4);
  EXPECT_EQ(v.n_unique_words, 3);
}

TEST(BpeTrainer, DeterministicAcrossThreadCounts) {
  std::string corpus = story_corpus(9, 150000);
  BpeVocab a = train_on(corpus, options(800, 1));
  BpeVocab b = train_on(corpus, options(800, 2));
  BpeVocab c = train_on(corpus, options(800, 3));
  EXPECT_EQ(bpe_tokenizer_json(a), bpe_tokenizer_json(b));
  EXPECT_EQ(bpe_tokenizer_json(a), bpe_tokenizer_json(c));
  // Texts given in pieces train the same as one text split at the same documents.
  std::vector<std::string_view> docs;
  split_documents(corpus, docs);
  BpeVocab d = bpe_train(docs, options(800, 2));
  EXPECT_EQ(bpe_tokenizer_json(a), bpe_tokenizer_json(d));
}

TEST(BpeTrainer, HuggingFaceSchema) {
  BpeVocab v = train_on(story_corpus(1, 30000), options(400));
  json j = json::parse(bpe_tokenizer_json(v));
  EXPECT_EQ(j["version"], "1.0");
  EXPECT_EQ(j["model"]["type"], "BPE");
  EXPECT_TRUE(j["model"]["unk_token"].is_null());
  EXPECT_EQ(j["model"]["vocab"].size(), 400u);
  EXPECT_EQ(j["model"]["vocab"]["<|endoftext|>"], 0);
  EXPECT_EQ(j["model"]["vocab"]["Ġ"], 1 + ' ');  // GPT-2's byte alphabet
  EXPECT_EQ(j["model"]["vocab"]["Ċ"], 1 + '\n');
  EXPECT_EQ(j["model"]["vocab"]["a"], 1 + 'a');
  ASSERT_EQ(j["model"]["merges"].size(), v.merges.size());
  for (const json &m : j["model"]["merges"]) {
    std::string s = m.get<std::string>();
    ASSERT_EQ(std::count(s.begin(), s.end(), ' '), 1) << s;
    std::string left = s.substr(0, s.find(' ')), right = s.substr(s.find(' ') + 1);
    ASSERT_TRUE(j["model"]["vocab"].contains(left + right)) << s;
  }
  EXPECT_EQ(j["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(j["pre_tokenizer"]["add_prefix_space"], false);
  EXPECT_EQ(j["pre_tokenizer"]["use_regex"], true);
  EXPECT_EQ(j["decoder"]["type"], "ByteLevel");
  EXPECT_EQ(j["post_processor"]["type"], "TemplateProcessing");
  EXPECT_EQ(j["post_processor"]["single"][0]["SpecialToken"]["id"], "<|endoftext|>");
  EXPECT_EQ(j["post_processor"]["special_tokens"]["<|endoftext|>"]["ids"], json::array({0}));
  ASSERT_EQ(j["added_tokens"].size(), 1u);
  EXPECT_EQ(j["added_tokens"][0]["id"], 0);
  EXPECT_EQ(j["added_tokens"][0]["special"], true);
  EXPECT_EQ(j["added_tokens"][0]["normalized"], false);

  json c = json::parse(bpe_tokenizer_config_json(v));
  EXPECT_EQ(c["tokenizer_class"], "PreTrainedTokenizerFast");
  EXPECT_EQ(c["bos_token"], "<|endoftext|>");
  EXPECT_EQ(c["eos_token"], "<|endoftext|>");
  EXPECT_EQ(c["add_bos_token"], true);
  EXPECT_EQ(c["model_max_length"], 2048);
  EXPECT_EQ(c["added_tokens_decoder"]["0"]["content"], "<|endoftext|>");
}

TEST(BpeTrainer, BadInput) {
  auto expect_error = [](auto fn, const std::string &needle) {
    try {
      fn();
      ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const Error &e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([] { train_on("abc", options(200)); }, "too small");
  BpeTrainOptions o = options(1000);
  o.special_tokens = {"<s>", "<s>"};
  expect_error([&] { train_on("abc", o); }, "given twice");
  o.special_tokens = {"a"};
  expect_error([&] { train_on("abc", o); }, "byte token");
  expect_error([] { train_on("ab\xFF", options(1000)); }, "invalid UTF-8");

  test::TempDir dir("bpe");
  std::ofstream(dir / "empty.txt");
  std::ofstream(dir / "garbage.bin") << std::string("\x00\x01\x02\xFF\xFE", 5);
  expect_error([&] { bpe_train_files({dir / "empty.txt"}, options(1000)); }, "empty.txt: empty");
  expect_error([&] { bpe_train_files({dir / "garbage.bin"}, options(1000)); },
               "garbage.bin: binary");
  expect_error([&] { bpe_train_files({dir / "missing.txt"}, options(1000)); },
               "missing.txt: no such file");
  expect_error([&] { bpe_save(train_on("abc abc", options(300)), dir / "empty.txt"); },
               "cannot create folder");
}

}  // namespace
}  // namespace lmkit
