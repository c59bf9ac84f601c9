// Opening a model for conversion: load it, then read its vocabulary as data from the same files.
#include "compress/source.h"

#include <filesystem>

#include "core/error.h"
#include "io/gguf.h"

namespace lmkit::compress {

namespace fs = std::filesystem;

namespace {

std::optional<Vocab> vocab_from_path(const std::string &p, int64_t n_vocab) {
  const fs::path path = p;
  if (fs::is_directory(path)) return vocab_from_hf(p);
  if (path.filename() == "tokenizer.json") return vocab_from_hf(path.parent_path().string());
  std::string ext = path.extension().string();
  if (ext == ".gguf") {
    const GGUFFile f = GGUFFile::open(p);
    LMKIT_CHECK(f.has("tokenizer.ggml.tokens"), p, ": this GGUF holds no vocabulary");
    return vocab_from_gguf(f);
  }
  if (ext == ".bin") return vocab_from_llama2c(p, n_vocab);
  fail(p,
       ": cannot tell the tokenizer format from the name (a folder with tokenizer.json, a "
       ".gguf or a llama2.c .bin)");
}

}  // namespace

ModelSource open_source(const std::string &path, const std::string &tokenizer_path) {
  ModelSource s;
  s.lm = load_model(path, tokenizer_path);
  const int64_t n_vocab = s.lm.model->config().n_vocab;
  fs::path p = fs::path(path);
  if (!p.has_filename()) p = p.parent_path();
  s.name = fs::is_directory(p) ? p.filename().string() : p.stem().string();
  if (s.lm.format == ModelFormat::GGUF) {
    const GGUFFile f = GGUFFile::open(path);
    gguf_read_llama3_rope(f, s.llama3);
    if (tokenizer_path.empty() && f.has("tokenizer.ggml.tokens")) s.vocab = vocab_from_gguf(f);
    if (f.has("general.name")) s.name = f.get_str("general.name");
  }
  if (!tokenizer_path.empty()) {
    s.vocab = vocab_from_path(tokenizer_path, n_vocab);
  } else if (s.lm.format == ModelFormat::HuggingFace) {
    const fs::path dir = fs::is_directory(path) ? fs::path(path) : fs::path(path).parent_path();
    if (fs::exists(dir / "tokenizer.json")) s.vocab = vocab_from_hf(dir.string());
  } else if (s.lm.format == ModelFormat::Llama2c) {
    // load_model found the tokenizer beside the checkpoint the same way (tok<N>.bin,
    // tokenizer.bin).
    const fs::path dir = fs::path(path).parent_path();
    for (const std::string &name :
         {"tok" + std::to_string(n_vocab) + ".bin", std::string("tokenizer.bin")})
      if (fs::exists(dir / name)) {
        s.vocab = vocab_from_llama2c((dir / name).string(), n_vocab);
        break;
      }
  }
  return s;
}

}  // namespace lmkit::compress
