// Chat templates: the Jinja subset that models' tokenizer_config.json / GGUF
// tokenizer.chat_template use (for/if/elif/else/set, filters such as trim, loop variables,
// string concatenation, bos_token/eos_token, add_generation_prompt, raise_exception).
// Not a general Jinja engine: no includes, no template inheritance, no autoescaping, no {% call %}.
//
// Rendering follows Hugging Face transformers' apply_chat_template: an
// ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks on, loop controls
// (break/continue), the default Undefined (missing things are falsy and print as ""), tojson as
// json.dumps(ensure_ascii=False), and the globals raise_exception and strftime_now; values act as
// in Python (str/repr, ==, slicing by code point). {% macro %} is supported.
// Deliberate differences: case mapping (upper, lower, title, capitalize) is ASCII-only; range()
// gives a list; printf-style '%' formatting and the format filter are unsupported (a clear error).
// Parsed templates are immutable: apply() and render() may run concurrently on one ChatTemplate.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace lmkit {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

// Bounds that keep a hostile template from running away; exceeding one throws lmkit::Error.
struct ChatTemplateLimits {
  int64_t max_output_bytes = int64_t(64) << 20;  // the rendered text, and any one string value
  int64_t max_loop_iterations = 10'000'000;      // all loop iterations of one render together
  int64_t max_list_items = int64_t(1) << 20;     // any one list (range(), +, *)
  int64_t max_steps = 50'000'000;                // expression evaluations of one render
  int max_call_depth = 64;                       // nested macro calls
};

// Inputs beyond the conversation that some templates read.
struct ChatTemplateOptions {
  // JSON array of tool schemas (OpenAI style: {"type": "function", "function": {...}}), the
  // template's `tools`; "" leaves `tools` none, as transformers passes it without tools.
  std::string tools_json;
  // The date Llama 3.x templates print ("26 Jul 2024"); "" leaves `date_string` undefined, so the
  // template uses strftime_now or its own default.
  std::string date_string;
  // JSON object of further variables (e.g. {"enable_thinking": false}); "" for none.
  std::string extra_json;
  ChatTemplateLimits limits;
};

class ChatTemplate {
 public:
  // Parses the template; throws lmkit::Error("chat template: line L: ...") on a syntax error or a
  // construct outside the supported subset.
  explicit ChatTemplate(const std::string &source);
  ~ChatTemplate();
  ChatTemplate(ChatTemplate &&) noexcept;
  ChatTemplate &operator=(ChatTemplate &&) noexcept;

  // Renders the conversation. A template's raise_exception("...") becomes lmkit::Error.
  std::string apply(const std::vector<ChatMessage> &messages, bool add_generation_prompt,
                    const std::string &bos_token, const std::string &eos_token) const;
  std::string apply(const std::vector<ChatMessage> &messages, bool add_generation_prompt,
                    const std::string &bos_token, const std::string &eos_token,
                    const ChatTemplateOptions &options) const;

  // The general form: each member of `variables` (a JSON object) becomes a template variable, so
  // messages may carry tool_calls, tool_call_id, name or list-valued content. Nothing is added
  // beyond the globals (raise_exception, strftime_now, range, namespace, dict): pass messages,
  // add_generation_prompt, bos_token, eos_token and tools yourself. Keys keep their JSON order,
  // which tojson preserves, as Python's json module does.
  std::string render(const nlohmann::ordered_json &variables,
                     const ChatTemplateLimits &limits = {}) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The documented fallback for models without a template: one "role: content" paragraph per
// message, separated by blank lines, ending with "assistant:" when add_generation_prompt.
std::string chat_apply_fallback(const std::vector<ChatMessage> &messages,
                                bool add_generation_prompt);

}  // namespace lmkit
