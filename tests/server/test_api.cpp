// The OpenAI routes over real loopback HTTP, in process (engine + Api + http::Server): greedy
// output equals `generate` alone and with other requests in flight, SSE framing, usage and
// finish reasons, every kind of bad request, auth, the queue bound, client disconnects and the
// drain on stop. (The official-SDK and browser tests live in tests/server/js.)
#include <gtest/gtest.h>

#include <future>
#include <nlohmann/json.hpp>
#include <random>

#include "http_test_client.h"
#include "model/loader.h"
#include "runtime/generate.h"
#include "server/openai.h"
#include "test_util.h"

namespace lmkit::serve {
namespace {

using json = nlohmann::json;
using http::test::ClientResponse;
using http::test::request;

struct Served {
  LoadedModel lm;
  std::shared_ptr<ThreadPool> pool = std::make_shared<ThreadPool>(2);
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Api> api;
  std::unique_ptr<http::test::Running> server;

  explicit Served(EngineOptions eo = {.n_slots = 4, .n_ctx = 512}, std::string key = "",
                  http::Server::Options so = {}, std::string model = "") {
    const std::string d = test::shared_dir() + "/models/stories260K/";
    lm = model.empty() ? load_model(d + "stories260K.bin", d + "tok512.bin") : load_model(model);
    engine = std::make_unique<Engine>(lm.model, lm.tokenizer, pool, eo);
    api = std::make_unique<Api>(
        *engine, ApiOptions{.model_id = "stories260K", .api_key = key, .created = 1});
    server = std::make_unique<http::test::Running>(
        so, [this](const http::Request &q, http::Response &r) { api->handle(q, r); });
  }
  int port() const { return server->server.port(); }
  ClientResponse post(const std::string &path, const json &body, const std::string &headers = "") {
    return request(port(), "POST", path, body.dump(), headers);
  }
  // The text `lmkit generate` gives (greedy).
  std::string reference(const std::string &prompt, int64_t n) {
    Session s(lm.model, std::make_shared<ThreadPool>(1), 512);
    GenerateOptions o;
    o.max_tokens = n;
    o.sampling.temperature = 0;
    return generate(s, *lm.tokenizer, lm.tokenizer->encode(prompt, true, true), o).text;
  }
};

// The JSON objects of an SSE body's `data:` lines, and whether it ended with [DONE].
std::vector<json> sse_events(const std::string &body, bool *done) {
  std::vector<json> out;
  *done = false;
  size_t at = 0;
  while (at < body.size()) {
    size_t eol = body.find("\n\n", at);
    if (eol == std::string::npos) break;
    std::string ev = body.substr(at, eol - at);
    at = eol + 2;
    EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
    ev = ev.substr(6);
    if (ev == "[DONE]")
      *done = true;
    else
      out.push_back(json::parse(ev));
  }
  EXPECT_EQ(at, body.size());
  return out;
}

TEST(Api, ModelsHealthMetricsAndPage) {
  LMKIT_REQUIRE_SHARED();
  Served s;
  ClientResponse r = request(s.port(), "GET", "/v1/models");
  ASSERT_EQ(r.status, 200);
  json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 1u);
  EXPECT_EQ(j["data"][0]["id"], "stories260K");
  EXPECT_EQ(j["data"][0]["object"], "model");
  EXPECT_EQ(json::parse(request(s.port(), "GET", "/v1/models/stories260K").body)["id"],
            "stories260K");
  EXPECT_EQ(request(s.port(), "GET", "/v1/models/gpt-4").status, 404);
  EXPECT_EQ(json::parse(request(s.port(), "GET", "/health").body)["status"], "ok");
  r = request(s.port(), "GET", "/");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("<html"), std::string::npos);
  EXPECT_TRUE(r.has("Content-Type: text/html; charset=utf-8") ||
              r.head.find("text/html") != std::string::npos);
  s.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 3}});
  // A request is counted once its handler returns, just after its response went out.
  const std::string counted = "lmkit_requests_total{route=\"/v1/completions\",status=\"200\"} 1";
  for (int i = 0; i < 100; ++i) {
    r = request(s.port(), "GET", "/metrics");
    if (r.body.find(counted) != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("lmkit_requests_total{route=\"/v1/completions\",status=\"200\"} 1"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("lmkit_generated_tokens_total 3"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("lmkit_time_to_first_token_seconds_count 1"), std::string::npos);
  EXPECT_NE(r.body.find("# TYPE lmkit_queue_depth gauge"), std::string::npos);
  // Labels come from a fixed set, never from the client's path.
  EXPECT_NE(r.body.find("route=\"/v1/models/{id}\",status=\"404\""), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("gpt-4"), std::string::npos);
}

// Temperature 0 through the server equals `lmkit generate`, with and without company.
TEST(Api, GreedyCompletionEqualsGenerateUnderLoad) {
  LMKIT_REQUIRE_SHARED();
  Served s;
  const std::vector<std::string> prompts = {"Once upon a time", "Lily and Tom", "The sun was",
                                            "A big dog"};
  std::vector<std::string> refs;
  for (const auto &p : prompts) refs.push_back(s.reference(p, 48));
  json alone = json::parse(
      s.post("/v1/completions", {{"prompt", prompts[0]}, {"max_tokens", 48}, {"temperature", 0}})
          .body);
  EXPECT_EQ(alone["choices"][0]["text"], refs[0]);
  EXPECT_EQ(alone["object"], "text_completion");
  EXPECT_EQ(alone["usage"]["prompt_tokens"], s.lm.tokenizer->encode(prompts[0], true, true).size());
  std::vector<std::future<json>> fut;
  for (const auto &p : prompts)
    fut.push_back(std::async(std::launch::async, [&s, p] {
      return json::parse(
          s.post("/v1/completions",
                 {{"prompt", p}, {"max_tokens", 48}, {"temperature", 0}, {"stream", false}})
              .body);
    }));
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(fut[i].get()["choices"][0]["text"], refs[i]) << prompts[i];
}

TEST(Api, CompletionOptions) {
  LMKIT_REQUIRE_SHARED();
  Served s;
  // Token-id prompt = the same text's ids; echo; n with a seed; logprobs; stop.
  std::vector<int32_t> ids = s.lm.tokenizer->encode("Once upon a time", true, true);
  json a = json::parse(
      s.post("/v1/completions", {{"prompt", ids}, {"max_tokens", 8}, {"temperature", 0}}).body);
  EXPECT_EQ(a["choices"][0]["text"], s.reference("Once upon a time", 8));
  json e = json::parse(s.post("/v1/completions", {{"prompt", "Once upon a time"},
                                                  {"max_tokens", 8},
                                                  {"temperature", 0},
                                                  {"echo", true},
                                                  {"logprobs", 2}})
                           .body);
  const std::string text = e["choices"][0]["text"];
  EXPECT_EQ(text.rfind("Once upon a time", 0), 0u) << text;
  const json &lp = e["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"].size(), ids.size() + 8);
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  std::string joined;
  for (size_t i = 0; i < lp["tokens"].size(); ++i) {
    EXPECT_EQ(lp["text_offset"][i], joined.size());
    joined += lp["tokens"][i].get<std::string>();
  }
  EXPECT_EQ(joined, text);
  for (size_t i = 1; i < lp["token_logprobs"].size(); ++i) {
    EXPECT_LE(lp["token_logprobs"][i].get<double>(), 0.0);
    EXPECT_EQ(lp["top_logprobs"][i].size(), 2u);
  }
  json n = json::parse(
      s.post("/v1/completions",
             {{"prompt", "Once"}, {"max_tokens", 12}, {"n", 3}, {"seed", 5}, {"temperature", 1.0}})
          .body);
  ASSERT_EQ(n["choices"].size(), 3u);
  json n2 = json::parse(
      s.post("/v1/completions",
             {{"prompt", "Once"}, {"max_tokens", 12}, {"n", 3}, {"seed", 5}, {"temperature", 1.0}})
          .body);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(n["choices"][i]["index"], i);
    EXPECT_EQ(n["choices"][i]["text"], n2["choices"][i]["text"]);  // the seed fixes each choice
  }
  EXPECT_EQ(n["usage"]["completion_tokens"].get<int>() > 0, true);
  const std::string full = s.reference("Once upon a time", 40);
  const size_t dot = full.find('.');
  ASSERT_NE(dot, std::string::npos) << full;
  json st = json::parse(s.post("/v1/completions", {{"prompt", "Once upon a time"},
                                                   {"max_tokens", 40},
                                                   {"temperature", 0},
                                                   {"stop", {"."}}})
                            .body);
  EXPECT_EQ(st["choices"][0]["text"], full.substr(0, dot));
  EXPECT_EQ(st["choices"][0]["finish_reason"], "stop");
}

TEST(Api, ChatStreamingEqualsNonStreaming) {
  LMKIT_REQUIRE_SHARED();
  Served s;
  const json msgs = json::array({{{"role", "system"}, {"content", "You tell short stories."}},
                                 {{"role", "user"}, {"content", "Tell me about a cat."}}});
  json whole = json::parse(
      s.post("/v1/chat/completions", {{"messages", msgs}, {"max_tokens", 30}, {"temperature", 0}})
          .body);
  EXPECT_EQ(whole["object"], "chat.completion");
  EXPECT_EQ(whole["choices"][0]["message"]["role"], "assistant");
  const std::string content = whole["choices"][0]["message"]["content"];
  const std::string reason = whole["choices"][0]["finish_reason"];
  EXPECT_TRUE(reason == "length" || reason == "stop");
  EXPECT_EQ(
      whole["usage"]["total_tokens"].get<int>(),
      whole["usage"]["prompt_tokens"].get<int>() + whole["usage"]["completion_tokens"].get<int>());
  if (reason == "length") {
    EXPECT_EQ(whole["usage"]["completion_tokens"], 30);
  }
  ClientResponse r =
      s.post("/v1/chat/completions", {{"messages", msgs},
                                      {"max_tokens", 30},
                                      {"temperature", 0},
                                      {"stream", true},
                                      {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.head.find("text/event-stream"), std::string::npos);
  bool done = false;
  std::vector<json> ev = sse_events(r.body, &done);
  EXPECT_TRUE(done);
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev[0]["choices"][0]["delta"]["role"], "assistant");
  std::string streamed;
  std::string last_reason;
  for (const json &e : ev) {
    EXPECT_EQ(e["object"], "chat.completion.chunk");
    if (e["choices"].empty()) continue;
    const json &d = e["choices"][0]["delta"];
    if (d.contains("content")) streamed += d["content"].get<std::string>();
    if (!e["choices"][0]["finish_reason"].is_null()) last_reason = e["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(streamed, content);
  EXPECT_EQ(last_reason, reason);
  EXPECT_EQ(ev.back()["usage"], whole["usage"]);  // the usage chunk comes last
}

// A model with a chat template (the reference fixture's qwen2, ChatML): the server renders the
// conversation with it, as `ChatTemplate::apply` does, and generates what `generate` does.
TEST(Api, ChatUsesTheModelsTemplate) {
  const std::string model = std::string(LMKIT_BUILD_DIR) + "/reference/qwen2_bias";
  Served s({.n_slots = 2, .n_ctx = 64}, "", {}, model);
  const Tokenizer &tok = *s.lm.tokenizer;
  ASSERT_FALSE(tok.chat_template().empty());
  EXPECT_EQ(s.api->template_note(), "chat template from the model");
  const std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hello there"}};
  const std::string text = ChatTemplate(tok.chat_template())
                               .apply(msgs, true, tok.bos_id() >= 0 ? tok.piece(tok.bos_id()) : "",
                                      tok.piece(tok.eos_id()));
  EXPECT_NE(text.find("<|im_start|>assistant"), std::string::npos) << text;
  const std::vector<int32_t> ids = tok.encode(text, false, true);
  Session ses(s.lm.model, std::make_shared<ThreadPool>(1), 64);
  GenerateOptions o;
  o.max_tokens = 10;
  o.sampling.temperature = 0;
  o.ignore_eos = true;
  const GenerateResult ref = generate(ses, tok, ids, o);
  json r = json::parse(
      s.post("/v1/chat/completions", {{"messages",
                                       {{{"role", "system"}, {"content", "Be brief."}},
                                        {{"role", "user"}, {"content", "Hello there"}}}},
                                      {"max_tokens", 10},
                                      {"temperature", 0},
                                      {"ignore_eos", true}})
          .body);
  EXPECT_EQ(r["usage"]["prompt_tokens"], ids.size());
  EXPECT_EQ(r["choices"][0]["message"]["content"], ref.text);
}

TEST(Api, BadRequestsGet400WithOpenAIErrorBodies) {
  LMKIT_REQUIRE_SHARED();
  Served s;
  struct Case {
    std::string path, body;
    int status;
    std::string param;
  };
  const std::string msgs = R"("messages": [{"role": "user", "content": "hi"}])";
  const std::vector<Case> cases = {
      {"/v1/chat/completions", "{not json", 400, ""},
      {"/v1/chat/completions", "[1, 2]", 400, ""},
      {"/v1/chat/completions", R"({"messages": []})", 400, "messages"},
      {"/v1/chat/completions", R"({"messages": "hi"})", 400, "messages"},
      {"/v1/chat/completions", R"({})", 400, "messages"},
      {"/v1/chat/completions", R"({"messages": [{"content": "hi"}]})", 400, "messages[0].role"},
      {"/v1/chat/completions", R"({"messages": [{"role": "wizard", "content": "hi"}]})", 400,
       "messages[0].role"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": 5}]})", 400,
       "messages[0].content"},
      {"/v1/chat/completions", "{" + msgs + R"(, "temperature": -1})", 400, "temperature"},
      {"/v1/chat/completions", "{" + msgs + R"(, "temperature": "hot"})", 400, "temperature"},
      {"/v1/chat/completions", "{" + msgs + R"(, "top_p": 1.5})", 400, "top_p"},
      {"/v1/chat/completions", "{" + msgs + R"(, "max_tokens": -3})", 400, "max_tokens"},
      {"/v1/chat/completions", "{" + msgs + R"(, "max_tokens": 100000})", 400, "messages"},
      {"/v1/chat/completions", "{" + msgs + R"(, "n": 0})", 400, "n"},
      {"/v1/chat/completions", "{" + msgs + R"(, "stream": "yes"})", 400, "stream"},
      {"/v1/chat/completions", "{" + msgs + R"(, "stop": [1]})", 400, "stop"},
      {"/v1/chat/completions", "{" + msgs + R"(, "stop": ["a","b","c","d","e"]})", 400, "stop"},
      {"/v1/chat/completions", "{" + msgs + R"(, "presence_penalty": "x"})", 400,
       "presence_penalty"},
      {"/v1/chat/completions", "{" + msgs + R"(, "logprobs": true, "top_logprobs": 50})", 400,
       "top_logprobs"},
      {"/v1/chat/completions", "{" + msgs + R"(, "seed": 1.5})", 400, "seed"},
      {"/v1/completions", R"({"prompt": []})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": [1, -4]})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": [1, 99999]})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": {"a": 1}})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": "Once", "logprobs": 9})", 400, "logprobs"},
      {"/v1/completions", R"({"max_tokens": 4})", 400, "prompt"},
      {"/v1/embeddings", R"({"input": ""})", 400, "input"},
      {"/v1/embeddings", R"({"input": 3})", 400, "input"},
      {"/v1/embeddings", R"({"input": "hi", "encoding_format": "hex"})", 400, "encoding_format"},
      {"/v1/embeddings", R"({})", 400, "input"},
      {"/v1/chat/completions", "{" + msgs + R"(, "temprature": 0.5})", 400, "temprature"},
      {"/v1/completions", R"({"prompt": "Once", "messages": []})", 400, "messages"},
      {"/v1/embeddings", R"({"input": "hi", "stream": true})", 400, "stream"},
  };
  for (const Case &c : cases) {
    ClientResponse r = request(s.port(), "POST", c.path, c.body);
    EXPECT_EQ(r.status, c.status) << c.path << " " << c.body << " -> " << r.body;
    json j = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body;
    const json &e = j["error"];
    EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty());
    EXPECT_EQ(e["type"], "invalid_request_error") << r.body;
    EXPECT_TRUE(e.contains("param") && e.contains("code")) << r.body;
    if (!c.param.empty()) {
      EXPECT_EQ(e["param"], c.param) << c.body << " -> " << r.body;
    }
  }
  // A prompt longer than the context: 400 context_length_exceeded.
  std::string long_prompt;
  for (int i = 0; i < 400; ++i) long_prompt += "the cat sat ";
  ClientResponse r = s.post("/v1/completions", {{"prompt", long_prompt}, {"max_tokens", 4}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "context_length_exceeded");
  EXPECT_EQ(request(s.port(), "GET", "/v1/nothing").status, 404);
  EXPECT_EQ(request(s.port(), "GET", "/v1/chat/completions").status, 405);
  EXPECT_EQ(
      request(s.port(), "POST", "/v1/completions", "prompt=hi", "Content-Type: text/plain\r\n")
          .status,
      415);
  // The server is still fine.
  EXPECT_EQ(s.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}}).status, 200);
}

TEST(Api, ApiKeyAndBodyLimit) {
  LMKIT_REQUIRE_SHARED();
  http::Server::Options so;
  so.limits.max_body_bytes = 4096;
  Served s({.n_slots = 1, .n_ctx = 512}, "sekret", so);
  const json body = {{"prompt", "Once"}, {"max_tokens", 2}};
  ClientResponse r = s.post("/v1/completions", body);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "invalid_api_key");
  EXPECT_EQ(s.post("/v1/completions", body, "Authorization: Bearer wrong\r\n").status, 401);
  EXPECT_EQ(s.post("/v1/completions", body, "Authorization: Bearer sekret\r\n").status, 200);
  EXPECT_EQ(request(s.port(), "GET", "/health").status, 200);  // public
  r = s.post("/v1/completions", {{"prompt", std::string(8000, 'a')}},
             "Authorization: Bearer sekret\r\n");
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "request_too_large");
}

TEST(Api, EmbeddingsFloatAndBase64) {
  LMKIT_REQUIRE_SHARED();
  Served s;
  json f = json::parse(s.post("/v1/embeddings", {{"input", {"a cat", "a dog", "a cat"}}}).body);
  ASSERT_EQ(f["data"].size(), 3u);
  const int64_t d = s.lm.model->config().n_embd;
  std::vector<float> v0 = f["data"][0]["embedding"], v2 = f["data"][2]["embedding"];
  ASSERT_EQ(int64_t(v0.size()), d);
  EXPECT_EQ(v0, v2);
  EXPECT_NE(v0, f["data"][1]["embedding"].get<std::vector<float>>());
  double norm = 0;
  for (float x : v0) norm += double(x) * x;
  EXPECT_NEAR(norm, 1.0, 1e-5);
  json b = json::parse(
      s.post("/v1/embeddings", {{"input", "a cat"}, {"encoding_format", "base64"}}).body);
  const std::string b64 = b["data"][0]["embedding"];
  EXPECT_EQ(b64.size(), size_t((d * 4 + 2) / 3 * 4));
  // Decode the first float and compare.
  auto val = [](char c) {
    return int(
        std::string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/").find(c));
  };
  uint32_t w = uint32_t(val(b64[0])) << 18 | uint32_t(val(b64[1])) << 12 |
               uint32_t(val(b64[2])) << 6 | uint32_t(val(b64[3]));
  uint32_t w2 = uint32_t(val(b64[4])) << 18 | uint32_t(val(b64[5])) << 12;
  const uint8_t bytes[4] = {uint8_t(w >> 16), uint8_t(w >> 8), uint8_t(w), uint8_t(w2 >> 16)};
  float first;
  std::memcpy(&first, bytes, 4);
  EXPECT_EQ(first, v0[0]);
  EXPECT_EQ(b["usage"]["prompt_tokens"], s.lm.tokenizer->encode("a cat", true, true).size());
}

// Randomised bodies: valid requests with fields replaced by values of random types and ranges,
// and byte-level mutations, to every route. Every answer is a success or a 4xx with an OpenAI
// error body (never a 500 or a dropped connection), and the server stays healthy.
TEST(Api, RandomisedBodiesNeverBreakTheServer) {
  LMKIT_REQUIRE_SHARED();
  Served s({.n_slots = 4, .n_ctx = 128});
  std::mt19937 rng(1234);
  auto pick = [&](int n) { return int(rng() % unsigned(n)); };
  auto random_value = [&]() -> json {
    switch (pick(12)) {
      case 0:
        return nullptr;
      case 1:
        return pick(2) == 0;
      case 2:
        return int64_t(rng()) - int64_t(1u << 31);
      case 3:
        return -1;
      case 4:
        return 1e300;
      case 5:
        return 0.5;
      case 6:
        return "";
      case 7:
        return std::string(size_t(pick(40)), char('a' + pick(26)));
      case 8:
        return json::array({1, "x", nullptr});
      case 9:
        return json::object({{"type", "text"}, {"text", 3}});
      case 10:
        return json::array();
      default:
        return json::array(
            {json::object({{"role", "user"},
                           {"content", json::array({json::object({{"type", "image_url"}})})}})});
    }
  };
  const std::vector<std::pair<std::string, json>> valid = {
      {"/v1/completions",
       {{"prompt", "Once"},
        {"max_tokens", 4},
        {"temperature", 0.5},
        {"top_p", 0.9},
        {"n", 2},
        {"stop", {"."}},
        {"logprobs", 2},
        {"echo", true},
        {"seed", 3},
        {"stream", false}}},
      {"/v1/chat/completions",
       {{"messages", {{{"role", "user"}, {"content", "hi"}}}},
        {"max_tokens", 4},
        {"temperature", 0.5},
        {"logprobs", true},
        {"top_logprobs", 2},
        {"stream", true},
        {"stream_options", {{"include_usage", true}}},
        {"n", 1}}},
      {"/v1/embeddings", {{"input", {"a", "b"}}, {"encoding_format", "float"}, {"model", "x"}}},
  };
  int ok = 0, rejected = 0;
  for (int it = 0; it < 300; ++it) {
    const auto &[path, base] = valid[size_t(pick(int(valid.size())))];
    json body = base;
    std::string text;
    if (pick(4) == 0) {  // byte-level damage
      text = body.dump();
      for (int k = 0, m = 1 + pick(4); k < m; ++k) {
        const size_t at = size_t(pick(int(text.size())));
        switch (pick(3)) {
          case 0:
            text[at] = char(rng());
            break;
          case 1:
            text.erase(at, size_t(pick(6)));
            break;
          default:
            text.insert(at, 1, "{}[],:\"\\0"[pick(9)]);
        }
      }
    } else {
      std::vector<std::string> keys;
      for (auto &[k, v] : body.items()) keys.push_back(k);
      for (int k = 0, m = 1 + pick(3); k < m; ++k) {
        const std::string &key = keys[size_t(pick(int(keys.size())))];
        if (pick(5) == 0)
          body.erase(key);
        else
          body[key] = random_value();
      }
      text = body.dump();
    }
    ClientResponse r = request(s.port(), "POST", path, text);
    ASSERT_NE(r.status, 0) << "connection dropped for " << path << " " << text;
    ASSERT_TRUE(r.status == 200 || (r.status >= 400 && r.status < 500))
        << r.status << " for " << path << " " << text << " -> " << r.body;
    if (r.status == 200) {
      ++ok;
    } else {
      ++rejected;
      json e = json::parse(r.body, nullptr, false);
      ASSERT_TRUE(e.is_object() && e["error"].is_object() && e["error"]["message"].is_string())
          << r.body;
    }
  }
  EXPECT_GT(ok, 10);
  EXPECT_GT(rejected, 100);
  EXPECT_EQ(json::parse(request(s.port(), "GET", "/health").body)["status"], "ok");
  EXPECT_EQ(s.engine->stats().active, 0u);
}

// A client that leaves mid-stream cancels its generation and frees its slot; a full queue gets
// 503 with Retry-After.
TEST(Api, DisconnectFreesSlotAndFullQueueGets503) {
  LMKIT_REQUIRE_SHARED();
  Served s({.n_slots = 1, .n_ctx = 512, .max_queue = 1});
  const json endless = {
      {"prompt", "Once"}, {"max_tokens", 500}, {"ignore_eos", true}, {"stream", true}};
  int fd = http::test::connect_to(s.port());
  const std::string body = endless.dump();
  http::test::send_str(fd,
                       "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                       "application/json\r\nContent-Length: " +
                           std::to_string(body.size()) + "\r\n\r\n" + body);
  char buf[512];
  ASSERT_GT(::recv(fd, buf, sizeof buf, 0), 0);  // the stream has started
  for (int i = 0; i < 200 && s.engine->stats().active == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(s.engine->stats().active, 1u);
  // One more waits in the queue; the next is refused.
  auto queued = std::async(std::launch::async, [&] {
    return s.post("/v1/completions", {{"prompt", "Lily"}, {"max_tokens", 3}});
  });
  for (int i = 0; i < 400 && s.engine->stats().queued == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(s.engine->stats().queued, 1u);
  ClientResponse busy = s.post("/v1/completions", {{"prompt", "Tom"}, {"max_tokens", 3}});
  EXPECT_EQ(busy.status, 503);
  EXPECT_TRUE(busy.has("Retry-After: 1")) << busy.head;
  ::close(fd);                      // leave mid-stream
  ClientResponse q = queued.get();  // ... which frees the slot for the queued request
  EXPECT_EQ(q.status, 200);
  EXPECT_LT(s.engine->stats().tokens_generated, 500u);
  for (int i = 0; i < 200 && s.engine->stats().active != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(s.engine->stats().active, 0u);
}

// stop() lets an in-flight streamed request finish before run() returns.
TEST(Api, StopDrainsInFlightStream) {
  LMKIT_REQUIRE_SHARED();
  Served s({.n_slots = 2, .n_ctx = 512});
  auto inflight = std::async(std::launch::async, [&] {
    return s.post(
        "/v1/completions",
        {{"prompt", "Once"}, {"max_tokens", 120}, {"ignore_eos", true}, {"stream", true}});
  });
  for (int i = 0; i < 400 && s.engine->stats().tokens_generated == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  s.server->server.stop();
  ClientResponse r = inflight.get();
  ASSERT_EQ(r.status, 200);
  bool done = false;
  std::vector<json> ev = sse_events(r.body, &done);
  EXPECT_TRUE(done);
  EXPECT_EQ(ev.back()["choices"][0]["finish_reason"], "length");
  s.server->thread.join();  // run() returned
}

}  // namespace
}  // namespace lmkit::serve
