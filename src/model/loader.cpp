// Format detection and assembly of config + weights + tokenizer.
#include "model/loader.h"

#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap.h"
#include "io/gguf.h"
#include "io/llama2c.h"

namespace lmkit {

namespace fs = std::filesystem;

const char *model_format_name(ModelFormat f) {
  switch (f) {
    case ModelFormat::HuggingFace:
      return "hf";
    case ModelFormat::GGUF:
      return "gguf";
    case ModelFormat::Llama2c:
      return "llama2c";
  }
  return "?";
}

namespace {

LoadedModel load_hf(const std::string &dir) {
  fs::path cfg_path = fs::path(dir) / "config.json";
  LMKIT_CHECK(fs::exists(cfg_path), dir, ": no config.json (not a Hugging Face model folder)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(cfg_path.string()));
  } catch (const nlohmann::json::exception &e) {
    fail(cfg_path.string(), ": not valid JSON (", e.what(), ")");
  }
  ModelConfig c = config_from_hf(j, cfg_path.string());
  auto src = tensor_source_hf(dir, c.arch);
  LoadedModel lm;
  lm.format = ModelFormat::HuggingFace;
  lm.model = std::make_shared<Model>(c, weights_load(c, *src));
  lm.metadata = src->metadata();
  if (fs::exists(fs::path(dir) / "tokenizer.json")) lm.tokenizer = tokenizer_from_hf(dir);
  return lm;
}

LoadedModel load_gguf(const std::string &path) {
  auto f = std::make_shared<const GGUFFile>(GGUFFile::open(path));
  LMKIT_CHECK(!f->tensors().empty(), path,
              ": this GGUF holds no tensors (a vocabulary-only file?); it can be used with "
              "`lmkit tokenize` but not run");
  ModelConfig c = config_from_gguf(*f);
  auto src = tensor_source_gguf(f);
  LoadedModel lm;
  lm.format = ModelFormat::GGUF;
  lm.model = std::make_shared<Model>(c, weights_load(c, *src));
  if (f->has("tokenizer.ggml.tokens")) lm.tokenizer = tokenizer_from_gguf(*f);
  return lm;
}

// llama2.c's run.c defaults to tokenizer.bin; its small models ship tok<vocab>.bin beside them.
std::shared_ptr<const Tokenizer> llama2c_sibling_tokenizer(const std::string &path, int64_t vocab) {
  fs::path dir = fs::path(path).parent_path();
  for (std::string name : {"tok" + std::to_string(vocab) + ".bin", std::string("tokenizer.bin")}) {
    fs::path p = dir / name;
    if (fs::exists(p)) return tokenizer_from_llama2c(p.string(), int32_t(vocab));
  }
  return nullptr;
}

LoadedModel load_llama2c(const std::string &path) {
  auto f = std::make_shared<const Llama2cFile>(Llama2cFile::open(path));
  ModelConfig c = config_from_llama2c(f->header);
  auto src = tensor_source_llama2c(f);
  LoadedModel lm;
  lm.format = ModelFormat::Llama2c;
  lm.model = std::make_shared<Model>(c, weights_load(c, *src));
  lm.tokenizer = llama2c_sibling_tokenizer(path, c.n_vocab);
  return lm;
}

bool has_magic(const std::string &path, const char *magic) {
  std::FILE *f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char buf[4] = {};
  size_t n = std::fread(buf, 1, 4, f);
  std::fclose(f);
  return n == 4 && std::memcmp(buf, magic, 4) == 0;
}

bool is_llama2c_checkpoint(const std::string &path) {
  auto map = MappedFile::open(path);
  return llama2c_sniff(map->data(), map->size());
}

}  // namespace

LoadedModel load_model(const std::string &path, const std::string &tokenizer_path) {
  LMKIT_CHECK(fs::exists(path), path, ": no such file or folder");
  LoadedModel lm;
  if (fs::is_directory(path)) {
    lm = load_hf(path);
  } else if (has_magic(path, "GGUF")) {
    lm = load_gguf(path);
  } else if (fs::path(path).extension() == ".safetensors" ||
             fs::path(path).filename() == "config.json") {
    lm = load_hf(fs::path(path).parent_path().string());
  } else {
    LMKIT_CHECK(is_llama2c_checkpoint(path), path,
                ": not a model lmkit can read (expected a Hugging Face folder, a .gguf file or a "
                "llama2.c .bin checkpoint)");
    lm = load_llama2c(path);
  }
  lm.path = path;
  if (!tokenizer_path.empty()) {
    if (lm.format == ModelFormat::Llama2c && fs::path(tokenizer_path).extension() == ".bin")
      lm.tokenizer = tokenizer_from_llama2c(tokenizer_path, int32_t(lm.model->config().n_vocab));
    else
      lm.tokenizer = tokenizer_load(tokenizer_path);
  }
  if (lm.tokenizer)
    LMKIT_CHECK(lm.tokenizer->n_vocab() <= lm.model->config().n_vocab, "tokenizer has ",
                lm.tokenizer->n_vocab(), " tokens but the model only ", lm.model->config().n_vocab);
  return lm;
}

std::shared_ptr<const Tokenizer> load_tokenizer_for(const std::string &path,
                                                    const std::string &tokenizer_path) {
  LMKIT_CHECK(fs::exists(path), path, ": no such file or folder");
  const bool l2c = !fs::is_directory(path) && !has_magic(path, "GGUF") &&
                   fs::path(path).extension() == ".bin" && is_llama2c_checkpoint(path);
  std::shared_ptr<const Tokenizer> tok;
  if (!tokenizer_path.empty()) {
    if (l2c && fs::path(tokenizer_path).extension() == ".bin")
      tok = tokenizer_from_llama2c(tokenizer_path, Llama2cFile::open(path).header.vocab_size);
    else
      tok = tokenizer_load(tokenizer_path);
  } else if (fs::is_directory(path)) {
    tok = tokenizer_from_hf(path);
  } else if (has_magic(path, "GGUF")) {
    tok = tokenizer_from_gguf(GGUFFile::open(path));
  } else if (l2c) {
    tok = llama2c_sibling_tokenizer(path, Llama2cFile::open(path).header.vocab_size);
  } else {
    tok = tokenizer_load(path);  // a tokenizer file itself
  }
  LMKIT_CHECK(tok != nullptr, path, ": no tokenizer found (pass one with -t)");
  return tok;
}

}  // namespace lmkit
