// lmkit tokenizer train: learn a byte-level BPE vocabulary from text files and save it as a
// Hugging Face tokenizer.json + tokenizer_config.json. Not an encoder: see `lmkit tokenize`.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "apps/commands.h"
#include "core/error.h"
#include "core/timer.h"
#include "train/bpe_trainer.h"
#include "train/progress.h"

namespace lmkit::app {

namespace {

struct TokenizerTrainFlags {
  std::vector<std::string> inputs, specials = {"<|endoftext|>"};
  std::string out;
  int64_t vocab_size = 8192, min_frequency = 2, max_length = 2048;
  int threads = 0;
  bool no_bos = false, json = false;
};

int run_tokenizer_train(const TokenizerTrainFlags &f) {
  BpeTrainOptions opt;
  opt.vocab_size = f.vocab_size;
  opt.min_frequency = f.min_frequency;
  opt.special_tokens = f.specials;
  opt.add_bos = !f.no_bos;
  opt.model_max_length = f.max_length;
  opt.n_threads = f.threads > 0 ? f.threads : std::max(1, int(std::thread::hardware_concurrency()));
  double t0 = now_seconds();
  size_t bytes = 0;
  for (const std::string &p : f.inputs)
    if (std::filesystem::is_regular_file(p)) bytes += std::filesystem::file_size(p);
  BpeVocab v = bpe_train_files(f.inputs, opt);
  bpe_save(v, f.out);
  double dt = now_seconds() - t0;
  std::string file = (std::filesystem::path(f.out) / "tokenizer.json").string();
  if (f.json) {
    nlohmann::json j = {{"tokenizer", file},
                        {"vocab_size", v.n_vocab()},
                        {"merges", v.merges.size()},
                        {"special_tokens", f.specials},
                        {"input_bytes", bytes},
                        {"words", v.n_words},
                        {"unique_words", v.n_unique_words},
                        {"text_tokens", v.n_text_tokens},
                        {"seconds", dt}};
    write_out(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    return 0;
  }
  std::string out;
  out += str_cat("tokenizer  ", file, "\n");
  out += str_cat("vocab      ", v.n_vocab(), " tokens: ", v.n_special, " special, 256 bytes, ",
                 v.merges.size(), " merges");
  if (v.n_vocab() < f.vocab_size)
    out += str_cat(" (stopped early: no pair occurs ", f.min_frequency, "+ times)");
  out += "\n";
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "text       %s, %lld words (%lld distinct) -> %lld tokens (%.2f bytes/token)\n"
                "time       %.2f s\n",
                ProgressBar::format_bytes(double(bytes)).c_str(), (long long)v.n_words,
                (long long)v.n_unique_words, (long long)v.n_text_tokens,
                v.n_text_tokens > 0 ? double(bytes) / double(v.n_text_tokens) : 0.0, dt);
  out += buf;
  write_out(out);
  return 0;
}

}  // namespace

void add_tokenizer(CLI::App &app, Action &run) {
  CLI::App *group = app.add_subcommand("tokenizer", "Train tokenizers (see `tokenizer train`)");
  group->require_subcommand(1);
  auto f = std::make_shared<TokenizerTrainFlags>();
  CLI::App *cmd = group->add_subcommand(
      "train",
      "Train a byte-level BPE tokenizer (GPT-2 style) on text files and save it as a Hugging "
      "Face tokenizer.json + tokenizer_config.json");
  cmd->add_option("-i,--input", f->inputs, "Text files (UTF-8) to learn from")
      ->required()
      ->expected(1, -1);
  cmd->add_option("-o,--out", f->out, "Output folder (created if missing)")->required();
  cmd->add_option("--vocab-size", f->vocab_size,
                  "Vocabulary size, counting the 256 byte tokens and the special tokens")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(257), int64_t(1) << 24));
  cmd->add_option("--special", f->specials,
                  "Special tokens, ids 0.. in order; the first is BOS and EOS")
      ->capture_default_str()
      ->expected(1, -1);
  cmd->add_option("--min-frequency", f->min_frequency,
                  "Stop when the most frequent pair occurs fewer times than this")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), std::numeric_limits<int64_t>::max()));
  cmd->add_option("--max-length", f->max_length,
                  "model_max_length written to tokenizer_config.json")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), std::numeric_limits<int64_t>::max()));
  cmd->add_flag("--no-bos", f->no_bos,
                "Do not put the first special token in front of encoded text");
  cmd->add_option("--threads", f->threads, "Threads (default: all hardware threads)")
      ->check(CLI::Range(0, 1024));
  cmd->add_flag("--json", f->json, "Print a JSON summary");
  cmd->callback([f, &run] { run = [f] { return run_tokenizer_train(*f); }; });
}

}  // namespace lmkit::app
