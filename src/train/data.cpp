// Training data: text checks, document splitting, token shards, data_prepare and the DataLoader.
// Not a streaming tokenizer service: inputs are memory-mapped files and the output is a folder.
#include "train/data.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <thread>

#include "core/error.h"
#include "core/mmap.h"
#include "core/rng.h"
#include "core/thread_pool.h"
#include "core/timer.h"
#include "io/atomic_file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "train/progress.h"

namespace lmkit {

namespace fs = std::filesystem;
using json = nlohmann::json;

// =============================================================================================
// Text input

namespace {

bool is_blank_byte(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v' || c == '\n';
}

// Validates that `data` is text (see text_check) and returns how many bytes are invalid UTF-8.
int64_t text_scan(std::string_view data, const std::string &what) {
  LMKIT_CHECK(std::any_of(data.begin(), data.end(), [](char c) { return !is_blank_byte(c); }), what,
              data.empty() ? ": empty file (no text)" : ": no text (only whitespace)");
  if (const void *nul = std::memchr(data.data(), 0, data.size()))
    fail(what, ": binary data, not text (NUL byte at offset ",
         static_cast<const char *>(nul) - data.data(), ")");
  int64_t bad = 0;
  size_t first = std::string_view::npos;
  for (size_t pos = 0; pos < data.size();) {
    size_t k = unicode::utf8_find_invalid(data.substr(pos));
    if (pos + k >= data.size()) break;
    if (first == std::string_view::npos) first = pos + k;
    ++bad;
    pos += k + 1;
  }
  if (bad * 10 > int64_t(data.size()))
    fail(what, ": binary data, not UTF-8 text (",
         (100 * bad + int64_t(data.size()) / 2) / int64_t(data.size()),
         "% of its bytes are invalid UTF-8, the first at offset ", first, ")");
  return bad;
}

}  // namespace

std::string text_check(std::string_view data, const std::string &what, int64_t *n_repaired) {
  int64_t bad = text_scan(data, what);
  if (n_repaired) *n_repaired = bad;
  if (bad == 0) return std::string(data);
  std::string out;
  unicode::utf8_append_repaired(out, data);
  return out;
}

std::string read_text_file(const std::string &path, int64_t *n_repaired) {
  LMKIT_CHECK(fs::exists(path), path, ": no such file");
  LMKIT_CHECK(fs::is_regular_file(path), path, ": not a regular file");
  auto m = MappedFile::open(path);
  return text_check(std::string_view(reinterpret_cast<const char *>(m->data()), m->size()), path,
                    n_repaired);
}

void split_documents(std::string_view text, std::vector<std::string_view> &docs) {
  size_t begin = std::string_view::npos, end = 0;
  for (size_t i = 0; i < text.size();) {
    size_t eol = text.find('\n', i);
    if (eol == std::string_view::npos) eol = text.size();
    bool blank = true;
    for (size_t k = i; k < eol && blank; ++k) blank = is_blank_byte(text[k]);
    if (!blank) {
      if (begin == std::string_view::npos) begin = i;
      end = eol;
    } else if (begin != std::string_view::npos) {
      docs.push_back(text.substr(begin, end - begin));
      begin = std::string_view::npos;
    }
    i = eol + 1;
  }
  if (begin != std::string_view::npos) docs.push_back(text.substr(begin, end - begin));
}

double unigram_entropy(std::span<const int64_t> counts) {
  double n = 0, h = 0;
  for (int64_t c : counts) n += double(c);
  if (n <= 0) return 0;
  for (int64_t c : counts)
    if (c > 0) h -= double(c) / n * std::log(double(c) / n);
  return h;
}

double unigram_cross_entropy(std::span<const int64_t> fit, std::span<const int64_t> eval) {
  LMKIT_CHECK(fit.size() == eval.size(), "unigram_cross_entropy: vocabularies differ");
  double n_fit = 0, n_eval = 0, ce = 0;
  for (int64_t c : fit) n_fit += double(c);
  const double denom = n_fit + double(fit.size());
  for (size_t t = 0; t < eval.size(); ++t) {
    if (eval[t] == 0) continue;
    n_eval += double(eval[t]);
    ce -= double(eval[t]) * std::log((double(fit[t]) + 1.0) / denom);
  }
  return n_eval > 0 ? ce / n_eval : 0;
}

// =============================================================================================
// Token shards

uint64_t shard_checksum(const void *data, size_t n) {
  // Eight bytes per step with multiply-xorshift mixing: several GB/s, and any changed byte
  // changes the result (each step is a bijection of the state for a fixed input word).
  const uint8_t *p = static_cast<const uint8_t *>(data);
  uint64_t h = 0x243F6A8885A308D3ull ^ n;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
  }
  if (n) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w ^ (uint64_t(n) << 56)) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
  }
  h *= 0x94d049bb133111ebull;
  return h ^ (h >> 32);
}

void shard_write(const std::string &path, std::span<const int32_t> tokens, int32_t vocab_size,
                 int token_bytes) {
  LMKIT_CHECK(token_bytes == 2 || token_bytes == 4, path, ": token size ", token_bytes,
              " (must be 2 or 4)");
  LMKIT_CHECK(token_bytes == 4 || vocab_size <= 65536, path, ": a vocabulary of ", vocab_size,
              " tokens does not fit in 2-byte tokens");
  std::vector<uint8_t> data(tokens.size() * size_t(token_bytes));
  for (size_t i = 0; i < tokens.size(); ++i) {
    int32_t t = tokens[i];
    LMKIT_CHECK(t >= 0 && t < vocab_size, path, ": token ", t, " at ", i,
                " is outside the vocabulary of ", vocab_size);
    if (token_bytes == 2) {
      uint16_t v = uint16_t(t);
      std::memcpy(&data[i * 2], &v, 2);
    } else {
      uint32_t v = uint32_t(t);
      std::memcpy(&data[i * 4], &v, 4);
    }
  }
  ShardHeader h{};
  h.magic = kShardMagic;
  h.version = kShardVersion;
  h.token_bytes = uint32_t(token_bytes);
  h.n_tokens = tokens.size();
  h.vocab_size = uint32_t(vocab_size);
  h.checksum = shard_checksum(data.data(), data.size());
  AtomicFile f(path);
  f.write(&h, sizeof h);
  f.write(data.data(), data.size());
  f.commit();
}

TokenShard::TokenShard(const std::string &path) {
  LMKIT_CHECK(fs::exists(path), path, ": token shard is missing");
  file_ = MappedFile::open(path);
  const size_t size = file_->size();
  LMKIT_CHECK(size >= sizeof(ShardHeader), path, ": truncated token shard (", size,
              " bytes, the header alone takes ", sizeof(ShardHeader), ")");
  ShardHeader h;
  std::memcpy(&h, file_->data(), sizeof h);
  LMKIT_CHECK(h.magic == kShardMagic, path, ": not an lmkit token shard (bad magic)");
  LMKIT_CHECK(h.version == kShardVersion, path, ": token shard version ", h.version,
              " is not supported (this lmkit reads version ", kShardVersion, ")");
  LMKIT_CHECK(h.token_bytes == 2 || h.token_bytes == 4, path, ": corrupt token shard (",
              h.token_bytes, " bytes per token)");
  LMKIT_CHECK(h.vocab_size > 0 && (h.token_bytes == 4 || h.vocab_size <= 65536), path,
              ": corrupt token shard (vocabulary size ", h.vocab_size, ")");
  const size_t payload = size - sizeof(ShardHeader);
  LMKIT_CHECK(h.n_tokens <= payload / h.token_bytes && payload % h.token_bytes == 0 &&
                  h.n_tokens * h.token_bytes == payload,
              path, ": ", h.n_tokens * h.token_bytes > payload ? "truncated" : "corrupt",
              " token shard (the header says ", h.n_tokens, " tokens, the file holds ",
              double(payload) / h.token_bytes, ")");
  token_bytes_ = int(h.token_bytes);
  n_tokens_ = int64_t(h.n_tokens);
  vocab_size_ = int32_t(h.vocab_size);
  tokens_ = file_->data() + sizeof(ShardHeader);
  LMKIT_CHECK(shard_checksum(tokens_, payload) == h.checksum, path,
              ": corrupt token shard (checksum mismatch); prepare the data again");
  // The checksum passed, so out-of-range tokens can only come from a writer bug; still cheap.
  uint32_t max_token = 0;
  if (token_bytes_ == 2) {
    const uint16_t *t = reinterpret_cast<const uint16_t *>(tokens_);
    for (int64_t i = 0; i < n_tokens_; ++i) max_token = std::max<uint32_t>(max_token, t[i]);
  } else {
    const uint32_t *t = reinterpret_cast<const uint32_t *>(tokens_);
    for (int64_t i = 0; i < n_tokens_; ++i) max_token = std::max(max_token, t[i]);
  }
  LMKIT_CHECK(n_tokens_ == 0 || max_token < h.vocab_size, path, ": corrupt token shard (token ",
              max_token, " outside the vocabulary of ", h.vocab_size, ")");
}

int32_t TokenShard::at(int64_t i) const {
  int32_t v;
  read(i, 1, &v);
  return v;
}

void TokenShard::read(int64_t begin, int64_t n, int32_t *out) const {
  LMKIT_CHECK(begin >= 0 && n >= 0 && begin + n <= n_tokens_, path(), ": tokens [", begin, ", ",
              begin + n, ") are outside the shard of ", n_tokens_);
  if (token_bytes_ == 2) {
    const uint16_t *t = reinterpret_cast<const uint16_t *>(tokens_) + begin;
    for (int64_t i = 0; i < n; ++i) out[i] = int32_t(t[i]);
  } else {
    const uint32_t *t = reinterpret_cast<const uint32_t *>(tokens_) + begin;
    for (int64_t i = 0; i < n; ++i) out[i] = int32_t(t[i]);
  }
}

const std::string &TokenShard::path() const {
  return file_->path();
}

// =============================================================================================
// data_prepare

namespace {

// Tokens of one split on their way to shard files.
struct SplitWriter {
  std::string dir, name;  // name: "train" or "val"
  int32_t vocab_size = 0;
  int token_bytes = 2;
  int64_t shard_tokens = 0;
  std::vector<int32_t> buf;
  std::vector<std::string> files;  // file names written (relative to dir)
  std::vector<int64_t> counts;     // (vocab_size) unigram counts
  int64_t tokens = 0, documents = 0;

  void add(const int32_t *t, size_t n) {
    buf.insert(buf.end(), t, t + n);
    for (size_t i = 0; i < n; ++i) ++counts[size_t(t[i])];
    tokens += int64_t(n);
    while (int64_t(buf.size()) >= shard_tokens) write(size_t(shard_tokens));
  }
  void write(size_t n) {
    char file[64];
    std::snprintf(file, sizeof file, "%s_%03zu.bin", name.c_str(), files.size());
    shard_write((fs::path(dir) / file).string(), std::span<const int32_t>(buf.data(), n),
                vocab_size, token_bytes);
    files.emplace_back(file);
    buf.erase(buf.begin(), buf.begin() + std::ptrdiff_t(n));
  }
  void finish() {
    if (!buf.empty()) write(buf.size());
  }
};

struct InputFile {
  std::string path;
  std::shared_ptr<MappedFile> map;
  std::vector<std::string_view> docs;
  int64_t invalid = 0;
};

// "train_000.bin", "val_0123.bin": (train|val)_[0-9]{3,}.bin
bool is_shard_name(std::string_view name) {
  for (std::string_view prefix : {"train_", "val_"}) {
    if (name.substr(0, prefix.size()) != prefix || name.size() < prefix.size() + 7) continue;
    std::string_view digits = name.substr(prefix.size(), name.size() - prefix.size() - 4);
    return name.substr(name.size() - 4) == ".bin" &&
           std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
  }
  return false;
}

bool is_val_document(int64_t g, double f) {
  return std::floor(double(g + 1) * f) > std::floor(double(g) * f);
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)v);
  return buf;
}

// Copies the tokenizer.json-based tokenizer into dir/tokenizer; returns the path meta.json
// records (relative "tokenizer" for a copy, the absolute path otherwise) and its checksum.
std::pair<std::string, std::string> keep_tokenizer(const std::string &src, const std::string &dir) {
  fs::path p = src;
  fs::path json_file;
  if (fs::is_directory(p) && fs::exists(p / "tokenizer.json"))
    json_file = p / "tokenizer.json";
  else if (p.extension() == ".json")
    json_file = p;
  std::string main_file = json_file.empty() ? src : json_file.string();
  std::string sum;
  if (fs::is_regular_file(main_file)) {
    auto m = MappedFile::open(main_file);
    sum = hex64(shard_checksum(m->data(), m->size()));
  }
  if (json_file.empty()) return {fs::absolute(p).lexically_normal().string(), sum};
  fs::path out = fs::path(dir) / "tokenizer";
  fs::create_directories(out);
  write_file_atomic((out / "tokenizer.json").string(), read_file(json_file.string()));
  fs::path cfg = json_file.parent_path() / "tokenizer_config.json";
  if (fs::exists(cfg)) write_file_atomic((out / "tokenizer_config.json").string(), read_file(cfg));
  return {"tokenizer", sum};
}

}  // namespace

DataMeta data_prepare(const std::string &tokenizer_path, const std::vector<std::string> &inputs,
                      const std::string &out_dir, const DataPrepareOptions &opt) {
  const double t0 = now_seconds();
  const double f = opt.val_fraction;
  LMKIT_CHECK(f >= 0.0 && f <= 0.5, "validation fraction ", f, " is outside [0, 0.5]");
  LMKIT_CHECK(!inputs.empty(), "no input files given");
  LMKIT_CHECK(opt.shard_tokens >= 1, "shard size must be at least one token");
  std::shared_ptr<const Tokenizer> tok = tokenizer_load(tokenizer_path);

  // 1. Every input checked and split into documents before anything is written.
  std::vector<InputFile> files;
  int64_t n_docs = 0, total_bytes = 0;
  for (const std::string &path : inputs) {
    LMKIT_CHECK(fs::exists(path), path, ": no such file");
    LMKIT_CHECK(fs::is_regular_file(path), path, ": not a regular file");
    InputFile in;
    in.path = path;
    in.map = MappedFile::open(path);
    std::string_view text(reinterpret_cast<const char *>(in.map->data()), in.map->size());
    in.invalid = text_scan(text, path);
    if (opt.split_paragraphs)
      split_documents(text, in.docs);
    else
      in.docs.push_back(text);
    n_docs += int64_t(in.docs.size());
    total_bytes += int64_t(text.size());
    files.push_back(std::move(in));
  }
  const int64_t n_val_docs = int64_t(std::floor(double(n_docs) * f));
  LMKIT_CHECK(f == 0.0 || n_val_docs > 0, "the corpus has ", n_docs, " document",
              n_docs == 1 ? "" : "s", opt.split_paragraphs ? " (paragraphs)" : " (files)",
              ", too few for a validation fraction of ", f,
              "; give more text or use --val-fraction 0");
  LMKIT_CHECK(n_docs - n_val_docs > 0, "the corpus leaves no documents for training");

  // 2. The output folder, checked for writing before the long work.
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  LMKIT_CHECK(!ec && fs::is_directory(out_dir), out_dir, ": cannot create the output folder (",
              ec ? ec.message() : "a file of that name exists", ")");
  {
    std::string probe = (fs::path(out_dir) / ".lmkit-write-test").string();
    try {
      AtomicFile test(probe);
    } catch (const Error &) {
      fail(out_dir, ": cannot write to the output folder");
    }
  }

  const int32_t n_vocab = tok->n_vocab();
  const int token_bytes = n_vocab <= 65536 ? 2 : 4;
  const int32_t sep = tok->bos_id() >= 0 ? tok->bos_id() : tok->eos_id();
  SplitWriter train, val;
  for (SplitWriter *w : {&train, &val}) {
    w->dir = out_dir;
    w->vocab_size = n_vocab;
    w->token_bytes = token_bytes;
    w->shard_tokens = opt.shard_tokens;
    w->counts.assign(size_t(n_vocab), 0);
  }
  train.name = "train";
  val.name = "val";

  // 3. Tokenize in batches of documents, each batch split evenly over the threads; documents are
  // appended in their order, so the shards do not depend on the thread count.
  int n_threads =
      opt.n_threads > 0 ? opt.n_threads : std::max(1, int(std::thread::hardware_concurrency()));
  ThreadPool pool(n_threads);
  ProgressBar bar(total_bytes, "prepare", ProgressBar::Unit::Bytes);
  if (!opt.progress) bar.set_enabled(false);
  std::atomic<int64_t> bytes_done{0};
  int64_t repaired = 0, g = 0;
  struct Local {
    std::vector<int32_t> tokens;
    std::vector<size_t> ends;  // end of each document's tokens
  };
  std::vector<Local> local(size_t(pool.size()));
  constexpr size_t kBatchBytes = size_t(4) << 20;
  for (InputFile &in : files) {
    repaired += in.invalid;
    for (size_t b = 0; b < in.docs.size();) {
      size_t e = b, bytes = 0;
      while (e < in.docs.size() && (e == b || bytes < kBatchBytes)) bytes += in.docs[e++].size();
      for (Local &l : local) {
        l.tokens.clear();
        l.ends.clear();
      }
      pool.parallel_for(int64_t(e - b), [&](int64_t lo, int64_t hi, int ti) {
        Local &l = local[size_t(ti)];
        std::string fixed;
        for (int64_t d = lo; d < hi; ++d) {
          std::string_view doc = in.docs[b + size_t(d)];
          if (in.invalid > 0 && unicode::utf8_find_invalid(doc) != doc.size()) {
            fixed.clear();
            unicode::utf8_append_repaired(fixed, doc);
            doc = fixed;
          }
          std::vector<int32_t> ids = tok->encode(doc, /*add_special=*/false,
                                                 /*parse_special=*/false);
          l.tokens.insert(l.tokens.end(), ids.begin(), ids.end());
          l.ends.push_back(l.tokens.size());
          bytes_done += int64_t(in.docs[b + size_t(d)].size());
          if (ti == 0) bar.update(bytes_done.load());
        }
      });
      for (const Local &l : local) {
        size_t start = 0;
        for (size_t end : l.ends) {
          SplitWriter &w = is_val_document(g++, f) ? val : train;
          if (sep >= 0) w.add(&sep, 1);
          w.add(l.tokens.data() + start, end - start);
          ++w.documents;
          start = end;
        }
      }
      bar.update(bytes_done.load());
      b = e;
    }
  }
  for (SplitWriter *w : {&train, &val}) {
    if (sep >= 0 && w->documents > 0) w->add(&sep, 1);
    w->finish();
  }
  bar.update(total_bytes);
  bar.finish();

  // 4. meta.json last: a folder with a meta.json is complete.
  DataMeta m;
  m.dir = out_dir;
  auto [tok_path, tok_sum] = keep_tokenizer(tokenizer_path, out_dir);
  m.tokenizer = tok_path;
  m.vocab_size = n_vocab;
  m.token_bytes = token_bytes;
  m.separator_id = sep;
  m.train_tokens = train.tokens;
  m.val_tokens = val.tokens;
  m.train_documents = train.documents;
  m.val_documents = val.documents;
  m.val_fraction = f;
  m.unigram_entropy = unigram_entropy(train.counts);
  m.val_unigram_loss = val.tokens > 0 ? unigram_cross_entropy(train.counts, val.counts) : 0.0;
  json j;
  j["format"] = "lmkit-token-shards";
  j["version"] = 1;
  j["tokenizer"] = tok_path;
  j["tokenizer_checksum"] = tok_sum;
  j["vocab_size"] = n_vocab;
  j["token_bytes"] = token_bytes;
  j["separator_id"] = sep;
  j["separator"] = sep >= 0 ? tok->piece(sep) : "";
  j["documents"] = opt.split_paragraphs ? "paragraphs (split at blank lines)" : "files";
  j["val_fraction"] = f;
  j["split"] =
      "document g (over all inputs in order) is a validation document when "
      "floor((g + 1) * val_fraction) > floor(g * val_fraction)";
  j["layout"] = "each document is [separator] + its tokens; each split ends with [separator]";
  for (SplitWriter *w : {&train, &val})
    j[w->name] = {{"shards", w->files}, {"tokens", w->tokens}, {"documents", w->documents}};
  j["unigram_entropy"] = m.unigram_entropy;
  j["val_unigram_loss"] = m.val_unigram_loss;
  json ins = json::array();
  for (const InputFile &in : files) ins.push_back({{"path", in.path}, {"bytes", in.map->size()}});
  j["inputs"] = ins;
  write_file_atomic((fs::path(out_dir) / "meta.json").string(),
                    j.dump(2, ' ', false, json::error_handler_t::replace) + "\n");

  // Shards of an earlier, larger run in the same folder would only confuse a reader.
  for (const auto &entry : fs::directory_iterator(out_dir)) {
    std::string name = entry.path().filename().string();
    if (!is_shard_name(name)) continue;
    const auto &mine = name[0] == 't' ? train.files : val.files;
    if (std::find(mine.begin(), mine.end(), name) == mine.end()) fs::remove(entry.path(), ec);
  }

  for (const std::string &s : train.files)
    m.train_shards.push_back((fs::path(out_dir) / s).string());
  for (const std::string &s : val.files) m.val_shards.push_back((fs::path(out_dir) / s).string());
  if (tok_path == "tokenizer") m.tokenizer = (fs::path(out_dir) / "tokenizer").string();
  m.input_bytes = total_bytes;
  m.repaired_bytes = repaired;
  m.seconds = now_seconds() - t0;
  return m;
}

DataMeta data_meta_load(const std::string &dir) {
  fs::path file = fs::path(dir) / "meta.json";
  LMKIT_CHECK(fs::exists(file), dir, ": no meta.json (not a folder made by `lmkit data prepare`?)");
  const std::string src = file.string();
  json j;
  try {
    j = json::parse(read_file(src));
  } catch (const json::exception &e) {
    fail(src, ": not valid JSON (", e.what(), ")");
  }
  DataMeta m;
  m.dir = dir;
  try {
    LMKIT_CHECK(j.value("format", "") == "lmkit-token-shards", src,
                ": not an lmkit token-shard folder (format '", j.value("format", ""), "')");
    LMKIT_CHECK(j.value("version", 0) == 1, src, ": version ", j.value("version", 0),
                " is not supported (this lmkit reads version 1)");
    std::string t = j.at("tokenizer").get<std::string>();
    m.tokenizer = fs::path(t).is_absolute() ? t : (fs::path(dir) / t).string();
    m.vocab_size = j.at("vocab_size").get<int32_t>();
    m.token_bytes = j.at("token_bytes").get<int>();
    m.separator_id = j.at("separator_id").get<int32_t>();
    m.val_fraction = j.value("val_fraction", 0.0);
    m.unigram_entropy = j.value("unigram_entropy", 0.0);
    m.val_unigram_loss = j.value("val_unigram_loss", 0.0);
    for (const char *split : {"train", "val"}) {
      const json &s = j.at(split);
      auto &shards = split[0] == 't' ? m.train_shards : m.val_shards;
      for (const json &name : s.at("shards"))
        shards.push_back((fs::path(dir) / name.get<std::string>()).string());
      (split[0] == 't' ? m.train_tokens : m.val_tokens) = s.at("tokens").get<int64_t>();
      (split[0] == 't' ? m.train_documents : m.val_documents) = s.at("documents").get<int64_t>();
    }
  } catch (const json::exception &e) {
    fail(src, ": unexpected content (", e.what(), ")");
  }
  LMKIT_CHECK(m.vocab_size > 0 && (m.token_bytes == 2 || m.token_bytes == 4), src,
              ": unexpected vocab_size ", m.vocab_size, " or token_bytes ", m.token_bytes);
  return m;
}

// =============================================================================================
// DataLoader

namespace {

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The generator for one purpose of one epoch: independent streams from (seed, epoch, purpose).
Rng epoch_rng(uint64_t seed, int64_t epoch, uint64_t purpose) {
  return Rng(mix64(seed ^ mix64(uint64_t(epoch) * 4 + purpose)));
}

}  // namespace

DataLoader::DataLoader(const std::string &data_dir, Split split, const DataLoaderOptions &opt)
    : meta_(data_meta_load(data_dir)), opt_(opt) {
  const char *name = split == Split::Train ? "train" : "val";
  LMKIT_CHECK(opt.batch_size >= 1, "batch size must be at least 1, not ", opt.batch_size);
  LMKIT_CHECK(opt.context >= 1, "context must be at least 1 token, not ", opt.context);
  LMKIT_CHECK(opt.n_ranks >= 1 && opt.rank >= 0 && opt.rank < opt.n_ranks, "rank ", opt.rank,
              " of ", opt.n_ranks, " is not valid");
  const auto &files = split == Split::Train ? meta_.train_shards : meta_.val_shards;
  LMKIT_CHECK(!files.empty(), data_dir, ": the ", name, " split is empty",
              split == Split::Val ? " (prepared with --val-fraction 0?)" : "");
  int64_t longest = 0;
  for (const std::string &p : files) {
    auto s = std::make_unique<TokenShard>(p);
    LMKIT_CHECK(s->vocab_size() == meta_.vocab_size && s->token_bytes() == meta_.token_bytes, p,
                ": shard vocabulary ", s->vocab_size(), " (", s->token_bytes(),
                "-byte tokens) does not match meta.json's ", meta_.vocab_size, " (",
                meta_.token_bytes, "-byte tokens)");
    n_tokens_ += s->size();
    longest = std::max(longest, s->size());
    shards_.push_back(std::move(s));
  }
  const int64_t expected = split == Split::Train ? meta_.train_tokens : meta_.val_tokens;
  LMKIT_CHECK(n_tokens_ == expected, data_dir, ": the ", name, " shards hold ", n_tokens_,
              " tokens, meta.json says ", expected);
  eval_first_.assign(1, 0);
  for (size_t s = 0; s < shards_.size(); ++s)
    eval_first_.push_back(eval_first_.back() + windows_in(int64_t(s), 0));
  n_windows_ = eval_first_.back();
  LMKIT_CHECK(n_windows_ > 0, data_dir, ": the ", name, " split has ", n_tokens_,
              " tokens (at most ", longest, " in one shard); a context of ", opt.context,
              " needs at least ", opt.context + 1, ". Use a shorter context or more text");
  start_epoch(0);
}

DataLoader::~DataLoader() = default;

int64_t DataLoader::windows_in(int64_t shard, int64_t shift) const {
  int64_t n = shards_[size_t(shard)]->size();
  return n > shift ? (n - shift - 1) / opt_.context : 0;
}

void DataLoader::start_epoch(int64_t epoch) {
  epoch_ = epoch;
  index_ = 0;
  const int64_t T = opt_.context;
  shift_ = epoch == 0 ? 0 : int64_t(epoch_rng(opt_.seed, epoch, 0).next_u64() % uint64_t(T));
  for (int attempt = 0; attempt < 2; ++attempt) {
    first_window_.assign(1, 0);
    for (size_t s = 0; s < shards_.size(); ++s)
      first_window_.push_back(first_window_.back() + windows_in(int64_t(s), shift_));
    if (first_window_.back() > 0) break;
    shift_ = 0;  // tiny shards: a shift can leave no whole window; shift 0 always has one
  }
  const int64_t n = first_window_.back();
  order_.resize(size_t(n));
  std::iota(order_.begin(), order_.end(), int64_t(0));
  Rng rng = epoch_rng(opt_.seed, epoch, 1);
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(order_[size_t(i)], order_[size_t(rng.next_u64() % uint64_t(i + 1))]);
}

void DataLoader::read_window(int64_t window, int64_t shift, const std::vector<int64_t> &first,
                             int32_t *out) const {
  size_t s = size_t(std::upper_bound(first.begin(), first.end(), window) - first.begin() - 1);
  shards_[s]->read(shift + (window - first[s]) * opt_.context, opt_.context + 1, out);
}

void DataLoader::next_batch(int32_t *tokens) {
  const int64_t B = opt_.batch_size, T = opt_.context;
  const int64_t per_step = B * opt_.n_ranks;
  for (int64_t j = 0; j < per_step; ++j) {
    if (index_ >= int64_t(order_.size())) start_epoch(epoch_ + 1);
    int64_t window = order_[size_t(index_++)];
    if (j / B == opt_.rank) read_window(window, shift_, first_window_, tokens + (j % B) * (T + 1));
  }
  ++batches_;
}

std::vector<int32_t> DataLoader::next_batch() {
  std::vector<int32_t> out(size_t(opt_.batch_size * (opt_.context + 1)));
  next_batch(out.data());
  return out;
}

DataLoaderState DataLoader::state() const {
  DataLoaderState s;
  s.seed = opt_.seed;
  s.epoch = epoch_;
  s.index = index_;
  s.batches = batches_;
  s.context = opt_.context;
  s.n_tokens = n_tokens_;
  return s;
}

void DataLoader::set_state(const DataLoaderState &s) {
  LMKIT_CHECK(s.context == opt_.context, "data loader state is for a context of ", s.context,
              " tokens, this run uses ", opt_.context);
  LMKIT_CHECK(s.n_tokens == n_tokens_, "data loader state is for data of ", s.n_tokens,
              " tokens, but ", meta_.dir, " holds ", n_tokens_,
              " in this split: the data changed since the state was saved");
  LMKIT_CHECK(s.epoch >= 0 && s.index >= 0 && s.batches >= 0,
              "data loader state has a negative position");
  opt_.seed = s.seed;
  start_epoch(s.epoch);
  LMKIT_CHECK(s.index <= int64_t(order_.size()), "data loader state index ", s.index,
              " is past the ", order_.size(), " windows of epoch ", s.epoch);
  index_ = s.index;
  batches_ = s.batches;
}

int64_t DataLoader::n_eval_windows() const {
  return n_windows_;
}

int64_t DataLoader::n_eval_batches() const {
  const int64_t per_step = opt_.batch_size * opt_.n_ranks;
  return (n_windows_ + per_step - 1) / per_step;
}

int64_t DataLoader::eval_batch(int64_t i, int32_t *tokens) const {
  const int64_t B = opt_.batch_size, T = opt_.context;
  const int64_t first = (i * opt_.n_ranks + opt_.rank) * B;
  int64_t rows = 0;
  for (int64_t w = first; w < first + B && w < n_windows_; ++w, ++rows)
    read_window(w, 0, eval_first_, tokens + rows * (T + 1));
  return rows;
}

// --- state as JSON ------------------------------------------------------------------------------

std::string DataLoaderState::to_json() const {
  json j = {{"seed", seed},       {"epoch", epoch},     {"index", index},
            {"batches", batches}, {"context", context}, {"n_tokens", n_tokens}};
  return j.dump();
}

DataLoaderState DataLoaderState::from_json(std::string_view text) {
  DataLoaderState s;
  try {
    json j = json::parse(text);
    s.seed = j.at("seed").get<uint64_t>();
    s.epoch = j.at("epoch").get<int64_t>();
    s.index = j.at("index").get<int64_t>();
    s.batches = j.at("batches").get<int64_t>();
    s.context = j.at("context").get<int64_t>();
    s.n_tokens = j.at("n_tokens").get<int64_t>();
  } catch (const json::exception &e) {
    fail("data loader state: unexpected content (", e.what(), ")");
  }
  return s;
}

}  // namespace lmkit
