// lmkit data prepare | stories: tokenize text files into token shards for training, and write
// lmkit's procedural story corpus. Not the loader: training reads the shards (train/data.h).
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "core/error.h"
#include "core/timer.h"
#include "io/atomic_file.h"
#include "train/data.h"
#include "train/progress.h"
#include "train/story_corpus.h"

namespace lmkit::app {

namespace {

struct PrepareFlags {
  std::string tokenizer, out;
  std::vector<std::string> inputs;
  double val_fraction = 0.05;
  int threads = 0;
  std::string documents = "paragraphs";
  int64_t shard_tokens = int64_t(1) << 26;
  bool json = false;
};

struct StoriesFlags {
  std::string out;
  int64_t bytes = 4'000'000;
  uint64_t seed = 1;
};

int run_prepare(const PrepareFlags &f) {
  DataPrepareOptions opt;
  opt.val_fraction = f.val_fraction;
  opt.n_threads = f.threads;
  opt.split_paragraphs = f.documents == "paragraphs";
  opt.shard_tokens = f.shard_tokens;
  DataMeta m = data_prepare(f.tokenizer, f.inputs, f.out, opt);
  if (f.json) {
    nlohmann::json j = {{"dir", m.dir},
                        {"tokenizer", m.tokenizer},
                        {"vocab_size", m.vocab_size},
                        {"token_bytes", m.token_bytes},
                        {"separator_id", m.separator_id},
                        {"train_tokens", m.train_tokens},
                        {"val_tokens", m.val_tokens},
                        {"train_documents", m.train_documents},
                        {"val_documents", m.val_documents},
                        {"train_shards", m.train_shards},
                        {"val_shards", m.val_shards},
                        {"unigram_entropy", m.unigram_entropy},
                        {"val_unigram_loss", m.val_unigram_loss},
                        {"input_bytes", m.input_bytes},
                        {"repaired_bytes", m.repaired_bytes},
                        {"seconds", m.seconds}};
    write_out(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    return 0;
  }
  auto count = [](int64_t n) { return ProgressBar::format_count(double(n)); };
  std::string out;
  out += str_cat("data       ", m.dir, "\n");
  out += str_cat("train      ", count(m.train_tokens), " tokens, ", m.train_documents,
                 " documents, ", m.train_shards.size(), " shard(s)\n");
  out += str_cat("val        ", count(m.val_tokens), " tokens, ", m.val_documents, " documents, ",
                 m.val_shards.size(), " shard(s)\n");
  out += str_cat("vocab      ", m.vocab_size, " (", m.token_bytes * 8,
                 "-bit tokens), separator id ", m.separator_id, "\n");
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "unigram    entropy %.3f nats/token (train); baseline loss %.3f "
                "on val\n",
                m.unigram_entropy, m.val_unigram_loss);
  out += buf;
  std::snprintf(
      buf, sizeof buf, "speed      %s in %.2f s (%s/s)\n",
      ProgressBar::format_bytes(double(m.input_bytes)).c_str(), m.seconds,
      ProgressBar::format_bytes(double(m.input_bytes) / std::max(1e-9, m.seconds)).c_str());
  out += buf;
  if (m.repaired_bytes > 0)
    out += str_cat("note       ", m.repaired_bytes,
                   " bytes of invalid UTF-8 were replaced by U+FFFD\n");
  write_out(out);
  return 0;
}

int run_stories(const StoriesFlags &f) {
  double t0 = now_seconds();
  std::string text = story_corpus(f.seed, size_t(f.bytes));
  double dt = now_seconds() - t0;
  if (f.out == "-") {
    write_out(text);
    return 0;
  }
  std::filesystem::path parent = std::filesystem::path(f.out).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    LMKIT_CHECK(!ec, parent.string(), ": cannot create folder (", ec.message(), ")");
  }
  write_file_atomic(f.out, text);
  size_t stories = 1;
  for (size_t i = 0; i + 1 < text.size(); ++i) stories += text[i] == '\n' && text[i + 1] == '\n';
  char buf[200];
  std::snprintf(buf, sizeof buf, "%s: %zu stories, %s (seed %llu, %.2f s)\n", f.out.c_str(),
                stories, ProgressBar::format_bytes(double(text.size())).c_str(),
                (unsigned long long)f.seed, dt);
  std::fputs(buf, stderr);
  return 0;
}

}  // namespace

void add_data(CLI::App &app, Action &run) {
  CLI::App *group = app.add_subcommand(
      "data", "Prepare training data: `data prepare` (text -> token shards), `data stories`");
  group->require_subcommand(1);

  auto p = std::make_shared<PrepareFlags>();
  CLI::App *prep = group->add_subcommand(
      "prepare",
      "Tokenize text files into binary token shards with a train/validation split (read by "
      "`lmkit train`)");
  prep->add_option("-t,--tokenizer", p->tokenizer,
                   "Tokenizer: a folder with tokenizer.json (e.g. from `lmkit tokenizer train`), "
                   "a tokenizer.json, a .gguf or a llama2.c tokenizer .bin")
      ->required();
  prep->add_option("-i,--input", p->inputs, "Text files (UTF-8)")->required()->expected(1, -1);
  prep->add_option("-o,--out", p->out, "Output folder (created if missing)")->required();
  prep->add_option("--val-fraction", p->val_fraction,
                   "Fraction of documents held out for validation, evenly spaced")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.5));
  prep->add_option("--documents", p->documents,
                   "What a document is: paragraphs (split at blank lines) or files")
      ->capture_default_str()
      ->check(CLI::IsMember({"paragraphs", "files"}));
  prep->add_option("--shard-tokens", p->shard_tokens, "Tokens per shard file")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), std::numeric_limits<int64_t>::max()));
  prep->add_option("--threads", p->threads, "Threads (default: all hardware threads)")
      ->check(CLI::Range(0, 1024));
  prep->add_flag("--json", p->json, "Print a JSON summary");
  prep->callback([p, &run] { run = [p] { return run_prepare(*p); }; });

  auto s = std::make_shared<StoriesFlags>();
  CLI::App *stories = group->add_subcommand(
      "stories",
      "Write lmkit's procedural story corpus: simple English stories, the same bytes for the "
      "same seed on every machine");
  stories->add_option("-o,--out", s->out, "Output text file, or - for stdout")->required();
  stories->add_option("--bytes", s->bytes, "Approximate size in bytes")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 34));
  stories->add_option("--seed", s->seed, "Random seed")->capture_default_str();
  stories->callback([s, &run] { run = [s] { return run_stories(*s); }; });
}

}  // namespace lmkit::app
