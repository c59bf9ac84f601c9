// The OpenAI-compatible REST API of `lmkit serve`: request validation (OpenAI field names, types
// and ranges; errors as {"error": {"message", "type", "param", "code"}}), the routes
// (/v1/models, /v1/completions, /v1/chat/completions, /v1/embeddings, /health, /metrics, the chat
// page at /), chat templates, streaming as server-sent events, and Prometheus metrics.
// Not the HTTP transport (http.h) and not the batching (engine.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "server/engine.h"
#include "server/http.h"
#include "tokenizer/chat_template.h"

namespace lmkit::serve {

struct ApiOptions {
  std::string model_id;  // what /v1/models lists and responses name
  std::string api_key;   // non-empty: /v1/* need "Authorization: Bearer <key>"
  int64_t created = 0;   // the model's "created" (unix seconds): when the server started
  int max_choices = 16;  // n x prompts per request at most
};

class Api {
 public:
  Api(Engine &engine, ApiOptions opt);
  ~Api();
  // The http::Handler: routes one request and answers it (never throws).
  void handle(const http::Request &req, http::Response &res);
  // The Prometheus text exposition served at /metrics.
  std::string metrics() const;
  // "chat template" or the reason the documented fallback is used.
  const std::string &template_note() const { return template_note_; }

 private:
  int route(const http::Request &req, http::Response &res);
  int completions(const http::Request &req, http::Response &res, bool chat);
  int embeddings(const http::Request &req, http::Response &res);
  void count(const std::string &route, int status);

  Engine &engine_;
  ApiOptions opt_;
  std::unique_ptr<ChatTemplate> template_;
  std::string template_note_;
  std::string bos_, eos_;
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;  // (route, status) -> count
};

}  // namespace lmkit::serve
