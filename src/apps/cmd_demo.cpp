// lmkit demo: the README's main command. On a fresh machine with nothing downloaded it writes a
// corpus (lmkit's own procedural stories), trains a BPE tokenizer on it, tokenizes it, trains a
// small llama-family model for about two minutes, shows what it learned (validation loss against
// the unigram baseline, sampled stories) and how to use the result. Not a benchmark.
#include <cmath>
#include <filesystem>

#include "apps/commands.h"
#include "core/error.h"
#include "core/timer.h"
#include "io/atomic_file.h"
#include "kernels/kernels.h"
#include "runtime/generate.h"
#include "train/bpe_trainer.h"
#include "train/data.h"
#include "train/story_corpus.h"
#include "train/trainer.h"

namespace lmkit::app {

namespace {

namespace fs = std::filesystem;

struct DemoFlags {
  std::string out = "runs/demo";
  int threads = 0;
  int64_t steps = 0;  // 0: the demo preset's
  int64_t corpus_bytes = 4000000;
};

int run_demo(const DemoFlags &f) {
  const fs::path dir = f.out;
  fs::create_directories(dir);
  const int threads =
      f.threads > 0 ? f.threads : std::max(1, int(std::thread::hardware_concurrency()));
  auto say = [](const std::string &s) { write_out(s); };
  say(str_cat("lmkit demo: train a language model from scratch on this machine (", threads,
              " threads, ", kernels::active().name, " kernels), into ", dir.string(), "\n\n"));

  // 1. A corpus lmkit writes itself: deterministic, no download.
  const double t0 = now_seconds();
  const fs::path corpus = dir / "stories.txt";
  write_file_atomic(corpus.string(), story_corpus(1, size_t(f.corpus_bytes)));
  say(str_cat("1. corpus     ", corpus.string(), ": ", f.corpus_bytes / 1e6,
              " MB of procedurally generated stories\n"));

  // 2. A byte-level BPE tokenizer trained on it.
  BpeTrainOptions bo;
  bo.vocab_size = 2048;
  bo.n_threads = threads;
  bo.progress = false;
  BpeVocab vocab = bpe_train_files({corpus.string()}, bo);
  const fs::path tok = dir / "tokenizer";
  fs::create_directories(tok);
  bpe_save(vocab, tok.string());
  say(str_cat("2. tokenizer  ", tok.string(), ": byte-level BPE, ", vocab.n_vocab(),
              " tokens (HF tokenizer.json)\n"));

  // 3. Token shards with a validation split.
  DataPrepareOptions dp;
  dp.n_threads = threads;
  dp.progress = false;
  DataMeta meta = data_prepare(tok.string(), {corpus.string()}, (dir / "data").string(), dp);
  say(str_cat("3. data       ", (dir / "data").string(), ": ", meta.train_tokens,
              " training tokens, ", meta.val_tokens, " validation tokens\n"));

  // 4. Train.
  TrainConfig cfg = train_preset("demo");
  cfg.data = (dir / "data").string();
  cfg.threads = threads;
  if (f.steps > 0) cfg.steps = f.steps;
  const fs::path run = dir / "run";
  if (fs::exists(run)) fs::remove_all(run);  // a fresh run each time the demo is started
  say(str_cat("4. training   a llama-family model: ", cfg.n_layer, " layers, d_model ", cfg.n_embd,
              ", ", cfg.n_head, " heads (", cfg.n_head_kv, " KV), context ", cfg.context, ", ",
              cfg.steps, " steps of ", cfg.batch_size * cfg.context, " tokens\n"));
  TrainOptions to;
  to.quiet = true;
  TrainResult r = train(cfg, run.string(), to);
  const fs::path final_dir = dir / "final";
  fs::remove_all(final_dir);
  fs::rename(r.final_dir, final_dir);
  say(str_cat("   done: validation loss ", r.final_val_loss, " nats/token vs ", r.unigram_val_loss,
              " for the unigram baseline (a model that ignores context);\n", "   ",
              int64_t(r.tok_s), " tok/s, MFU ", int(100 * r.mfu), "%; metrics and loss.svg in ",
              run.string(), "\n\n"));

  // 5. What it learned.
  LoadedModel lm = load_model(final_dir.string());
  auto pool = std::make_shared<ThreadPool>(threads);
  say("5. samples (temperature 0.8):\n");
  int seed = 1;
  for (const char *p : {"Once upon a time", "One day, Lily", "The little dog"}) {
    std::vector<int32_t> ids = lm.tokenizer->encode(p);
    Session s(lm.model, pool, lm.model->config().n_ctx_train);
    GenerateOptions opt;
    opt.max_tokens = 60;
    opt.sampling.temperature = 0.8f;
    opt.sampling.seed = uint64_t(seed++);
    say(str_cat("   > ", p));
    generate(s, *lm.tokenizer, ids, opt, [&](std::string_view t) {
      std::string line(t);
      for (size_t i = 0; (i = line.find('\n', i)) != std::string::npos; i += 5)
        line.replace(i, 1, "\n     ");
      say(line);
      return true;
    });
    say("\n");
  }
  const std::string m = final_dir.string();
  const int64_t secs = std::llround(now_seconds() - t0);
  say(str_cat("\nThe model is a Hugging Face folder: ", m, "  (", secs / 60, " min ", secs % 60,
              " s in all)\n", "Next:\n", "  ./build/lmkit generate -m ", m,
              " -p \"Once upon a time\" -n 100\n", "  ./build/lmkit chat -m ", m, "\n",
              "  ./build/lmkit serve -m ", m, "   # OpenAI API + chat page at http://127.0.0.1:8080\n",
              "  ./build/lmkit eval ppl -m ", m, " -f ", corpus.string(), " --ctx 128\n",
              "  ./build/lmkit train --resume ", run.string(), " --steps ", 2 * cfg.steps,
              "   # keep training the same run\n"));
  return 0;
}

}  // namespace

void add_demo(CLI::App &app, Action &run) {
  auto f = std::make_shared<DemoFlags>();
  CLI::App *cmd = app.add_subcommand(
      "demo",
      "Train a small model from scratch in about two minutes (corpus, tokenizer, data, training, "
      "samples)");
  cmd->add_option("--out", f->out, "Output folder (the model lands in OUT/final)")
      ->capture_default_str();
  cmd->add_option("--threads", f->threads, "Threads (default: all hardware threads)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--steps", f->steps, "Training steps (default: the demo preset's)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  cmd->add_option("--corpus-bytes", f->corpus_bytes, "Size of the generated corpus")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(100000), int64_t(1) << 32));
  cmd->callback([f, &run] { run = [f] { return run_demo(*f); }; });
}

}  // namespace lmkit::app
