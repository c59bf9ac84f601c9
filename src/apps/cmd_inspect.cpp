// lmkit inspect: what a model file holds: format, config, tensor table, parameter count,
// tokenizer, hook points.
#include <cinttypes>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "core/error.h"
#include "model/hooks.h"

namespace lmkit::app {

namespace {

struct InspectFlags {
  std::string model, tokenizer;
  bool json = false, hooks = false;
};

const char *tokenizer_kind(TokenizerKind k) {
  switch (k) {
    case TokenizerKind::SentencePieceBPE:
      return "sentencepiece-bpe";
    case TokenizerKind::ByteLevelBPE:
      return "byte-level-bpe";
    case TokenizerKind::WordPiece:
      return "wordpiece";
  }
  return "?";
}

int run_inspect(const InspectFlags &f) {
  LoadedModel lm = load_model(f.model, f.tokenizer);
  const ModelConfig &c = lm.model->config();
  const Weights &w = lm.model->weights();
  nlohmann::ordered_json j;
  j["path"] = lm.path;
  j["format"] = model_format_name(lm.format);
  j["config"] = c.to_json();
  j["n_params"] = w.n_params();
  if (!lm.metadata.empty()) j["metadata"] = lm.metadata;
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  size_t bytes = 0;
  for (const auto &[name, t] : w.table) {
    std::vector<int64_t> shape(t.shape().dims.begin(), t.shape().dims.begin() + t.ndim());
    tensors.push_back({{"name", name}, {"dtype", dtype_name(t.dtype())}, {"shape", shape}});
    bytes += t.nbytes();
  }
  j["tensors"] = tensors;
  j["tensor_bytes"] = bytes;
  if (lm.tokenizer) {
    const Tokenizer &t = *lm.tokenizer;
    j["tokenizer"] = {{"kind", tokenizer_kind(t.kind())},
                      {"n_vocab", t.n_vocab()},
                      {"bos_id", t.bos_id()},
                      {"eos_id", t.eos_id()},
                      {"add_bos", t.add_bos()},
                      {"pre", t.pre()},
                      {"chat_template", !t.chat_template().empty()}};
  }
  if (f.hooks) j["hooks"] = Hooks::names(c.n_layer);
  if (f.json) {
    write_out(j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n");
    return 0;
  }
  std::string out =
      str_cat("model   ", lm.path, " (", j["format"].get<std::string>(), ")\n", "params  ",
              w.n_params(), " (", bytes / 1e6, " MB of tensors)\n\n", "config\n");
  for (auto it = j["config"].begin(); it != j["config"].end(); ++it)
    out += str_cat("  ", it.key(), std::string(24 - std::min<size_t>(it.key().size(), 23), ' '),
                   it.value().dump(), "\n");
  if (j.contains("metadata")) {
    out += "\nmetadata\n";
    for (const auto &[k, v] : lm.metadata) out += str_cat("  ", k, ": ", v, "\n");
  }
  if (j.contains("tokenizer")) {
    out += "\ntokenizer\n";
    for (auto it = j["tokenizer"].begin(); it != j["tokenizer"].end(); ++it)
      out += str_cat("  ", it.key(), std::string(24 - std::min<size_t>(it.key().size(), 23), ' '),
                     it.value().dump(), "\n");
  }
  out += "\ntensors\n";
  for (const auto &[name, t] : w.table)
    out += str_cat("  ", name, std::string(36 - std::min<size_t>(name.size(), 35), ' '),
                   dtype_name(t.dtype()), "  ", t.shape().str(), "\n");
  if (f.hooks) {
    out += "\nhook points\n";
    for (const auto &h : j["hooks"]) out += "  " + h.get<std::string>() + "\n";
  }
  write_out(out);
  return 0;
}

}  // namespace

void add_inspect(CLI::App &app, Action &run) {
  auto f = std::make_shared<InspectFlags>();
  CLI::App *cmd =
      app.add_subcommand("inspect", "Show a model's config, tensors, parameters and tokenizer");
  cmd->add_option("-m,--model", f->model, "Model: HF folder, .gguf or llama2.c .bin")->required();
  cmd->add_option("-t,--tokenizer", f->tokenizer, "Tokenizer file (overrides the model's)");
  cmd->add_flag("--hooks", f->hooks, "Also list the hook points (TransformerLens names)");
  cmd->add_flag("--json", f->json, "Print everything as one JSON object");
  cmd->callback([f, &run] { run = [f] { return run_inspect(*f); }; });
}

}  // namespace lmkit::app
