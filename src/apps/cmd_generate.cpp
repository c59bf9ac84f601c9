// lmkit generate: continue a prompt and stream the text (or print one JSON object).
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "core/error.h"
#include "core/mmap.h"
#include "runtime/generate.h"

namespace lmkit::app {

namespace {

struct GenerateFlags {
  ModelFlags model;
  SamplingFlags sampling;
  std::string prompt;
  std::string prompt_file;
  int64_t n = 128;
  int64_t ctx = 0;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool json = false;
};

int run_generate(const GenerateFlags &f) {
  LMKIT_CHECK(f.n >= 0, "-n must be >= 0, got ", f.n);
  std::string text = f.prompt_file.empty() ? f.prompt : read_file(f.prompt_file);
  LoadedModel lm = f.model.load();
  const Tokenizer &tok = *lm.tokenizer;
  std::vector<int32_t> prompt = tok.encode(text, /*add_special=*/true, /*parse_special=*/true);
  LMKIT_CHECK(!prompt.empty(), "the prompt is empty and the tokenizer adds no BOS token");
  const ModelConfig &c = lm.model->config();
  int64_t need = int64_t(prompt.size()) + f.n;
  int64_t n_ctx = f.ctx > 0 ? f.ctx : need;
  LMKIT_CHECK(f.ctx > 0 || need <= c.n_ctx_train, "-n ", f.n, ": the prompt (", prompt.size(),
              " tokens) plus ", f.n, " new tokens exceed the model's context of ", c.n_ctx_train,
              " (lower -n, or raise --ctx at your own risk)");
  LMKIT_CHECK(need <= n_ctx, "-n ", f.n, ": the prompt (", prompt.size(), " tokens) plus ", f.n,
              " new tokens exceed --ctx ", n_ctx);

  auto pool = std::make_shared<ThreadPool>(f.model.thread_count());
  Session session(lm.model, pool, n_ctx);
  GenerateOptions opt;
  opt.max_tokens = f.n;
  opt.stop = f.stop;
  opt.ignore_eos = f.ignore_eos;
  opt.sampling = f.sampling.params();

  if (f.json) {
    GenerateResult r = generate(session, tok, prompt, opt);
    nlohmann::json j;
    j["model"] = lm.path;
    j["prompt_tokens"] = prompt;
    j["tokens"] = r.tokens;
    j["text"] = r.text;
    j["finish_reason"] = r.finish_reason;
    j["n_prompt"] = prompt.size();
    j["n_generated"] = r.tokens.size();
    j["prefill_tok_s"] = r.prefill_tok_s();
    j["decode_tok_s"] = r.decode_tok_s();
    j["seed"] = opt.sampling.seed;
    j["threads"] = pool->size();
    write_out(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    return 0;
  }
  // Echo the prompt as the model sees it (decoded), then stream the continuation.
  write_out(tok.decode(prompt));
  GenerateResult r = generate(session, tok, prompt, opt, [](std::string_view s) {
    write_out(s);
    return true;
  });
  write_out("\n");
  std::fprintf(stderr, "[prompt %zu tokens, %.1f tok/s | generated %zu tokens, %.1f tok/s | %s]\n",
               prompt.size(), r.prefill_tok_s(), r.tokens.size(), r.decode_tok_s(),
               r.finish_reason.c_str());
  return 0;
}

}  // namespace

void add_generate(CLI::App &app, Action &run) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App *cmd = app.add_subcommand("generate", "Continue a prompt and stream the text");
  f->model.add_to(cmd);
  auto *p = cmd->add_option("-p,--prompt", f->prompt, "Prompt text");
  auto *pf = cmd->add_option("-f,--file", f->prompt_file, "Read the prompt from a file");
  p->excludes(pf);
  cmd->add_option("-n,--n-predict", f->n, "New tokens to generate at most")->capture_default_str();
  cmd->add_option("--ctx", f->ctx, "Context size (default: prompt + n, at most the model's)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 24));
  f->sampling.add_to(cmd);
  cmd->add_option("--stop", f->stop, "Stop before this text (repeatable)");
  cmd->add_flag("--ignore-eos", f->ignore_eos, "Do not stop at end-of-generation tokens");
  cmd->add_flag("--json", f->json,
                "Print one JSON object: prompt_tokens, tokens, text, finish_reason, "
                "prefill_tok_s, decode_tok_s, seed");
  cmd->callback([f, &run] { run = [f] { return run_generate(*f); }; });
}

}  // namespace lmkit::app
