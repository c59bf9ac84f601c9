// Chat-template tests: line-numbered errors, unsupported constructs, limits, options, fuzzing.
// Not the real-model renderings: test_chat_template_real.cpp holds those and the oracle data.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/chat_template.h"

namespace lmkit {

// Defined in test_chat_template_real.cpp.
std::vector<std::pair<std::string, std::string>> chat_template_test_sources();
std::string chat_template_test_conversation();
std::string chat_template_test_tools();

namespace {

// The message of the lmkit::Error that constructing and rendering `source` throws ("" if none).
std::string error_of(const std::string &source, const ChatTemplateLimits &limits = {}) {
  try {
    ChatTemplate t(source);
    nlohmann::ordered_json vars;
    vars["messages"] = nlohmann::ordered_json::parse(R"([{"role": "user", "content": "hi"}])");
    vars["add_generation_prompt"] = true;
    t.render(vars, limits);
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}

std::string render(const std::string &source, const std::string &vars_json = "{}") {
  return ChatTemplate(source).render(nlohmann::ordered_json::parse(vars_json));
}

bool contains(const std::string &s, const std::string &part) {
  return s.find(part) != std::string::npos;
}

TEST(ChatTemplate, SyntaxErrorsNameTheLine) {
  std::string e = error_of("line one\n{% if messages %}\nno end");
  EXPECT_TRUE(contains(e, "chat template: line 2:")) << e;
  EXPECT_TRUE(contains(e, "endif")) << e;

  e = error_of("a\nb\n{{ 1 + }}");
  EXPECT_TRUE(contains(e, "line 3:")) << e;

  e = error_of("{% for m in messages %}\n{{ m.role | nosuchfilter }}\n{% endfor %}");
  EXPECT_TRUE(contains(e, "line 2: unknown filter 'nosuchfilter'")) << e;

  e = error_of("x\n\n\n{{ 'unterminated }}");
  EXPECT_TRUE(contains(e, "line 4: unterminated string literal")) << e;

  e = error_of("{% endfor %}");
  EXPECT_TRUE(contains(e, "line 1: unexpected 'endfor'")) << e;

  e = error_of("{{ x is nosuchtest }}");
  EXPECT_TRUE(contains(e, "unknown test 'nosuchtest'")) << e;

  e = error_of("{# open comment");
  EXPECT_TRUE(contains(e, "unterminated comment")) << e;

  e = error_of("{{ messages");
  EXPECT_TRUE(contains(e, "unterminated tag")) << e;

  e = error_of("{% break %}");
  EXPECT_TRUE(contains(e, "'break' outside a for loop")) << e;

  e = error_of("{{ 99999999999999999999 }}");
  EXPECT_TRUE(contains(e, "too large")) << e;

  e = error_of("{{ 'a' @ 'b' }}");
  EXPECT_TRUE(contains(e, "unexpected character '@'")) << e;
}

TEST(ChatTemplate, UnsupportedConstructsAreClearErrors) {
  for (const char *src : {"{% include 'other.jinja' %}", "{% extends 'base' %}",
                          "{% import 'm' as m %}", "{% call f() %}x{% endcall %}",
                          "{% filter upper %}x{% endfilter %}", "{% with a = 1 %}{% endwith %}"}) {
    std::string e = error_of(src);
    EXPECT_TRUE(contains(e, "unsupported statement")) << src << " -> " << e;
  }
  EXPECT_TRUE(contains(error_of("{% for x in y recursive %}{% endfor %}"), "recursive"));
  EXPECT_TRUE(contains(error_of("{{ f(*args) }}"), "*args"));
  EXPECT_TRUE(contains(error_of("{% frobnicate %}"), "unknown statement 'frobnicate'"));
  EXPECT_TRUE(contains(error_of("{{ '%s' % 1 }}"), "not supported"));
}

TEST(ChatTemplate, RaiseExceptionCarriesTheMessage) {
  EXPECT_EQ(error_of("{{ raise_exception('Only user and assistant roles are supported!') }}"),
            "chat template: Only user and assistant roles are supported!");
  EXPECT_EQ(error_of("{% if messages | length > 0 %}{{ raise_exception(\"too \" ~ 'many') }}"
                     "{% endif %}"),
            "chat template: too many");
}

TEST(ChatTemplate, RuntimeErrorsNameTheLine) {
  std::string e = error_of("ok\n{{ messages[3].role }}");
  EXPECT_TRUE(contains(e, "line 2:")) << e;
  EXPECT_TRUE(contains(e, "undefined")) << e;
  EXPECT_TRUE(
      contains(error_of("{{ 1 + 'a' }}"), "unsupported operand type(s) for +: 'int' and 'str'"));
  EXPECT_TRUE(contains(error_of("{{ 1 // 0 }}"), "division or modulo by zero"));
  EXPECT_TRUE(contains(error_of("{{ 9223372036854775807 + 1 }}"), "integer overflow"));
  EXPECT_TRUE(contains(error_of("{{ nothing() }}"), "'nothing' is undefined"));
  EXPECT_TRUE(contains(error_of("{{ 3() }}"), "not callable"));
  EXPECT_TRUE(contains(error_of("{% set x = 1 %}{% set x.a = 2 %}"), "not a namespace"));
  EXPECT_TRUE(contains(error_of("{% for a, b in [1] %}{% endfor %}"),
                       "cannot unpack non-iterable int object"));
  EXPECT_TRUE(contains(error_of("{% for a, b in [[1, 2, 3]] %}{% endfor %}"),
                       "too many values to unpack (expected 2, got 3)"));
  EXPECT_TRUE(contains(error_of("{{ {'k': x} | tojson }}"), "not JSON serializable"));
  EXPECT_TRUE(contains(error_of("{{ [1] < 'a' }}"), "not supported between"));
}

TEST(ChatTemplate, LoopIterationsAreBounded) {
  ChatTemplateLimits small;
  small.max_loop_iterations = 1000;
  std::string e =
      error_of("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}", small);
  EXPECT_TRUE(contains(e, "exceeded 1000 loop iterations")) << e;
  // The defaults: 10 million iterations, and no list (range()) beyond 2^20 items.
  ChatTemplateLimits d;
  EXPECT_EQ(d.max_loop_iterations, 10'000'000);
  EXPECT_EQ(d.max_output_bytes, int64_t(64) << 20);
  EXPECT_EQ(d.max_steps, 50'000'000);
  e = error_of("{% for i in range(1000000000) %}{% endfor %}");
  EXPECT_TRUE(contains(e, "exceeds the limit")) << e;
  e = error_of("{{ range(-9223372036854775807, 9223372036854775807, 1) | length }}");
  EXPECT_TRUE(contains(e, "exceeds the limit")) << e;
}

TEST(ChatTemplate, OutputAndValueSizesAreBounded) {
  // Doubling a string 40 times would need a terabyte; it stops at 64 MiB.
  std::string e = error_of(
      "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
      "{% endfor %}{{ ns.s }}");
  EXPECT_TRUE(contains(e, "exceeds the limit of 67108864")) << e;
  e = error_of("{{ 'x' * 100000000000 }}");
  EXPECT_TRUE(contains(e, "exceeds the limit")) << e;
  e = error_of("{{ [1] * 100000000000 }}");
  EXPECT_TRUE(contains(e, "exceeds the limit")) << e;
  e = error_of(
      "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}"
      "{% endfor %}");
  EXPECT_TRUE(contains(e, "exceeds the limit")) << e;
  e = error_of(
      "{{ ('ab' * 1000000) | replace('a', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa') | length }}",
      [] {
        ChatTemplateLimits l;
        l.max_output_bytes = 1 << 20;
        return l;
      }());
  EXPECT_TRUE(contains(e, "exceeds the limit")) << e;

  // Results that would multiply a big input stop before they are built.
  ChatTemplateLimits mid;
  mid.max_list_items = 100000;
  mid.max_output_bytes = 4 << 20;
  for (const char *src :
       {"{{ ('a ' * 300000).split() | length }}", "{{ ('a\\n' * 300000).splitlines() | length }}",
        "{{ ('a,' * 300000).split(',') | length }}", "{% for c in 'x' * 300000 %}{% endfor %}",
        "{{ ('<' * 2000000) | e | length }}", "{{ ('\\x01' * 2000000) | tojson | length }}",
        "{{ ['\\x01' * 2000000] | string | length }}"}) {
    e = error_of(src, mid);
    EXPECT_TRUE(contains(e, "exceeds the limit")) << src << ": " << e;
  }

  ChatTemplateLimits small;
  small.max_output_bytes = 1000;
  e = error_of("{% for i in range(100) %}0123456789abcdef{% endfor %}", small);
  EXPECT_TRUE(contains(e, "rendered text exceeds the limit of 1000 bytes")) << e;
}

TEST(ChatTemplate, NestingIsBounded) {
  std::string deep = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  EXPECT_TRUE(contains(error_of(deep), "nested too deeply"));
  std::string chain = "{{ 1";
  for (int i = 0; i < 100000; ++i) chain += " + 1";
  chain += " }}";
  EXPECT_TRUE(contains(error_of(chain), "nested too deeply"));
  std::string blocks;
  for (int i = 0; i < 2000; ++i) blocks += "{% if true %}";
  EXPECT_TRUE(contains(error_of(blocks), "nested too deeply"));
  std::string lists = "{{ " + std::string(3000, '[') + std::string(3000, ']') + " }}";
  EXPECT_TRUE(contains(error_of(lists), "nested too deeply"));
  // Values built up by a loop nest too, without the parser seeing it.
  std::string e = error_of(
      "{% set ns = namespace(x=1) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}"
      "{% endfor %}");
  EXPECT_TRUE(contains(e, "nests deeper than 256")) << e;
  e = error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  EXPECT_TRUE(contains(e, "macro calls nested deeper than 64")) << e;
  // Each macro level may itself nest deeply; together they are capped before the stack is.
  std::string body = "{{ " + std::string(30, '(') + "f(n + 1)";
  for (int i = 0; i < 30; ++i) body += " + 1)";
  e = error_of("{% macro f(n) %}{% if true %}{% for x in [1] %}" + body +
               " }}{% endfor %}{% endif %}{% endmacro %}{{ f(0) }}");
  EXPECT_TRUE(contains(e, "nested too deeply") || contains(e, "macro calls nested")) << e;
}

TEST(ChatTemplate, EvaluationStepsAreBounded) {
  ChatTemplateLimits small;
  small.max_steps = 100000;
  std::string e = error_of(
      "{% for i in range(1000) %}{% for j in range(1000) %}{{ '' if i * j > 0 }}{% endfor %}"
      "{% endfor %}",
      small);
  EXPECT_TRUE(contains(e, "exceeded 100000 evaluation steps")) << e;
}

// Namespaces are mutable and may reference each other; rendering must not leak (LeakSanitizer)
// or recurse forever printing them.
TEST(ChatTemplate, NamespaceCyclesAreHarmless) {
  std::string out = render(
      "{% set a = namespace() %}{% set b = namespace(x=a) %}{% set a.x = b %}{% set a.l = [a, b] %}"
      "{{ (a | string)[:13] }}|{{ a.x.x.x.x is defined }}");
  EXPECT_EQ(out, "<Namespace {'|True");
}

// Lists may share sublists, so [l, l] nested 60 times is small in memory but 2^60 when printed,
// compared or serialized; those walks are charged to the step budget and the size limit.
TEST(ChatTemplate, SharedSublistsCannotExplode) {
  const std::string build =
      "{% set ns = namespace(a=[1], b=[1]) %}{% for i in range(60) %}"
      "{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}";
  ChatTemplateLimits small;
  small.max_steps = 200000;
  for (const char *use :
       {"{{ ns.a }}", "{{ ns.a == ns.b }}", "{{ ns.a | tojson }}", "{{ ns.a ~ '' }}",
        "{{ [ns.a, ns.b] | sort | length }}", "{{ ns.a in [ns.b] }}"}) {
    std::string e = error_of(build + use, small);
    EXPECT_TRUE(contains(e, "exceeds the limit") || contains(e, "evaluation steps"))
        << use << ": " << e;
  }
  // Substring search costs up to haystack * needle; it is charged before it runs.
  std::string e = error_of("{{ ('a' * 3000000 ~ 'b') in ('a' * 6000000) }}", small);
  EXPECT_TRUE(contains(e, "evaluation steps")) << e;
}

TEST(ChatTemplate, EmptyTemplateAndMoves) {
  EXPECT_EQ(render(""), "");
  ChatTemplate a("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}");
  ChatTemplate b = std::move(a);
  ChatTemplate c("unused");
  c = std::move(b);
  EXPECT_EQ(c.apply({{"user", "x"}, {"assistant", "y"}}, false, "<s>", "</s>"), "<s>xy");
}

TEST(ChatTemplate, GenerationTagRendersItsBody) {
  EXPECT_EQ(
      render("{% for m in messages %}{% generation %}[{{ m }}]{% endgeneration %}{% endfor %}",
             R"({"messages": ["a", "b"]})"),
      "[a][b]");
}

TEST(ChatTemplate, OptionsReachTheTemplate) {
  ChatTemplate t(
      "{{ tools | length if tools else 'none' }}|{{ date_string | default('-') }}|"
      "{{ enable_thinking }}|{{ documents is none }}|{{ add_generation_prompt }}");
  std::vector<ChatMessage> msgs = {{"user", "hi"}};
  EXPECT_EQ(t.apply(msgs, true, "", ""), "none|-||True|True");
  ChatTemplateOptions opt;
  opt.tools_json = R"([{"type": "function", "function": {"name": "f"}}])";
  opt.date_string = "02 Jan 2025";
  opt.extra_json = R"({"enable_thinking": false})";
  EXPECT_EQ(t.apply(msgs, false, "", "", opt), "1|02 Jan 2025|False|True|False");

  opt.tools_json = "[not json";
  try {
    t.apply(msgs, true, "", "", opt);
    ADD_FAILURE() << "invalid tools_json accepted";
  } catch (const Error &e) {
    EXPECT_TRUE(contains(e.what(), "tools_json is not valid JSON")) << e.what();
  }
  opt.tools_json.clear();
  opt.extra_json = "[1]";
  EXPECT_THROW(t.apply(msgs, true, "", "", opt), Error);
  EXPECT_THROW(t.render(nlohmann::ordered_json::array()), Error);
}

TEST(ChatTemplate, RenderKeepsJsonKeyOrder) {
  ChatTemplate t("{{ x | tojson }}");
  nlohmann::ordered_json v;
  v["x"] = nlohmann::ordered_json::parse(R"({"z": 1, "a": [true, null, 2.5, "é"]})");
  EXPECT_EQ(t.render(v), R"({"z": 1, "a": [true, null, 2.5, "é"]})");
}

TEST(ChatTemplate, Fallback) {
  std::vector<ChatMessage> msgs = {
      {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}};
  EXPECT_EQ(chat_apply_fallback(msgs, false), "system: Be brief.\n\nuser: Hi\n\nassistant: Hello.");
  EXPECT_EQ(chat_apply_fallback(msgs, true),
            "system: Be brief.\n\nuser: Hi\n\nassistant: Hello.\n\nassistant:");
  EXPECT_EQ(chat_apply_fallback({}, true), "assistant:");
  EXPECT_EQ(chat_apply_fallback({}, false), "");
}

// Random mutations of the real templates (and random bytes) must either render or throw
// lmkit::Error: never crash, hang, or throw anything else. Run under ASan/UBSan.
TEST(ChatTemplate, MutatedTemplatesOnlyThrowLmkitError) {
  std::vector<std::string> seeds;
  for (const auto &[name, src] : chat_template_test_sources()) seeds.push_back(src);
  static const char *const kPieces[] = {"{%",
                                        "%}",
                                        "{{",
                                        "}}",
                                        "{#",
                                        "#}",
                                        "{%-",
                                        "-%}",
                                        "(",
                                        ")",
                                        "[",
                                        "]",
                                        "{",
                                        "}",
                                        "'",
                                        "\"",
                                        "|",
                                        "~",
                                        "-",
                                        "+",
                                        "*",
                                        "**",
                                        "/",
                                        "//",
                                        "%",
                                        ".",
                                        ",",
                                        ":",
                                        "=",
                                        "==",
                                        " is ",
                                        " not ",
                                        " in ",
                                        " if ",
                                        " else ",
                                        "endfor",
                                        "endif",
                                        "for x in ",
                                        "set ",
                                        "ns.",
                                        "loop.",
                                        "macro",
                                        "raise_exception(",
                                        "range(",
                                        "namespace(",
                                        "tojson",
                                        "trim",
                                        "\n",
                                        " ",
                                        "\\",
                                        "0",
                                        "-1",
                                        "1e309",
                                        "9223372036854775807",
                                        "messages",
                                        "[::-1]",
                                        "[1:]",
                                        "none",
                                        "true",
                                        "\xff",
                                        "\xc3",
                                        "\xe2\x98",
                                        "raw",
                                        "endraw",
                                        "break",
                                        "continue",
                                        "|items",
                                        "|join",
                                        "|map(",
                                        "."};
  std::mt19937 rng(12345);
  auto pick = [&](size_t n) { return n ? size_t(rng() % n) : size_t(0); };
  nlohmann::ordered_json vars;
  vars["messages"] = nlohmann::ordered_json::parse(chat_template_test_conversation());
  vars["tools"] = nlohmann::ordered_json::parse(chat_template_test_tools());
  vars["add_generation_prompt"] = true;
  vars["bos_token"] = "<s>";
  vars["eos_token"] = "</s>";
  ChatTemplateLimits limits;
  limits.max_steps = 200000;
  limits.max_loop_iterations = 20000;
  limits.max_output_bytes = 1 << 20;
  limits.max_list_items = 10000;
  int rendered = 0, failed = 0;
  // LMKIT_FUZZ_ITERS runs a longer campaign than the default.
  const char *env = std::getenv("LMKIT_FUZZ_ITERS");
  const int iters = env && *env ? std::atoi(env) : 5000;
  for (int iter = 0; iter < iters; ++iter) {
    std::string s = seeds[pick(seeds.size())];
    int n_mut = 1 + int(pick(4));
    for (int m = 0; m < n_mut; ++m) {
      size_t pos = pick(s.size() + 1), len = pick(std::min<size_t>(40, s.size() - pos) + 1);
      switch (pick(5)) {
        case 0:
          s.erase(pos, len);
          break;
        case 1:
          s.insert(pos, kPieces[pick(std::size(kPieces))]);
          break;
        case 2:
          s.insert(pos, s.substr(pick(s.size() + 1), 30));
          break;
        case 3:
          s.replace(pos, len, kPieces[pick(std::size(kPieces))]);
          break;
        default:
          if (!s.empty()) s[pick(s.size())] = char(rng() & 0xFF);
      }
    }
    if (iter % 10 == 0) {  // pure noise too
      s.clear();
      for (size_t k = 0, n = pick(200); k < n; ++k) s += char(rng() & 0xFF);
    }
    try {
      ChatTemplate t(s);
      t.render(vars, limits);
      ++rendered;
    } catch (const Error &) {
      ++failed;
    } catch (const std::exception &e) {
      ADD_FAILURE() << "non-lmkit exception " << e.what() << " for template:\n" << s;
    }
  }
  // Both outcomes occur: the mutations are neither all harmless nor all fatal.
  EXPECT_GT(rendered, 100);
  EXPECT_GT(failed, 100);
}

}  // namespace
}  // namespace lmkit
