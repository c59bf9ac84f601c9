// lmkit demo: the README's first command: runs a real pretrained model (llama2.c's stories260K
// from ../shared/models) greedily and sampled, reports speed, and shows the next commands.
// Not a benchmark (see bench/) and not training (that arrives with `lmkit train`).
#include <filesystem>

#include "apps/commands.h"
#include "core/error.h"
#include "core/timer.h"
#include "kernels/kernels.h"
#include "runtime/generate.h"

namespace lmkit::app {

namespace {

namespace fs = std::filesystem;

struct DemoFlags {
  std::string model;
  int threads = 1;
  int64_t n = 200;
};

// Where the shared stories260K model may be: $LMKIT_SHARED_DIR, then ../shared beside the
// checkout (found from the executable's path, build/lmkit), then ../shared from here.
std::string find_stories() {
  std::vector<fs::path> roots;
  if (const char *env = std::getenv("LMKIT_SHARED_DIR"); env && *env) roots.emplace_back(env);
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) roots.push_back(exe.parent_path().parent_path().parent_path() / "shared");
  roots.push_back(fs::current_path() / ".." / "shared");
  for (const auto &r : roots) {
    fs::path p = r / "models" / "stories260K" / "stories260K.bin";
    if (fs::exists(p)) return fs::weakly_canonical(p).string();
  }
  return "";
}

int run_demo(const DemoFlags &f) {
  std::string path = f.model.empty() ? find_stories() : f.model;
  LMKIT_CHECK(!path.empty(),
              "demo: stories260K.bin not found (looked in $LMKIT_SHARED_DIR/models and "
              "../shared/models beside the checkout); pass one with --model");
  LoadedModel lm = load_model(path);
  LMKIT_CHECK(lm.tokenizer != nullptr, path, ": no tokenizer beside it (tok512.bin)");
  const ModelConfig &c = lm.model->config();
  const Tokenizer &tok = *lm.tokenizer;
  write_out(str_cat("lmkit demo: a real pretrained Llama-architecture model, run on this CPU.\n",
                    "  model    ", path, "\n", "  shape    ", c.n_layer, " layers, d_model ",
                    c.n_embd, ", ", c.n_head, " heads (", c.n_head_kv, " KV), vocab ", c.n_vocab,
                    ", ", lm.model->weights().n_params(), " parameters\n", "  kernels  ",
                    kernels::active().name, ", ", f.threads, " thread(s)\n\n"));

  auto pool = std::make_shared<ThreadPool>(f.threads);
  const std::string prompt_text = "Once upon a time";
  std::vector<int32_t> prompt = tok.encode(prompt_text);
  const int64_t n = std::min<int64_t>(f.n, c.n_ctx_train - int64_t(prompt.size()));
  auto stream = [](std::string_view s) {
    write_out(s);
    return true;
  };
  for (int run = 0; run < 2; ++run) {
    Session session(lm.model, pool, int64_t(prompt.size()) + n);
    GenerateOptions opt;
    opt.max_tokens = n;
    opt.sampling.temperature = run == 0 ? 0.0f : 0.8f;
    opt.sampling.seed = 42;
    write_out(run == 0 ? "--- greedy (temperature 0) ---\n"
                       : "\n\n--- sampled (temperature 0.8, top-k 40, top-p 0.95, seed 42) ---\n");
    write_out(tok.decode(prompt));
    GenerateResult r = generate(session, tok, prompt, opt, stream);
    write_out(
        str_cat("\n[", r.tokens.size(), " tokens, decode ", int64_t(r.decode_tok_s()), " tok/s]"));
  }
  const std::string tokp = (fs::path(path).parent_path() / "tok512.bin").string();
  write_out(str_cat("\n\nNext:\n", "  ./build/lmkit generate -m ", path,
                    " -p \"Lily and Tom\" -n 100\n", "  ./build/lmkit generate -m ", path,
                    " -p \"Once upon a time\" --temp 0 --json\n", "  ./build/lmkit chat -m ", path,
                    "\n", "  ./build/lmkit inspect -m ", path, "\n", "  ./build/lmkit tokenize -m ",
                    tokp, " -p \"Hello world\" --json\n"));
  return 0;
}

}  // namespace

void add_demo(CLI::App &app, Action &run) {
  auto f = std::make_shared<DemoFlags>();
  CLI::App *cmd = app.add_subcommand(
      "demo", "Run a real pretrained model (stories260K) greedily and sampled, with timings");
  cmd->add_option("--model", f->model, "llama2.c checkpoint to use (default: stories260K)");
  cmd->add_option("--threads", f->threads, "Threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("-n", f->n, "Tokens per story")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  cmd->callback([f, &run] { run = [f] { return run_demo(*f); }; });
}

}  // namespace lmkit::app
