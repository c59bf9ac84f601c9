// ChatTemplate: parse a model's chat template once, render conversations as transformers does.
// Not the interpreter itself (chat_template_{parse,eval,value}.cpp), only its public face.
#include "tokenizer/chat_template.h"

#include <limits>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/chat_template_jinja.h"

namespace lmkit {
namespace {

using jinja::Value;
using Vars = std::vector<std::pair<std::string, Value>>;

Value from_json(const nlohmann::ordered_json &j, int depth) {
  if (depth > jinja::kMaxValueDepth) {
    fail("chat template: JSON input nests too deeply");
  }
  using T = nlohmann::ordered_json::value_t;
  switch (j.type()) {
    case T::null:
      return Value(jinja::None{});
    case T::boolean:
      return Value(j.get<bool>());
    case T::number_integer:
      return Value(j.get<int64_t>());
    case T::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u > uint64_t(std::numeric_limits<int64_t>::max())) {
        return Value(double(u));
      }
      return Value(int64_t(u));
    }
    case T::number_float:
      return Value(j.get<double>());
    case T::string:
      return jinja::make_str(j.get<std::string>());
    case T::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto &x : j) {
        items.push_back(from_json(x, depth + 1));
      }
      return jinja::make_list(std::move(items));
    }
    case T::object: {
      std::vector<std::pair<std::string, Value>> items;
      items.reserve(j.size());
      for (const auto &[k, v] : j.items()) {
        items.emplace_back(k, from_json(v, depth + 1));
      }
      return jinja::make_dict(std::move(items));
    }
    default:
      fail("chat template: JSON input holds a value templates cannot use (binary data)");
  }
}

nlohmann::ordered_json parse_json(const std::string &text, const char *what) {
  try {
    return nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception &e) {
    fail("chat template: ", what, " is not valid JSON: ", e.what());
  }
}

void set_var(Vars &vars, const std::string &name, Value v) {
  for (auto &[k, x] : vars) {
    if (k == name) {
      x = std::move(v);
      return;
    }
  }
  vars.emplace_back(name, std::move(v));
}

}  // namespace

struct ChatTemplate::Impl {
  jinja::Program program;
};

ChatTemplate::ChatTemplate(const std::string &source) : impl_(std::make_unique<Impl>()) {
  impl_->program = jinja::parse(source);
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate &&) noexcept = default;
ChatTemplate &ChatTemplate::operator=(ChatTemplate &&) noexcept = default;

std::string ChatTemplate::apply(const std::vector<ChatMessage> &messages,
                                bool add_generation_prompt, const std::string &bos_token,
                                const std::string &eos_token) const {
  return apply(messages, add_generation_prompt, bos_token, eos_token, ChatTemplateOptions{});
}

std::string ChatTemplate::apply(const std::vector<ChatMessage> &messages,
                                bool add_generation_prompt, const std::string &bos_token,
                                const std::string &eos_token,
                                const ChatTemplateOptions &options) const {
  std::vector<Value> msgs;
  msgs.reserve(messages.size());
  for (const auto &m : messages) {
    msgs.push_back(jinja::make_dict(
        {{"role", jinja::make_str(m.role)}, {"content", jinja::make_str(m.content)}}));
  }
  Vars vars;
  set_var(vars, "messages", jinja::make_list(std::move(msgs)));
  // transformers always passes tools and documents, as None when there are none.
  set_var(vars, "tools",
          options.tools_json.empty() ? Value(jinja::None{})
                                     : from_json(parse_json(options.tools_json, "tools_json"), 0));
  set_var(vars, "documents", Value(jinja::None{}));
  set_var(vars, "add_generation_prompt", Value(add_generation_prompt));
  set_var(vars, "bos_token", jinja::make_str(bos_token));
  set_var(vars, "eos_token", jinja::make_str(eos_token));
  if (!options.date_string.empty()) {
    set_var(vars, "date_string", jinja::make_str(options.date_string));
  }
  if (!options.extra_json.empty()) {
    nlohmann::ordered_json extra = parse_json(options.extra_json, "extra_json");
    if (!extra.is_object()) {
      fail("chat template: extra_json must be a JSON object");
    }
    for (const auto &[k, v] : extra.items()) {
      set_var(vars, k, from_json(v, 0));
    }
  }
  return jinja::render(impl_->program, vars, options.limits);
}

std::string ChatTemplate::render(const nlohmann::ordered_json &variables,
                                 const ChatTemplateLimits &limits) const {
  if (!variables.is_object()) {
    fail("chat template: render() variables must be a JSON object");
  }
  Vars vars;
  for (const auto &[k, v] : variables.items()) {
    set_var(vars, k, from_json(v, 0));
  }
  return jinja::render(impl_->program, vars, limits);
}

std::string chat_apply_fallback(const std::vector<ChatMessage> &messages,
                                bool add_generation_prompt) {
  std::string out;
  for (const auto &m : messages) {
    if (!out.empty()) {
      out += "\n\n";
    }
    out += m.role + ": " + m.content;
  }
  if (add_generation_prompt) {
    if (!out.empty()) {
      out += "\n\n";
    }
    out += "assistant:";
  }
  return out;
}

}  // namespace lmkit
