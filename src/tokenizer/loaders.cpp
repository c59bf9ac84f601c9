// Tokenizer loaders: GGUF metadata, Hugging Face tokenizer.json (+ tokenizer_config.json,
// generation_config.json, chat_template.jinja) and llama2.c tokenizer .bin files. Not a writer:
// lmkit saves tokenizers by copying the files it was given.
#include <cctype>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap.h"
#include "io/gguf.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace lmkit {

using tok::AddedToken;
using tok::TokenizerSetup;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kSpace = "\xE2\x96\x81";  // "▁"

bool is_byte_piece(const std::string &p) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  return p.size() == 6 && p.compare(0, 3, "<0x") == 0 && hex(p[3]) && hex(p[4]) && p[5] == '>';
}

TokenType token_type_from_gguf(int32_t t) {
  switch (t) {
    case 2:
      return TokenType::Unknown;
    case 3:
      return TokenType::Control;
    case 4:
      return TokenType::UserDefined;
    case 5:
      return TokenType::Unused;
    case 6:
      return TokenType::Byte;
    default:
      return TokenType::Normal;  // 1 and llama.cpp's 0 ("undefined")
  }
}

// Control, unknown and user-defined tokens are matched literally in the text (user-defined
// ones always, the others when parse_special), as llama.cpp does.
std::vector<AddedToken> added_from_types(const std::vector<std::string> &pieces,
                                         const std::vector<TokenType> &types) {
  std::vector<AddedToken> out;
  for (size_t id = 0; id < pieces.size(); ++id) {
    TokenType t = types[id];
    if (t != TokenType::Control && t != TokenType::UserDefined && t != TokenType::Unknown) continue;
    AddedToken a;
    a.id = int32_t(id);
    a.content = pieces[id];
    a.special = t != TokenType::UserDefined;
    out.push_back(std::move(a));
  }
  return out;
}

// Resolves "a b" merges to (a, b, ab) ids.
std::vector<std::array<int32_t, 3>> resolve_merges(
    const std::string &src, const tok::StringIdMap &ids,
    const std::vector<std::pair<std::string, std::string>> &merges) {
  std::vector<std::array<int32_t, 3>> out;
  out.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto &[a, b] = merges[r];
    int32_t ia = ids.find(a), ib = ids.find(b), im = ids.find(a + b);
    LMKIT_CHECK(ia >= 0 && ib >= 0, src, ": merge ", r, " '", a, " ", b,
                "' uses a token that is not in the vocabulary");
    LMKIT_CHECK(im >= 0, src, ": merge ", r, " '", a, " ", b, "' makes '", a + b,
                "', which is not in the vocabulary");
    out.push_back({ia, ib, im});
  }
  return out;
}

tok::StringIdMap piece_ids(const std::vector<std::string> &pieces) {
  tok::StringIdMap m;
  for (size_t id = 0; id < pieces.size(); ++id) m.insert(pieces[id], int32_t(id));
  return m;
}

tok::NormalizerStep prepend_step(const std::string &s) {
  tok::NormalizerStep st;
  st.kind = tok::NormalizerStep::Kind::Prepend;
  st.text = s;
  return st;
}

tok::NormalizerStep replace_step(const std::string &from, const std::string &to, bool literal,
                                 const std::string &what) {
  tok::NormalizerStep st;
  st.kind = tok::NormalizerStep::Kind::Replace;
  st.regex = std::make_shared<tok::Regex>(from, what, literal);
  st.text = to;
  return st;
}

tok::NormalizerStep bert_step(bool lowercase, bool strip_accents) {
  tok::NormalizerStep st;
  st.kind = tok::NormalizerStep::Kind::Bert;
  st.lowercase = lowercase;
  st.strip_accents = strip_accents;
  return st;
}

tok::PreTokenizer bert_pretokenizer() {
  tok::PreTokenizer p;
  tok::PreTokStep s;
  s.kind = tok::PreTokStep::Kind::Bert;
  p.add(s);
  return p;
}

}  // namespace

// =============================================================================================
// GGUF

std::unique_ptr<Tokenizer> tokenizer_from_gguf(const GGUFFile &f) {
  const std::string &src = f.path();
  const std::string model = f.get_str("tokenizer.ggml.model");
  TokenizerSetup s;
  s.source = src;
  s.pieces = f.get_str_array("tokenizer.ggml.tokens");
  size_t n = s.pieces.size();
  LMKIT_CHECK(n > 0, src, ": tokenizer.ggml.tokens is empty");
  s.types.assign(n, TokenType::Normal);
  if (f.has("tokenizer.ggml.token_type")) {
    std::vector<int32_t> t = f.get_i32_array("tokenizer.ggml.token_type");
    LMKIT_CHECK(t.size() == n, src, ": tokenizer.ggml.token_type has ", t.size(), " entries for ",
                n, " tokens");
    for (size_t k = 0; k < n; ++k) s.types[k] = token_type_from_gguf(t[k]);
  }
  auto id_key = [&](const char *key, int64_t def) -> int32_t {
    int64_t v = f.get_int(key, def);
    LMKIT_CHECK(v >= -1 && v < int64_t(n), src, ": ", key, " = ", v, " is outside the ", n,
                "-token vocabulary");
    return int32_t(v);
  };
  s.bos_id = id_key("tokenizer.ggml.bos_token_id", -1);
  s.eos_id = id_key("tokenizer.ggml.eos_token_id", -1);
  int32_t unk = id_key("tokenizer.ggml.unknown_token_id", -1);
  for (const char *key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    int32_t id = id_key(key, -1);
    if (id >= 0) s.end_of_generation.push_back(id);
  }
  s.chat_template = f.get_str("tokenizer.chat_template", "");
  s.added = added_from_types(s.pieces, s.types);

  if (model == "llama") {
    s.kind = TokenizerKind::SentencePieceBPE;
    tok::SpmModel m;
    m.scores = f.get_f32_array("tokenizer.ggml.scores");
    LMKIT_CHECK(m.scores.size() == n, src, ": tokenizer.ggml.scores has ", m.scores.size(),
                " entries for ", n, " tokens");
    m.unk_id = unk >= 0 ? unk : 0;
    bool prefix = f.get_bool("tokenizer.ggml.add_space_prefix", true);
    // llama.cpp puts the dummy-prefix space in front of every stretch of text (after each
    // special token too) and writes spaces as "▁".
    if (prefix) s.normalizer.add(prepend_step(kSpace));
    s.normalizer.add(replace_step(" ", kSpace, true, src));
    s.strip_leading_space = prefix;
    s.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", true);
    s.add_eos = f.get_bool("tokenizer.ggml.add_eos_token", false);
    return tok::make_spm_bpe(std::move(s), std::move(m));
  }
  if (model == "gpt2") {
    s.kind = TokenizerKind::ByteLevelBPE;
    s.pre = f.get_str("tokenizer.ggml.pre", "default");
    if (!tok::pretokenizer_preset(s.pre, s.pretokenizer))
      fail(src, ": pre-tokenizer '", s.pre,
           "' (tokenizer.ggml.pre) is not supported; known: ", tok::pretokenizer_preset_names());
    const auto &merge_strs = f.get_str_array("tokenizer.ggml.merges");
    std::vector<std::pair<std::string, std::string>> merges;
    merges.reserve(merge_strs.size());
    for (size_t r = 0; r < merge_strs.size(); ++r) {
      const std::string &m = merge_strs[r];
      size_t sp = m.find(' ', 1);
      LMKIT_CHECK(sp != std::string::npos, src, ": merge ", r, " '", m,
                  "' is not two tokens separated by a space");
      merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
    }
    tok::ByteBpeModel m;
    m.merges = resolve_merges(src, piece_ids(s.pieces), merges);
    m.unk_id = unk;
    m.ignore_merges = s.pre == "llama3" || s.pre == "llama-bpe" || s.pre == "llama-v3";
    s.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", false);
    s.add_eos = f.get_bool("tokenizer.ggml.add_eos_token", false);
    return tok::make_byte_bpe(std::move(s), std::move(m));
  }
  if (model == "bert") {
    s.kind = TokenizerKind::WordPiece;
    tok::WordPieceModel m;
    bool hf_form = false;
    for (const auto &p : s.pieces) hf_form = hf_form || p.compare(0, 2, "##") == 0;
    m.ggml_convention = !hf_form;
    int32_t cls = id_key("tokenizer.ggml.cls_token_id", s.bos_id);
    int32_t sep = id_key("tokenizer.ggml.seperator_token_id",  // sic: llama.cpp's key name
                         id_key("tokenizer.ggml.separator_token_id", s.eos_id));
    s.bos_id = cls;
    s.eos_id = sep;
    s.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", true);
    s.add_eos = f.get_bool("tokenizer.ggml.add_eos_token", true);
    if (unk < 0)
      for (size_t k = 0; k < n && unk < 0; ++k)
        if (s.pieces[k] == "[UNK]") unk = int32_t(k);
    m.unk_id = unk;
    // llama.cpp's WPM tokenizer is BERT-uncased: lowercase, strip accents, split CJK.
    s.normalizer.add(bert_step(true, true));
    s.pretokenizer = bert_pretokenizer();
    s.strip_leading_space = true;
    return tok::make_wordpiece(std::move(s), std::move(m));
  }
  fail(src, ": tokenizer model '", model,
       "' (tokenizer.ggml.model) is not supported; lmkit reads llama, gpt2 and bert");
}

// =============================================================================================
// Hugging Face tokenizer.json

namespace {

json parse_json_file(const std::string &path) {
  std::string text = read_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception &e) {
    fail(path, ": not valid JSON (", e.what(), ")");
  }
}

std::string str_or(const json &j, const char *key, const std::string &def) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : def;
}
bool bool_or(const json &j, const char *key, bool def) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : def;
}

// "bos_token": "<s>" or {"content": "<s>", ...}; "" when absent or null.
std::string token_content(const json &cfg, const char *key) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) return str_or(*it, "content", "");
  return "";
}

tok::SplitBehavior parse_behavior(const std::string &b, const std::string &src) {
  using B = tok::SplitBehavior;
  std::string l;
  for (char c : b) l += char(std::tolower(uint8_t(c)));
  if (l == "removed") return B::Removed;
  if (l == "isolated") return B::Isolated;
  if (l == "mergedwithprevious" || l == "merged_with_previous") return B::MergedWithPrevious;
  if (l == "mergedwithnext" || l == "merged_with_next") return B::MergedWithNext;
  if (l == "contiguous") return B::Contiguous;
  fail(src, ": unknown split behavior '", b, "'");
}

// {"String": " "} or {"Regex": "\\s+"} -> (pattern, literal)
std::pair<std::string, bool> parse_pattern(const json &p, const std::string &src) {
  if (p.contains("String")) return {p.at("String").get<std::string>(), true};
  if (p.contains("Regex")) return {p.at("Regex").get<std::string>(), false};
  fail(src, ": pattern ", p.dump(), " is neither {\"String\": ...} nor {\"Regex\": ...}");
}

void parse_normalizer(const json &j, tok::Normalizer &out, const std::string &src) {
  if (j.is_null()) return;
  const std::string type = j.at("type").get<std::string>();
  using K = tok::NormalizerStep::Kind;
  if (type == "Sequence") {
    const json &list = j.at("normalizers");
    for (size_t k = 0; k < list.size(); ++k) {
      const json &n = list[k];
      // NFD is only meaningful to us as the first half of "strip accents".
      if (n.is_object() && str_or(n, "type", "") == "NFD") {
        LMKIT_CHECK(k + 1 < list.size() && str_or(list[k + 1], "type", "") == "StripAccents", src,
                    ": normalizer NFD is supported only when followed by StripAccents");
        continue;
      }
      parse_normalizer(n, out, src);
    }
  } else if (type == "Prepend") {
    out.add(prepend_step(j.at("prepend").get<std::string>()));
  } else if (type == "Replace") {
    auto [pat, literal] = parse_pattern(j.at("pattern"), src);
    out.add(replace_step(pat, j.at("content").get<std::string>(), literal, src));
  } else if (type == "Lowercase") {
    tok::NormalizerStep st;
    st.kind = K::Lowercase;
    out.add(st);
  } else if (type == "Strip") {
    tok::NormalizerStep st;
    st.kind = K::Strip;
    st.strip_left = bool_or(j, "strip_left", true);
    st.strip_right = bool_or(j, "strip_right", true);
    out.add(st);
  } else if (type == "StripAccents") {
    tok::NormalizerStep st;
    st.kind = K::StripAccents;
    out.add(st);
  } else if (type == "BertNormalizer") {
    bool lower = bool_or(j, "lowercase", true);
    tok::NormalizerStep st = bert_step(lower, bool_or(j, "strip_accents", lower));
    st.clean_text = bool_or(j, "clean_text", true);
    st.handle_chinese_chars = bool_or(j, "handle_chinese_chars", true);
    out.add(st);
  } else if (type == "NFC") {
    // NFC composition is skipped: text is taken to be NFC already, which is what
    // editors, browsers and most corpora produce.
  } else {
    fail(src, ": normalizer '", type, "' is not supported");
  }
}

void parse_pretokenizer(const json &j, tok::PreTokenizer &out, const std::string &src) {
  if (j.is_null()) return;
  const std::string type = j.at("type").get<std::string>();
  using K = tok::PreTokStep::Kind;
  tok::PreTokStep st;
  if (type == "Sequence") {
    for (const json &p : j.at("pretokenizers")) parse_pretokenizer(p, out, src);
    return;
  } else if (type == "Split") {
    auto [pat, literal] = parse_pattern(j.at("pattern"), src);
    st.kind = K::Split;
    st.regex = std::make_shared<tok::Regex>(pat, src + ": Split pre-tokenizer", literal);
    st.behavior = parse_behavior(str_or(j, "behavior", "Isolated"), src);
    st.invert = bool_or(j, "invert", false);
  } else if (type == "ByteLevel") {
    st.kind = K::ByteLevel;
    st.add_prefix_space = bool_or(j, "add_prefix_space", true);
    st.use_regex = bool_or(j, "use_regex", true);
  } else if (type == "Digits") {
    st.kind = K::Digits;
    st.individual_digits = bool_or(j, "individual_digits", false);
  } else if (type == "Punctuation") {
    st.kind = K::Punctuation;
    st.behavior = parse_behavior(str_or(j, "behavior", "Isolated"), src);
  } else if (type == "Whitespace") {
    st.kind = K::Whitespace;
  } else if (type == "WhitespaceSplit") {
    st.kind = K::WhitespaceSplit;
  } else if (type == "BertPreTokenizer") {
    st.kind = K::Bert;
  } else if (type == "Metaspace") {
    st.kind = K::Metaspace;
    st.replacement = str_or(j, "replacement", kSpace);
    st.split = bool_or(j, "split", true);
    std::string scheme = str_or(j, "prepend_scheme", "");
    if (scheme.empty()) scheme = bool_or(j, "add_prefix_space", true) ? "always" : "never";
    if (scheme == "always")
      st.prepend = tok::PrependScheme::Always;
    else if (scheme == "first")
      st.prepend = tok::PrependScheme::First;
    else if (scheme == "never")
      st.prepend = tok::PrependScheme::Never;
    else
      fail(src, ": Metaspace prepend_scheme '", scheme, "' is not always/first/never");
  } else if (type == "CharDelimiterSplit") {
    st.kind = K::CharDelimiter;
    std::string d = j.at("delimiter").get<std::string>();
    size_t i = 0;
    LMKIT_CHECK(!d.empty(), src, ": CharDelimiterSplit has an empty delimiter");
    st.delimiter = unicode::next_cp(d, i);
  } else {
    fail(src, ": pre-tokenizer '", type, "' is not supported");
  }
  out.add(std::move(st));
}

// Whether the decoder (or a decoder inside a Sequence) drops the leading space of the text.
bool decoder_strips_space(const json &j) {
  if (!j.is_object()) return false;
  std::string type = str_or(j, "type", "");
  if (type == "Sequence") {
    for (const json &d : j.value("decoders", json::array()))
      if (decoder_strips_space(d)) return true;
    return false;
  }
  if (type == "Strip") return j.value("start", 0) >= 1;
  if (type == "Metaspace") {
    std::string scheme = str_or(j, "prepend_scheme", "");
    if (scheme.empty()) return bool_or(j, "add_prefix_space", true);
    return scheme != "never";
  }
  return type == "WordPiece";
}

bool has_type(const json &j, const std::string &type, const char *list_key) {
  if (!j.is_object()) return false;
  std::string t = str_or(j, "type", "");
  if (t == type) return true;
  if (t == "Sequence" && j.contains(list_key))
    for (const json &x : j.at(list_key))
      if (has_type(x, type, list_key)) return true;
  return false;
}

// The special tokens the post-processor puts around a single sequence.
void parse_post_processor(const json &j, std::vector<int32_t> &prefix, std::vector<int32_t> &suffix,
                          bool &seen) {
  if (!j.is_object()) return;
  std::string type = str_or(j, "type", "");
  if (type == "Sequence") {
    for (const json &p : j.value("processors", json::array()))
      parse_post_processor(p, prefix, suffix, seen);
  } else if (type == "TemplateProcessing") {
    seen = true;
    const json &specials = j.value("special_tokens", json::object());
    bool after = false;
    for (const json &item : j.at("single")) {
      if (item.contains("Sequence")) {
        after = true;
        continue;
      }
      if (!item.contains("SpecialToken")) continue;
      std::string name = item.at("SpecialToken").at("id").get<std::string>();
      auto it = specials.find(name);
      if (it == specials.end()) continue;
      for (const json &id : it->at("ids")) (after ? suffix : prefix).push_back(id.get<int32_t>());
    }
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {
    seen = true;
    prefix.push_back(j.at("cls").at(1).get<int32_t>());
    suffix.push_back(j.at("sep").at(1).get<int32_t>());
  }
}

std::string read_chat_template(const json &cfg, const fs::path &dir) {
  auto it = cfg.find("chat_template");
  if (it != cfg.end()) {
    if (it->is_string()) return it->get<std::string>();
    if (it->is_array() && !it->empty()) {
      // Several named templates: the one called "default", else the first.
      for (const json &t : *it)
        if (str_or(t, "name", "") == "default") return str_or(t, "template", "");
      return str_or(it->at(0), "template", "");
    }
  }
  // Newer transformers save the template beside tokenizer_config.json.
  if (fs::exists(dir / "chat_template.jinja"))
    return read_file((dir / "chat_template.jinja").string());
  if (fs::exists(dir / "chat_template.json")) {
    json t = parse_json_file((dir / "chat_template.json").string());
    return str_or(t, "chat_template", "");
  }
  return "";
}

std::unique_ptr<Tokenizer> build_from_hf(const json &j, const json &cfg, const json &gen,
                                         const fs::path &dir, const std::string &src) {
  LMKIT_CHECK(j.is_object() && j.contains("model"), src,
              ": not a Hugging Face tokenizer.json (no \"model\" section)");
  const json &model = j.at("model");
  std::string type = str_or(model, "type", "");
  if (type.empty()) {
    // Old files leave the model type out; the fields tell them apart.
    if (model.contains("merges"))
      type = "BPE";
    else if (model.contains("continuing_subword_prefix"))
      type = "WordPiece";
    else if (model.contains("vocab") && model.at("vocab").is_array())
      type = "Unigram";
  }
  LMKIT_CHECK(type == "BPE" || type == "WordPiece", src, ": model type '", type,
              "' is not supported; lmkit reads BPE and WordPiece tokenizer.json files");

  TokenizerSetup s;
  s.source = src;
  // Vocabulary: model.vocab plus added tokens (which may extend it).
  const json &vocab = model.at("vocab");
  LMKIT_CHECK(vocab.is_object(), src, ": model.vocab is not an object of piece -> id");
  int64_t n = 0;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    int64_t id = it.value().get<int64_t>();
    LMKIT_CHECK(id >= 0 && id < (int64_t(1) << 24), src, ": token '", it.key(), "' has id ", id);
    n = std::max(n, id + 1);
  }
  const json &added = j.value("added_tokens", json::array());
  for (const json &a : added) {
    int64_t id = a.at("id").get<int64_t>();
    LMKIT_CHECK(id >= 0 && id < (int64_t(1) << 24), src, ": added token has id ", id);
    n = std::max(n, id + 1);
  }
  LMKIT_CHECK(n > 0, src, ": the vocabulary is empty");
  s.pieces.assign(size_t(n), std::string());
  s.types.assign(size_t(n), TokenType::Unused);  // ids nobody names stay unused
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    size_t id = it.value().get<size_t>();
    s.pieces[id] = it.key();
    s.types[id] = TokenType::Normal;
  }
  for (const json &a : added) {
    AddedToken t;
    t.id = a.at("id").get<int32_t>();
    t.content = a.at("content").get<std::string>();
    t.special = bool_or(a, "special", false);
    t.lstrip = bool_or(a, "lstrip", false);
    t.rstrip = bool_or(a, "rstrip", false);
    t.single_word = bool_or(a, "single_word", false);
    s.pieces[size_t(t.id)] = t.content;
    s.types[size_t(t.id)] = t.special ? TokenType::Control : TokenType::UserDefined;
    s.added.push_back(std::move(t));
  }
  tok::StringIdMap ids = piece_ids(s.pieces);
  auto id_of = [&](const std::string &content) { return content.empty() ? -1 : ids.find(content); };

  parse_normalizer(j.value("normalizer", json()), s.normalizer, src);
  parse_pretokenizer(j.value("pre_tokenizer", json()), s.pretokenizer, src);
  const json &decoder = j.value("decoder", json());
  s.strip_leading_space = decoder_strips_space(decoder);

  // Special tokens: the post-processor's template, then tokenizer_config.json, which wins.
  std::vector<int32_t> prefix, suffix;
  bool has_template = false;
  parse_post_processor(j.value("post_processor", json()), prefix, suffix, has_template);
  for (int32_t id : prefix) LMKIT_CHECK(id >= 0 && id < n, src, ": post_processor id ", id);
  for (int32_t id : suffix) LMKIT_CHECK(id >= 0 && id < n, src, ": post_processor id ", id);
  s.bos_id = prefix.empty() ? -1 : prefix.front();
  s.eos_id = suffix.empty() ? -1 : suffix.front();
  s.add_bos = !prefix.empty();
  s.add_eos = !suffix.empty();
  if (int32_t id = id_of(token_content(cfg, "bos_token")); id >= 0) s.bos_id = id;
  if (int32_t id = id_of(token_content(cfg, "eos_token")); id >= 0) s.eos_id = id;
  if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean())
    s.add_bos = cfg["add_bos_token"].get<bool>();
  if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean())
    s.add_eos = cfg["add_eos_token"].get<bool>();
  // generation_config.json names the ids that stop generation (one or a list).
  if (gen.is_object() && gen.contains("eos_token_id")) {
    const json &e = gen.at("eos_token_id");
    std::vector<int32_t> list;
    if (e.is_number_integer()) list.push_back(e.get<int32_t>());
    if (e.is_array())
      for (const json &x : e)
        if (x.is_number_integer()) list.push_back(x.get<int32_t>());
    for (int32_t id : list)
      if (id >= 0 && id < n) s.end_of_generation.push_back(id);
    if (s.eos_id < 0 && !s.end_of_generation.empty()) s.eos_id = s.end_of_generation.front();
  }
  s.chat_template = read_chat_template(cfg, dir);
  // A bare tokenizer.json names no BOS/EOS: fall back on the usual spellings.
  auto first_of = [&](std::initializer_list<const char *> names) {
    for (const char *name : names)
      if (int32_t id = id_of(name); id >= 0) return id;
    return -1;
  };
  if (s.bos_id < 0) s.bos_id = first_of({"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"});
  if (s.eos_id < 0) s.eos_id = first_of({"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"});

  if (type == "WordPiece") {
    s.kind = TokenizerKind::WordPiece;
    tok::WordPieceModel m;
    m.continuing_prefix = str_or(model, "continuing_subword_prefix", "##");
    m.max_input_chars_per_word = model.value("max_input_chars_per_word", int64_t(100));
    m.unk_id = id_of(str_or(model, "unk_token", "[UNK]"));
    if (m.unk_id >= 0) s.types[size_t(m.unk_id)] = TokenType::Unknown;
    // BERT checkpoints without a post-processor still expect [CLS] ... [SEP].
    if (s.bos_id < 0) s.bos_id = id_of("[CLS]");
    if (s.eos_id < 0) s.eos_id = id_of("[SEP]");
    if (!has_template && !cfg.contains("add_bos_token")) s.add_bos = s.add_eos = true;
    return tok::make_wordpiece(std::move(s), std::move(m));
  }

  // BPE
  for (const char *key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    std::string v = str_or(model, key, "");
    LMKIT_CHECK(v.empty(), src, ": BPE with ", key, " '", v, "' is not supported");
  }
  std::vector<std::pair<std::string, std::string>> merges;
  for (const json &m : model.value("merges", json::array())) {
    if (m.is_array()) {
      // Newer files: ["a", "b"].
      LMKIT_CHECK(m.size() == 2, src, ": merge ", m.dump(), " is not a pair");
      merges.emplace_back(m.at(0).get<std::string>(), m.at(1).get<std::string>());
    } else {
      // Older files: "a b" (pieces never contain a plain space).
      std::string str = m.get<std::string>();
      size_t sp = str.find(' ');
      LMKIT_CHECK(sp != std::string::npos && str.find(' ', sp + 1) == std::string::npos, src,
                  ": merge '", str, "' is not two tokens separated by one space");
      merges.emplace_back(str.substr(0, sp), str.substr(sp + 1));
    }
  }
  int32_t unk = id_of(str_or(model, "unk_token", ""));
  if (unk >= 0) s.types[size_t(unk)] = TokenType::Unknown;
  auto resolved = resolve_merges(src, ids, merges);
  // Unknown and control tokens are matched literally like HF's special added tokens.
  if (unk >= 0) {
    bool listed = false;
    for (const auto &a : s.added) listed = listed || a.id == unk;
    if (!listed)
      s.added.push_back(AddedToken{unk, s.pieces[size_t(unk)], true, false, false, false});
  }

  bool byte_level = s.pretokenizer.has_byte_level() || has_type(decoder, "ByteLevel", "decoders");
  if (byte_level) {
    s.kind = TokenizerKind::ByteLevelBPE;
    // Name the pipeline after the GGUF preset it equals, so pre() means the same either way.
    s.pre = "custom";
    std::string mine = s.pretokenizer.describe();
    for (const char *name : {"gpt-2", "llama3", "qwen2", "falcon", "starcoder", "deepseek-llm",
                             "deepseek-coder", "deepseek-v3", "gpt-4o", "tekken"}) {
      tok::PreTokenizer p;
      if (tok::pretokenizer_preset(name, p) && p.describe() == mine) {
        s.pre = name;
        break;
      }
    }
    tok::ByteBpeModel m;
    m.merges = std::move(resolved);
    m.unk_id = unk;
    m.ignore_merges = bool_or(model, "ignore_merges", false);
    return tok::make_byte_bpe(std::move(s), std::move(m));
  }

  s.kind = TokenizerKind::SentencePieceBPE;
  tok::SpmModel m;
  m.use_merges = true;
  m.merges = std::move(resolved);
  m.byte_fallback = bool_or(model, "byte_fallback", false);
  m.fuse_unk = bool_or(model, "fuse_unk", false);
  m.unk_id = unk;
  if (m.byte_fallback)
    for (size_t id = 0; id < s.pieces.size(); ++id)
      if (s.types[id] == TokenType::Normal && is_byte_piece(s.pieces[id]))
        s.types[id] = TokenType::Byte;
  return tok::make_spm_bpe(std::move(s), std::move(m));
}

}  // namespace

std::unique_ptr<Tokenizer> tokenizer_from_hf(const std::string &path) {
  fs::path file = path;
  if (fs::is_directory(file)) file /= "tokenizer.json";
  const std::string src = file.string();
  LMKIT_CHECK(fs::exists(file), src, ": no such file (expected a Hugging Face tokenizer.json)");
  fs::path dir = file.parent_path();
  if (dir.empty()) dir = ".";
  json j = parse_json_file(src);
  json cfg = json::object(), gen = json::object();
  if (fs::exists(dir / "tokenizer_config.json"))
    cfg = parse_json_file((dir / "tokenizer_config.json").string());
  if (fs::exists(dir / "generation_config.json"))
    gen = parse_json_file((dir / "generation_config.json").string());
  if (!cfg.is_object()) cfg = json::object();
  try {
    return build_from_hf(j, cfg, gen, dir, src);
  } catch (const json::exception &e) {
    // A field of the wrong type or a missing one: name the file, keep nlohmann's detail.
    fail(src, ": unexpected tokenizer.json content (", e.what(), ")");
  }
}

// =============================================================================================
// llama2.c tokenizer .bin

std::unique_ptr<Tokenizer> tokenizer_from_llama2c(const std::string &path, int32_t n_vocab) {
  std::string data = read_file(path);
  size_t pos = 0;
  auto read_i32 = [&](const char *what, int64_t index) {
    if (data.size() - pos < 4)
      fail(path, ": truncated llama2.c tokenizer (", what, index >= 0 ? " of token " : "",
           index >= 0 ? std::to_string(index) : std::string(), " missing at byte ", pos, ")");
    int32_t v;
    std::memcpy(&v, data.data() + pos, 4);
    pos += 4;
    return v;
  };
  int32_t max_len = read_i32("max_token_length", -1);
  LMKIT_CHECK(max_len > 0 && max_len <= 65536, path,
              ": not a llama2.c tokenizer (max_token_length ", max_len, ")");
  TokenizerSetup s;
  s.source = path;
  tok::SpmModel m;
  // n_vocab <= 0: read tokens up to the end of the file (tokenizer_load() does not know it).
  for (int64_t i = 0; n_vocab > 0 ? i < n_vocab : pos < data.size(); ++i) {
    int32_t score_bits = read_i32("score", i);
    float score;
    std::memcpy(&score, &score_bits, 4);
    int32_t len = read_i32("length", i);
    LMKIT_CHECK(len >= 0 && len <= max_len, path, ": token ", i, " has length ", len,
                " (max_token_length is ", max_len, "); not a llama2.c tokenizer?");
    if (data.size() - pos < size_t(len))
      fail(path, ": truncated llama2.c tokenizer (token ", i, " needs ", len, " bytes at byte ",
           pos, ", ", data.size() - pos, " left)");
    s.pieces.emplace_back(data, pos, size_t(len));
    pos += size_t(len);
    m.scores.push_back(score);
  }
  LMKIT_CHECK(s.pieces.size() >= 3, path, ": llama2.c tokenizer with only ", s.pieces.size(),
              " tokens");
  // llama2.c's layout: 0 <unk>, 1 <s>, 2 </s>, then <0x00>..<0xFF>, then merged pieces.
  s.types.assign(s.pieces.size(), TokenType::Normal);
  s.types[0] = TokenType::Unknown;
  s.types[1] = s.types[2] = TokenType::Control;
  for (size_t id = 3; id < s.pieces.size(); ++id)
    if (is_byte_piece(s.pieces[id])) s.types[id] = TokenType::Byte;
  s.kind = TokenizerKind::SentencePieceBPE;
  s.bos_id = 1;
  s.eos_id = 2;
  s.add_bos = true;
  s.strip_leading_space = true;
  // run.c's encoder: a dummy-prefix space, pieces written with plain spaces.
  s.normalizer.add(prepend_step(" "));
  m.space_symbol = " ";
  m.unk_id = 0;
  return tok::make_spm_bpe(std::move(s), std::move(m));
}

// =============================================================================================

std::unique_ptr<Tokenizer> tokenizer_load(const std::string &path) {
  fs::path p = path;
  LMKIT_CHECK(fs::exists(p), path, ": no such file or folder");
  if (fs::is_directory(p)) {
    LMKIT_CHECK(fs::exists(p / "tokenizer.json"), path,
                ": folder has no tokenizer.json (lmkit reads Hugging Face tokenizer.json, GGUF "
                "and llama2.c tokenizer .bin files)");
    return tokenizer_from_hf(path);
  }
  std::string ext = p.extension().string();
  for (char &c : ext) c = char(std::tolower(uint8_t(c)));
  if (ext == ".gguf") return tokenizer_from_gguf(GGUFFile::open(path));
  if (ext == ".json") return tokenizer_from_hf(path);
  if (ext == ".bin") return tokenizer_from_llama2c(path, -1);
  fail(path,
       ": cannot tell the tokenizer format from the name (expected a .gguf, a .json, a "
       "llama2.c .bin or a folder with tokenizer.json)");
}

}  // namespace lmkit
