// lmkit chat: an interactive conversation on stdin/stdout using the model's chat template (or a
// documented plain fallback), reusing the KV cache across turns.
#include <unistd.h>

#include <iostream>

#include "apps/commands.h"
#include "core/error.h"
#include "runtime/generate.h"
#include "tokenizer/chat_template.h"

namespace lmkit::app {

namespace {

struct ChatFlags {
  ModelFlags model;
  SamplingFlags sampling;
  std::string system;
  int64_t n = 512;
  int64_t ctx = 0;
};

std::string trim(std::string s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

int run_chat(const ChatFlags &f) {
  LoadedModel lm = f.model.load();
  const Tokenizer &tok = *lm.tokenizer;
  const ModelConfig &c = lm.model->config();
  const int64_t n_ctx = f.ctx > 0 ? f.ctx : std::min<int64_t>(c.n_ctx_train, 4096);
  std::unique_ptr<ChatTemplate> tmpl;
  if (!tok.chat_template().empty()) tmpl = std::make_unique<ChatTemplate>(tok.chat_template());
  auto piece = [&](int32_t id) { return id >= 0 ? tok.piece(id) : std::string(); };
  const std::string bos = piece(tok.bos_id()), eos = piece(tok.eos_id());

  auto pool = std::make_shared<ThreadPool>(f.model.thread_count());
  Session session(lm.model, pool, n_ctx);
  GenerateOptions opt;
  opt.sampling = f.sampling.params();
  if (!tmpl) opt.stop = {"\nuser:"};  // the fallback format's next turn

  const bool tty = ::isatty(STDIN_FILENO);
  if (tty)
    std::fprintf(stderr, "lmkit chat: %s (%s). /reset starts over, /exit or Ctrl-D quits.\n",
                 lm.path.c_str(), tmpl ? "chat template" : "no chat template: plain turns");
  std::vector<ChatMessage> messages;
  if (!f.system.empty()) messages.push_back({"system", f.system});
  const size_t base = messages.size();
  std::string line;
  for (;;) {
    if (tty) write_out("> ");
    if (!std::getline(std::cin, line)) break;
    line = trim(line);
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      messages.resize(base);
      session.rewind(0);
      continue;
    }
    if (line.empty()) continue;
    messages.push_back({"user", line});
    std::vector<int32_t> ids;
    if (tmpl)
      ids = tok.encode(tmpl->apply(messages, true, bos, eos), /*add_special=*/false, true);
    else
      ids = tok.encode(chat_apply_fallback(messages, true), /*add_special=*/true, true);
    int64_t room = n_ctx - int64_t(ids.size());
    if (room <= 0) {
      std::fprintf(stderr, "lmkit: the conversation fills the context (%lld tokens); /reset\n",
                   (long long)n_ctx);
      messages.pop_back();
      continue;
    }
    opt.max_tokens = std::min(f.n, room);
    GenerateResult r = generate(session, tok, ids, opt, [](std::string_view s) {
      write_out(s);
      return true;
    });
    write_out("\n");
    messages.push_back({"assistant", trim(r.text)});
  }
  return 0;
}

}  // namespace

void add_chat(CLI::App &app, Action &run) {
  auto f = std::make_shared<ChatFlags>();
  CLI::App *cmd =
      app.add_subcommand("chat", "Talk with a model (reads your turns from stdin; /reset, /exit)");
  f->model.add_to(cmd);
  cmd->add_option("--system", f->system, "System prompt");
  cmd->add_option("-n,--n-predict", f->n, "Tokens per reply at most")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  cmd->add_option("--ctx", f->ctx, "Context size (default: the model's, at most 4096)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 24));
  f->sampling.add_to(cmd);
  cmd->callback([f, &run] { run = [f] { return run_chat(*f); }; });
}

}  // namespace lmkit::app
