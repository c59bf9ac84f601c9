// The Hugging Face folder writer: temp folder, files written atomically, rename.
#include "compress/hf_export.h"

#include <unistd.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap.h"
#include "io/atomic_file.h"
#include "model/weights.h"

namespace lmkit::compress {

namespace fs = std::filesystem;

void hf_write(const ModelTensors &m, const Vocab *vocab, const std::string &dir) {
  fs::path out = fs::path(dir);
  if (out.has_filename() == false) out = out.parent_path();  // "dir/" -> "dir"
  std::error_code ec;
  if (fs::exists(out, ec)) {
    LMKIT_CHECK(fs::is_directory(out, ec) && fs::is_empty(out, ec), out.string(),
                ": exists and is not an empty folder (choose a new output folder; lmkit does not "
                "overwrite a model)");
  }
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  LMKIT_CHECK(fs::is_directory(parent, ec), parent.string(), ": no such folder");
  for (const auto &[name, t] : m.tensors)
    LMKIT_CHECK(!dtype_is_quantized(t.dtype()), "tensor '", name, "' is ", dtype_name(t.dtype()),
                "; a Hugging Face checkpoint holds f32, f16 or bf16 (convert it first)");
  const fs::path tmp = parent / (out.filename().string() + ".tmp." + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  LMKIT_CHECK(!ec, tmp.string(), ": cannot create (", ec.message(), ")");
  try {
    Weights w;
    w.table = m.tensors;
    weights_save_hf(m.config, w, tmp.string());
    // generation_config.json: the source's own (its eos list may name end-of-turn tokens), or
    // the config's ids.
    const fs::path src_gen =
        vocab && !vocab->hf_dir.empty() ? fs::path(vocab->hf_dir) / "generation_config.json" : "";
    if (!src_gen.empty() && fs::exists(src_gen)) {
      write_file_atomic((tmp / "generation_config.json").string(), read_file(src_gen.string()));
    } else {
      nlohmann::ordered_json gen;
      if (m.config.bos_id >= 0) gen["bos_token_id"] = m.config.bos_id;
      if (m.config.eos_id >= 0) gen["eos_token_id"] = m.config.eos_id;
      write_file_atomic((tmp / "generation_config.json").string(), gen.dump(2) + "\n");
    }
    if (vocab) vocab_to_hf(*vocab, tmp.string());
    if (fs::exists(out)) fs::remove(out);  // the empty folder the check above allowed
    fs::rename(tmp, out, ec);
    LMKIT_CHECK(!ec, out.string(), ": cannot move the finished folder into place (", ec.message(),
                ")");
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace lmkit::compress
