// lmkit eval ppl: perplexity of a text file under any model lmkit loads.
#include <cmath>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "core/error.h"
#include "core/mmap.h"
#include "runtime/perplexity.h"
#include "train/progress.h"

namespace lmkit::app {

namespace {

struct EvalFlags {
  ModelFlags model;
  std::string file;
  int64_t ctx = 0;
  bool json = false;
};

int run_ppl(const EvalFlags &f) {
  const std::string text = read_file(f.file);
  LoadedModel lm = f.model.load();
  std::vector<int32_t> ids = lm.tokenizer->encode(text, /*add_special=*/true, /*parse_special=*/false);
  LMKIT_CHECK(ids.size() >= 2, f.file, ": the text gives ", ids.size(),
              " token(s); perplexity needs at least 2");
  const int64_t n_ctx = f.ctx > 0 ? f.ctx : lm.model->config().n_ctx_train;
  LMKIT_CHECK(lm.model->config().pos != PosEncoding::Learned ||
                  n_ctx <= lm.model->config().n_ctx_train,
              "--ctx ", n_ctx, " exceeds the model's ", lm.model->config().n_ctx_train,
              " learned positions");
  ThreadPool pool(f.model.thread_count());
  ProgressBar bar(int64_t(ids.size()) - 1, "ppl", ProgressBar::Unit::Count, "tok");
  if (f.json) bar.set_enabled(false);
  PerplexityResult r = perplexity(*lm.model, ids, n_ctx, pool,
                                  [&](int64_t done, int64_t) { bar.update(done); });
  bar.finish();
  nlohmann::ordered_json j;
  j["tokens"] = r.tokens;
  j["nll_sum"] = r.nll_sum;
  j["ppl"] = r.ppl();
  if (f.json) {
    j["windows"] = r.windows;
    j["ctx"] = std::min<int64_t>(n_ctx, int64_t(ids.size()));
    write_out(j.dump() + "\n");
  } else {
    write_out(str_cat("perplexity ", r.ppl(), " over ", r.tokens, " tokens (mean NLL ",
                      r.nll_sum / double(r.tokens), " nats, ", r.windows, " window(s))\n"));
  }
  return 0;
}

}  // namespace

void add_eval(CLI::App &app, Action &run) {
  CLI::App *eval = app.add_subcommand("eval", "Evaluate a model");
  eval->require_subcommand(1);
  auto f = std::make_shared<EvalFlags>();
  CLI::App *ppl = eval->add_subcommand("ppl", "Perplexity of a text file");
  f->model.add_to(ppl);
  ppl->add_option("-f,--file", f->file, "Text file to score")->required();
  ppl->add_option("--ctx", f->ctx, "Window size in tokens (default: the model's context)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 24));
  ppl->add_flag("--json", f->json, "Print {\"tokens\": N, \"nll_sum\": X, \"ppl\": Y}");
  ppl->footer(
      "The text is tokenized as a prompt is (with BOS when the tokenizer says so); every token but "
      "the first is predicted and scored once. A text longer than the window is scored in "
      "sliding windows of --ctx tokens that start every ctx/2 tokens, each run from position 0; a "
      "token is scored in the first window where it lies past the tokens already scored, so each "
      "token after the first window sees at least ctx/2 tokens of context. ppl = exp(nll_sum / "
      "tokens).");
  ppl->callback([f, &run] { run = [f] { return run_ppl(*f); }; });
}

}  // namespace lmkit::app
