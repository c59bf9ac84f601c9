// lmkit quantize and lmkit convert: GGUF block quantization of any model lmkit loads, and
// conversion between Hugging Face folders and GGUF files. The logic lives in compress/; this
// file is flags, progress and the summary.
#include <algorithm>
#include <filesystem>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "compress/gguf_export.h"
#include "compress/hf_export.h"
#include "compress/quantize.h"
#include "compress/source.h"
#include "core/error.h"
#include "io/gguf.h"
#include "train/progress.h"

namespace lmkit::app {

namespace {

namespace fs = std::filesystem;
using namespace lmkit::compress;

struct QuantizeFlags {
  std::string model, tokenizer, type, out;
  bool pure = false, json = false, quiet = false;
  int threads = 0;
};

struct ConvertFlags {
  std::string model, tokenizer, type, out;
  bool json = false, quiet = false;
};

DType parse_type(const std::string &name, bool floats_only) {
  DType t = DType::F32;
  bool ok = true;
  try {
    t = dtype_from_name(name);
  } catch (const Error &) {
    ok = false;
  }
  ok = ok && quant_target_ok(t) && (!floats_only || !dtype_is_quantized(t));
  LMKIT_CHECK(ok, "unknown --type '", name,
              "' (types: ", floats_only ? std::string("f32, f16, bf16") : quant_target_names(),
              ")");
  return t;
}

bool ends_with_gguf(const std::string &p) {
  std::string ext = fs::path(p).extension().string();
  for (char &c : ext) c = char(std::tolower(uint8_t(c)));
  return ext == ".gguf";
}

// The output's folder must exist; the output must not be the input.
void check_output(const std::string &out, const std::string &in) {
  const fs::path parent = fs::path(out).has_parent_path() ? fs::path(out).parent_path() : ".";
  std::error_code ec;
  LMKIT_CHECK(fs::is_directory(parent, ec), out, ": the folder ", parent.string(),
              " does not exist");
  if (fs::exists(out, ec) && fs::exists(in, ec))
    LMKIT_CHECK(!fs::equivalent(out, in, ec), out, ": is the input model; choose another --out");
}

// "name-type.gguf" beside the input (a folder, a .gguf or a .bin).
std::string default_out(const std::string &model, DType t) {
  fs::path p = model;
  if (!p.has_filename()) p = p.parent_path();
  const std::string stem = fs::is_directory(p) ? p.filename().string() : p.stem().string();
  return (p.parent_path() / (stem + "-" + std::string(dtype_name(t)) + ".gguf")).string();
}

// "9 q8_0, 4 f16, 5 f32" by tensor count.
std::string type_counts(const ModelTensors &m) {
  std::map<std::string, int> n;
  for (const auto &[name, t] : m.tensors) ++n[std::string(dtype_name(t.dtype()))];
  std::string s;
  for (const auto &[k, v] : n) s += str_cat(s.empty() ? "" : ", ", v, " ", k);
  return s;
}

// Fails now, not after the work, when the vocabulary cannot go into a GGUF.
void check_vocab(const ModelSource &src) {
  if (!src.vocab) return;
  GGUFWriter w;
  vocab_to_gguf(*src.vocab, w);
}

nlohmann::ordered_json tensor_json(const std::vector<TypeChoice> &report) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (const TypeChoice &c : report)
    a.push_back({{"name", c.name},
                 {"from", std::string(dtype_name(c.from))},
                 {"to", std::string(dtype_name(c.to))},
                 {"note", c.note}});
  return a;
}

int run_quantize(const QuantizeFlags &f) {
  const DType type = parse_type(f.type, /*floats_only=*/false);
  const std::string out = f.out.empty() ? default_out(f.model, type) : f.out;
  LMKIT_CHECK(ends_with_gguf(out), out,
              ": quantized models are written as GGUF; give --out a .gguf name (for a Hugging "
              "Face folder in f32/f16/bf16 use `lmkit convert`)");
  check_output(out, f.model);
  ModelSource src = open_source(f.model, f.tokenizer);
  check_vocab(src);
  Llama3Rope llama3 = src.llama3;
  Llama3Rope from_config;
  ModelTensors m = to_gguf_layout(model_tensors(*src.lm.model), &from_config);
  if (from_config.factor > 0) llama3 = from_config;
  const size_t bytes_in = m.nbytes();
  src.lm.model.reset();  // the layout copy and the source mapping are all that is needed now

  ThreadPool pool(f.threads > 0 ? f.threads
                                : std::max(1, int(std::thread::hardware_concurrency())));
  int64_t total = 0;
  for (const auto &[name, t] : m.tensors) total += t.numel();
  ProgressBar bar(total, "quantize", ProgressBar::Unit::Count, "param");
  if (f.json || f.quiet) bar.set_enabled(false);
  QuantizeOptions opt;
  opt.type = type;
  opt.pure = f.pure;
  opt.progress = [&](int64_t done, int64_t) { bar.update(done); };
  std::vector<TypeChoice> report;
  ModelTensors q = quantize_model(m, opt, pool, &report);
  bar.finish();
  m = {};

  GGUFExportOptions go;
  go.name = src.name;
  go.file_type = type;
  go.llama3 = llama3;
  gguf_write(q, src.vocab ? &*src.vocab : nullptr, out, go);

  if (f.json) {
    nlohmann::ordered_json j;
    j["out"] = out;
    j["type"] = std::string(dtype_name(type));
    j["bytes_in"] = bytes_in;
    j["bytes_out"] = q.nbytes();
    j["vocab"] = src.vocab.has_value();
    j["tensors"] = tensor_json(report);
    write_out(j.dump() + "\n");
    return 0;
  }
  std::string s = str_cat("wrote ", out, " (", dtype_name(type), "): ", type_counts(q), "\n");
  // Every exception to the policy's plain rule, grouped: "ffn_down (4 tensors): ...".
  std::vector<std::pair<std::string, std::vector<std::string>>> groups;
  for (const TypeChoice &c : report) {
    if (c.note.empty()) continue;
    const std::string why = str_cat(dtype_name(c.from), " -> ", dtype_name(c.to), ": ", c.note);
    auto it = std::find_if(groups.begin(), groups.end(), [&](auto &g) { return g.first == why; });
    if (it == groups.end()) it = groups.insert(groups.end(), {why, {}});
    it->second.push_back(c.name);
  }
  for (const auto &[why, names] : groups) {
    std::string list;
    for (size_t i = 0; i < names.size() && i < 3; ++i) list += (i ? ", " : "") + names[i];
    if (names.size() > 3) list += str_cat(" and ", names.size() - 3, " more");
    s += str_cat("  ", list, ": ", why, "\n");
  }
  s += str_cat("  tensors ", ProgressBar::format_bytes(double(bytes_in)), " -> ",
               ProgressBar::format_bytes(double(q.nbytes())), "\n");
  if (!src.vocab)
    s += "  note: no tokenizer found; the file holds no vocabulary (pass one with -t)\n";
  write_out(s);
  return 0;
}

int run_convert(const ConvertFlags &f) {
  const bool to_gguf = ends_with_gguf(f.out);
  const bool typed = !f.type.empty();
  const DType type = typed ? parse_type(f.type, /*floats_only=*/true) : DType::F32;
  check_output(f.out, f.model);
  ModelSource src = open_source(f.model, f.tokenizer);
  ModelTensors m = model_tensors(*src.lm.model);
  src.lm.model.reset();
  std::string what;
  if (to_gguf) {
    check_vocab(src);
    Llama3Rope llama3 = src.llama3, from_config;
    m = to_gguf_layout(std::move(m), &from_config);
    if (from_config.factor > 0) llama3 = from_config;
    if (typed) m = convert_model(m, type);
    // general.file_type: the asked type, else the type of the token embeddings.
    const Tensor *embd = m.find("token_embd.weight");
    GGUFExportOptions go;
    go.name = src.name;
    go.file_type = typed ? type : embd ? embd->dtype() : DType::F32;
    go.llama3 = llama3;
    gguf_write(m, src.vocab ? &*src.vocab : nullptr, f.out, go);
    what = "GGUF";
  } else {
    m = to_hf_layout(std::move(m), &src.llama3);
    // Hugging Face checkpoints keep one dtype: the asked one, else the embeddings' float type
    // (block types are dequantized to f32).
    const Tensor *embd = m.find("token_embd.weight");
    const DType t = typed                                        ? type
                    : embd && !dtype_is_quantized(embd->dtype()) ? embd->dtype()
                                                                 : DType::F32;
    m = convert_model(m, t, /*all_tensors=*/true);
    hf_write(m, src.vocab ? &*src.vocab : nullptr, f.out);
    what = "Hugging Face folder";
  }
  if (f.quiet) return 0;
  if (f.json) {
    nlohmann::ordered_json j;
    j["out"] = f.out;
    j["format"] = to_gguf ? "gguf" : "hf";
    j["bytes"] = m.nbytes();
    j["vocab"] = src.vocab.has_value();
    write_out(j.dump() + "\n");
    return 0;
  }
  std::string s = str_cat("wrote ", f.out, " (", what, "): ", type_counts(m), ", ",
                          ProgressBar::format_bytes(double(m.nbytes())), " of tensors\n");
  if (!src.vocab) s += "  note: no tokenizer found; none was written (pass one with -t)\n";
  write_out(s);
  return 0;
}

}  // namespace

void add_quantize(CLI::App &app, Action &run) {
  auto f = std::make_shared<QuantizeFlags>();
  CLI::App *q = app.add_subcommand("quantize", "Quantize a model to a GGUF block type");
  q->add_option("-m,--model", f->model,
                "Model: a Hugging Face folder, a .gguf file or a llama2.c .bin")
      ->required();
  q->add_option("--type", f->type, "Target type: " + quant_target_names())->required();
  q->add_option("-o,--out", f->out, "Output .gguf (default: MODEL-TYPE.gguf beside the model)");
  q->add_option(
      "-t,--tokenizer", f->tokenizer,
      "Vocabulary to write (default: the model's own; for llama2.c tok<N>.bin beside it)");
  q->add_flag("--pure", f->pure,
              "Give every matrix TYPE (no q6_K/q8_0 classifier); fallbacks still apply");
  q->add_option("--threads", f->threads, "Threads (default: all hardware threads)")
      ->check(CLI::Range(0, 1024));
  q->add_flag("--json", f->json, "Print the tensor types as JSON");
  q->add_flag("-q,--quiet", f->quiet, "No progress bar");
  q->footer(
      "Type policy (as llama.cpp's): 1-D tensors (norms, biases) and learned positions stay f32; "
      "every other matrix gets TYPE when its rows are a whole number of TYPE's blocks (32 "
      "values, 256 for the K-quants), else q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0, and f16 when "
      "no block fits; the classifier (output.weight, or token_embd.weight when tied) gets q6_K, "
      "or q8_0 when TYPE is q8_0 or its rows are not a multiple of 256. Every exception is "
      "listed. Hugging Face llama/mistral Q/K rows are permuted for llama.cpp's RoPE; the file "
      "runs in lmkit and llama.cpp alike.");
  q->callback([f, &run] { run = [f] { return run_quantize(*f); }; });

  auto c = std::make_shared<ConvertFlags>();
  CLI::App *cv = app.add_subcommand("convert", "Convert a model between Hugging Face and GGUF");
  cv->add_option("-m,--model", c->model,
                 "Model: a Hugging Face folder, a .gguf file or a llama2.c .bin")
      ->required();
  cv->add_option("-o,--out", c->out, "Output: FILE.gguf, or a new folder for Hugging Face layout")
      ->required();
  cv->add_option("--type", c->type,
                 "f32, f16 or bf16 for the matrices (default: as stored; block types become f32 "
                 "in a Hugging Face folder)");
  cv->add_option("-t,--tokenizer", c->tokenizer, "Vocabulary to write (default: the model's own)");
  cv->add_flag("--json", c->json, "Print the result as JSON");
  cv->add_flag("-q,--quiet", c->quiet, "Print nothing but errors");
  cv->footer(
      "The output format follows --out: a name ending in .gguf writes GGUF (1-D tensors f32, "
      "vocabulary as tokenizer.ggml.*, Q/K rows permuted for llama.cpp's RoPE where Hugging Face "
      "pairs differently); anything else is a folder (which must not exist yet, or be empty) with "
      "config.json, model.safetensors, generation_config.json and tokenizer files. Files are "
      "written atomically: an existing output is never left half-written.");
  cv->callback([c, &run] { run = [c] { return run_convert(*c); }; });
}

}  // namespace lmkit::app
