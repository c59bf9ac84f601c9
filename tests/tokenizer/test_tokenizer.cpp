// Tokenizer behaviour beyond the conformance vectors: llama2.c files, BOS/EOS and special
// tokens, decoding and streaming, round trips, invalid input and corrupt files. Not speed
// tests (those belong in bench/).
#include <filesystem>
#include <random>
#include <thread>

#include "test_tokenizer_util.h"
#include "tokenizer/pretokenize.h"

namespace lmkit::test {
namespace {

std::string stories_dir() {
  return shared_dir() + "/models/stories260K";
}

std::unique_ptr<Tokenizer> gguf_tok(const std::string &name) {
  return tokenizer_from_gguf(GGUFFile::open(vocab_path(name)));
}

std::vector<int32_t> read_ids(const std::string &path) {
  std::vector<int32_t> ids;
  std::string text = read_file(path);
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(uint8_t(text[i]))) ++i;
    size_t j = i;
    while (j < text.size() && !std::isspace(uint8_t(text[j]))) ++j;
    if (j > i) ids.push_back(int32_t(std::stol(text.substr(i, j - i))));
    i = j;
  }
  return ids;
}

bool valid_utf8(const std::string &s) {
  try {
    utf8_validate(s);
    return true;
  } catch (const Error &) {
    return false;
  }
}

// --- llama2.c ---------------------------------------------------------------------------------

TEST(TokenizerLlama2c, EncodesPromptLikeRunC) {
  LMKIT_REQUIRE_SHARED();
  auto tok = tokenizer_from_llama2c(stories_dir() + "/tok512.bin", 512);
  EXPECT_EQ(tok->n_vocab(), 512);
  EXPECT_EQ(tok->kind(), TokenizerKind::SentencePieceBPE);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->type(3), TokenType::Byte);
  EXPECT_EQ(tok->type(258), TokenType::Byte);
  EXPECT_EQ(tok->encode("Once upon a time"), (std::vector<int32_t>{1, 403, 407, 261, 378}));
  EXPECT_EQ(tok->encode("Once upon a time", false), (std::vector<int32_t>{403, 407, 261, 378}));
  EXPECT_EQ(tok->encode("", true), (std::vector<int32_t>{1}));
}

TEST(TokenizerLlama2c, DecodesGoldenGeneration) {
  LMKIT_REQUIRE_SHARED();
  auto tok = tokenizer_from_llama2c(stories_dir() + "/tok512.bin", 512);
  std::vector<int32_t> ids = read_ids(stories_dir() + "/ref_greedy_once_upon_a_time_n256.ids");
  ASSERT_GT(ids.size(), 200u);
  ASSERT_EQ(ids[0], 1);
  std::string want = read_file(stories_dir() + "/ref_greedy_once_upon_a_time_n256.txt");
  // run.c ends its output with one "\n" of its own after the last token.
  ASSERT_FALSE(want.empty());
  ASSERT_EQ(want.back(), '\n');
  want.pop_back();
  std::span<const int32_t> gen(ids.data() + 1, ids.size() - 1);
  EXPECT_EQ(tok->decode(gen), want);
  EXPECT_EQ(tok->decode(ids), want);  // BOS decodes to nothing
  // Streaming gives the same text.
  StreamDecoder sd(*tok);
  std::string streamed;
  for (int32_t id : ids) streamed += sd.feed(id);
  streamed += sd.flush();
  EXPECT_EQ(streamed, want);
}

TEST(TokenizerLlama2c, LoadPicksFormatFromName) {
  LMKIT_REQUIRE_SHARED();
  auto tok = tokenizer_load(stories_dir() + "/tok512.bin");  // n_vocab read from the file
  EXPECT_EQ(tok->n_vocab(), 512);
  EXPECT_EQ(tok->encode("Once upon a time"), (std::vector<int32_t>{1, 403, 407, 261, 378}));
  auto g = tokenizer_load(vocab_path("gpt-2"));
  EXPECT_EQ(g->kind(), TokenizerKind::ByteLevelBPE);
  EXPECT_THROW(tokenizer_load(stories_dir() + "/PROVENANCE.md"), Error);
  EXPECT_THROW(tokenizer_load(stories_dir() + "/does-not-exist.gguf"), Error);
}

TEST(TokenizerLlama2c, TruncatedFileIsAnErrorNamingIt) {
  LMKIT_REQUIRE_SHARED();
  std::string data = read_file(stories_dir() + "/tok512.bin");
  TempDir dir("tok-trunc");
  for (size_t cut : {size_t(2), size_t(10), data.size() / 2, data.size() - 1}) {
    std::string path = dir / "tok.bin";
    write_text(path, data.substr(0, cut));
    try {
      tokenizer_from_llama2c(path, 512);
      ADD_FAILURE() << "no error for a file cut at " << cut;
    } catch (const Error &e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
    }
  }
  // A model checkpoint is not a tokenizer.
  EXPECT_THROW(tokenizer_from_llama2c(stories_dir() + "/stories260K.bin", 512), Error);
}

// --- SentencePiece GGUF ---------------------------------------------------------------------

TEST(TokenizerSpm, SpecialTokensAndPrefix) {
  LMKIT_REQUIRE_SHARED();
  auto tok = gguf_tok("llama-spm");
  EXPECT_TRUE(tok->add_bos());
  EXPECT_FALSE(tok->add_eos());
  EXPECT_TRUE(tok->strips_leading_space());
  EXPECT_EQ(tok->encode("Hello world"), (std::vector<int32_t>{1, 15043, 3186}));
  // parse_special: "</s>" is the EOS token; llama.cpp puts a "▁" after it again.
  auto ids = tok->encode("Hello</s>world", false, true);
  EXPECT_EQ(ids, (std::vector<int32_t>{15043, 2, 3186}));
  auto plain = tok->encode("Hello</s>world", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 2), 0);
  EXPECT_TRUE(tok->is_end_of_generation(2));
  EXPECT_FALSE(tok->is_end_of_generation(1));
  EXPECT_EQ(tok->token_bytes(15043), " Hello");
  EXPECT_EQ(tok->token_bytes(13), "\n");  // <0x0A>
  EXPECT_EQ(tok->token_bytes(2), "");
  EXPECT_EQ(tok->token_bytes(2, true), "</s>");
  EXPECT_THROW(tok->token_bytes(32000), Error);
  EXPECT_THROW(tok->piece(-1), Error);
}

TEST(TokenizerSpm, RoundTripsConformanceInputs) {
  LMKIT_REQUIRE_SHARED();
  auto tok = gguf_tok("llama-spm");
  for (const auto &c : load_vocab_cases("llama-spm"))
    EXPECT_EQ(tok->decode(tok->encode(c.text, true, false)), c.text)
        << nlohmann::json(c.text).dump();
}

TEST(TokenizerSpm, LongTextMatchesPieceByPiece) {
  LMKIT_REQUIRE_SHARED();
  // Word splitting and caching must not change anything: a long text encodes to the
  // concatenation of its lines' encodings when each line starts with a space.
  auto tok = gguf_tok("llama-spm");
  std::string text;
  std::vector<int32_t> want;
  for (const auto &c : load_vocab_cases("llama-spm")) {
    // " word ..." lines: each one starts a new word, so the lines cannot merge with each other.
    if (c.text.size() < 2 || c.text[0] != ' ' || std::isspace(uint8_t(c.text[1])) ||
        c.text.find_first_of("\t\n") != std::string::npos)
      continue;
    text += c.text;
    auto ids = tok->encode(c.text.substr(1), false);  // prefix "▁" + rest == " " + rest
    want.insert(want.end(), ids.begin(), ids.end());
  }
  EXPECT_EQ(tok->encode(text.substr(1), false), want);
}

// --- Byte-level -------------------------------------------------------------------------------

TEST(TokenizerByteLevel, RoundTripsConformanceInputs) {
  LMKIT_REQUIRE_SHARED();
  for (const char *name : {"gpt-2", "falcon", "starcoder", "deepseek-llm"}) {
    auto tok = gguf_tok(name);
    EXPECT_FALSE(tok->strips_leading_space());
    for (const auto &c : load_vocab_cases(name))
      EXPECT_EQ(tok->decode(tok->encode(c.text, false, false)), c.text)
          << name << " " << nlohmann::json(c.text).dump();
  }
}

TEST(TokenizerByteLevel, PiecesAndSpecials) {
  LMKIT_REQUIRE_SHARED();
  auto tok = gguf_tok("gpt-2");
  EXPECT_EQ(tok->pre(), "gpt-2");
  EXPECT_EQ(tok->piece(995), "\u0120world");
  EXPECT_EQ(tok->token_bytes(995), " world");
  EXPECT_EQ(tok->token_bytes(198), "\n");  // "Ċ"
  EXPECT_TRUE(tok->is_end_of_generation(50256));
  EXPECT_EQ(tok->encode("Hello<|endoftext|>", false, true), (std::vector<int32_t>{15496, 50256}));
  EXPECT_NE(tok->encode("Hello<|endoftext|>", false, false).back(), 50256);
  // Repeated words come from the cache: same answer twice, and for a long repetitive text.
  std::string text;
  for (int k = 0; k < 200; ++k) text += " the quick brown fox";
  auto once = tok->encode(" the quick brown fox", false);
  auto many = tok->encode(text, false);
  ASSERT_EQ(many.size(), once.size() * 200);
  for (size_t k = 0; k < many.size(); ++k) EXPECT_EQ(many[k], once[k % once.size()]);
}

TEST(TokenizerByteLevel, UnknownPreTokenizerIsAnError) {
  LMKIT_REQUIRE_SHARED();
  // Rewrite the gpt-2 vocabulary with a pre-tokenizer name nobody knows.
  GGUFFile f = GGUFFile::open(vocab_path("gpt-2"));
  GGUFWriter w;
  for (const auto &[k, v] : f.metadata()) w.set(k, v);
  w.set_str("tokenizer.ggml.pre", "no-such-pre");
  TempDir dir("tok-pre");
  w.write(dir / "v.gguf");
  try {
    tokenizer_load(dir / "v.gguf");
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("no-such-pre"), std::string::npos) << e.what();
  }
}

// --- WordPiece ------------------------------------------------------------------------------

TEST(TokenizerWordPiece, ClsSepAndDecoding) {
  LMKIT_REQUIRE_SHARED();
  auto tok = gguf_tok("bert-bge");
  EXPECT_TRUE(tok->strips_leading_space());
  auto ids = tok->encode("Hello, World!");
  ASSERT_EQ(ids.size(), 6u);
  EXPECT_EQ(ids.front(), 101);
  EXPECT_EQ(ids.back(), 102);
  EXPECT_EQ(tok->decode(ids), "hello , world !");
  EXPECT_EQ(tok->decode(tok->encode("unaffable")), "unaffable");
  // Accents go (NFD minus marks), case goes, CJK characters stand alone.
  EXPECT_EQ(tok->encode("Führer Café", false), tok->encode("fuhrer cafe", false));
  EXPECT_EQ(tok->encode("\u4e2d\u6587", false), tok->encode("\u4e2d \u6587", false));
  // A word longer than 100 characters is one [UNK].
  EXPECT_EQ(tok->encode(std::string(101, 'a'), false), (std::vector<int32_t>{100}));
  EXPECT_NE(tok->encode(std::string(100, 'a'), false), (std::vector<int32_t>{100}));
}

// --- Streaming and decoding -------------------------------------------------------------------

TEST(TokenizerStream, EmojiFromFourBytePieces) {
  LMKIT_REQUIRE_SHARED();
  auto tok = gguf_tok("llama-spm");
  auto ids = tok->encode("\U0001F999", false);  // 🦙: "▁" then <0xF0><0x9F><0xA6><0x99>
  ASSERT_EQ(ids.size(), 5u);
  for (size_t k = 1; k < 5; ++k) EXPECT_EQ(tok->type(ids[k]), TokenType::Byte);
  StreamDecoder sd(*tok);
  EXPECT_EQ(sd.feed(ids[0]), "");  // the dummy-prefix space is dropped at the start
  EXPECT_EQ(sd.feed(ids[1]), "");
  EXPECT_EQ(sd.feed(ids[2]), "");
  EXPECT_EQ(sd.feed(ids[3]), "");
  EXPECT_EQ(sd.feed(ids[4]), "\U0001F999");
  EXPECT_EQ(sd.flush(), "");
  // A partial character at the end of a stream becomes U+FFFD, so does decode().
  StreamDecoder sd2(*tok);
  EXPECT_EQ(sd2.feed(ids[1]), "");
  EXPECT_EQ(sd2.feed(ids[2]), "");
  EXPECT_EQ(sd2.flush(), "\uFFFD");
  std::vector<int32_t> partial{ids[1], ids[2], 3 + 'a'};  // <0x61>
  EXPECT_EQ(tok->decode(partial), "\uFFFDa");
  // An impossible byte comes out at once as U+FFFD.
  StreamDecoder sd3(*tok);
  EXPECT_EQ(sd3.feed(3 + 0xFF), "\uFFFD");
  EXPECT_EQ(sd3.feed(ids[1]), "");
  EXPECT_EQ(sd3.feed(3 + 'x'), "\uFFFDx");  // F0 then 'x': the F0 cannot complete
}

TEST(TokenizerStream, ByteLevelSplitsCjkCharacters) {
  LMKIT_REQUIRE_SHARED();
  auto tok = gguf_tok("gpt-2");
  const std::string text =
      "\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e \u0436\u0438\u0437\u043d\u044c";
  auto ids = tok->encode(text, false);
  StreamDecoder sd(*tok);
  std::string streamed;
  int held_back = 0;
  for (int32_t id : ids) {
    std::string piece = sd.feed(id);
    EXPECT_TRUE(valid_utf8(piece));
    held_back += piece.empty();
    streamed += piece;
  }
  streamed += sd.flush();
  EXPECT_EQ(streamed, text);
  EXPECT_GT(held_back, 0);  // some token ended in the middle of a character
}

TEST(TokenizerStream, LeadingSpaceOnlyOnce) {
  LMKIT_REQUIRE_SHARED();
  auto tok = gguf_tok("llama-spm");
  auto ids = tok->encode(" Hello  world");  // BOS, "▁", "▁Hello", ...
  StreamDecoder sd(*tok);
  std::string s;
  for (int32_t id : ids) s += sd.feed(id);
  s += sd.flush();
  EXPECT_EQ(s, " Hello  world");
  EXPECT_EQ(tok->decode(ids), " Hello  world");
}

// --- Invalid input ----------------------------------------------------------------------------

TEST(TokenizerInput, InvalidUtf8IsAnError) {
  LMKIT_REQUIRE_SHARED();
  auto tok = gguf_tok("gpt-2");
  auto expect_at = [&](const std::string &s, size_t at) {
    try {
      tok->encode(s);
      ADD_FAILURE() << "no error for " << nlohmann::json::binary({s.begin(), s.end()}).dump();
    } catch (const Error &e) {
      EXPECT_EQ(std::string(e.what()), "invalid UTF-8 at byte " + std::to_string(at));
    }
  };
  expect_at("abc\xff", 3);
  expect_at("ab\xe4\xb8", 2);                   // truncated
  expect_at("\xc0\x80", 0);                     // overlong NUL
  expect_at("xx\xed\xa0\x80", 2);               // surrogate
  expect_at("0123456789\xf4\x90\x80\x80", 10);  // above U+10FFFF
  expect_at("\x80", 0);                         // stray continuation byte
  EXPECT_NO_THROW(tok->encode("\xf0\x9f\xa6\x99 ok"));
  EXPECT_NO_THROW(utf8_validate(""));
}

TEST(TokenizerInput, CorruptGgufIsAnError) {
  LMKIT_REQUIRE_SHARED();
  std::string data = read_file(vocab_path("gpt-2"));
  TempDir dir("tok-gguf");
  write_text(dir / "cut.gguf", data.substr(0, data.size() / 3));
  EXPECT_THROW(tokenizer_load(dir / "cut.gguf"), Error);
  // A GGUF without tokenizer metadata.
  GGUFWriter w;
  w.set_str("general.architecture", "llama");
  w.write(dir / "empty.gguf");
  try {
    tokenizer_load(dir / "empty.gguf");
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.model"), std::string::npos) << e.what();
  }
}

// --- Robustness -------------------------------------------------------------------------------

// Random text over awkward code points: controls, whitespace kinds, marks, CJK, emoji, RTL.
// (Not U+2581 "▁": SentencePiece reads it back as a space, by design.)
std::string random_text(std::mt19937 &rng, size_t n_chars) {
  static const uint32_t pool[] = {
      'a',    'Z',    '0',    '9',    ' ',    ' ',    ' ',     '\n',    '\t',    '\r',
      '\'',   '.',    '!',    '_',    0x00,   0x1F,   0x7F,    0x85,    0xA0,    0xAD,
      0xBD,   0xC0,   0xE9,   0xFC,   0x130,  0x301,  0x308,   0x3A3,   0x416,   0x5D0,
      0x627,  0x93F,  0xE01,  0x1100, 0x1F7D, 0x200B, 0x200D,  0x2028,  0x2029,  0x3000,
      0x4E2D, 0xAC00, 0xD7A3, 0xFEFF, 0xFF5E, 0xFFFD, 0x1F600, 0x1F999, 0x20000, 0x10FFFF};
  std::uniform_int_distribution<size_t> pick(0, sizeof(pool) / sizeof(pool[0]) - 1);
  std::string s;
  for (size_t k = 0; k < n_chars; ++k) {
    uint32_t cp = pool[pick(rng)];
    if (cp < 0x80) {
      s += char(cp);
    } else if (cp < 0x800) {
      s += char(0xC0 | (cp >> 6));
      s += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += char(0xE0 | (cp >> 12));
      s += char(0x80 | ((cp >> 6) & 0x3F));
      s += char(0x80 | (cp & 0x3F));
    } else {
      s += char(0xF0 | (cp >> 18));
      s += char(0x80 | ((cp >> 12) & 0x3F));
      s += char(0x80 | ((cp >> 6) & 0x3F));
      s += char(0x80 | (cp & 0x3F));
    }
  }
  return s;
}

TEST(TokenizerRobustness, RandomTextRoundTrips) {
  LMKIT_REQUIRE_SHARED();
  std::mt19937 rng(1234);
  std::vector<std::string> texts;
  for (int k = 0; k < 150; ++k) texts.push_back(random_text(rng, size_t(k % 40)));
  for (const char *name :
       {"gpt-2", "falcon", "starcoder", "deepseek-llm", "llama-spm", "bert-bge"}) {
    auto tok = gguf_tok(name);
    for (const auto &t : texts) {
      auto ids = tok->encode(t, true, true);
      for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok->n_vocab()) << name;
      std::string back = tok->decode(ids);
      EXPECT_TRUE(valid_utf8(back)) << name;
      if (tok->kind() != TokenizerKind::WordPiece) {
        EXPECT_EQ(back, t) << name << " " << nlohmann::json(t).dump();
      }
    }
  }
}

TEST(TokenizerRobustness, ConcurrentEncodingMatchesSerial) {
  LMKIT_REQUIRE_SHARED();
  for (const char *name : {"gpt-2", "llama-spm"}) {
    auto tok = gguf_tok(name);
    std::mt19937 rng(7);
    std::vector<std::string> texts;
    for (int k = 0; k < 64; ++k) {
      std::string t;
      for (const auto &c : load_vocab_cases(name)) t += c.text + random_text(rng, 3);
      texts.push_back(t);
    }
    std::vector<std::vector<int32_t>> serial;
    for (const auto &t : texts) serial.push_back(tok->encode(t));
    auto fresh = gguf_tok(name);  // empty cache: the threads fill it while racing
    std::vector<std::vector<std::vector<int32_t>>> got(4);
    std::vector<std::thread> threads;
    for (size_t th = 0; th < got.size(); ++th)
      threads.emplace_back([&, th] {
        for (const auto &t : texts) got[th].push_back(fresh->encode(t));
      });
    for (auto &t : threads) t.join();
    for (const auto &g : got) EXPECT_EQ(g, serial) << name;
  }
}

TEST(TokenizerWordPiece, GgufWithHashHashPieces) {
  LMKIT_REQUIRE_SHARED();
  // The same vocabulary written the way BERT writes it ("##ing", no "▁") must tokenize alike.
  GGUFFile f = GGUFFile::open(vocab_path("bert-bge"));
  std::vector<std::string> pieces = f.get_str_array("tokenizer.ggml.tokens");
  const std::string space = "\u2581";
  for (auto &p : pieces) {
    if (p.compare(0, space.size(), space) == 0)
      p = p.substr(space.size());
    else if (!(p.size() >= 2 && p.front() == '[' && p.back() == ']'))
      p = "##" + p;
  }
  GGUFWriter w;
  for (const auto &[k, v] : f.metadata()) w.set(k, v);
  w.set_str_array("tokenizer.ggml.tokens", pieces);
  TempDir dir("tok-bert-hash");
  w.write(dir / "bert.gguf");
  auto tok = tokenizer_load(dir / "bert.gguf");
  std::string report = conformance_report(*tok, load_vocab_cases("bert-bge"));
  EXPECT_TRUE(report.empty()) << report;
  EXPECT_EQ(tok->decode(tok->encode("unaffable")), "unaffable");
}

// --- Pre-tokenizer presets --------------------------------------------------------------------

std::vector<std::string> pretokenize(const std::string &preset, const std::string &text) {
  tok::PreTokenizer p;
  EXPECT_TRUE(tok::pretokenizer_preset(preset, p)) << preset;
  tok::PreTokWork w;
  p.run(text, true, w);
  return std::vector<std::string>(w.pieces.begin(), w.pieces.end());
}

TEST(TokenizerPretokenize, PresetsSplitAsTheirRegexesSay) {
  using V = std::vector<std::string>;
  EXPECT_EQ(pretokenize("llama3", "Hello world 12345 I'm"),
            (V{"Hello", " world", " ", "123", "45", " I", "'m"}));
  EXPECT_EQ(pretokenize("llama-bpe", "I'M  ok\n\n"), (V{"I", "'M", " ", " ok", "\n\n"}));
  EXPECT_EQ(pretokenize("qwen2", "x 12345"), (V{"x", " ", "1", "2", "3", "4", "5"}));
  EXPECT_EQ(pretokenize("gpt-2", "Hello world 12345 I'm"),
            (V{"Hello", " world", " 12345", " I", "'m"}));
  EXPECT_EQ(pretokenize("starcoder", "ab12 c"), (V{"ab", "1", "2", " c"}));
  EXPECT_EQ(pretokenize("falcon", "1234567 a,b"), (V{"123", "456", "7", " a", ",", "b"}));
  // Every preset compiles and loses no byte, on text that exercises all its classes.
  const std::string text =
      "Hello,  World! 12345 I'm \u00e9t\u00e9 \u4e2d\u6587 \U0001F999\t\r\n  x\u00bd ";
  for (const char *name : {"gpt-2", "default", "llama3", "qwen2", "falcon", "starcoder",
                           "deepseek-llm", "deepseek-coder", "deepseek-v3", "gpt-4o", "tekken"}) {
    std::string joined;
    for (const auto &piece : pretokenize(name, text)) joined += piece;
    EXPECT_EQ(joined, text) << name;
  }
  tok::PreTokenizer p;
  EXPECT_FALSE(tok::pretokenizer_preset("no-such", p));
}

}  // namespace
}  // namespace lmkit::test
