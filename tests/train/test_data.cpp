// Tests of the data pipeline: text checks and document splitting, token shards (round trip and
// every kind of corruption), data_prepare (exact token layout, split sizes, thread independence,
// bad input), the DataLoader (windows, epochs, determinism, exact resume, ranks, evaluation) and
// the progress bar's formatting. Not a speed test: see bench/.
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "train/bpe_trainer.h"
#include "train/data.h"
#include "train/progress.h"
#include "train/story_corpus.h"

namespace lmkit {
namespace {

namespace fs = std::filesystem;

std::string slurp(const std::string &p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void spit(const std::string &p, const std::string &s) {
  std::ofstream(p, std::ios::binary) << s;
}

template <typename F>
void expect_error(F &&fn, const std::string &needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// --- text ---------------------------------------------------------------------------------------

TEST(Text, SplitDocuments) {
  std::vector<std::string_view> d;
  split_documents("\n\n a\nb\n\n\nc\n \t\n d\r\n\r\ne", d);
  ASSERT_EQ(d.size(), 4u);
  EXPECT_EQ(d[0], " a\nb");
  EXPECT_EQ(d[1], "c");
  EXPECT_EQ(d[2], " d\r");
  EXPECT_EQ(d[3], "e");
  d.clear();
  split_documents("one\n", d);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0], "one");
  d.clear();
  split_documents(" \n\n\t\n", d);
  EXPECT_TRUE(d.empty());
}

TEST(Text, Checks) {
  expect_error([] { text_check("", "a.txt"); }, "a.txt: empty");
  expect_error([] { text_check(" \n\t\n", "b.txt"); }, "b.txt: no text");
  expect_error([] { text_check(std::string("abc\0def", 7), "c.bin"), void(); },
               "c.bin: binary data, not text (NUL byte at offset 3)");
  std::string garbage;
  for (int i = 0; i < 100; ++i) garbage += i % 5 ? 'x' : '\xFF';  // 20% invalid
  expect_error([&] { text_check(garbage, "d.bin"); }, "d.bin: binary data, not UTF-8 text (20%");
  int64_t repaired = -1;
  std::string fixed = text_check("caf\xC3\xA9 \xFF ok", "e.txt", &repaired);
  EXPECT_EQ(repaired, 1);
  EXPECT_EQ(fixed, "caf\xC3\xA9 \xEF\xBF\xBD ok");
  EXPECT_EQ(text_check("fine", "f.txt", &repaired), "fine");
  EXPECT_EQ(repaired, 0);
}

TEST(Text, UnigramEntropy) {
  std::vector<int64_t> c = {1, 1, 0, 2};
  double h = -(0.25 * std::log(0.25) * 2 + 0.5 * std::log(0.5));
  EXPECT_NEAR(unigram_entropy(c), h, 1e-12);
  std::vector<int64_t> uniform(8, 5);
  EXPECT_NEAR(unigram_entropy(uniform), std::log(8.0), 1e-12);
  // Add-one smoothing: p = (c + 1) / (N + V) = {2, 2, 1, 3} / 8.
  std::vector<int64_t> eval = {0, 1, 1, 2};
  double ce = -(std::log(2.0 / 8) + std::log(1.0 / 8) + 2 * std::log(3.0 / 8)) / 4;
  EXPECT_NEAR(unigram_cross_entropy(c, eval), ce, 1e-12);
}

// --- shards -------------------------------------------------------------------------------------

TEST(Shards, RoundTripBothWidths) {
  test::TempDir dir("shard");
  std::vector<int32_t> small = {0, 1, 65535, 7, 300};
  shard_write(dir / "a.bin", small, 65536, 2);
  TokenShard a(dir / "a.bin");
  EXPECT_EQ(a.size(), 5);
  EXPECT_EQ(a.token_bytes(), 2);
  EXPECT_EQ(a.vocab_size(), 65536);
  std::vector<int32_t> back(5);
  a.read(0, 5, back.data());
  EXPECT_EQ(back, small);
  EXPECT_EQ(a.at(2), 65535);
  EXPECT_EQ(fs::file_size(dir / "a.bin"), 64u + 10u);

  std::vector<int32_t> big = {100000, 0, 99999};
  shard_write(dir / "b.bin", big, 100001, 4);
  TokenShard b(dir / "b.bin");
  std::vector<int32_t> back4(3);
  b.read(0, 3, back4.data());
  EXPECT_EQ(back4, big);

  shard_write(dir / "empty.bin", {}, 10, 2);
  EXPECT_EQ(TokenShard(dir / "empty.bin").size(), 0);

  expect_error([&] { shard_write(dir / "c.bin", big, 100001, 2); }, "does not fit in 2-byte");
  expect_error([&] { shard_write(dir / "c.bin", big, 1000, 4); }, "outside the vocabulary");
  expect_error([&] { a.read(3, 3, back.data()); }, "outside the shard");
}

TEST(Shards, CorruptionIsCaught) {
  test::TempDir dir("shard");
  std::vector<int32_t> toks(1000);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = int32_t(i * 7 % 500);
  shard_write(dir / "good.bin", toks, 500, 2);
  const std::string good = slurp(dir / "good.bin");

  auto variant = [&](const std::string &name, std::string bytes) {
    spit(dir / name, bytes);
    return dir / name;
  };
  std::string flipped = good;
  flipped[64 + 555] ^= 0x10;
  expect_error([&] { TokenShard s(variant("flip.bin", flipped)); },
               "flip.bin: corrupt token shard (checksum");
  expect_error(
      [&] { TokenShard s(variant("trunc.bin", good.substr(0, good.size() - 10))); },
      "trunc.bin: truncated token shard (the header says 1000 tokens, the file holds 995)");
  expect_error([&] { TokenShard s(variant("head.bin", good.substr(0, 40))); },
               "head.bin: truncated token shard (40 bytes");
  expect_error([&] { TokenShard s(variant("zero.bin", "")); }, "zero.bin: truncated");
  std::string magic = good;
  magic[0] = 'X';
  expect_error([&] { TokenShard s(variant("magic.bin", magic)); }, "not an lmkit token shard");
  std::string version = good;
  version[8] = 9;
  expect_error([&] { TokenShard s(variant("version.bin", version)); },
               "version 9 is not supported");
  expect_error([&] { TokenShard s(variant("long.bin", good + "xy")); }, "corrupt token shard");
  expect_error([&] { TokenShard s(dir / "missing.bin"); }, "missing.bin: token shard is missing");
}

// --- data_prepare -------------------------------------------------------------------------------

// One tokenizer trained on the story corpus, shared by the tests below.
class Prepared : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::make_unique<test::TempDir>("data");
    corpus_ = story_corpus(21, 300000);
    BpeTrainOptions o;
    o.vocab_size = 800;
    o.progress = false;
    std::string_view v = corpus_;
    bpe_save(bpe_train(std::span<const std::string_view>(&v, 1), o), *dir_ / "tok");
    spit(*dir_ / "a.txt", corpus_.substr(0, 200000 + corpus_.substr(200000).find("\n\n") + 2));
    spit(*dir_ / "b.txt", corpus_.substr(200000 + corpus_.substr(200000).find("\n\n") + 2));
  }
  static void TearDownTestSuite() { dir_.reset(); }

  static std::string tok() { return *dir_ / "tok"; }
  static std::vector<std::string> inputs() { return {*dir_ / "a.txt", *dir_ / "b.txt"}; }
  static DataPrepareOptions options(double f = 0.1, int threads = 2) {
    DataPrepareOptions o;
    o.val_fraction = f;
    o.n_threads = threads;
    o.progress = false;
    return o;
  }
  static std::vector<int32_t> all_tokens(const std::vector<std::string> &shards) {
    std::vector<int32_t> out;
    for (const std::string &p : shards) {
      TokenShard s(p);
      size_t n = out.size();
      out.resize(n + size_t(s.size()));
      s.read(0, s.size(), out.data() + n);
    }
    return out;
  }

  static inline std::unique_ptr<test::TempDir> dir_;
  static inline std::string corpus_;
};

TEST_F(Prepared, ExactLayoutAndSplit) {
  test::TempDir out("prep");
  DataMeta m = data_prepare(tok(), inputs(), out.str(), options(0.1));
  auto t = tokenizer_from_hf(tok());
  std::vector<std::string_view> docs;
  split_documents(corpus_, docs);
  const int64_t n = int64_t(docs.size());
  EXPECT_EQ(m.train_documents + m.val_documents, n);
  EXPECT_EQ(m.val_documents, int64_t(std::floor(double(n) * 0.1)));
  EXPECT_EQ(m.separator_id, 0);
  EXPECT_EQ(m.vocab_size, 800);
  EXPECT_EQ(m.token_bytes, 2);
  // Rebuild both splits from the documents: [sep] + tokens per document, [sep] at the end.
  std::vector<int32_t> train{}, val{};
  for (int64_t g = 0; g < n; ++g) {
    bool is_val = std::floor(double(g + 1) * 0.1) > std::floor(double(g) * 0.1);
    std::vector<int32_t> &dst = is_val ? val : train;
    dst.push_back(0);
    std::vector<int32_t> ids = t->encode(docs[size_t(g)], false, false);
    dst.insert(dst.end(), ids.begin(), ids.end());
  }
  train.push_back(0);
  val.push_back(0);
  EXPECT_EQ(all_tokens(m.train_shards), train);
  EXPECT_EQ(all_tokens(m.val_shards), val);
  EXPECT_EQ(m.train_tokens, int64_t(train.size()));
  EXPECT_EQ(m.val_tokens, int64_t(val.size()));

  // meta.json reads back; the tokenizer was copied beside the shards.
  DataMeta r = data_meta_load(out.str());
  EXPECT_EQ(r.train_shards, m.train_shards);
  EXPECT_EQ(r.val_shards, m.val_shards);
  EXPECT_EQ(r.train_tokens, m.train_tokens);
  EXPECT_EQ(r.val_documents, m.val_documents);
  EXPECT_EQ(r.tokenizer, out / "tokenizer");
  EXPECT_EQ(slurp(out / "tokenizer/tokenizer.json"), slurp(tok() + "/tokenizer.json"));
  EXPECT_EQ(tokenizer_from_hf(r.tokenizer)->n_vocab(), 800);
  // Unigram baselines: the entropy of the train tokens, and the val loss of that model.
  std::vector<int64_t> counts(800, 0);
  for (int32_t x : train) ++counts[size_t(x)];
  EXPECT_NEAR(m.unigram_entropy, unigram_entropy(counts), 1e-9);
  EXPECT_NEAR(r.unigram_entropy, m.unigram_entropy, 1e-9);
  EXPECT_GT(m.val_unigram_loss, m.unigram_entropy * 0.9);
  EXPECT_LT(m.val_unigram_loss, std::log(800.0));
  EXPECT_GT(m.input_bytes, 290000);
}

TEST_F(Prepared, SameShardsForAnyThreadCountAndShardSize) {
  test::TempDir a("prep"), b("prep"), c("prep");
  DataMeta ma = data_prepare(tok(), inputs(), a.str(), options(0.05, 1));
  DataMeta mb = data_prepare(tok(), inputs(), b.str(), options(0.05, 3));
  ASSERT_EQ(ma.train_shards.size(), 1u);
  EXPECT_EQ(slurp(ma.train_shards[0]), slurp(mb.train_shards[0]));
  EXPECT_EQ(slurp(ma.val_shards[0]), slurp(mb.val_shards[0]));
  DataPrepareOptions small = options(0.05, 2);
  small.shard_tokens = 10000;
  DataMeta mc = data_prepare(tok(), inputs(), c.str(), small);
  EXPECT_EQ(mc.train_shards.size(), size_t((mc.train_tokens + 9999) / 10000));
  EXPECT_EQ(TokenShard(mc.train_shards[0]).size(), 10000);
  EXPECT_EQ(all_tokens(mc.train_shards), all_tokens(ma.train_shards));
  // Preparing again into the same folder with bigger shards leaves no stale shard behind.
  data_prepare(tok(), inputs(), c.str(), options(0.05, 2));
  EXPECT_TRUE(fs::exists(c / "train_000.bin"));
  EXPECT_FALSE(fs::exists(c / "train_001.bin"));
  EXPECT_FALSE(fs::exists(c / ".lmkit-write-test"));
}

TEST_F(Prepared, DocumentsPerFileAndNoValidation) {
  test::TempDir out("prep");
  DataPrepareOptions o = options(0.0);
  o.split_paragraphs = false;
  DataMeta m = data_prepare(tok(), inputs(), out.str(), o);
  EXPECT_EQ(m.train_documents, 2);
  EXPECT_EQ(m.val_documents, 0);
  EXPECT_TRUE(m.val_shards.empty());
  std::vector<int32_t> toks = all_tokens(m.train_shards);
  EXPECT_EQ(std::count(toks.begin(), toks.end(), 0), 3);  // two documents, one end
  expect_error([&] { DataLoader l(out.str(), Split::Val, {}); }, "val split is empty");
}

TEST_F(Prepared, BadInput) {
  test::TempDir d("prep");
  spit(d / "empty.txt", "");
  spit(d / "blank.txt", "\n \n");
  spit(d / "garbage.bin", std::string("\x7f"
                                      "ELF\x02\x01\x01\x00\x00\x00",
                                      10));
  std::string invalid;
  for (int i = 0; i < 1000; ++i) invalid += char(0x80 + i % 64);
  spit(d / "latin.bin", invalid);
  spit(d / "one.txt", "just one paragraph");
  auto prep = [&](std::vector<std::string> in, double f = 0.1) {
    return [in, f, &d] { data_prepare(tok(), in, d / "out", options(f)); };
  };
  expect_error(prep({d / "missing.txt"}), "missing.txt: no such file");
  expect_error(prep({inputs()[0], d / "empty.txt"}), "empty.txt: empty file");
  expect_error(prep({d / "blank.txt"}), "blank.txt: no text");
  expect_error(prep({d / "garbage.bin"}), "garbage.bin: binary data");
  expect_error(prep({d / "latin.bin"}), "latin.bin: binary data, not UTF-8 text");
  expect_error(prep({d / "one.txt"}), "too few for a validation fraction");
  expect_error(prep({d.str()}), "not a regular file");
  expect_error(prep(inputs(), 0.7), "outside [0, 0.5]");
  expect_error(prep(inputs(), -0.1), "outside [0, 0.5]");
  expect_error(prep({}), "no input files");
  expect_error([&] { data_prepare(d / "no-tokenizer", inputs(), d / "out", options()); },
               "no-tokenizer: no such file");
  expect_error([&] { data_prepare(tok(), inputs(), d / "empty.txt/sub", options()); },
               "cannot create the output folder");
  // Nothing was written by the failed runs.
  EXPECT_FALSE(fs::exists(d / "out/meta.json"));
  // A few stray invalid bytes are repaired, not fatal.
  spit(d / "mostly.txt", "Once upon a time \xFF there was a cat.\n\nThe end.\n");
  DataMeta m = data_prepare(tok(), {d / "mostly.txt"}, d / "out", options(0.0));
  EXPECT_EQ(m.repaired_bytes, 1);
  EXPECT_EQ(m.train_documents, 2);
}

// --- DataLoader ---------------------------------------------------------------------------------

class Loader : public Prepared {
 protected:
  static void SetUpTestSuite() {
    Prepared::SetUpTestSuite();
    out_ = std::make_unique<test::TempDir>("loader");
    DataPrepareOptions o = options(0.1);
    o.shard_tokens = 20000;  // several shards: windows must never cross one
    meta_ = data_prepare(tok(), inputs(), out_->str(), o);
  }
  static void TearDownTestSuite() {
    out_.reset();
    Prepared::TearDownTestSuite();
  }
  static DataLoaderOptions lopt(int64_t B, int64_t T, uint64_t seed = 1) {
    DataLoaderOptions o;
    o.batch_size = B;
    o.context = T;
    o.seed = seed;
    return o;
  }
  static inline std::unique_ptr<test::TempDir> out_;
  static inline DataMeta meta_;
};

TEST_F(Loader, EpochServesEveryWindowOnce) {
  const int64_t B = 4, T = 64;
  DataLoader l(out_->str(), Split::Train, lopt(B, T));
  ASSERT_GT(meta_.train_shards.size(), 3u);
  // Every (shard, k*T) window of epoch 0, keyed by content.
  std::map<std::vector<int32_t>, int> expected;
  int64_t n_windows = 0;
  for (const std::string &p : meta_.train_shards) {
    TokenShard s(p);
    for (int64_t off = 0; off + T + 1 <= s.size(); off += T, ++n_windows) {
      std::vector<int32_t> w(size_t(T + 1));
      s.read(off, T + 1, w.data());
      ++expected[w];
    }
  }
  EXPECT_EQ(l.windows_per_epoch(), n_windows);
  EXPECT_EQ(l.n_tokens(), meta_.train_tokens);
  std::map<std::vector<int32_t>, int> seen;
  for (int64_t b = 0; b < n_windows / B; ++b) {
    std::vector<int32_t> batch = l.next_batch();
    ASSERT_EQ(batch.size(), size_t(B * (T + 1)));
    for (int64_t r = 0; r < B; ++r)
      ++seen[std::vector<int32_t>(batch.begin() + r * (T + 1), batch.begin() + (r + 1) * (T + 1))];
  }
  int64_t total = 0;
  for (const auto &[w, c] : seen) {
    ASSERT_TRUE(expected.count(w)) << "a window that is not a k*T window of a shard";
    ASSERT_LE(c, expected[w]);
    total += c;
  }
  EXPECT_EQ(total, n_windows / B * B);
  // Not in file order.
  DataLoader again(out_->str(), Split::Train, lopt(1, T));
  std::vector<int32_t> first = again.next_batch(), in_order(size_t(T + 1));
  TokenShard(meta_.train_shards[0]).read(0, T + 1, in_order.data());
  EXPECT_NE(first, in_order);
}

TEST_F(Loader, DeterministicBySeed) {
  DataLoader a(out_->str(), Split::Train, lopt(3, 32, 5));
  DataLoader b(out_->str(), Split::Train, lopt(3, 32, 5));
  DataLoader c(out_->str(), Split::Train, lopt(3, 32, 6));
  bool differs = false;
  for (int i = 0; i < 20; ++i) {
    std::vector<int32_t> x = a.next_batch(), y = b.next_batch(), z = c.next_batch();
    ASSERT_EQ(x, y);
    differs |= x != z;
  }
  EXPECT_TRUE(differs);
}

TEST_F(Loader, ResumesExactlyMidEpochAndAcrossEpochs) {
  const int64_t B = 16, T = 128;
  DataLoader ref(out_->str(), Split::Train, lopt(B, T, 9));
  const int64_t per_epoch = ref.windows_per_epoch() / B;
  ASSERT_GT(per_epoch, 5);
  // Run through more than three epochs, saving the state at a few points.
  std::vector<std::vector<int32_t>> batches;
  std::map<int64_t, std::string> saved;
  const int64_t total = per_epoch * 3 + 7;
  for (int64_t i = 0; i < total; ++i) {
    if (i == 3 || i == per_epoch - 1 || i == per_epoch + 2 || i == 2 * per_epoch + 5)
      saved[i] = ref.state().to_json();
    batches.push_back(ref.next_batch());
  }
  EXPECT_GE(ref.state().epoch, 3);
  for (const auto &[at, json_text] : saved) {
    DataLoader resumed(out_->str(), Split::Train, lopt(B, T, 12345));  // the state's seed wins
    DataLoaderState s = DataLoaderState::from_json(json_text);
    EXPECT_EQ(s.batches, at);
    resumed.set_state(s);
    EXPECT_EQ(resumed.state(), s);
    for (int64_t i = at; i < total; ++i)
      ASSERT_EQ(resumed.next_batch(), batches[size_t(i)]) << at << " " << i;
    EXPECT_EQ(resumed.state(), ref.state());
  }
  // Later epochs cut the text at other offsets: a shift in [0, T) drawn per epoch.
  DataLoader e(out_->str(), Split::Train, lopt(1, T, 9));
  DataLoaderState s = e.state();
  s.epoch = 1;
  e.set_state(s);
  std::vector<int32_t> w = e.next_batch();
  EXPECT_EQ(e.state().epoch, 1);
  int64_t found = -1;
  for (const std::string &p : meta_.train_shards) {
    std::vector<int32_t> toks = all_tokens({p});
    auto it = std::search(toks.begin(), toks.end(), w.begin(), w.end());
    if (it != toks.end()) found = int64_t(it - toks.begin());
    if (found >= 0) break;
  }
  ASSERT_GE(found, 0);
  EXPECT_NE(found % T, 0) << "epoch 1 kept epoch 0's window boundaries";

  DataLoader other_t(out_->str(), Split::Train, lopt(B, 64, 9));
  expect_error([&] { other_t.set_state(ref.state()); }, "context of 128");
  DataLoader val(out_->str(), Split::Val, lopt(B, T, 9));
  expect_error([&] { val.set_state(ref.state()); }, "the data changed");
  expect_error([] { DataLoaderState::from_json("{\"seed\": 1}"); }, "data loader state");
}

TEST_F(Loader, RanksSplitTheGlobalBatch) {
  const int64_t B = 3, T = 32;
  DataLoader one(out_->str(), Split::Train, lopt(2 * B, T, 4));
  DataLoaderOptions o0 = lopt(B, T, 4), o1 = lopt(B, T, 4);
  o0.n_ranks = o1.n_ranks = 2;
  o1.rank = 1;
  DataLoader r0(out_->str(), Split::Train, o0), r1(out_->str(), Split::Train, o1);
  for (int i = 0; i < 50; ++i) {
    std::vector<int32_t> all = one.next_batch(), a = r0.next_batch(), b = r1.next_batch();
    a.insert(a.end(), b.begin(), b.end());
    ASSERT_EQ(a, all) << i;
  }
  EXPECT_EQ(r0.state().index, one.state().index);
}

TEST_F(Loader, EvaluationWindowsAreFixed) {
  const int64_t B = 5, T = 100;
  DataLoader v(out_->str(), Split::Val, lopt(B, T));
  std::vector<int32_t> val = all_tokens(meta_.val_shards);
  ASSERT_EQ(meta_.val_shards.size(), 1u);
  EXPECT_EQ(v.n_eval_windows(), (int64_t(val.size()) - 1) / T);
  EXPECT_EQ(v.n_eval_batches(), (v.n_eval_windows() + B - 1) / B);
  std::vector<int32_t> batch(size_t(B * (T + 1)));
  for (int64_t i = 0; i < v.n_eval_batches(); ++i) {
    int64_t rows = v.eval_batch(i, batch.data());
    ASSERT_EQ(rows, std::min(B, v.n_eval_windows() - i * B));
    for (int64_t r = 0; r < rows; ++r) {
      int64_t w = i * B + r;
      ASSERT_TRUE(std::equal(batch.begin() + r * (T + 1), batch.begin() + (r + 1) * (T + 1),
                             val.begin() + w * T));
    }
  }
  EXPECT_EQ(v.eval_batch(v.n_eval_batches(), batch.data()), 0);
  // Evaluation does not disturb the training order.
  DataLoader a(out_->str(), Split::Val, lopt(B, T)), b(out_->str(), Split::Val, lopt(B, T));
  a.next_batch();
  b.next_batch();
  a.eval_batch(0, batch.data());
  EXPECT_EQ(a.next_batch(), b.next_batch());
}

TEST_F(Loader, ClearErrors) {
  expect_error([] { DataLoader l(out_->str(), Split::Train, lopt(2, 30000)); },
               "a context of 30000 needs at least 30001");
  expect_error([] { DataLoader l(out_->str(), Split::Train, lopt(0, 8)); }, "batch size");
  expect_error([&] { DataLoader l(*dir_ / "nowhere", Split::Train, lopt(2, 8)); },
               "nowhere: no meta.json");
  // A corrupted shard is named.
  test::TempDir copy("loader");
  for (const auto &e : fs::directory_iterator(out_->str()))
    if (e.is_regular_file()) fs::copy_file(e.path(), copy / e.path().filename().string());
  std::string bytes = slurp(copy / "train_001.bin");
  bytes[100] ^= 1;
  spit(copy / "train_001.bin", bytes);
  expect_error([&] { DataLoader l(copy.str(), Split::Train, lopt(2, 8)); },
               "train_001.bin: corrupt token shard");
  fs::resize_file(copy / "train_002.bin", 1000);
  spit(copy / "train_001.bin", slurp(out_->str() + "/train_001.bin"));
  expect_error([&] { DataLoader l(copy.str(), Split::Train, lopt(2, 8)); },
               "train_002.bin: truncated token shard");
  fs::remove(copy / "train_002.bin");
  expect_error([&] { DataLoader l(copy.str(), Split::Train, lopt(2, 8)); },
               "train_002.bin: token shard is missing");
  spit(copy / "meta.json", "{\"format\": \"lmkit-token-shards\", \"version\": 2}");
  expect_error([&] { DataLoader l(copy.str(), Split::Train, lopt(2, 8)); },
               "version 2 is not supported");
  spit(copy / "meta.json", "{not json");
  expect_error([&] { DataLoader l(copy.str(), Split::Train, lopt(2, 8)); },
               "meta.json: not valid JSON");
}

// --- progress bar -------------------------------------------------------------------------------

TEST(Progress, Formats) {
  EXPECT_EQ(ProgressBar::format_duration(0), "0:00");
  EXPECT_EQ(ProgressBar::format_duration(65.4), "1:05");
  EXPECT_EQ(ProgressBar::format_duration(3723), "1:02:03");
  EXPECT_EQ(ProgressBar::format_bytes(512), "512 B");
  EXPECT_EQ(ProgressBar::format_bytes(12345), "12.3 KB");
  EXPECT_EQ(ProgressBar::format_bytes(4.56e6), "4.56 MB");
  EXPECT_EQ(ProgressBar::format_bytes(1.5e9), "1.50 GB");
  EXPECT_EQ(ProgressBar::format_count(950), "950");
  EXPECT_EQ(ProgressBar::format_count(12345), "12.3k");
  EXPECT_EQ(ProgressBar::format_count(4.56e6), "4.56M");
}

TEST(Progress, DrawsOnlyWhenEnabled) {
  test::TempDir d("progress");
  FILE *f = std::fopen((d / "out").c_str(), "w+");
  ASSERT_NE(f, nullptr);
  {
    ProgressBar quiet(100, "quiet", ProgressBar::Unit::Count, "", f);
    EXPECT_FALSE(quiet.enabled());  // a file is not a terminal
    quiet.update(50);
  }
  {
    ProgressBar bar(1000, "train", ProgressBar::Unit::Count, "steps", f);
    bar.set_enabled(true);
    bar.update(250, "loss 2.31");
    std::string line = bar.render(100);
    EXPECT_EQ(line.rfind("train [", 0), 0u) << line;
    EXPECT_NE(line.find(" 25%"), std::string::npos) << line;
    EXPECT_NE(line.find("250/1.00k steps"), std::string::npos) << line;
    EXPECT_NE(line.find("loss 2.31"), std::string::npos) << line;
    EXPECT_LE(bar.render(30).size(), 30u);
    bar.finish("done");
  }
  std::fflush(f);
  std::fclose(f);
  std::string text = slurp(d / "out");
  EXPECT_EQ(text.find("quiet"), std::string::npos);
  EXPECT_NE(text.find("\rtrain ["), std::string::npos) << text;
  EXPECT_NE(text.find("done\n"), std::string::npos) << text;
  EXPECT_NE(text.find(" in 0:00"), std::string::npos) << text;  // the final line: elapsed time
}

}  // namespace
}  // namespace lmkit
