// Vocabularies between GGUF metadata, Hugging Face tokenizer files and llama2.c tokenizers.
#include "compress/vocab.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap.h"
#include "io/atomic_file.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

namespace lmkit::compress {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

const std::string kSpace = "\xE2\x96\x81";  // "▁"

bool is_byte_piece(const std::string &p) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  return p.size() == 6 && p.compare(0, 3, "<0x") == 0 && hex(p[3]) && hex(p[4]) && p[5] == '>';
}

std::string replace_all(std::string s, const std::string &from, const std::string &to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size()))
    s.replace(p, from.size(), to);
  return s;
}

// Byte offsets of the UTF-8 character boundaries inside s (excluding 0 and s.size()).
std::vector<size_t> char_boundaries(const std::string &s) {
  std::vector<size_t> out;
  for (size_t i = 1; i < s.size(); ++i)
    if ((uint8_t(s[i]) & 0xC0) != 0x80) out.push_back(i);
  return out;
}

// Keys vocab_to_gguf writes from the fields (the rest of a GGUF's tokenizer.* keys is `extra`).
const std::set<std::string> &handled_keys() {
  static const std::set<std::string> k = {"tokenizer.ggml.model",
                                          "tokenizer.ggml.pre",
                                          "tokenizer.ggml.tokens",
                                          "tokenizer.ggml.scores",
                                          "tokenizer.ggml.token_type",
                                          "tokenizer.ggml.merges",
                                          "tokenizer.ggml.bos_token_id",
                                          "tokenizer.ggml.eos_token_id",
                                          "tokenizer.ggml.unknown_token_id",
                                          "tokenizer.ggml.padding_token_id",
                                          "tokenizer.ggml.add_bos_token",
                                          "tokenizer.ggml.add_eos_token",
                                          "tokenizer.ggml.add_space_prefix",
                                          "tokenizer.chat_template"};
  return k;
}

// The "a b" merges of a tokenizer.json (either "a b" strings or [a, b] pairs).
std::vector<std::pair<std::string, std::string>> hf_merges(const nlohmann::json &model,
                                                           const std::string &src) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto &m : model.value("merges", nlohmann::json::array())) {
    if (m.is_array() && m.size() == 2) {
      out.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else if (m.is_string()) {
      std::string s = m.get<std::string>();
      size_t sp = s.find(' ', 1);
      LMKIT_CHECK(sp != std::string::npos, src, ": merge '", s, "' is not two tokens");
      out.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else {
      fail(src, ": merge ", m.dump(), " is neither \"a b\" nor [a, b]");
    }
  }
  return out;
}

// The pre_tokenizer section of a tokenizer.json for a GGUF pre-tokenizer preset, or null when
// lmkit knows no JSON form for it. Built from the preset's own description (tokenizer/), so
// the regexes are not repeated here; vocab_to_hf checks the result loads as the same preset.
ojson pretokenizer_json(const std::string &pre) {
  tok::PreTokenizer p;
  if (!tok::pretokenizer_preset(pre, p)) return nullptr;
  const std::string d = p.describe();
  auto byte_level = [](bool use_regex) {
    return ojson{{"type", "ByteLevel"},
                 {"add_prefix_space", false},
                 {"trim_offsets", true},
                 {"use_regex", use_regex}};
  };
  if (d == str_cat("ByteLevel(", false, ",", true, ")")) return byte_level(true);
  if (d == str_cat("Digits(", true, ")|ByteLevel(", false, ",", true, ")"))
    return {
        {"type", "Sequence"},
        {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)}}};
  // One regex split, isolated, then the byte mapping (llama3, qwen2, gpt-4o, tekken).
  const std::string head = "Split(";
  const std::string tail = str_cat(",", 1, ",", false, ")|ByteLevel(", false, ",", false, ")");
  if (d.size() > head.size() + tail.size() && d.compare(0, head.size(), head) == 0 &&
      d.compare(d.size() - tail.size(), tail.size(), tail) == 0) {
    const std::string pattern = d.substr(head.size(), d.size() - head.size() - tail.size());
    return {{"type", "Sequence"},
            {"pretokenizers",
             {{{"type", "Split"},
               {"pattern", {{"Regex", pattern}}},
               {"behavior", "Isolated"},
               {"invert", false}},
              byte_level(false)}}};
  }
  return nullptr;
}

// SentencePiece-style merges from scores, as Hugging Face's converters derive them: every split
// of a piece into two pieces of the vocabulary, ordered by the piece's score (highest first).
std::vector<std::pair<std::string, std::string>> merges_from_scores(const Vocab &v) {
  std::unordered_map<std::string, int32_t> id;
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (v.types[i] == 1) id.emplace(v.tokens[i], int32_t(i));
  struct M {
    float score;
    int32_t piece, left, right;
  };
  std::vector<M> ms;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (v.types[i] != 1) continue;
    const std::string &p = v.tokens[i];
    for (size_t b : char_boundaries(p)) {
      auto l = id.find(p.substr(0, b)), r = id.find(p.substr(b));
      if (l != id.end() && r != id.end())
        ms.push_back({v.scores[i], int32_t(i), l->second, r->second});
    }
  }
  std::stable_sort(ms.begin(), ms.end(), [](const M &a, const M &b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.piece != b.piece) return a.piece < b.piece;
    return std::pair(a.left, a.right) < std::pair(b.left, b.right);
  });
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(ms.size());
  for (const M &m : ms) out.emplace_back(v.tokens[size_t(m.left)], v.tokens[size_t(m.right)]);
  return out;
}

std::string json_dump(const ojson &j, const std::string &what) {
  try {
    return j.dump(2) + "\n";
  } catch (const nlohmann::json::exception &e) {
    fail(what, ": cannot be written as JSON (", e.what(), "); a token is not valid UTF-8?");
  }
}

ojson token_or_null(const Vocab &v, int32_t id) {
  if (id < 0 || size_t(id) >= v.tokens.size()) return nullptr;
  return v.tokens[size_t(id)];
}

}  // namespace

// ---- readers ---------------------------------------------------------------------------------

Vocab vocab_from_gguf(const GGUFFile &f) {
  Vocab v;
  v.model = f.get_str("tokenizer.ggml.model");
  v.tokens = f.get_str_array("tokenizer.ggml.tokens");
  const size_t n = v.tokens.size();
  if (f.has("tokenizer.ggml.scores")) v.scores = f.get_f32_array("tokenizer.ggml.scores");
  if (f.has("tokenizer.ggml.token_type"))
    v.types = f.get_i32_array("tokenizer.ggml.token_type");
  else
    v.types.assign(n, 1);
  LMKIT_CHECK(v.types.size() == n && (v.scores.empty() || v.scores.size() == n), f.path(),
              ": tokenizer.ggml.token_type/scores do not match the ", n, " tokens");
  if (f.has("tokenizer.ggml.merges")) v.merges = f.get_str_array("tokenizer.ggml.merges");
  v.pre = f.get_str("tokenizer.ggml.pre", v.model == "gpt2" ? "default" : "");
  v.bos_id = int32_t(f.get_int("tokenizer.ggml.bos_token_id", -1));
  v.eos_id = int32_t(f.get_int("tokenizer.ggml.eos_token_id", -1));
  v.unk_id = int32_t(f.get_int("tokenizer.ggml.unknown_token_id", -1));
  v.pad_id = int32_t(f.get_int("tokenizer.ggml.padding_token_id", -1));
  // The defaults lmkit's and llama.cpp's loaders assume per model.
  const bool spm = v.model == "llama";
  v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", spm || v.model == "bert");
  v.add_eos = f.get_bool("tokenizer.ggml.add_eos_token", v.model == "bert");
  v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", true);
  v.chat_template = f.get_str("tokenizer.chat_template", "");
  for (const auto &[key, val] : f.metadata())
    if (key.rfind("tokenizer.", 0) == 0 && !handled_keys().count(key))
      v.extra.emplace_back(key, val);
  return v;
}

Vocab vocab_from_hf(const std::string &dir) {
  const auto tok = tokenizer_from_hf(dir);
  const std::string src = (fs::path(dir) / "tokenizer.json").string();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(src));
  } catch (const nlohmann::json::exception &e) {
    fail(src, ": not valid JSON (", e.what(), ")");
  }
  Vocab v;
  v.hf_dir = dir;
  const int32_t n = tok->n_vocab();
  for (int32_t id = 0; id < n; ++id) {
    std::string p = tok->piece(id);
    int32_t t = int32_t(tok->type(id));
    if (p.empty()) {  // an id nobody names: llama.cpp's filler
      p = str_cat("[PAD", id, "]");
      t = 5;
    }
    v.tokens.push_back(std::move(p));
    v.types.push_back(t);
    if (t == 2 && v.unk_id < 0) v.unk_id = id;
  }
  v.bos_id = tok->bos_id();
  v.eos_id = tok->eos_id();
  v.add_bos = tok->add_bos();
  v.add_eos = tok->add_eos();
  v.chat_template = tok->chat_template();
  const auto merges = hf_merges(j.at("model"), src);
  if (tok->kind() == TokenizerKind::ByteLevelBPE) {
    v.model = "gpt2";
    v.pre = tok->pre();
    for (const auto &[a, b] : merges) v.merges.push_back(a + " " + b);
  } else if (tok->kind() == TokenizerKind::SentencePieceBPE) {
    v.model = "llama";
    v.add_space_prefix = tok->strips_leading_space();
    // The piece a merge makes gets -(rank + 1): llama.cpp merges the adjacent pair whose
    // concatenation scores highest, which is then the pair of lowest rank. Pieces no merge makes
    // (single characters, bytes, specials) score below every merge.
    std::unordered_map<std::string, int32_t> id;
    for (int32_t i = 0; i < n; ++i) id.emplace(v.tokens[size_t(i)], i);
    v.scores.assign(size_t(n), -1e9f);
    std::vector<bool> made(size_t(n), false);
    for (size_t r = 0; r < merges.size(); ++r) {
      auto it = id.find(merges[r].first + merges[r].second);
      if (it == id.end() || made[size_t(it->second)]) continue;
      made[size_t(it->second)] = true;
      v.scores[size_t(it->second)] = -float(r + 1);
    }
  } else {
    fail(dir, ": lmkit converts SentencePiece-style and byte-level BPE tokenizers, not WordPiece");
  }
  return v;
}

Vocab vocab_from_llama2c(const std::string &path, int64_t n_vocab) {
  const std::string data = read_file(path);
  size_t pos = 0;
  auto read4 = [&](void *dst) {
    LMKIT_CHECK(data.size() - pos >= 4, path, ": truncated llama2.c tokenizer");
    std::memcpy(dst, data.data() + pos, 4);
    pos += 4;
  };
  int32_t max_len = 0;
  read4(&max_len);
  Vocab v;
  v.model = "llama";
  for (int64_t i = 0; i < n_vocab; ++i) {
    float score;
    int32_t len;
    read4(&score);
    read4(&len);
    LMKIT_CHECK(len >= 0 && size_t(len) <= data.size() - pos, path, ": token ", i, " is truncated");
    std::string p = data.substr(pos, size_t(len));
    pos += size_t(len);
    // llama2.c's tokenizer.py writes spaces for "▁" and "\n<s>\n" / "\n</s>\n" for BOS/EOS.
    int32_t t = 1;
    if (i == 0) {
      t = 2;
    } else if (i == 1 || i == 2) {
      p = i == 1 ? "<s>" : "</s>";
      t = 3;
    } else if (is_byte_piece(p)) {
      t = 6;
    } else {
      p = replace_all(p, " ", kSpace);
    }
    v.tokens.push_back(std::move(p));
    v.scores.push_back(score);
    v.types.push_back(t);
  }
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  v.add_bos = true;  // run.c always starts with BOS
  v.add_space_prefix = true;
  return v;
}

void vocab_pad(Vocab &v, int64_t n) {
  LMKIT_CHECK(int64_t(v.tokens.size()) <= n, "the tokenizer has ", v.tokens.size(),
              " tokens but the model only ", n, " embedding rows");
  for (int64_t i = int64_t(v.tokens.size()); i < n; ++i) {
    v.tokens.push_back(str_cat("[PAD", i, "]"));
    v.types.push_back(5);
    if (!v.scores.empty()) v.scores.push_back(-1e9f);
  }
}

// ---- writers ---------------------------------------------------------------------------------

void vocab_to_gguf(const Vocab &v, GGUFWriter &w) {
  w.set_str("tokenizer.ggml.model", v.model);
  if (v.model == "gpt2") {
    tok::PreTokenizer p;
    LMKIT_CHECK(tok::pretokenizer_preset(v.pre, p), "the tokenizer's pre-tokenizer ('", v.pre,
                "') matches none of the presets GGUF readers know (",
                tok::pretokenizer_preset_names(), "), so a GGUF cannot describe it");
    w.set_str("tokenizer.ggml.pre", v.pre);
  } else if (!v.pre.empty()) {
    w.set_str("tokenizer.ggml.pre", v.pre);
  } else if (v.model == "llama") {
    w.set_str("tokenizer.ggml.pre", "default");
  }
  w.set_str_array("tokenizer.ggml.tokens", v.tokens);
  if (!v.scores.empty()) w.set_f32_array("tokenizer.ggml.scores", v.scores);
  w.set_i32_array("tokenizer.ggml.token_type", v.types);
  if (!v.merges.empty()) w.set_str_array("tokenizer.ggml.merges", v.merges);
  if (v.bos_id >= 0) w.set_u32("tokenizer.ggml.bos_token_id", uint32_t(v.bos_id));
  if (v.eos_id >= 0) w.set_u32("tokenizer.ggml.eos_token_id", uint32_t(v.eos_id));
  if (v.unk_id >= 0) w.set_u32("tokenizer.ggml.unknown_token_id", uint32_t(v.unk_id));
  if (v.pad_id >= 0) w.set_u32("tokenizer.ggml.padding_token_id", uint32_t(v.pad_id));
  w.set_bool("tokenizer.ggml.add_bos_token", v.add_bos);
  w.set_bool("tokenizer.ggml.add_eos_token", v.add_eos);
  if (v.model == "llama") w.set_bool("tokenizer.ggml.add_space_prefix", v.add_space_prefix);
  if (!v.chat_template.empty()) w.set_str("tokenizer.chat_template", v.chat_template);
  for (const auto &[key, val] : v.extra) w.set(key, val);
}

void vocab_to_hf(const Vocab &v, const std::string &dir) {
  if (!v.hf_dir.empty()) {
    // A Hugging Face source: its own files, byte for byte.
    for (const char *name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                             "tokenizer.model", "chat_template.jinja", "chat_template.json"}) {
      const fs::path p = fs::path(v.hf_dir) / name;
      if (fs::exists(p)) write_file_atomic((fs::path(dir) / name).string(), read_file(p.string()));
    }
    return;
  }
  LMKIT_CHECK(v.model == "gpt2" || v.model == "llama", "cannot write a tokenizer.json for a '",
              v.model, "' tokenizer (lmkit writes SentencePiece-style and byte-level BPE)");
  const bool spm = v.model == "llama";
  ojson added = ojson::array();
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const int32_t t = v.types[i];
    if (t != 2 && t != 3 && t != 4) continue;
    added.push_back({{"id", i},
                     {"content", v.tokens[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", t == 4},
                     {"special", t != 4}});
  }
  ojson vocab = ojson::object();
  for (size_t i = 0; i < v.tokens.size(); ++i) vocab[v.tokens[i]] = i;
  ojson merges = ojson::array();
  if (spm) {
    for (const auto &[a, b] : merges_from_scores(v)) merges.push_back({a, b});
  } else {
    for (const std::string &m : v.merges) {
      size_t sp = m.find(' ', 1);
      LMKIT_CHECK(sp != std::string::npos, "merge '", m, "' is not two tokens");
      merges.push_back({m.substr(0, sp), m.substr(sp + 1)});
    }
  }
  ojson post = nullptr;
  if (v.add_bos && v.bos_id >= 0) {
    const std::string bos = v.tokens[size_t(v.bos_id)];
    ojson single = ojson::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                 {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}});
    ojson pair = single;
    pair.push_back({{"SpecialToken", {{"id", bos}, {"type_id", 1}}}});
    pair.push_back({{"Sequence", {{"id", "B"}, {"type_id", 1}}}});
    ojson special = ojson::object();
    special[bos] = {
        {"id", bos}, {"ids", ojson::array({v.bos_id})}, {"tokens", ojson::array({bos})}};
    post = ojson::object();
    post["type"] = "TemplateProcessing";
    post["single"] = single;
    post["pair"] = pair;
    post["special_tokens"] = special;
  }
  ojson tj;
  tj["version"] = "1.0";
  tj["truncation"] = nullptr;
  tj["padding"] = nullptr;
  tj["added_tokens"] = added;
  if (spm) {
    ojson norms = ojson::array();
    if (v.add_space_prefix) norms.push_back({{"type", "Prepend"}, {"prepend", kSpace}});
    norms.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}});
    tj["normalizer"] = {{"type", "Sequence"}, {"normalizers", norms}};
    tj["pre_tokenizer"] = nullptr;
    tj["post_processor"] = post;
    ojson decs =
        ojson::array({{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}},
                      {{"type", "ByteFallback"}},
                      {{"type", "Fuse"}}});
    if (v.add_space_prefix)
      decs.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    tj["decoder"] = {{"type", "Sequence"}, {"decoders", decs}};
  } else {
    ojson pre = pretokenizer_json(v.pre);
    LMKIT_CHECK(!pre.is_null(), "cannot write the pre-tokenizer '", v.pre,
                "' as tokenizer.json (lmkit writes gpt-2, starcoder and single-regex presets "
                "such as llama3 and qwen2)");
    tj["normalizer"] = nullptr;
    tj["pre_tokenizer"] = pre;
    tj["post_processor"] = post.is_null() ? ojson{{"type", "ByteLevel"},
                                                  {"add_prefix_space", false},
                                                  {"trim_offsets", false},
                                                  {"use_regex", false}}
                                          : post;
    tj["decoder"] = {{"type", "ByteLevel"},
                     {"add_prefix_space", true},
                     {"trim_offsets", true},
                     {"use_regex", true}};
  }
  bool any_byte = false;
  for (int32_t t : v.types) any_byte = any_byte || t == 6;
  tj["model"] = {
      {"type", "BPE"},
      {"dropout", nullptr},
      {"unk_token", token_or_null(v, v.unk_id)},
      {"continuing_subword_prefix", nullptr},
      {"end_of_word_suffix", nullptr},
      {"fuse_unk", spm},
      {"byte_fallback", spm && any_byte},
      {"ignore_merges", !spm && (v.pre == "llama3" || v.pre == "llama-bpe" || v.pre == "llama-v3")},
      {"vocab", vocab},
      {"merges", merges}};
  ojson cfg;
  cfg["add_bos_token"] = v.add_bos;
  cfg["add_eos_token"] = v.add_eos;
  cfg["bos_token"] = token_or_null(v, v.bos_id);
  cfg["eos_token"] = token_or_null(v, v.eos_id);
  cfg["unk_token"] = token_or_null(v, v.unk_id);
  if (v.pad_id >= 0) cfg["pad_token"] = token_or_null(v, v.pad_id);
  if (!v.chat_template.empty()) cfg["chat_template"] = v.chat_template;
  cfg["clean_up_tokenization_spaces"] = false;
  cfg["tokenizer_class"] = spm ? "LlamaTokenizerFast" : "PreTrainedTokenizerFast";
  write_file_atomic((fs::path(dir) / "tokenizer.json").string(), json_dump(tj, "tokenizer.json"));
  write_file_atomic((fs::path(dir) / "tokenizer_config.json").string(),
                    json_dump(cfg, "tokenizer_config.json"));
  // Read it back: the same vocabulary and, for byte-level BPE, the same pre-tokenizer.
  const auto back = tokenizer_from_hf(dir);
  LMKIT_CHECK(back->n_vocab() == int32_t(v.tokens.size()), dir, "/tokenizer.json: wrote ",
              v.tokens.size(), " tokens, read back ", back->n_vocab());
  if (!spm) {
    tok::PreTokenizer want, got;
    tok::pretokenizer_preset(v.pre, want);
    LMKIT_CHECK(tok::pretokenizer_preset(back->pre(), got) && got.describe() == want.describe(),
                dir, "/tokenizer.json: the pre-tokenizer reads back as '", back->pre(), "', not '",
                v.pre, "'");
  }
}

}  // namespace lmkit::compress
