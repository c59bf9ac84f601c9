// lmkit serve: the OpenAI-compatible HTTP server (routes in server/openai, batching in
// server/engine). Loads the model, binds, prints where it listens, serves until SIGTERM/SIGINT,
// then drains in-flight requests and exits 0.
#include <csignal>
#include <cstdio>
#include <filesystem>

#include "apps/commands.h"
#include "core/error.h"
#include "server/engine.h"
#include "server/http.h"
#include "server/openai.h"

namespace lmkit::app {

namespace {

struct ServeFlags {
  ModelFlags model;
  std::string host = "127.0.0.1";
  int port = 8080;
  int parallel = 4;
  int64_t ctx = 0;
  int64_t batch = 256;
  int queue = 64;
  int max_connections = 256;
  double max_body_mb = 8;
  std::string api_key;
  std::string model_id;
};

std::atomic<http::Server *> g_server{nullptr};

void on_signal(int) {
  if (http::Server *s = g_server.load()) s->request_stop();
}

// "stories260K" for .../stories260K.bin, "llama110m" for a folder .../llama110m/.
std::string default_model_id(const std::string &path) {
  std::filesystem::path p(path);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();
  return p.has_stem() ? p.stem().string() : "model";
}

int run_serve(const ServeFlags &f) {
  LMKIT_CHECK(f.port >= 0 && f.port <= 65535, "--port must be in [0, 65535], got ", f.port);
  LoadedModel lm = f.model.load();
  const ModelConfig &c = lm.model->config();
  serve::EngineOptions eo;
  eo.n_slots = f.parallel;
  eo.n_ctx = f.ctx > 0 ? f.ctx : std::min<int64_t>(c.n_ctx_train, 4096);
  eo.n_batch = std::max<int64_t>(f.batch, f.parallel);
  eo.max_queue = size_t(f.queue);
  auto pool = std::make_shared<ThreadPool>(f.model.thread_count());
  serve::Engine engine(lm.model, lm.tokenizer, pool, eo);

  serve::ApiOptions ao;
  ao.model_id = f.model_id.empty() ? default_model_id(lm.path) : f.model_id;
  ao.api_key = f.api_key;
  ao.created = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  serve::Api api(engine, ao);

  http::Server::Options so;
  so.host = f.host;
  so.port = f.port;
  so.max_connections = f.max_connections;
  so.limits.max_body_bytes = size_t(f.max_body_mb * 1024 * 1024);
  http::Server server(so, [&api](const http::Request &q, http::Response &r) { api.handle(q, r); });
  server.start();
  g_server = &server;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  std::fprintf(stderr,
               "lmkit serve: model %s (%s), %d parallel sequences x %lld tokens of context, "
               "%d threads; %s%s\n",
               ao.model_id.c_str(), model_format_name(lm.format), eo.n_slots,
               (long long)engine.n_ctx(), pool->size(), api.template_note().c_str(),
               f.api_key.empty() ? "" : "; API key required");
  std::printf("lmkit serve: listening on http://%s:%d\n",
              f.host.find(':') != std::string::npos ? ("[" + f.host + "]").c_str() : f.host.c_str(),
              server.port());
  std::fflush(stdout);
  server.run();
  g_server = nullptr;
  std::fprintf(stderr, "lmkit serve: stopped\n");
  return 0;
}

}  // namespace

void add_serve(CLI::App &app, Action &run) {
  auto f = std::make_shared<ServeFlags>();
  CLI::App *cmd = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API");
  f->model.add_to(cmd);
  cmd->add_option("--host", f->host, "Address to bind (default 127.0.0.1: this machine only)");
  cmd->add_option("--port", f->port, "TCP port (0: any free port; the chosen one is printed)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--parallel", f->parallel, "Sequences decoded together (KV-cache slots)")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--ctx", f->ctx,
                  "Context per sequence in tokens (default: the model's, at most 4096)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 24));
  cmd->add_option("--batch", f->batch, "Rows per batched forward (decode rows + prompt chunks)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 16));
  cmd->add_option("--queue", f->queue, "Sequences waiting for a slot before 503 (server busy)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--max-connections", f->max_connections, "Open connections at most (beyond: 503)")
      ->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--max-body-mb", f->max_body_mb, "Largest request body in MiB (beyond: 413)")
      ->check(CLI::Range(0.001, 1024.0));
  cmd->add_option("--api-key", f->api_key,
                  "Require 'Authorization: Bearer KEY' on /v1/* (default: no key)");
  cmd->add_option("--model-id", f->model_id,
                  "Name the API reports for the model (default: the file or folder name)");
  cmd->footer(
      "Routes: GET /v1/models, POST /v1/completions, POST /v1/chat/completions, POST "
      "/v1/embeddings, GET /health, GET /metrics (Prometheus), GET / (chat page). Concurrent "
      "requests are decoded together in one batched forward per step (continuous batching); a "
      "long prompt is prefilled in chunks so it does not stall the others. SIGTERM or Ctrl-C "
      "stops accepting, lets in-flight requests finish (up to 10 s) and exits 0. See the README "
      "for the API's details and the chat-template fallback.");
  cmd->callback([f, &run] { run = [f] { return run_serve(*f); }; });
}

}  // namespace lmkit::app
