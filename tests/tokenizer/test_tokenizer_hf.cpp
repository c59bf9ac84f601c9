// Hugging Face tokenizer.json loading: the conformance vectors again, through tokenizer.json
// files written (in HF's real schema) from the GGUF vocabularies, plus tokenizer_config.json
// settings and malformed files. Not a download: every file here is made by the test.
#include <map>

#include "test_tokenizer_util.h"

namespace lmkit::test {
namespace {

using json = nlohmann::json;

const std::string kSpace = "\u2581";

json vocab_object(const std::vector<std::string> &pieces) {
  json v = json::object();
  for (size_t id = 0; id < pieces.size(); ++id)
    if (!v.contains(pieces[id])) v[pieces[id]] = id;
  return v;
}

json added_token(int64_t id, const std::string &content, bool special, bool lstrip = false) {
  return json{{"id", id},          {"content", content}, {"single_word", false},
              {"lstrip", lstrip},  {"rstrip", false},    {"normalized", !special},
              {"special", special}};
}

json merges_json(const std::vector<std::pair<std::string, std::string>> &merges, bool as_arrays) {
  json m = json::array();
  for (const auto &[a, b] : merges) {
    if (as_arrays)
      m.push_back(json::array({a, b}));
    else
      m.push_back(a + " " + b);
  }
  return m;
}

std::vector<std::pair<std::string, std::string>> gguf_merges(const GGUFFile &f) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const std::string &m : f.get_str_array("tokenizer.ggml.merges")) {
    size_t sp = m.find(' ', 1);
    out.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  return out;
}

// Control tokens as special added tokens, user-defined ones as plain added tokens.
json added_from_gguf(const GGUFFile &f) {
  const auto &pieces = f.get_str_array("tokenizer.ggml.tokens");
  std::vector<int32_t> types = f.get_i32_array("tokenizer.ggml.token_type");
  json added = json::array();
  for (size_t id = 0; id < pieces.size(); ++id)
    if (types[id] == 3 || types[id] == 4 || types[id] == 2)
      added.push_back(added_token(int64_t(id), pieces[id], types[id] != 4));
  return added;
}

json byte_level(bool use_regex) {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", false},
          {"trim_offsets", true},
          {"use_regex", use_regex}};
}

json split(const std::string &regex) {
  return {{"type", "Split"},
          {"pattern", {{"Regex", regex}}},
          {"behavior", "Isolated"},
          {"invert", false}};
}

// The pre_tokenizer sections of the models' own tokenizer.json files.
json hf_pre_tokenizer(const std::string &name) {
  if (name == "gpt-2") return byte_level(true);
  if (name == "falcon")
    return {{"type", "Sequence"},
            {"pretokenizers",
             {{{"type", "Punctuation"}, {"behavior", "Contiguous"}},
              byte_level(true),
              {{"type", "Digits"}, {"individual_digits", false}},
              split("[0-9][0-9][0-9]")}}};
  if (name == "starcoder")
    return {
        {"type", "Sequence"},
        {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)}}};
  // deepseek-llm
  const std::string letters =
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
  return {{"type", "Sequence"},
          {"pretokenizers",
           {split("[\r\n]"),
            split(letters),
            split("\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+"),
            split("\\s+$"),
            split("[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+"),
            {{"type", "Digits"}, {"individual_digits", true}},
            byte_level(false)}}};
}

json byte_level_tokenizer_json(const GGUFFile &f, const std::string &name, bool merges_arrays) {
  const auto &pieces = f.get_str_array("tokenizer.ggml.tokens");
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added_from_gguf(f)},
          {"normalizer", nullptr},
          {"pre_tokenizer", hf_pre_tokenizer(name)},
          {"post_processor",
           {{"type", "ByteLevel"},
            {"add_prefix_space", true},
            {"trim_offsets", false},
            {"use_regex", true}}},
          {"decoder",
           {{"type", "ByteLevel"},
            {"add_prefix_space", true},
            {"trim_offsets", true},
            {"use_regex", true}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"ignore_merges", false},
            {"vocab", vocab_object(pieces)},
            {"merges", merges_json(gguf_merges(f), merges_arrays)}}}};
}

// What HF's SentencePiece converter does: every split of a piece into two pieces is a merge,
// ordered by the score of the merged piece (best first), ties in vocabulary order.
std::vector<std::pair<std::string, std::string>> spm_merges(const std::vector<std::string> &pieces,
                                                            const std::vector<float> &scores) {
  std::map<std::string, int32_t> ids;
  for (size_t k = 0; k < pieces.size(); ++k) ids.emplace(pieces[k], int32_t(k));
  struct M {
    int32_t l, r;
    float score;
  };
  std::vector<M> all;
  for (size_t id = 0; id < pieces.size(); ++id) {
    const std::string &p = pieces[id];
    std::vector<M> local;
    for (size_t k = 1; k < p.size(); ++k) {
      if ((uint8_t(p[k]) & 0xC0) == 0x80) continue;  // split between characters only
      auto l = ids.find(p.substr(0, k)), r = ids.find(p.substr(k));
      if (l != ids.end() && r != ids.end()) local.push_back({l->second, r->second, scores[id]});
    }
    std::sort(local.begin(), local.end(),
              [](const M &a, const M &b) { return a.l != b.l ? a.l < b.l : a.r < b.r; });
    all.insert(all.end(), local.begin(), local.end());
  }
  std::stable_sort(all.begin(), all.end(),
                   [](const M &a, const M &b) { return a.score > b.score; });
  std::vector<std::pair<std::string, std::string>> out;
  for (const M &m : all) out.emplace_back(pieces[size_t(m.l)], pieces[size_t(m.r)]);
  return out;
}

json llama_spm_tokenizer_json(const GGUFFile &f, bool metaspace) {
  const auto &pieces = f.get_str_array("tokenizer.ggml.tokens");
  json normalizer = {
      {"type", "Sequence"},
      {"normalizers",
       {{{"type", "Prepend"}, {"prepend", kSpace}},
        {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}}}}};
  json decoder = {{"type", "Sequence"},
                  {"decoders",
                   {{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}},
                    {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  json pre = nullptr;
  if (metaspace) {
    // The newer (legacy=false) form: no normalizer, a Metaspace pre-tokenizer and decoder.
    normalizer = nullptr;
    pre = {{"type", "Metaspace"},
           {"replacement", kSpace},
           {"prepend_scheme", "first"},
           {"split", false}};
    decoder = pre;
  }
  return {
      {"version", "1.0"},
      {"added_tokens",
       {added_token(0, "<unk>", true), added_token(1, "<s>", true), added_token(2, "</s>", true)}},
      {"normalizer", normalizer},
      {"pre_tokenizer", pre},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", json::array()},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder", decoder},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", "<unk>"},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"vocab", vocab_object(pieces)},
        {"merges",
         merges_json(spm_merges(pieces, f.get_f32_array("tokenizer.ggml.scores")), true)}}}};
}

json bert_tokenizer_json(const GGUFFile &f) {
  // Back from llama.cpp's form to BERT's: "▁the" -> "the", "ing" -> "##ing".
  std::vector<std::string> pieces = f.get_str_array("tokenizer.ggml.tokens");
  for (auto &p : pieces) {
    if (p.compare(0, kSpace.size(), kSpace) == 0)
      p = p.substr(kSpace.size());
    else if (!(p.size() >= 2 && p.front() == '[' && p.back() == ']'))
      p = "##" + p;
  }
  json added = json::array();
  for (const char *s : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) {
    auto it = std::find(pieces.begin(), pieces.end(), s);
    added.push_back(added_token(it - pieces.begin(), s, true));
  }
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer",
           {{"type", "BertNormalizer"},
            {"clean_text", true},
            {"handle_chinese_chars", true},
            {"strip_accents", nullptr},
            {"lowercase", true}}},
          {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single",
             {{{"SpecialToken", {{"id", "[CLS]"}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
              {{"SpecialToken", {{"id", "[SEP]"}, {"type_id", 0}}}}}},
            {"special_tokens",
             {{"[CLS]", {{"id", "[CLS]"}, {"ids", {101}}, {"tokens", {"[CLS]"}}}},
              {"[SEP]", {{"id", "[SEP]"}, {"ids", {102}}, {"tokens", {"[SEP]"}}}}}}}},
          {"decoder", {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}}},
          {"model",
           {{"type", "WordPiece"},
            {"unk_token", "[UNK]"},
            {"continuing_subword_prefix", "##"},
            {"max_input_chars_per_word", 100},
            {"vocab", vocab_object(pieces)}}}};
}

std::unique_ptr<Tokenizer> load_json(const TempDir &dir, const json &j) {
  write_text(dir / "tokenizer.json", j.dump());
  return tokenizer_from_hf(dir / "tokenizer.json");
}

void check_byte_level(const std::string &name, bool merges_arrays) {
  GGUFFile f = GGUFFile::open(vocab_path(name));
  TempDir dir("tok-hf-" + name);
  auto tok = load_json(dir, byte_level_tokenizer_json(f, name, merges_arrays));
  EXPECT_EQ(tok->kind(), TokenizerKind::ByteLevelBPE);
  EXPECT_EQ(tok->pre(), name);  // the pipeline is recognised as the GGUF preset
  std::string report = conformance_report(*tok, load_vocab_cases(name));
  EXPECT_TRUE(report.empty()) << name << " (tokenizer.json) failures:\n" << report;
}

TEST(TokenizerHf, Gpt2ConformanceMergesAsStrings) {
  LMKIT_REQUIRE_SHARED();
  check_byte_level("gpt-2", false);
}
TEST(TokenizerHf, FalconConformanceMergesAsArrays) {
  LMKIT_REQUIRE_SHARED();
  check_byte_level("falcon", true);
}
TEST(TokenizerHf, StarcoderConformance) {
  LMKIT_REQUIRE_SHARED();
  check_byte_level("starcoder", false);
}
TEST(TokenizerHf, DeepseekLlmConformance) {
  LMKIT_REQUIRE_SHARED();
  check_byte_level("deepseek-llm", true);
}

TEST(TokenizerHf, LlamaSpmConformanceFromRankedMerges) {
  LMKIT_REQUIRE_SHARED();
  GGUFFile f = GGUFFile::open(vocab_path("llama-spm"));
  TempDir dir("tok-hf-spm");
  auto tok = load_json(dir, llama_spm_tokenizer_json(f, false));
  EXPECT_EQ(tok->kind(), TokenizerKind::SentencePieceBPE);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_TRUE(tok->add_bos());  // from the TemplateProcessing post-processor
  EXPECT_FALSE(tok->add_eos());
  EXPECT_TRUE(tok->strips_leading_space());   // Strip decoder
  EXPECT_EQ(tok->type(13), TokenType::Byte);  // <0x0A>
  std::string report = conformance_report(*tok, load_vocab_cases("llama-spm"));
  EXPECT_TRUE(report.empty()) << "llama-spm (tokenizer.json) failures:\n" << report;
  EXPECT_EQ(tok->encode("Hello world"), (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_EQ(tok->decode(tok->encode("  Hello\nworld")), "  Hello\nworld");
}

TEST(TokenizerHf, LlamaSpmMetaspace) {
  LMKIT_REQUIRE_SHARED();
  GGUFFile f = GGUFFile::open(vocab_path("llama-spm"));
  TempDir dir("tok-hf-meta");
  auto tok = load_json(dir, llama_spm_tokenizer_json(f, true));
  EXPECT_TRUE(tok->strips_leading_space());
  // Metaspace and the legacy Prepend normalizer agree except on text that starts with a space,
  // where Metaspace adds no second "▁".
  int checked = 0;
  for (const auto &c : load_vocab_cases("llama-spm")) {
    if (c.text.empty() || c.text[0] == ' ') continue;
    EXPECT_EQ(tok->encode(c.text, false, false), c.ids) << nlohmann::json(c.text).dump();
    ++checked;
  }
  EXPECT_GT(checked, 25);
  EXPECT_EQ(tok->encode(" Hello", false), tok->encode("Hello", false));
  // prepend_scheme "first": no "▁" after a special token in the middle of the text.
  auto ids = tok->encode("Hello</s>world", false, true);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[1], 2);
  EXPECT_EQ(tok->piece(ids[2]), "world");
}

TEST(TokenizerHf, BertConformance) {
  LMKIT_REQUIRE_SHARED();
  GGUFFile f = GGUFFile::open(vocab_path("bert-bge"));
  TempDir dir("tok-hf-bert");
  auto tok = load_json(dir, bert_tokenizer_json(f));
  EXPECT_EQ(tok->kind(), TokenizerKind::WordPiece);
  EXPECT_EQ(tok->piece(2003), "is");
  std::string report = conformance_report(*tok, load_vocab_cases("bert-bge"));
  EXPECT_TRUE(report.empty()) << "bert-bge (tokenizer.json) failures:\n" << report;
  auto ids = tok->encode("Hello, world!");
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids.front(), 101);
  EXPECT_EQ(ids.back(), 102);
  EXPECT_EQ(tok->decode(ids), "hello , world !");
  EXPECT_EQ(tok->decode(tok->encode("unaffable")), "unaffable");  // "##" pieces join
}

// A small byte-level tokenizer with chat-model specials and a tokenizer_config.json.
TEST(TokenizerHf, AddedTokensAndConfig) {
  LMKIT_REQUIRE_SHARED();
  GGUFFile f = GGUFFile::open(vocab_path("gpt-2"));
  json j = byte_level_tokenizer_json(f, "gpt-2", false);
  j["added_tokens"].push_back(added_token(50257, "<|im_start|>", true));
  j["added_tokens"].push_back(added_token(50258, "<|im_end|>", true));
  j["added_tokens"].push_back(added_token(50259, " lmkit", false));       // always matched
  j["added_tokens"].push_back(added_token(50260, "<mask>", true, true));  // lstrip
  j["added_tokens"].push_back(added_token(50261, "<|im", true));          // prefix of others
  TempDir dir("tok-hf-cfg");
  write_text(dir / "tokenizer_config.json",
             json{{"bos_token", {{"content", "<|endoftext|>"}, {"special", true}}},
                  {"eos_token", "<|im_end|>"},
                  {"add_bos_token", true},
                  {"add_eos_token", false},
                  {"chat_template",
                   {{{"name", "tool_use"}, {"template", "tools!"}},
                    {{"name", "default"}, {"template", "{{ messages }}"}}}}}
                 .dump());
  write_text(dir / "generation_config.json", json{{"eos_token_id", {50256, 50258}}}.dump());
  auto tok = load_json(dir, j);
  EXPECT_EQ(tok->n_vocab(), 50262);
  EXPECT_EQ(tok->find_piece("<|im_end|>"), 50258);
  EXPECT_EQ(tok->find_piece("<|nope|>"), -1);
  EXPECT_EQ(tok->bos_id(), 50256);
  EXPECT_EQ(tok->eos_id(), 50258);
  EXPECT_TRUE(tok->add_bos());
  EXPECT_EQ(tok->chat_template(), "{{ messages }}");
  EXPECT_TRUE(tok->is_end_of_generation(50258));
  EXPECT_TRUE(tok->is_end_of_generation(50256));
  EXPECT_FALSE(tok->is_end_of_generation(50257));
  EXPECT_EQ(tok->type(50257), TokenType::Control);
  EXPECT_EQ(tok->type(50259), TokenType::UserDefined);

  auto ids = tok->encode("<|im_start|>user\nhi<|im_end|>", true, true);
  ASSERT_EQ(ids.size(), 6u);
  EXPECT_EQ(ids[0], 50256);  // BOS
  EXPECT_EQ(ids[1], 50257);
  EXPECT_EQ(ids[5], 50258);
  EXPECT_EQ(tok->decode(ids), "user\nhi");
  EXPECT_EQ(tok->decode(ids, true), "<|endoftext|><|im_start|>user\nhi<|im_end|>");
  // Without parse_special the markers are text; the non-special added token still matches.
  auto plain = tok->encode("<|im_end|> lmkit", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 50258), 0);
  EXPECT_EQ(plain.back(), 50259);
  EXPECT_EQ(tok->decode(plain), "<|im_end|> lmkit");
  // Leftmost-longest: "<|im" only where no longer token matches.
  EXPECT_EQ(tok->encode("<|im<|im_end|>", false, true), (std::vector<int32_t>{50261, 50258}));
  // lstrip: the space before <mask> belongs to the token.
  auto m = tok->encode("a <mask>", false, true);
  EXPECT_EQ(m, (std::vector<int32_t>{64, 50260}));
}

TEST(TokenizerHf, ChatTemplateStringAndJinjaFile) {
  LMKIT_REQUIRE_SHARED();
  GGUFFile f = GGUFFile::open(vocab_path("gpt-2"));
  json j = byte_level_tokenizer_json(f, "gpt-2", false);
  {
    TempDir dir("tok-hf-tmpl");
    write_text(dir / "tokenizer_config.json", json{{"chat_template", "A{{x}}"}}.dump());
    EXPECT_EQ(load_json(dir, j)->chat_template(), "A{{x}}");
  }
  {
    TempDir dir("tok-hf-jinja");
    write_text(dir / "chat_template.jinja", "B{{y}}");
    auto tok = load_json(dir, j);
    EXPECT_EQ(tok->chat_template(), "B{{y}}");
    EXPECT_FALSE(tok->add_bos());  // nothing asks for BOS
    // tokenizer_load() on the folder picks tokenizer.json.
    EXPECT_EQ(tokenizer_load(dir.str())->encode("Hello world", false),
              (std::vector<int32_t>{15496, 995}));
  }
}

TEST(TokenizerHf, MalformedFilesGiveErrorsNamingTheFile) {
  TempDir dir("tok-hf-bad");
  auto expect_error = [&](const std::string &text, const std::string &needle) {
    write_text(dir / "tokenizer.json", text);
    try {
      tokenizer_from_hf(dir / "tokenizer.json");
      ADD_FAILURE() << "no error for " << text.substr(0, 60);
    } catch (const Error &e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  };
  expect_error("\x01\x02garbage{{{", "not valid JSON");
  expect_error("{\"version\": \"1.0\"}", "no \"model\"");
  expect_error("{\"model\": {\"type\": \"BPE\", \"vocab\": 5, \"merges\": []}}", "model.vocab");
  expect_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}",
               "unexpected tokenizer.json content");
  expect_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}",
               "not in the vocabulary");
  expect_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]]}}", "Unigram");
  expect_error(
      "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"[a-\"}, \"behavior\": "
      "\"Isolated\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
      "bad regex");
  EXPECT_THROW(tokenizer_from_hf(dir / "missing.json"), Error);
}

}  // namespace
}  // namespace lmkit::test
