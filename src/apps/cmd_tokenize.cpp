// lmkit tokenize: text to token ids (and pieces) with a model's tokenizer.
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "core/error.h"
#include "core/mmap.h"

namespace lmkit::app {

namespace {

struct TokenizeFlags {
  std::string model, tokenizer, prompt, file;
  bool raw = false, json = false, pieces = false;
};

int run_tokenize(const TokenizeFlags &f) {
  std::string text = f.file.empty() ? f.prompt : read_file(f.file);
  auto tok = load_tokenizer_for(f.model, f.tokenizer);
  std::vector<int32_t> ids = tok->encode(text, /*add_special=*/!f.raw, /*parse_special=*/!f.raw);
  if (f.json) {
    nlohmann::json j;
    j["ids"] = ids;
    std::vector<std::string> pieces;
    for (int32_t id : ids) pieces.push_back(tok->piece(id));
    j["pieces"] = pieces;
    write_out(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    return 0;
  }
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (f.pieces)
      out += std::to_string(ids[i]) + "\t" + tok->piece(ids[i]) + "\n";
    else
      out += (i ? " " : "") + std::to_string(ids[i]);
  }
  if (!f.pieces) out += "\n";
  write_out(out);
  return 0;
}

}  // namespace

void add_tokenize(CLI::App &app, Action &run) {
  auto f = std::make_shared<TokenizeFlags>();
  CLI::App *cmd = app.add_subcommand("tokenize", "Turn text into token ids");
  cmd->add_option("-m,--model", f->model,
                  "Model or vocabulary: HF folder, .gguf (vocab-only works), llama2.c .bin, or a "
                  "tokenizer file")
      ->required();
  cmd->add_option("-t,--tokenizer", f->tokenizer, "Tokenizer file (overrides the model's)");
  auto *p = cmd->add_option("-p,--prompt", f->prompt, "Text to tokenize");
  auto *pf = cmd->add_option("-f,--file", f->file, "Read the text from a file");
  p->excludes(pf);
  cmd->add_flag("--raw", f->raw,
                "No BOS/EOS, and special-token text is plain text (as the conformance vectors)");
  cmd->add_flag("--pieces", f->pieces, "One line per token: id, tab, vocabulary piece");
  cmd->add_flag("--json", f->json, "Print {\"ids\": [...], \"pieces\": [...]}");
  cmd->callback([f, &run] { run = [f] { return run_tokenize(*f); }; });
}

}  // namespace lmkit::app
