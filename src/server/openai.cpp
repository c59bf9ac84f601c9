// OpenAI routes over the engine. Every request body is validated field by field before any work
// is queued; a request's choices (n x prompts) become engine jobs that run in the shared batch.
#include "server/openai.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "server/web/assets.h"

namespace lmkit::serve {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

// ---- errors ----------------------------------------------------------------------------------

// A request the API refuses: becomes an OpenAI-style error body with this status.
struct ApiError {
  int status;
  std::string message, param, code;
  std::string type = status == 401   ? "authentication_error"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
};

std::string dump(const ojson &j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string error_body(const ApiError &e) {
  ojson err = {{"message", e.message},
               {"type", e.type},
               {"param", e.param.empty() ? ojson() : ojson(e.param)},
               {"code", e.code.empty() ? ojson() : ojson(e.code)}};
  return dump(ojson{{"error", err}});
}

const http::Headers kCors = {{"Access-Control-Allow-Origin", "*"}};

void send_json(http::Response &res, int status, const ojson &j, http::Headers h = kCors) {
  res.send(status, "application/json", dump(j), h);
}

// ---- typed field access with OpenAI-style errors ----------------------------------------------

const char *type_name(const json &v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "array";
    case json::value_t::object:
      return "object";
    case json::value_t::number_float:
      return "number";
    default:
      return "integer";
  }
}

[[noreturn]] void bad(const std::string &param, const std::string &msg,
                      const std::string &code = "invalid_value") {
  throw ApiError{400, msg, param, code};
}

[[noreturn]] void bad_type(const std::string &param, const json &v, const char *want) {
  bad(param, "'" + param + "' must be " + want + ", got " + type_name(v), "invalid_type");
}

// The field, or nullptr when absent or null (OpenAI treats null as "not given").
const json *field(const json &body, const char *name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

double get_number(const json &body, const char *name, double def, double lo, double hi) {
  const json *v = field(body, name);
  if (!v) return def;
  if (!v->is_number()) bad_type(name, *v, "a number");
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi))
    bad(name, "'" + std::string(name) + "' must be between " + json(lo).dump() + " and " +
                  json(hi).dump() + ", got " + v->dump());
  return x;
}

int64_t get_int(const json &body, const char *name, int64_t def, int64_t lo, int64_t hi) {
  const json *v = field(body, name);
  if (!v) return def;
  if (!v->is_number_integer() &&
      !(v->is_number_float() && v->get<double>() == std::floor(v->get<double>())))
    bad_type(name, *v, "an integer");
  const double x = v->get<double>();
  if (!(x >= double(lo) && x <= double(hi)))
    bad(name, "'" + std::string(name) + "' must be between " + std::to_string(lo) + " and " +
                  std::to_string(hi) + ", got " + v->dump());
  return int64_t(x);
}

bool get_bool(const json &body, const char *name, bool def) {
  const json *v = field(body, name);
  if (!v) return def;
  if (!v->is_boolean()) bad_type(name, *v, "a boolean");
  return v->get<bool>();
}

std::string get_string(const json &body, const char *name, const std::string &def) {
  const json *v = field(body, name);
  if (!v) return def;
  if (!v->is_string()) bad_type(name, *v, "a string");
  return v->get<std::string>();
}

// Fields OpenAI defines that lmkit accepts for compatibility but whose value must be the neutral
// one (anything else is an explicit error rather than silently ignored).
void check_neutral(const json &body) {
  for (const char *name : {"presence_penalty", "frequency_penalty"})
    if (get_number(body, name, 0, -2, 2) != 0)
      bad(name, std::string("'") + name + "' is not supported (use repeat_penalty)",
          "unsupported_parameter");
  if (const json *v = field(body, "logit_bias")) {
    if (!v->is_object()) bad_type("logit_bias", *v, "an object");
    if (!v->empty()) bad("logit_bias", "'logit_bias' is not supported", "unsupported_parameter");
  }
  get_string(body, "user", "");
  if (get_int(body, "best_of", 1, 1, 20) != 1)
    bad("best_of", "'best_of' other than 1 is not supported", "unsupported_parameter");
  if (const json *v = field(body, "suffix")) {
    if (!v->is_string()) bad_type("suffix", *v, "a string");
    if (!v->get<std::string>().empty())
      bad("suffix", "'suffix' (insertion) is not supported", "unsupported_parameter");
  }
  if (const json *v = field(body, "response_format")) {
    if (!v->is_object()) bad_type("response_format", *v, "an object");
    if (get_string(*v, "type", "text") != "text")
      bad("response_format", "only response_format {\"type\": \"text\"} is supported",
          "unsupported_parameter");
  }
  if (const json *v = field(body, "stream_options"); v && !v->is_object())
    bad_type("stream_options", *v, "an object");
  if (const json *v = field(body, "model"); v && !v->is_string()) bad_type("model", *v, "a string");
}

// OpenAI refuses arguments it does not know ("Unrecognized request argument supplied"); so does
// lmkit, rather than silently ignoring a misspelt option. `known`: the route's own arguments;
// `generation`: whether the arguments every generating route shares are allowed too.
void check_known(const json &body, std::initializer_list<std::string_view> known,
                 bool generation = true) {
  static constexpr std::string_view shared[] = {
      "max_tokens", "temperature", "top_p", "seed", "stop", "n", "logprobs", "stream",
      "stream_options", "presence_penalty", "frequency_penalty", "logit_bias",
      // llama.cpp-style extensions
      "top_k", "min_p", "repeat_penalty", "repeat_last_n", "ignore_eos"};
  for (const auto &[key, value] : body.items()) {
    auto is_key = [&](std::string_view k) { return key == k; };
    if (key == "model" || key == "user" || std::any_of(known.begin(), known.end(), is_key) ||
        (generation && std::any_of(std::begin(shared), std::end(shared), is_key)))
      continue;
    bad(key, "unrecognized request argument supplied: " + key, "unknown_parameter");
  }
}

std::vector<std::string> get_stop(const json &body) {
  const json *v = field(body, "stop");
  if (!v) return {};
  if (v->is_string()) return {v->get<std::string>()};
  if (!v->is_array()) bad_type("stop", *v, "a string or an array of strings");
  if (v->size() > 4)
    bad("stop", "'stop' holds at most 4 sequences, got " + std::to_string(v->size()));
  std::vector<std::string> out;
  for (const json &s : *v) {
    if (!s.is_string()) bad_type("stop", s, "a string or an array of strings");
    out.push_back(s.get<std::string>());
  }
  return out;
}

// OpenAI's sampling defaults (temperature 1, top_p 1, no top-k or min-p), plus llama.cpp-style
// extensions (top_k, min_p, repeat_penalty, repeat_last_n).
SamplerParams get_sampling(const json &body) {
  SamplerParams p;
  p.temperature = float(get_number(body, "temperature", 1.0, 0.0, 2.0));
  p.top_p = float(get_number(body, "top_p", 1.0, 0.0, 1.0));
  if (p.top_p == 0.0f) p.top_p = 1.0f, p.temperature = 0.0f;  // only the most likely token
  p.top_k = int32_t(get_int(body, "top_k", 0, 0, 1 << 20));
  p.min_p = float(get_number(body, "min_p", 0.0, 0.0, 1.0));
  p.repeat_penalty = float(get_number(body, "repeat_penalty", 1.0, 1e-3, 100.0));
  p.repeat_last_n = int32_t(get_int(body, "repeat_last_n", 64, 0, 1 << 20));
  if (field(body, "seed")) {
    p.seed = uint64_t(get_int(body, "seed", 0, INT64_MIN / 2, INT64_MAX / 2));
  } else {
    static std::mutex mu;
    static std::mt19937_64 gen{std::random_device{}()};
    std::lock_guard lk(mu);
    p.seed = gen();
  }
  return p;
}

std::string random_id(const char *prefix) {
  static std::mutex mu;
  static std::mt19937_64 gen{std::random_device{}()};
  std::lock_guard lk(mu);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s%016llx%08llx", prefix, (unsigned long long)gen(),
                (unsigned long long)(gen() & 0xffffffffu));
  return buf;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string base64(const void *data, size_t n) {
  static const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto *p = static_cast<const unsigned char *>(data);
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  for (size_t i = 0; i < n; i += 3) {
    const uint32_t v = uint32_t(p[i]) << 16 | (i + 1 < n ? uint32_t(p[i + 1]) << 8 : 0) |
                       (i + 2 < n ? uint32_t(p[i + 2]) : 0);
    out += tab[v >> 18 & 63];
    out += tab[v >> 12 & 63];
    out += i + 1 < n ? tab[v >> 6 & 63] : '=';
    out += i + 2 < n ? tab[v & 63] : '=';
  }
  return out;
}

// ---- prompts ---------------------------------------------------------------------------------

// A prompt given as text or as token ids; `list` reads "a list of prompts" forms too.
std::vector<std::vector<int32_t>> get_prompts(const json &v, const char *param,
                                              const Tokenizer &tok,
                                              std::vector<std::string> *texts) {
  auto ids_of = [&](const json &a) {
    std::vector<int32_t> ids;
    for (const json &t : a) {
      if (!t.is_number_integer())
        bad_type(param, t, "a string, an array of token ids, or an array of those");
      const int64_t id = t.get<int64_t>();
      if (id < 0 || id >= tok.n_vocab())
        bad(param, "token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                       std::to_string(tok.n_vocab()) + ")");
      ids.push_back(int32_t(id));
    }
    return ids;
  };
  std::vector<std::vector<int32_t>> out;
  auto add_text = [&](const std::string &s) {
    out.push_back(tok.encode(s, /*add_special=*/true, /*parse_special=*/true));
    if (texts) texts->push_back(s);
  };
  auto add_ids = [&](const json &a) {
    out.push_back(ids_of(a));
    if (texts) texts->push_back(tok.decode(out.back()));
  };
  if (v.is_string()) {
    add_text(v.get<std::string>());
  } else if (v.is_array() && !v.empty() && v[0].is_number_integer()) {
    add_ids(v);
  } else if (v.is_array() && !v.empty()) {
    for (const json &e : v) {
      if (e.is_string())
        add_text(e.get<std::string>());
      else if (e.is_array())
        add_ids(e);
      else
        bad_type(param, e, "a string, an array of token ids, or an array of those");
    }
  } else if (v.is_array()) {
    bad(param, std::string("'") + param + "' must not be empty");
  } else {
    bad_type(param, v, "a string, an array of token ids, or an array of those");
  }
  for (const auto &ids : out)
    if (ids.empty()) bad(param, std::string("'") + param + "' must not be empty");
  return out;
}

// Chat messages -> the template's `messages` (content flattened to text).
ojson get_messages(const json &body) {
  const json *v = field(body, "messages");
  if (!v) bad("messages", "'messages' is required", "missing_required_parameter");
  if (!v->is_array()) bad_type("messages", *v, "an array");
  if (v->empty()) bad("messages", "'messages' must hold at least one message");
  ojson out = ojson::array();
  for (size_t i = 0; i < v->size(); ++i) {
    const json &m = (*v)[i];
    const std::string at = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad_type(at, m, "an object");
    const json *role = field(m, "role");
    if (!role) bad(at + ".role", "'" + at + ".role' is required", "missing_required_parameter");
    if (!role->is_string()) bad_type(at + ".role", *role, "a string");
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";
    if (r != "system" && r != "user" && r != "assistant" && r != "tool")
      bad(at + ".role",
          "'" + at + ".role' must be system, developer, user, assistant or tool, got '" + r + "'");
    ojson msg = {{"role", r}};
    const json *content = field(m, "content");
    std::string text;
    if (content && content->is_string()) {
      text = content->get<std::string>();
    } else if (content && content->is_array()) {
      for (const json &part : *content) {
        if (!part.is_object() || get_string(part, "type", "") != "text")
          bad(at + ".content", "only text content parts are supported");
        const json *t = field(part, "text");
        if (!t || !t->is_string()) bad(at + ".content", "a text part needs a string 'text'");
        text += t->get<std::string>();
      }
    } else if (content) {
      bad_type(at + ".content", *content, "a string or an array of content parts");
    } else if (r != "assistant" || !field(m, "tool_calls")) {
      bad(at + ".content", "'" + at + ".content' is required", "missing_required_parameter");
    }
    msg["content"] = text;
    for (const char *k : {"name", "tool_call_id"})
      if (const json *x = field(m, k)) {
        if (!x->is_string()) bad_type(at + "." + k, *x, "a string");
        msg[k] = *x;
      }
    if (const json *x = field(m, "tool_calls")) msg["tool_calls"] = *x;
    out.push_back(std::move(msg));
  }
  return out;
}

// ---- waiting on jobs -------------------------------------------------------------------------

// Delivers every job's events to on_event(job index, event) until all have ended. Returns false
// (after cancelling them all) when the client left first.
template <typename F>
bool pump(std::vector<std::shared_ptr<Job>> &jobs, http::Response &res, F &&on_event) {
  std::vector<bool> open(jobs.size(), true);
  size_t n_open = jobs.size();
  std::vector<Event> events;
  auto last_check = std::chrono::steady_clock::now();
  while (n_open > 0) {
    bool any = false;
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (!open[i]) continue;
      events.clear();
      jobs[i]->wait(events, std::chrono::milliseconds(n_open == 1 ? 50 : 2));
      for (Event &e : events) {
        any = true;
        if (e.final) open[i] = false, --n_open;
        if (!on_event(i, e)) {
          for (auto &j : jobs) j->cancel();
          return false;
        }
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (!any || now - last_check > std::chrono::milliseconds(100)) {
      last_check = now;
      if (res.client_gone()) {
        for (auto &j : jobs) j->cancel();
        return false;
      }
    }
  }
  return true;
}

std::vector<int> token_bytes_array(const Tokenizer &tok, int32_t id) {
  std::string b = tok.token_bytes(id);
  return std::vector<int>(b.begin(), b.end());
}

}  // namespace

// ---- Api -------------------------------------------------------------------------------------

Api::Api(Engine &engine, ApiOptions opt) : engine_(engine), opt_(std::move(opt)) {
  const Tokenizer &tok = engine_.tokenizer();
  auto piece = [&](int32_t id) { return id >= 0 ? tok.piece(id) : std::string(); };
  bos_ = piece(tok.bos_id());
  eos_ = piece(tok.eos_id());
  if (tok.chat_template().empty()) {
    template_note_ = "no chat template in the model: using the plain 'role: content' fallback";
    return;
  }
  try {
    template_ = std::make_unique<ChatTemplate>(tok.chat_template());
    template_note_ = "chat template from the model";
  } catch (const std::exception &e) {
    template_note_ = std::string("the model's chat template is not usable (") + e.what() +
                     "): using the plain 'role: content' fallback";
  }
}

Api::~Api() = default;

void Api::count(const std::string &route, int status) {
  std::lock_guard lk(mu_);
  ++requests_[{route, status}];
}

void Api::handle(const http::Request &req, http::Response &res) {
  int status = 500;
  try {
    status = route(req, res);
  } catch (const ApiError &e) {
    status = e.status;
    http::Headers h = kCors;
    if (status == 503) h.push_back({"Retry-After", "1"});
    if (status == 401) h.push_back({"WWW-Authenticate", "Bearer"});
    if (!res.started()) res.send(status, "application/json", error_body(e), h);
  } catch (const std::exception &e) {
    status = 500;
    if (!res.started())
      res.send(500, "application/json", error_body({500, e.what(), "", ""}), kCors);
  }
  // Metric labels from a fixed set (never the raw path: clients could grow the map without end).
  static const char *routes[] = {"/",
                                 "/health",
                                 "/metrics",
                                 "/v1/models",
                                 "/v1/completions",
                                 "/v1/chat/completions",
                                 "/v1/embeddings"};
  const char *label = req.path.starts_with("/v1/models/") ? "/v1/models/{id}" : "other";
  for (const char *r : routes)
    if (req.path == r) label = r;
  if (web::find_asset(req.path) && req.path != "/") label = "/{asset}";
  count(label, status);
}

int Api::route(const http::Request &req, http::Response &res) {
  const std::string &p = req.path;
  if (req.method == "OPTIONS") {
    res.send(204, "text/plain", "",
             {{"Access-Control-Allow-Origin", "*"},
              {"Access-Control-Allow-Methods", "GET, POST, OPTIONS"},
              {"Access-Control-Allow-Headers", "Authorization, Content-Type"},
              {"Access-Control-Max-Age", "86400"}});
    return 204;
  }
  auto method = [&](const char *m) {
    if (req.method != m && !(std::strcmp(m, "GET") == 0 && req.method == "HEAD"))
      throw ApiError{405, "method " + req.method + " is not allowed on " + p + " (use " + m + ")",
                     "", "method_not_allowed"};
  };
  if (p == "/health") {
    method("GET");
    send_json(res, 200, {{"status", "ok"}});
    return 200;
  }
  if (p == "/metrics") {
    method("GET");
    res.send(200, "text/plain; version=0.0.4", metrics());
    return 200;
  }
  if (!p.starts_with("/v1/")) {
    method("GET");
    const web::Asset *a = web::find_asset(p);
    if (!a) throw ApiError{404, "no such page: " + p, "", "not_found"};
    res.send(200, a->content_type, a->body, {{"Cache-Control", "no-cache"}});
    return 200;
  }
  if (!opt_.api_key.empty()) {
    const std::string_view auth = req.header("authorization");
    const std::string want = "Bearer " + opt_.api_key;
    // Compare every byte whatever the first difference (no early exit to time).
    bool ok = auth.size() == want.size();
    unsigned diff = 0;
    for (size_t i = 0; i < want.size(); ++i)
      diff |= unsigned(i < auth.size() ? auth[i] : 0) ^ unsigned(want[i]);
    if (!ok || diff != 0)
      throw ApiError{401,
                     auth.empty() ? "missing API key: send 'Authorization: Bearer <key>'"
                                  : "incorrect API key provided",
                     "", "invalid_api_key"};
  }
  if (p == "/v1/models" || p == "/v1/models/" + opt_.model_id) {
    method("GET");
    ojson m = {{"id", opt_.model_id},
               {"object", "model"},
               {"created", opt_.created},
               {"owned_by", "lmkit"},
               {"context_length", engine_.n_ctx()}};
    if (p == "/v1/models")
      send_json(res, 200, {{"object", "list"}, {"data", ojson::array({m})}});
    else
      send_json(res, 200, m);
    return 200;
  }
  if (p.starts_with("/v1/models/"))
    throw ApiError{404,
                   "the model '" + p.substr(11) + "' does not exist (this server runs '" +
                       opt_.model_id + "')",
                   "model", "model_not_found"};
  if (p == "/v1/completions" || p == "/v1/chat/completions" || p == "/v1/embeddings") {
    method("POST");
    const std::string_view ct = req.header("content-type");
    if (!ct.empty() && ct.find("json") == std::string_view::npos)
      throw ApiError{
          415, "the body must be JSON (Content-Type: application/json), got " + std::string(ct), "",
          "unsupported_media_type"};
    if (p == "/v1/embeddings") return embeddings(req, res);
    return completions(req, res, p == "/v1/chat/completions");
  }
  throw ApiError{404, "unknown route " + req.method + " " + p, "", "not_found"};
}

namespace {

json parse_body(const http::Request &req) {
  json body;
  try {
    body = json::parse(req.body);
  } catch (const json::exception &e) {
    std::string msg = e.what();
    if (auto at = msg.find("] "); at != std::string::npos) msg = msg.substr(at + 2);
    throw ApiError{400, "the body is not valid JSON: " + msg, "", "invalid_json"};
  }
  if (!body.is_object()) throw ApiError{400, "the body must be a JSON object", "", "invalid_json"};
  return body;
}

}  // namespace

int Api::completions(const http::Request &req, http::Response &res, bool chat) {
  const json body = parse_body(req);
  const Tokenizer &tok = engine_.tokenizer();
  if (chat)
    check_known(body, {"messages", "max_completion_tokens", "top_logprobs", "response_format",
                       "tools", "tool_choice", "parallel_tool_calls", "store", "metadata"});
  else
    check_known(body, {"prompt", "echo", "best_of", "suffix"});
  check_neutral(body);

  // --- prompts ---
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> prompt_texts;
  std::vector<std::string> stop = get_stop(body);
  if (chat) {
    ojson vars = {{"messages", get_messages(body)},
                  {"add_generation_prompt", true},
                  {"bos_token", bos_},
                  {"eos_token", eos_}};
    if (const json *tools = field(body, "tools")) {
      if (!tools->is_array()) bad_type("tools", *tools, "an array");
      vars["tools"] = *tools;
    }
    if (template_) {
      std::string text;
      try {
        text = template_->render(vars);
      } catch (const std::exception &e) {
        bad("messages", std::string("the chat template refused the conversation: ") + e.what());
      }
      prompts.push_back(tok.encode(text, /*add_special=*/false, /*parse_special=*/true));
    } else {
      std::vector<ChatMessage> msgs;
      for (const auto &m : vars["messages"])
        msgs.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
      prompts.push_back(tok.encode(chat_apply_fallback(msgs, true), true, true));
      stop.push_back("\nuser:");  // the fallback format's next turn
    }
    if (prompts.back().empty()) bad("messages", "the conversation encodes to no tokens");
  } else {
    const json *p = field(body, "prompt");
    if (!p) bad("prompt", "'prompt' is required", "missing_required_parameter");
    prompts = get_prompts(*p, "prompt", tok, &prompt_texts);
  }

  // --- options ---
  const int64_t n = get_int(body, "n", 1, 1, opt_.max_choices);
  if (int64_t(prompts.size()) * n > opt_.max_choices)
    bad("n", "n x prompts must be at most " + std::to_string(opt_.max_choices));
  const bool stream = get_bool(body, "stream", false);
  bool include_usage = false;
  if (const json *so = field(body, "stream_options"))
    include_usage = get_bool(*so, "include_usage", false);
  const bool echo = !chat && get_bool(body, "echo", false);
  int top_logprobs = -1;
  if (chat) {
    if (get_bool(body, "logprobs", false))
      top_logprobs = int(get_int(body, "top_logprobs", 0, 0, 20));
    else if (field(body, "top_logprobs"))
      bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  } else if (field(body, "logprobs")) {
    top_logprobs = int(get_int(body, "logprobs", 0, 0, 5));
  }
  SamplerParams sampling = get_sampling(body);
  const bool ignore_eos = get_bool(body, "ignore_eos", false);  // llama.cpp's extension
  const int64_t ctx = engine_.n_ctx();
  size_t longest = 0;
  for (const auto &pr : prompts) longest = std::max(longest, pr.size());
  int64_t max_tokens;
  const char *budget_name =
      chat && field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  if (chat) {
    max_tokens = get_int(body, budget_name, -1, 0, INT32_MAX);
    if (max_tokens < 0) max_tokens = std::max<int64_t>(0, ctx - int64_t(longest));
  } else {
    max_tokens = get_int(body, "max_tokens", 16, 0, INT32_MAX);
  }
  if (int64_t(longest) + max_tokens > ctx)
    throw ApiError{400,
                   "this model's context holds " + std::to_string(ctx) + " tokens, but " +
                       std::to_string(int64_t(longest) + max_tokens) + " were requested (" +
                       std::to_string(longest) + " in the " + (chat ? "messages" : "prompt") +
                       ", " + std::to_string(max_tokens) + " for the completion)",
                   chat ? "messages" : "prompt", "context_length_exceeded"};

  // --- jobs: choice i = prompt i / n, sample i % n (seed + i % n) ---
  std::vector<std::shared_ptr<Job>> jobs;
  for (size_t pi = 0; pi < prompts.size(); ++pi)
    for (int64_t k = 0; k < n; ++k) {
      JobSpec spec;
      spec.prompt = prompts[pi];
      spec.gen.max_tokens = max_tokens;
      spec.gen.sampling = sampling;
      spec.gen.sampling.seed = sampling.seed + uint64_t(k);
      spec.gen.stop = stop;
      spec.gen.ignore_eos = ignore_eos;
      spec.top_logprobs = top_logprobs;
      spec.prompt_logprobs = echo && top_logprobs >= 0;
      std::shared_ptr<Job> job;
      try {
        job = engine_.submit(std::move(spec));
      } catch (const Error &e) {
        for (auto &j : jobs) j->cancel();
        bad(chat ? "messages" : "prompt", e.what());
      }
      if (!job) {
        for (auto &j : jobs) j->cancel();
        throw ApiError{503, "the server is busy (request queue full); retry shortly", "",
                       "server_busy"};
      }
      jobs.push_back(std::move(job));
    }

  // --- answer ---
  const std::string id = random_id(chat ? "chatcmpl-" : "cmpl-");
  const int64_t created = unix_now();
  const char *object = chat ? "chat.completion" : "text_completion";
  struct Choice {
    std::string text;
    std::vector<TokenInfo> tokens;
    std::string finish_reason, error;
    int64_t n_prompt = 0, n_completion = 0;
    std::vector<TokenInfo> prompt_info;
  };
  std::vector<Choice> choices(jobs.size());
  auto piece = [&](int32_t t) { return tok.token_bytes(t); };
  auto top_obj = [&](const TokenInfo &ti) {  // completions: {"token": logprob, ...}
    ojson o = ojson::object();
    for (const auto &a : ti.top) o[piece(a.id)] = a.logprob;
    return o;
  };
  auto chat_logprobs = [&](const std::vector<TokenInfo> &toks) {
    ojson content = ojson::array();
    for (const TokenInfo &ti : toks) {
      ojson top = ojson::array();
      for (const auto &a : ti.top)
        top.push_back({{"token", piece(a.id)},
                       {"logprob", a.logprob},
                       {"bytes", token_bytes_array(tok, a.id)}});
      content.push_back({{"token", piece(ti.id)},
                         {"logprob", ti.logprob},
                         {"bytes", token_bytes_array(tok, ti.id)},
                         {"top_logprobs", top}});
    }
    return ojson{{"content", content}, {"refusal", nullptr}};
  };
  // Completions' logprobs object over (optional prompt) + generated tokens; offsets into `text`.
  auto completion_logprobs = [&](const std::vector<TokenInfo> &prompt_info,
                                 const std::vector<int32_t> &prompt_ids,
                                 const std::vector<TokenInfo> &toks, size_t offset0) {
    ojson tokens = ojson::array(), lps = ojson::array(), tops = ojson::array(),
          offs = ojson::array();
    size_t off = offset0;
    // An echoed prompt's text drops the tokenizer's leading space (SentencePiece's dummy
    // prefix); its first token does too, so the tokens join to the text and offsets line up.
    bool strip = !prompt_ids.empty() && tok.strips_leading_space();
    auto add = [&](int32_t id, const ojson &lp, const ojson &top) {
      std::string p = piece(id);
      if (strip && !p.empty()) {
        if (p[0] == ' ') p.erase(0, 1);
        strip = false;
      }
      offs.push_back(off);
      off += p.size();
      tokens.push_back(std::move(p));
      lps.push_back(lp);
      tops.push_back(top);
    };
    if (!prompt_ids.empty()) {
      off = 0;
      add(prompt_ids[0], nullptr, nullptr);
      for (size_t i = 0; i < prompt_info.size(); ++i)
        add(prompt_info[i].id, prompt_info[i].logprob, top_obj(prompt_info[i]));
    }
    for (const TokenInfo &ti : toks) add(ti.id, ti.logprob, top_obj(ti));
    return ojson{
        {"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
  };
  auto usage = [&]() {
    int64_t np = 0, nc = 0;
    for (size_t i = 0; i < choices.size(); ++i) {
      if (i % size_t(n) == 0) np += choices[i].n_prompt;
      nc += choices[i].n_completion;
    }
    return ojson{{"prompt_tokens", np}, {"completion_tokens", nc}, {"total_tokens", np + nc}};
  };

  if (!stream) {
    const bool ok = pump(jobs, res, [&](size_t i, Event &e) {
      Choice &c = choices[i];
      c.text += e.text;
      if (e.token && top_logprobs >= 0) c.tokens.push_back(*e.token);
      if (e.final) {
        c.finish_reason = e.finish_reason;
        c.error = e.error;
        c.n_prompt = e.n_prompt;
        c.n_completion = e.n_completion;
        c.prompt_info = std::move(e.prompt_info);
      }
      return true;
    });
    if (!ok) return 499;  // the client left; nothing to answer
    ojson out_choices = ojson::array();
    for (size_t i = 0; i < choices.size(); ++i) {
      Choice &c = choices[i];
      if (c.finish_reason == "error")
        throw ApiError{500, "generation failed: " + c.error, "", "generation_failed"};
      if (c.finish_reason == "cancelled")
        throw ApiError{503, "the server is shutting down", "", "server_shutting_down"};
      ojson ch = {{"index", i}};
      if (chat) {
        ch["message"] = {{"role", "assistant"}, {"content", c.text}, {"refusal", nullptr}};
        ch["logprobs"] = top_logprobs >= 0 ? chat_logprobs(c.tokens) : ojson();
      } else {
        const size_t pi = i / size_t(n);
        const std::string pre = echo ? prompt_texts[pi] : "";
        ch["text"] = pre + c.text;
        ch["logprobs"] =
            top_logprobs >= 0
                ? completion_logprobs(c.prompt_info, echo ? prompts[pi] : std::vector<int32_t>{},
                                      c.tokens, pre.size())
                : ojson();
      }
      ch["finish_reason"] = c.finish_reason;
      out_choices.push_back(std::move(ch));
    }
    ojson out = {{"id", id},
                 {"object", object},
                 {"created", created},
                 {"model", opt_.model_id},
                 {"system_fingerprint", "lmkit"},
                 {"choices", out_choices},
                 {"usage", usage()}};
    send_json(res, 200, out);
    return 200;
  }

  // --- streaming: one SSE event per token per choice ---
  res.begin_stream(200, "text/event-stream",
                   {{"Cache-Control", "no-cache"},
                    {"X-Accel-Buffering", "no"},
                    {"Access-Control-Allow-Origin", "*"}});
  const char *chunk_object = chat ? "chat.completion.chunk" : "text_completion";
  auto chunk = [&](ojson choice) {
    ojson c = {{"id", id},
               {"object", chunk_object},
               {"created", created},
               {"model", opt_.model_id},
               {"system_fingerprint", "lmkit"},
               {"choices", ojson::array({std::move(choice)})}};
    if (include_usage) c["usage"] = nullptr;
    return "data: " + dump(c) + "\n\n";
  };
  std::vector<bool> started(jobs.size(), false);
  std::string failure;
  const bool ok = pump(jobs, res, [&](size_t i, Event &e) {
    Choice &c = choices[i];
    std::string out;
    if (chat && !started[i]) {
      started[i] = true;
      out += chunk({{"index", i},
                    {"delta", {{"role", "assistant"}, {"content", ""}}},
                    {"logprobs", nullptr},
                    {"finish_reason", nullptr}});
    }
    if (!chat && echo && !started[i]) {
      started[i] = true;
      out += chunk({{"index", i},
                    {"text", prompt_texts[i / size_t(n)]},
                    {"logprobs", nullptr},
                    {"finish_reason", nullptr}});
    }
    if (e.token && (!e.text.empty() || top_logprobs >= 0)) {
      std::vector<TokenInfo> one{*e.token};
      if (chat)
        out += chunk({{"index", i},
                      {"delta", {{"content", e.text}}},
                      {"logprobs", top_logprobs >= 0 ? chat_logprobs(one) : ojson()},
                      {"finish_reason", nullptr}});
      else
        out +=
            chunk({{"index", i},
                   {"text", e.text},
                   {"logprobs", top_logprobs >= 0 ? completion_logprobs({}, {}, one, 0) : ojson()},
                   {"finish_reason", nullptr}});
    } else if (!e.text.empty()) {  // the flush of held-back text at the end
      out += chat ? chunk({{"index", i},
                           {"delta", {{"content", e.text}}},
                           {"logprobs", nullptr},
                           {"finish_reason", nullptr}})
                  : chunk({{"index", i},
                           {"text", e.text},
                           {"logprobs", nullptr},
                           {"finish_reason", nullptr}});
    }
    if (e.final) {
      c.n_prompt = e.n_prompt;
      c.n_completion = e.n_completion;
      if (e.finish_reason == "error" || e.finish_reason == "cancelled") {
        failure = e.finish_reason == "error" ? "generation failed: " + e.error
                                             : "the server is shutting down";
      } else {
        out += chat ? chunk({{"index", i},
                             {"delta", ojson::object()},
                             {"logprobs", nullptr},
                             {"finish_reason", e.finish_reason}})
                    : chunk({{"index", i},
                             {"text", ""},
                             {"logprobs", nullptr},
                             {"finish_reason", e.finish_reason}});
      }
    }
    return out.empty() || res.write(out);
  });
  if (!ok) return 499;
  if (!failure.empty()) {
    res.write("data: " + error_body({500, failure, "", "generation_failed"}) + "\n\n");
    res.end();
    return 500;
  }
  if (include_usage) {
    ojson c = {{"id", id},
               {"object", chunk_object},
               {"created", created},
               {"model", opt_.model_id},
               {"system_fingerprint", "lmkit"},
               {"choices", ojson::array()},
               {"usage", usage()}};
    res.write("data: " + dump(c) + "\n\n");
  }
  res.write("data: [DONE]\n\n");
  res.end();
  return 200;
}

int Api::embeddings(const http::Request &req, http::Response &res) {
  const json body = parse_body(req);
  const Tokenizer &tok = engine_.tokenizer();
  check_known(body, {"input", "encoding_format", "dimensions"}, /*generation=*/false);
  if (const json *v = field(body, "model"); v && !v->is_string()) bad_type("model", *v, "a string");
  get_string(body, "user", "");
  const std::string format = get_string(body, "encoding_format", "float");
  if (format != "float" && format != "base64")
    bad("encoding_format", "'encoding_format' must be 'float' or 'base64', got '" + format + "'");
  const int64_t dim = engine_.model().config().n_embd;
  if (field(body, "dimensions") && get_int(body, "dimensions", dim, 1, 1 << 20) != dim)
    bad("dimensions", "this model's embeddings have " + std::to_string(dim) + " dimensions",
        "unsupported_parameter");
  const json *input = field(body, "input");
  if (!input) bad("input", "'input' is required", "missing_required_parameter");
  if (input->is_string() && input->get<std::string>().empty())
    bad("input", "'input' must not be empty");
  if (input->is_array())
    for (const json &e : *input)
      if (e.is_string() && e.get<std::string>().empty())
        bad("input", "'input' must not hold empty strings");
  std::vector<std::vector<int32_t>> inputs = get_prompts(*input, "input", tok, nullptr);
  if (inputs.size() > 2048) bad("input", "'input' holds at most 2048 items");
  for (const auto &ids : inputs)
    if (int64_t(ids.size()) > engine_.n_ctx())
      throw ApiError{400,
                     "an input of " + std::to_string(ids.size()) +
                         " tokens exceeds this model's context of " +
                         std::to_string(engine_.n_ctx()) + " tokens",
                     "input", "context_length_exceeded"};

  // Inputs run a slot-sized window at a time (a long list must not fill the queue).
  std::vector<std::vector<float>> vectors(inputs.size());
  int64_t n_tokens = 0;
  const size_t window = 8;
  for (size_t first = 0; first < inputs.size(); first += window) {
    std::vector<std::shared_ptr<Job>> jobs;
    for (size_t i = first; i < std::min(inputs.size(), first + window); ++i) {
      JobSpec spec;
      spec.prompt = inputs[i];
      spec.embed = true;
      spec.gen.max_tokens = 0;
      spec.gen.sampling.temperature = 0;
      auto job = engine_.submit(std::move(spec));
      if (!job) {
        for (auto &j : jobs) j->cancel();
        throw ApiError{503, "the server is busy (request queue full); retry shortly", "",
                       "server_busy"};
      }
      jobs.push_back(std::move(job));
    }
    std::string failure;
    const bool ok = pump(jobs, res, [&](size_t k, Event &e) {
      if (!e.final) return true;
      if (e.finish_reason == "error" || e.finish_reason == "cancelled")
        failure = e.error.empty() ? "the server is shutting down" : e.error;
      vectors[first + k] = std::move(e.embedding);
      n_tokens += e.n_prompt;
      return true;
    });
    if (!ok) return 499;
    if (!failure.empty())
      throw ApiError{500, "embedding failed: " + failure, "", "generation_failed"};
  }
  ojson data = ojson::array();
  for (size_t i = 0; i < vectors.size(); ++i) {
    ojson emb = format == "base64" ? ojson(base64(vectors[i].data(), vectors[i].size() * 4))
                                   : ojson(vectors[i]);
    data.push_back({{"object", "embedding"}, {"index", i}, {"embedding", std::move(emb)}});
  }
  send_json(res, 200,
            {{"object", "list"},
             {"data", data},
             {"model", opt_.model_id},
             {"usage", {{"prompt_tokens", n_tokens}, {"total_tokens", n_tokens}}}});
  return 200;
}

std::string Api::metrics() const {
  const EngineStats s = engine_.stats();
  std::string out;
  auto line = [&](const std::string &l) { out += l + "\n"; };
  auto metric = [&](const char *name, const char *type, const char *help) {
    line(std::string("# HELP ") + name + " " + help);
    line(std::string("# TYPE ") + name + " " + type);
  };
  auto num = [](double v) {
    char b[64];
    std::snprintf(b, sizeof b, "%.17g", v);
    return std::string(b);
  };
  metric("lmkit_requests_total", "counter", "HTTP requests answered, by route and status.");
  {
    std::lock_guard lk(mu_);
    for (const auto &[k, v] : requests_)
      line("lmkit_requests_total{route=\"" + k.first + "\",status=\"" + std::to_string(k.second) +
           "\"} " + std::to_string(v));
  }
  metric("lmkit_prompt_tokens_total", "counter", "Prompt tokens evaluated (after prefix reuse).");
  line("lmkit_prompt_tokens_total " + std::to_string(s.tokens_prompt));
  metric("lmkit_generated_tokens_total", "counter", "Tokens generated.");
  line("lmkit_generated_tokens_total " + std::to_string(s.tokens_generated));
  metric("lmkit_jobs_total", "counter", "Sequences finished (choices and embedding inputs).");
  line("lmkit_jobs_total " + std::to_string(s.jobs_done));
  metric("lmkit_batch_steps_total", "counter", "Batched forward passes.");
  line("lmkit_batch_steps_total " + std::to_string(s.steps));
  metric("lmkit_queue_depth", "gauge", "Sequences waiting for a KV-cache slot.");
  line("lmkit_queue_depth " + std::to_string(s.queued));
  metric("lmkit_active_sequences", "gauge", "Sequences holding a KV-cache slot.");
  line("lmkit_active_sequences " + std::to_string(s.active));
  metric("lmkit_decode_tokens_per_second", "gauge",
         "Generated tokens per second over the last 5 s.");
  line("lmkit_decode_tokens_per_second " + num(s.decode_tok_s));
  metric("lmkit_time_to_first_token_seconds", "histogram", "Time from request to first token.");
  for (size_t i = 0; i < std::size(EngineStats::kTtftBounds); ++i)
    line("lmkit_time_to_first_token_seconds_bucket{le=\"" + num(EngineStats::kTtftBounds[i]) +
         "\"} " + std::to_string(s.ttft_buckets[i]));
  line("lmkit_time_to_first_token_seconds_bucket{le=\"+Inf\"} " + std::to_string(s.ttft_count));
  line("lmkit_time_to_first_token_seconds_sum " + num(s.ttft_sum));
  line("lmkit_time_to_first_token_seconds_count " + std::to_string(s.ttft_count));
  return out;
}

}  // namespace lmkit::serve
