// Chat-template renderer: Jinja scoping, Python operators, HF's filters/tests/globals, bounded.
// Not a parser: chat_template_parse.cpp builds the tree and rejects unknown filters and tests.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <limits>
#include <stdexcept>

#include "core/error.h"
#include "tokenizer/chat_template_jinja.h"

namespace lmkit::jinja {
namespace {

[[noreturn]] void fail_at(int line, const std::string &msg) {
  fail("chat template: line ", line, ": ", msg);
}

constexpr const char *kFilters[] = {
    "abs",    "attr",   "capitalize", "count",      "d",           "default", "dictsort",
    "e",      "escape", "first",      "float",      "forceescape", "indent",  "int",
    "items",  "join",   "last",       "length",     "list",        "lower",   "map",
    "max",    "min",    "reject",     "rejectattr", "replace",     "reverse", "round",
    "safe",   "select", "selectattr", "sort",       "string",      "sum",     "title",
    "tojson", "trim",   "unique",     "upper",      "wordcount"};

constexpr const char *kTests[] = {
    "boolean", "callable", "defined",  "divisibleby", "eq",       "equalto",     "escaped",
    "even",    "false",    "filter",   "float",       "ge",       "greaterthan", "gt",
    "in",      "integer",  "iterable", "le",          "lessthan", "lower",       "lt",
    "mapping", "ne",       "none",     "number",      "odd",      "sameas",      "sequence",
    "string",  "test",     "true",     "undefined",   "upper",    "==",          "!=",
    "<",       "<=",       ">",        ">="};

const char *const kStrMethods[] = {
    "strip", "lstrip",  "rstrip",  "split",      "rsplit",  "splitlines", "startswith", "endswith",
    "upper", "lower",   "title",   "capitalize", "replace", "find",       "rfind",      "count",
    "join",  "isdigit", "isalpha", "isalnum",    "isspace", "islower",    "isupper"};
const char *const kDictMethods[] = {"get", "keys", "values", "items"};
const char *const kListMethods[] = {"index", "count"};
const char *const kGlobals[] = {"range", "namespace", "dict", "raise_exception", "strftime_now"};

template <size_t N>
bool in_list(const char *const (&list)[N], std::string_view name) {
  for (const char *s : list) {
    if (name == s) {
      return true;
    }
  }
  return false;
}

// ---- string helpers (ASCII case mapping; Python whitespace)

char ascii_upper(char c) {
  return c >= 'a' && c <= 'z' ? char(c - 32) : c;
}
char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? char(c + 32) : c;
}
bool ascii_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::string str_upper(std::string s) {
  for (char &c : s) {
    c = ascii_upper(c);
  }
  return s;
}
std::string str_lower(std::string s) {
  for (char &c : s) {
    c = ascii_lower(c);
  }
  return s;
}
std::string str_capitalize(const std::string &s) {
  std::string r = str_lower(s);
  if (!r.empty()) {
    r[0] = ascii_upper(r[0]);
  }
  return r;
}
// Python's str.title(): a letter after a non-letter starts a word.
std::string str_title_method(const std::string &s) {
  std::string r = s;
  bool prev_alpha = false;
  for (char &c : r) {
    bool alpha = ascii_alpha(c) || (static_cast<unsigned char>(c) >= 0x80);
    if (ascii_alpha(c)) {
      c = prev_alpha ? ascii_lower(c) : ascii_upper(c);
    }
    prev_alpha = alpha;
  }
  return r;
}
// Jinja's |title: words start after whitespace, '-', '(', '{', '[' or '<'.
std::string str_title_filter(const std::string &s) {
  std::string r = s;
  bool start = true;
  for (char &c : r) {
    bool sep = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' ||
               c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    if (sep) {
      start = true;
      continue;
    }
    c = start ? ascii_upper(c) : ascii_lower(c);
    start = false;
  }
  return r;
}

// str.strip family: `chars` null strips Python whitespace.
std::string str_strip(const std::string &s, const std::string *chars, bool left, bool right) {
  std::vector<size_t> off = utf8_offsets(s);
  std::vector<uint32_t> strip_set;
  if (chars) {
    size_t p = 0;
    while (p < chars->size()) {
      size_t len = 1;
      strip_set.push_back(utf8_decode_at(*chars, p, &len));
      p += len;
    }
  }
  auto strippable = [&](size_t i) {
    size_t len = 1;
    uint32_t cp = utf8_decode_at(s, off[i], &len);
    if (!chars) {
      return is_py_space(cp);
    }
    return std::find(strip_set.begin(), strip_set.end(), cp) != strip_set.end();
  };
  size_t n = off.size() - 1, b = 0, e = n;
  if (left) {
    while (b < e && strippable(b)) {
      ++b;
    }
  }
  if (right) {
    while (e > b && strippable(e - 1)) {
      --e;
    }
  }
  return s.substr(off[b], off[e] - off[b]);
}

// The split helpers throw std::length_error past `max_parts` pieces, before they pile up.
void check_parts(const std::vector<std::string> &out, size_t max_parts) {
  if (out.size() > max_parts) {
    throw std::length_error("split");
  }
}

std::vector<std::string> str_split_ws(const std::string &s, int64_t maxsplit, size_t max_parts) {
  std::vector<std::string> out;
  std::vector<size_t> off = utf8_offsets(s);
  size_t n = off.size() - 1, i = 0;
  auto space = [&](size_t k) {
    size_t len = 1;
    return is_py_space(utf8_decode_at(s, off[k], &len));
  };
  while (i < n) {
    while (i < n && space(i)) {
      ++i;
    }
    if (i >= n) {
      break;
    }
    if (maxsplit >= 0 && int64_t(out.size()) >= maxsplit) {
      out.push_back(s.substr(off[i]));  // Python keeps the remainder's trailing whitespace
      break;
    }
    size_t j = i;
    while (j < n && !space(j)) {
      ++j;
    }
    out.push_back(s.substr(off[i], off[j] - off[i]));
    check_parts(out, max_parts);
    i = j;
  }
  return out;
}

std::vector<std::string> str_split_sep(const std::string &s, const std::string &sep,
                                       int64_t maxsplit, size_t max_parts) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (maxsplit < 0 || int64_t(out.size()) < maxsplit) {
    size_t f = s.find(sep, pos);
    if (f == std::string::npos) {
      break;
    }
    out.push_back(s.substr(pos, f - pos));
    check_parts(out, max_parts);
    pos = f + sep.size();
  }
  out.push_back(s.substr(pos));
  return out;
}

std::vector<std::string> str_rsplit_sep(const std::string &s, const std::string &sep,
                                        int64_t maxsplit, size_t max_parts) {
  std::vector<std::string> out;
  size_t end = s.size();
  while (maxsplit < 0 || int64_t(out.size()) < maxsplit) {
    if (end < sep.size()) {
      break;
    }
    size_t f = s.rfind(sep, end - sep.size());
    if (f == std::string::npos) {
      break;
    }
    out.push_back(s.substr(f + sep.size(), end - f - sep.size()));
    check_parts(out, max_parts);
    end = f;
  }
  out.push_back(s.substr(0, end));
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> str_splitlines(const std::string &s, bool keepends, size_t max_parts) {
  std::vector<std::string> out;
  size_t start = 0, p = 0;
  while (p < s.size()) {
    size_t len = 1;
    uint32_t cp = utf8_decode_at(s, p, &len);
    bool brk = cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C || cp == 0x1D ||
               cp == 0x1E || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
    if (!brk) {
      p += len;
      continue;
    }
    size_t end = p;
    p += len;
    if (cp == '\r' && p < s.size() && s[p] == '\n') {
      ++p;
    }
    out.push_back(s.substr(start, (keepends ? p : end) - start));
    check_parts(out, max_parts);
    start = p;
  }
  if (start < s.size()) {
    out.push_back(s.substr(start));
  }
  return out;
}

std::string str_replace(const std::string &s, const std::string &old, const std::string &rep,
                        int64_t count, int64_t max_bytes) {
  std::string out;
  auto check = [&] {
    if (int64_t(out.size()) > max_bytes) {
      throw std::length_error("replace");
    }
  };
  if (old.empty()) {
    // Python inserts the replacement before every code point and at the end.
    std::vector<size_t> off = utf8_offsets(s);
    int64_t done = 0;
    for (size_t i = 0; i + 1 < off.size(); ++i) {
      if (count < 0 || done < count) {
        out += rep;
        ++done;
      }
      out.append(s, off[i], off[i + 1] - off[i]);
      check();
    }
    if (count < 0 || done < count) {
      out += rep;
    }
    check();
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t f = s.find(old, pos);
    if (f == std::string::npos) {
      break;
    }
    out.append(s, pos, f - pos);
    out += rep;
    check();
    pos = f + old.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  check();
  return out;
}

std::string html_escape(const std::string &s, int64_t max_bytes) {
  std::string out;
  for (char c : s) {
    if (int64_t(out.size()) > max_bytes) {
      throw std::length_error("escape");
    }
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Python's int(str, base) (whitespace, sign, underscores, 0x/0o/0b prefixes).
bool parse_py_int(const std::string &text, int base, int64_t *out) {
  std::string s = str_strip(text, nullptr, true, true);
  bool neg = false;
  size_t p = 0;
  if (p < s.size() && (s[p] == '+' || s[p] == '-')) {
    neg = s[p++] == '-';
  }
  auto prefix = [&](char lower) {
    return p + 1 < s.size() && s[p] == '0' && (s[p + 1] == lower || s[p + 1] == lower - 32);
  };
  if (base == 0) {
    base = prefix('x') ? 16 : prefix('o') ? 8 : prefix('b') ? 2 : 10;
    if (base != 10) {
      p += 2;
    }
  } else if ((base == 16 && prefix('x')) || (base == 8 && prefix('o')) ||
             (base == 2 && prefix('b'))) {
    p += 2;
  }
  if (base < 2 || base > 36) {
    return false;
  }
  std::string digits;
  for (size_t i = p; i < s.size(); ++i) {
    if (s[i] == '_' && i > p && i + 1 < s.size() && s[i - 1] != '_') {
      continue;
    }
    digits += s[i];
  }
  if (digits.empty()) {
    return false;
  }
  uint64_t v = 0;
  auto r = std::from_chars(digits.data(), digits.data() + digits.size(), v, base);
  if (r.ec != std::errc() || r.ptr != digits.data() + digits.size()) {
    return false;
  }
  if (v > uint64_t(std::numeric_limits<int64_t>::max()) + (neg ? 1 : 0)) {
    return false;
  }
  *out = neg ? int64_t(0 - v) : int64_t(v);
  return true;
}

bool parse_py_float(const std::string &text, double *out) {
  std::string s = str_strip(text, nullptr, true, true);
  std::string t;
  for (size_t i = 0; i < s.size(); ++i) {
    if (!(s[i] == '_' && i > 0 && i + 1 < s.size() && std::isdigit((unsigned char)s[i - 1]) &&
          std::isdigit((unsigned char)s[i + 1]))) {
      t += s[i];
    }
  }
  bool neg = false;
  size_t p = 0;
  if (p < t.size() && (t[p] == '+' || t[p] == '-')) {
    neg = t[p++] == '-';
  }
  std::string rest = str_lower(t.substr(p));
  if (rest == "inf" || rest == "infinity") {
    *out = neg ? -INFINITY : INFINITY;
    return true;
  }
  if (rest == "nan") {
    *out = NAN;
    return true;
  }
  if (rest.empty()) {
    return false;
  }
  double v = 0;
  auto r = std::from_chars(rest.data(), rest.data() + rest.size(), v);
  if (r.ec == std::errc::result_out_of_range) {
    v = rest.find('e') != std::string::npos && rest.find("e-") != std::string::npos ? 0.0
                                                                                    : INFINITY;
  } else if (r.ec != std::errc() || r.ptr != rest.data() + rest.size()) {
    return false;
  }
  *out = neg ? -v : v;
  return true;
}

double as_double(const Value &v) {
  if (v.is_float()) {
    return std::get<double>(v.v);
  }
  if (v.is_int()) {
    return double(std::get<int64_t>(v.v));
  }
  return std::get<bool>(v.v) ? 1.0 : 0.0;
}
int64_t as_int(const Value &v) {
  if (v.is_int()) {
    return std::get<int64_t>(v.v);
  }
  return std::get<bool>(v.v) ? 1 : 0;
}
bool is_intlike(const Value &v) {
  return v.is_int() || v.is_bool();
}

// Arguments of a filter, method or global call, bound Python-style by position or keyword.
class Args {
 public:
  Args(std::string fname, int line, std::vector<Value> pos,
       std::vector<std::pair<std::string, Value>> kw)
      : fname_(std::move(fname)),
        line_(line),
        pos_(std::move(pos)),
        kw_(std::move(kw)),
        used_(kw_.size(), false) {}

  // Parameter `i` (0-based, not counting the filtered value), also accepted as keyword `name`.
  const Value *get(size_t i, const char *name) {
    if (i < pos_.size()) {
      return &pos_[i];
    }
    for (size_t k = 0; k < kw_.size(); ++k) {
      if (kw_[k].first == name) {
        used_[k] = true;
        return &kw_[k].second;
      }
    }
    return nullptr;
  }
  Value get_or(size_t i, const char *name, const Value &dflt) {
    const Value *v = get(i, name);
    return v ? *v : dflt;
  }
  // Rejects more than `max_pos` positional arguments and keywords nobody asked for.
  void done(size_t max_pos) {
    if (pos_.size() > max_pos) {
      fail_at(line_, fname_ + "() takes at most " + std::to_string(max_pos) + " argument(s), got " +
                         std::to_string(pos_.size()));
    }
    for (size_t k = 0; k < kw_.size(); ++k) {
      if (!used_[k]) {
        fail_at(line_, fname_ + "() got an unexpected keyword argument '" + kw_[k].first + "'");
      }
    }
  }
  std::vector<Value> &positional() { return pos_; }
  std::vector<std::pair<std::string, Value>> &keywords() { return kw_; }
  void mark_all_used() { std::fill(used_.begin(), used_.end(), true); }
  int line() const { return line_; }
  const std::string &fname() const { return fname_; }

 private:
  std::string fname_;
  int line_;
  std::vector<Value> pos_;
  std::vector<std::pair<std::string, Value>> kw_;
  std::vector<bool> used_;
};

enum class Flow { Normal, Break, Continue };

// Evaluation recurses once per syntax-tree level, and macro calls multiply that; this caps the
// total so the C++ stack (8 MiB on the main thread, often less on others) is never the limit.
constexpr int kMaxRecursion = 1000;

class Renderer {
 public:
  Renderer(const ChatTemplateLimits &limits, const std::vector<std::pair<std::string, Value>> &vars)
      : limits_(limits) {
    budget_.max_steps = limits.max_steps;
    budget_.max_bytes = limits.max_output_bytes;
    frames_.emplace_back();
    for (const auto &[k, v] : vars) {
      set_in(frames_[0], k, v);
    }
    out_ = &result_;
  }

  // Namespaces are the one mutable value, so a template can make them reference each other;
  // emptying them all here breaks such cycles (and keeps their teardown shallow).
  ~Renderer() {
    for (auto &ns : namespaces_) {
      ns->attrs.clear();
    }
  }

  std::string run(const Body &body) {
    exec(body);
    return std::move(result_);
  }

 private:
  using Frame = std::vector<std::pair<std::string, Value>>;

  // ---- scopes

  static void set_in(Frame &f, const std::string &name, Value v) {
    for (auto &[k, x] : f) {
      if (k == name) {
        x = std::move(v);
        return;
      }
    }
    f.emplace_back(name, std::move(v));
  }

  const Value *find_var(const std::string &name) const {
    for (size_t i = frames_.size(); i-- > floor_;) {
      for (const auto &[k, v] : frames_[i]) {
        if (k == name) {
          return &v;
        }
      }
    }
    for (const auto &[k, v] : frames_[0]) {
      if (k == name) {
        return &v;
      }
    }
    return nullptr;
  }

  Value lookup(const std::string &name) {
    if (const Value *v = find_var(name)) {
      return *v;
    }
    if (in_list(kGlobals, name)) {
      auto c = std::make_shared<Callable>();
      c->kind = Callable::Kind::Global;
      c->name = name;
      return Value(CallablePtr(std::move(c)));
    }
    return make_undefined(name);
  }

  void set_var(const std::string &name, Value v) { set_in(frames_.back(), name, std::move(v)); }

  // ---- budgets

  void tick(int line) {
    budget_.line = line;
    budget_.charge();
  }
  // Substring search is O(haystack * needle) at worst; charge for that before searching.
  void charge_search(size_t hay, size_t needle) {
    budget_.charge(int64_t((hay / 64 + 1) * (needle / 64 + 1)));
  }
  void charge_scan(const std::string &s) { budget_.charge(int64_t(s.size() / 64)); }

  size_t max_parts() const { return size_t(limits_.max_list_items); }
  int64_t max_bytes() const { return limits_.max_output_bytes; }
  // Runs a helper that throws std::length_error when its result would pass a limit.
  template <typename F>
  auto sized(int line, F f) {
    try {
      return f();
    } catch (const std::length_error &) {
      fail_at(line, "result exceeds the limit of " + std::to_string(limits_.max_list_items) +
                        " items or " + std::to_string(limits_.max_output_bytes) + " bytes");
    }
  }

  void count_iteration(int line) {
    if (++iterations_ > limits_.max_loop_iterations) {
      fail_at(line, "template exceeded " + std::to_string(limits_.max_loop_iterations) +
                        " loop iterations");
    }
  }
  void check_bytes(size_t n, int line) {
    if (int64_t(n) > limits_.max_output_bytes) {
      fail_at(line, "string of " + std::to_string(n) + " bytes exceeds the limit of " +
                        std::to_string(limits_.max_output_bytes));
    }
  }
  void check_items(size_t n, int line) {
    if (int64_t(n) > limits_.max_list_items) {
      fail_at(line, "list of " + std::to_string(n) + " items exceeds the limit of " +
                        std::to_string(limits_.max_list_items));
    }
  }
  Value str_value(std::string s, int line) {
    check_bytes(s.size(), line);
    budget_.charge(int64_t(s.size() / 256));
    return make_str(std::move(s));
  }
  Value list_value(std::vector<Value> items, int line, bool tuple = false) {
    check_items(items.size(), line);
    budget_.charge(int64_t(items.size() / 16));
    return make_list(std::move(items), tuple);
  }

  void emit(std::string_view s, int line) {
    if (int64_t(out_->size() + s.size()) > limits_.max_output_bytes) {
      fail_at(line, "rendered text exceeds the limit of " +
                        std::to_string(limits_.max_output_bytes) + " bytes");
    }
    out_->append(s);
  }

  [[noreturn]] void fail_undefined(const Value &v, int line, const std::string &what) {
    const auto &u = std::get<Undefined>(v.v);
    std::string name = u.hint ? *u.hint : "value";
    fail_at(line, "'" + name + "' is undefined" + (what.empty() ? "" : " (" + what + ")"));
  }

  // ---- statements

  Flow exec(const Body &body) {
    for (const auto &n : body) {
      Flow f = exec_node(*n);
      if (f != Flow::Normal) {
        return f;
      }
    }
    return Flow::Normal;
  }

  struct RecursionGuard {
    Renderer &r;
    RecursionGuard(Renderer &renderer, int line) : r(renderer) {
      if (++r.recursion_ > kMaxRecursion) {
        fail_at(line, "template nested too deeply when rendered");
      }
    }
    ~RecursionGuard() { --r.recursion_; }
  };

  Flow exec_node(const Node &n) {
    RecursionGuard guard(*this, n.line);
    tick(n.line);
    switch (n.kind) {
      case Node::Kind::Text:
        emit(n.text, n.line);
        return Flow::Normal;
      case Node::Kind::Output: {
        Value v = eval(*n.expr);
        if (v.is_string()) {
          emit(v.str(), n.line);
        } else {
          emit(to_str(v, budget_), n.line);
        }
        return Flow::Normal;
      }
      case Node::Kind::If:
        for (const auto &[cond, body] : n.branches) {
          if (truthy(eval(*cond))) {
            return exec(body);
          }
        }
        return exec(n.else_body);
      case Node::Kind::For:
        return exec_for(n);
      case Node::Kind::Set: {
        Value v = eval(*n.expr);
        if (!n.unpack) {
          set_var(n.targets[0], std::move(v));
        } else {
          std::vector<Value> parts = unpack(v, n.targets.size(), n.line);
          for (size_t i = 0; i < parts.size(); ++i) {
            set_var(n.targets[i], std::move(parts[i]));
          }
        }
        return Flow::Normal;
      }
      case Node::Kind::SetAttr: {
        const Value *obj = find_var(n.targets[0]);
        if (!obj || !obj->is_namespace()) {
          fail_at(n.line, "cannot set '" + n.targets[0] + "." + n.targets[1] + "': '" +
                              n.targets[0] + "' is not a namespace()");
        }
        NamespacePtr ns = std::get<NamespacePtr>(obj->v);
        ns->set(n.targets[1], eval(*n.expr));
        return Flow::Normal;
      }
      case Node::Kind::SetBlock: {
        std::string buf;
        std::string *saved = out_;
        out_ = &buf;
        Flow f = exec(n.body);
        out_ = saved;
        set_var(n.targets[0], str_value(std::move(buf), n.line));
        return f;
      }
      case Node::Kind::Break:
        return Flow::Break;
      case Node::Kind::Continue:
        return Flow::Continue;
      case Node::Kind::Macro: {
        auto c = std::make_shared<Callable>();
        c->kind = Callable::Kind::Macro;
        c->name = n.macro->name;
        c->macro = n.macro.get();
        set_var(n.macro->name, Value(CallablePtr(std::move(c))));
        return Flow::Normal;
      }
    }
    return Flow::Normal;
  }

  std::vector<Value> unpack(const Value &v, size_t n, int line) {
    if (!v.is_list() && !v.is_dict() && !v.is_string()) {
      fail_at(line, "cannot unpack non-iterable " + type_name(v) + " object");
    }
    std::vector<Value> parts = iterate(v, line);
    if (parts.size() != n) {
      fail_at(line, std::string(parts.size() > n ? "too many" : "not enough") +
                        " values to unpack (expected " + std::to_string(n) + ", got " +
                        std::to_string(parts.size()) + ")");
    }
    return parts;
  }

  void bind_targets(const Node &n, const Value &item) {
    if (!n.unpack) {
      set_var(n.targets[0], item);
      return;
    }
    std::vector<Value> parts = unpack(item, n.targets.size(), n.line);
    for (size_t i = 0; i < parts.size(); ++i) {
      set_var(n.targets[i], std::move(parts[i]));
    }
  }

  Flow exec_for(const Node &n) {
    std::vector<Value> items = iterate(eval(*n.expr), n.line);
    if (n.filter) {
      std::vector<Value> kept;
      for (auto &item : items) {
        count_iteration(n.line);
        frames_.emplace_back();
        bind_targets(n, item);
        bool keep = truthy(eval(*n.filter));
        frames_.pop_back();
        if (keep) {
          kept.push_back(std::move(item));
        }
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      frames_.emplace_back();
      Flow f = exec(n.else_body);
      frames_.pop_back();
      return f;
    }
    int64_t len = int64_t(items.size());
    for (int64_t i = 0; i < len; ++i) {
      count_iteration(n.line);
      frames_.emplace_back();
      bind_targets(n, items[size_t(i)]);
      auto loop = std::make_shared<LoopData>();
      loop->index0 = i;
      loop->length = len;
      if (i > 0) {
        loop->previtem = items[size_t(i - 1)];
      }
      if (i + 1 < len) {
        loop->nextitem = items[size_t(i + 1)];
      }
      set_var("loop", Value(LoopPtr(std::move(loop))));
      Flow f = exec(n.body);
      frames_.pop_back();
      if (f == Flow::Break) {
        break;
      }
    }
    return Flow::Normal;
  }

  // ---- expressions

  Value eval(const Expr &e) {
    RecursionGuard guard(*this, e.line);
    tick(e.line);
    switch (e.kind) {
      case Expr::Kind::Literal:
        return e.value;
      case Expr::Kind::Name:
        return lookup(e.name);
      case Expr::Kind::List:
      case Expr::Kind::Tuple: {
        std::vector<Value> items;
        items.reserve(e.args.size());
        for (const auto &a : e.args) {
          items.push_back(eval(*a));
        }
        return list_value(std::move(items), e.line, e.kind == Expr::Kind::Tuple);
      }
      case Expr::Kind::Dict: {
        std::vector<std::pair<std::string, Value>> items;
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          Value k = eval(*e.args[i]);
          if (!k.is_string()) {
            fail_at(e.line, "dict keys must be strings, got " + type_name(k));
          }
          Value v = eval(*e.args[i + 1]);
          bool replaced = false;
          for (auto &[kk, vv] : items) {
            if (kk == k.str()) {
              vv = v;
              replaced = true;
            }
          }
          if (!replaced) {
            items.emplace_back(k.str(), std::move(v));
          }
        }
        return make_dict(std::move(items));
      }
      case Expr::Kind::Attr:
        return get_attr(eval(*e.args[0]), e.name, e.line);
      case Expr::Kind::Item:
        return get_item(eval(*e.args[0]), eval(*e.args[1]), e.line);
      case Expr::Kind::Slice: {
        Value obj = eval(*e.args[0]);
        Value a = e.args[1] ? eval(*e.args[1]) : Value(None{});
        Value b = e.args[2] ? eval(*e.args[2]) : Value(None{});
        Value c = e.args[3] ? eval(*e.args[3]) : Value(None{});
        return slice(obj, a, b, c, e.line);
      }
      case Expr::Kind::Call: {
        Value callee = eval(*e.args[0]);
        std::vector<Value> args;
        for (size_t i = 1; i < e.args.size(); ++i) {
          args.push_back(eval(*e.args[i]));
        }
        std::vector<std::pair<std::string, Value>> kw;
        for (const auto &[k, x] : e.kwargs) {
          kw.emplace_back(k, eval(*x));
        }
        return call(callee, std::move(args), std::move(kw), e.line);
      }
      case Expr::Kind::Filter: {
        Value in = eval(*e.args[0]);
        std::vector<Value> args;
        for (size_t i = 1; i < e.args.size(); ++i) {
          args.push_back(eval(*e.args[i]));
        }
        std::vector<std::pair<std::string, Value>> kw;
        for (const auto &[k, x] : e.kwargs) {
          kw.emplace_back(k, eval(*x));
        }
        Args a(e.name, e.line, std::move(args), std::move(kw));
        return filter(e.name, in, a);
      }
      case Expr::Kind::Test: {
        Value in = eval(*e.args[0]);
        std::vector<Value> args;
        for (size_t i = 1; i < e.args.size(); ++i) {
          args.push_back(eval(*e.args[i]));
        }
        std::vector<std::pair<std::string, Value>> kw;
        for (const auto &[k, x] : e.kwargs) {
          kw.emplace_back(k, eval(*x));
        }
        Args a(e.name, e.line, std::move(args), std::move(kw));
        bool r = test(e.name, in, a);
        return Value(e.negated ? !r : r);
      }
      case Expr::Kind::Not:
        return Value(!truthy(eval(*e.args[0])));
      case Expr::Kind::Neg:
      case Expr::Kind::Pos: {
        Value v = eval(*e.args[0]);
        if (v.is_undefined()) {
          fail_undefined(v, e.line, "unary operator");
        }
        if (!v.is_number()) {
          fail_at(e.line, "bad operand type for unary " +
                              std::string(e.kind == Expr::Kind::Neg ? "-" : "+") + ": '" +
                              type_name(v) + "'");
        }
        if (e.kind == Expr::Kind::Pos) {
          return v.is_bool() ? Value(as_int(v)) : v;
        }
        if (v.is_float()) {
          return Value(-std::get<double>(v.v));
        }
        int64_t i = as_int(v);
        if (i == std::numeric_limits<int64_t>::min()) {
          fail_at(e.line, "integer overflow");
        }
        return Value(-i);
      }
      case Expr::Kind::Binary:
        return binop(e.binop, eval(*e.args[0]), eval(*e.args[1]), e.line);
      case Expr::Kind::And: {
        Value a = eval(*e.args[0]);
        return truthy(a) ? eval(*e.args[1]) : a;
      }
      case Expr::Kind::Or: {
        Value a = eval(*e.args[0]);
        return truthy(a) ? a : eval(*e.args[1]);
      }
      case Expr::Kind::Compare: {
        Value left = eval(*e.args[0]);
        for (size_t i = 0; i < e.cmp.size(); ++i) {
          Value right = eval(*e.args[i + 1]);
          if (!compare(e.cmp[i], left, right, e.line)) {
            return Value(false);
          }
          left = std::move(right);
        }
        return Value(true);
      }
      case Expr::Kind::Cond:
        if (truthy(eval(*e.args[1]))) {
          return eval(*e.args[0]);
        }
        return e.args[2] ? eval(*e.args[2]) : make_undefined("conditional expression");
    }
    return Value();
  }

  // ---- operators

  Value binop(BinOp op, const Value &a, const Value &b, int line) {
    if (op == BinOp::Concat) {
      std::string l = to_str(a, budget_), r = to_str(b, budget_);
      check_bytes(l.size() + r.size(), line);
      return str_value(l + r, line);
    }
    static const char *const names[] = {"+", "-", "*", "/", "//", "%", "**", "~"};
    const char *sym = names[int(op)];
    if (a.is_undefined()) {
      fail_undefined(a, line, std::string("operand of '") + sym + "'");
    }
    if (b.is_undefined()) {
      fail_undefined(b, line, std::string("operand of '") + sym + "'");
    }
    if (a.is_number() && b.is_number()) {
      return numeric(op, a, b, line);
    }
    if (op == BinOp::Add && a.is_string() && b.is_string()) {
      check_bytes(a.str().size() + b.str().size(), line);
      return str_value(a.str() + b.str(), line);
    }
    if (op == BinOp::Add && a.is_list() && b.is_list() && a.list().tuple == b.list().tuple) {
      check_items(a.list().items.size() + b.list().items.size(), line);
      std::vector<Value> items = a.list().items;
      items.insert(items.end(), b.list().items.begin(), b.list().items.end());
      return list_value(std::move(items), line, a.list().tuple);
    }
    if (op == BinOp::Mul && (is_intlike(a) || is_intlike(b)) &&
        (a.is_string() || b.is_string() || a.is_list() || b.is_list())) {
      const Value &seq = is_intlike(a) ? b : a;
      int64_t n = std::max<int64_t>(0, as_int(is_intlike(a) ? a : b));
      if (seq.is_string()) {
        size_t unit = seq.str().size();
        if (unit && n > 0) {
          check_bytes(unit * size_t(std::min<int64_t>(n, limits_.max_output_bytes + 1)), line);
        }
        // Doubling: O(log n) appends however many copies.
        std::string r;
        if (unit && n > 0) {
          size_t total = unit * size_t(n);
          r.reserve(total);
          r = seq.str();
          while (r.size() * 2 <= total) {
            r += r;
          }
          r.append(r, 0, total - r.size());
        }
        return str_value(std::move(r), line);
      }
      size_t unit = seq.list().items.size();
      if (unit && n > 0) {
        check_items(unit * size_t(std::min<int64_t>(n, limits_.max_list_items + 1)), line);
      }
      std::vector<Value> items;
      for (int64_t i = 0; i < n && unit; ++i) {
        items.insert(items.end(), seq.list().items.begin(), seq.list().items.end());
      }
      return list_value(std::move(items), line, seq.list().tuple);
    }
    if (op == BinOp::Mod && a.is_string()) {
      fail_at(line, "printf-style string formatting ('%') is not supported");
    }
    fail_at(line, std::string("unsupported operand type(s) for ") + sym + ": '" + type_name(a) +
                      "' and '" + type_name(b) + "'");
  }

  Value numeric(BinOp op, const Value &a, const Value &b, int line) {
    if (op == BinOp::Div) {
      double y = as_double(b);
      if (y == 0.0) {
        fail_at(line, "division by zero");
      }
      return Value(as_double(a) / y);
    }
    if (is_intlike(a) && is_intlike(b)) {
      int64_t x = as_int(a), y = as_int(b), r = 0;
      switch (op) {
        case BinOp::Add:
          if (__builtin_add_overflow(x, y, &r)) {
            fail_at(line, "integer overflow");
          }
          return Value(r);
        case BinOp::Sub:
          if (__builtin_sub_overflow(x, y, &r)) {
            fail_at(line, "integer overflow");
          }
          return Value(r);
        case BinOp::Mul:
          if (__builtin_mul_overflow(x, y, &r)) {
            fail_at(line, "integer overflow");
          }
          return Value(r);
        case BinOp::FloorDiv:
        case BinOp::Mod: {
          if (y == 0) {
            fail_at(line, "integer division or modulo by zero");
          }
          if (y == -1) {
            if (op == BinOp::Mod) {
              return Value(int64_t(0));
            }
            if (x == std::numeric_limits<int64_t>::min()) {
              fail_at(line, "integer overflow");
            }
            return Value(-x);
          }
          int64_t q = x / y, m = x % y;
          if (m != 0 && ((m < 0) != (y < 0))) {
            --q;
            m += y;
          }
          return Value(op == BinOp::FloorDiv ? q : m);
        }
        case BinOp::Pow: {
          if (y < 0) {
            return Value(std::pow(double(x), double(y)));
          }
          int64_t result = 1, base = x;
          while (y > 0) {
            if (y & 1) {
              if (__builtin_mul_overflow(result, base, &result)) {
                fail_at(line, "integer overflow");
              }
            }
            y >>= 1;
            if (y > 0 && __builtin_mul_overflow(base, base, &base)) {
              fail_at(line, "integer overflow");
            }
          }
          return Value(result);
        }
        default:
          break;
      }
    }
    double x = as_double(a), y = as_double(b);
    switch (op) {
      case BinOp::Add:
        return Value(x + y);
      case BinOp::Sub:
        return Value(x - y);
      case BinOp::Mul:
        return Value(x * y);
      case BinOp::FloorDiv:
        if (y == 0.0) {
          fail_at(line, "float floor division by zero");
        }
        return Value(std::floor(x / y));
      case BinOp::Mod: {
        if (y == 0.0) {
          fail_at(line, "float modulo by zero");
        }
        double m = std::fmod(x, y);
        if (m != 0.0 && ((m < 0) != (y < 0))) {
          m += y;
        }
        if (m == 0.0) {
          m = std::copysign(0.0, y);  // Python: a zero takes the divisor's sign
        }
        return Value(m);
      }
      case BinOp::Pow:
        return Value(std::pow(x, y));
      default:
        break;
    }
    fail_at(line, "unsupported numeric operation");
  }

  // <0, 0, >0; throws for values Python cannot order.
  int order(const Value &a, const Value &b, int line) {
    if (a.is_number() && b.is_number()) {
      if (a.is_float() || b.is_float()) {
        double x = as_double(a), y = as_double(b);
        return x < y ? -1 : x > y ? 1 : 0;
      }
      int64_t x = as_int(a), y = as_int(b);
      return x < y ? -1 : x > y ? 1 : 0;
    }
    if (a.is_string() && b.is_string()) {
      int c = a.str().compare(b.str());
      return c < 0 ? -1 : c > 0 ? 1 : 0;
    }
    if (a.is_list() && b.is_list() && a.list().tuple == b.list().tuple) {
      const auto &x = a.list().items, &y = b.list().items;
      for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
        if (equals(x[i], y[i], budget_)) {
          continue;
        }
        return order(x[i], y[i], line);
      }
      return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
    }
    if (a.is_undefined()) {
      fail_undefined(a, line, "comparison");
    }
    if (b.is_undefined()) {
      fail_undefined(b, line, "comparison");
    }
    fail_at(line, "'<' not supported between instances of '" + type_name(a) + "' and '" +
                      type_name(b) + "'");
  }

  bool contains(const Value &container, const Value &item, int line) {
    if (container.is_string()) {
      if (!item.is_string()) {
        fail_at(line, "'in <string>' requires string as left operand, not " + type_name(item));
      }
      charge_search(container.str().size(), item.str().size());
      return container.str().find(item.str()) != std::string::npos;
    }
    if (container.is_list()) {
      for (const auto &x : container.list().items) {
        if (equals(x, item, budget_)) {
          return true;
        }
      }
      return false;
    }
    if (container.is_dict()) {
      if (item.is_list() || item.is_dict()) {
        fail_at(line, "unhashable type: '" + type_name(item) + "'");
      }
      return item.is_string() && container.dict().find(item.str());
    }
    if (container.is_undefined()) {
      return false;
    }
    fail_at(line, "argument of type '" + type_name(container) + "' is not iterable");
  }

  bool compare(CmpOp op, const Value &a, const Value &b, int line) {
    switch (op) {
      case CmpOp::Eq:
        return equals(a, b, budget_);
      case CmpOp::Ne:
        return !equals(a, b, budget_);
      case CmpOp::Lt:
        return order(a, b, line) < 0;
      case CmpOp::Le:
        return order(a, b, line) <= 0;
      case CmpOp::Gt:
        return order(a, b, line) > 0;
      case CmpOp::Ge:
        return order(a, b, line) >= 0;
      case CmpOp::In:
        return contains(b, a, line);
      case CmpOp::NotIn:
        return !contains(b, a, line);
    }
    return false;
  }

  std::vector<Value> iterate(const Value &v, int line) {
    if (v.is_list()) {
      return v.list().items;
    }
    if (v.is_dict()) {
      std::vector<Value> keys;
      for (const auto &[k, x] : v.dict().items) {
        keys.push_back(make_str(k));
      }
      return keys;
    }
    if (v.is_string()) {
      budget_.charge(int64_t(v.str().size()));
      check_items(utf8_length(v.str()), line);
      std::vector<Value> chars;
      std::vector<size_t> off = utf8_offsets(v.str());
      for (size_t i = 0; i + 1 < off.size(); ++i) {
        chars.push_back(make_str(v.str().substr(off[i], off[i + 1] - off[i])));
      }
      return chars;
    }
    if (v.is_undefined()) {
      return {};
    }
    fail_at(line, "'" + type_name(v) + "' object is not iterable");
  }

  // ---- attribute and item access (Jinja's sandboxed getattr/getitem)

  Value method(const Value &self, const std::string &name) {
    auto c = std::make_shared<Callable>();
    c->kind = Callable::Kind::Method;
    c->name = name;
    c->self = self;
    return Value(CallablePtr(std::move(c)));
  }

  Value get_attr(const Value &obj, const std::string &name, int line) {
    if (obj.is_undefined()) {
      fail_undefined(obj, line, "reading '" + name + "'");
    }
    if (obj.is_dict()) {
      if (in_list(kDictMethods, name)) {
        return method(obj, name);
      }
      if (const Value *v = obj.dict().find(name)) {
        return *v;
      }
      return make_undefined(name);
    }
    if (obj.is_namespace()) {
      if (const Value *v = std::get<NamespacePtr>(obj.v)->find(name)) {
        return *v;
      }
      return make_undefined(name);
    }
    if (obj.is_string()) {
      return in_list(kStrMethods, name) ? method(obj, name) : make_undefined(name);
    }
    if (obj.is_list()) {
      return in_list(kListMethods, name) ? method(obj, name) : make_undefined(name);
    }
    if (obj.is_loop()) {
      const LoopData &l = *std::get<LoopPtr>(obj.v);
      if (name == "index") {
        return Value(l.index0 + 1);
      }
      if (name == "index0") {
        return Value(l.index0);
      }
      if (name == "revindex") {
        return Value(l.length - l.index0);
      }
      if (name == "revindex0") {
        return Value(l.length - l.index0 - 1);
      }
      if (name == "first") {
        return Value(l.index0 == 0);
      }
      if (name == "last") {
        return Value(l.index0 == l.length - 1);
      }
      if (name == "length") {
        return Value(l.length);
      }
      if (name == "depth") {
        return Value(l.depth0 + 1);
      }
      if (name == "depth0") {
        return Value(l.depth0);
      }
      if (name == "previtem") {
        return l.index0 > 0 ? l.previtem : make_undefined("previtem");
      }
      if (name == "nextitem") {
        return l.index0 + 1 < l.length ? l.nextitem : make_undefined("nextitem");
      }
      if (name == "cycle") {
        return method(obj, name);
      }
      return make_undefined(name);
    }
    return make_undefined(name);
  }

  Value get_item(const Value &obj, const Value &key, int line) {
    if (obj.is_undefined()) {
      fail_undefined(
          obj, line,
          "reading [" + (key.is_string() ? repr(key, budget_) : to_str(key, budget_)) + "]");
    }
    if (obj.is_dict()) {
      if (key.is_string()) {
        if (const Value *v = obj.dict().find(key.str())) {
          return *v;
        }
        if (in_list(kDictMethods, key.str())) {
          return method(obj, key.str());
        }
        return make_undefined(key.str());
      }
      return make_undefined(to_str(key, budget_));
    }
    if ((obj.is_list() || obj.is_string()) && is_intlike(key)) {
      int64_t i = as_int(key);
      if (obj.is_list()) {
        int64_t n = int64_t(obj.list().items.size());
        if (i < 0) {
          i += n;
        }
        if (i < 0 || i >= n) {
          return make_undefined("index " + to_str(key, budget_));
        }
        return obj.list().items[size_t(i)];
      }
      charge_scan(obj.str());
      std::vector<size_t> off = utf8_offsets(obj.str());
      int64_t n = int64_t(off.size()) - 1;
      if (i < 0) {
        i += n;
      }
      if (i < 0 || i >= n) {
        return make_undefined("index " + to_str(key, budget_));
      }
      return make_str(obj.str().substr(off[size_t(i)], off[size_t(i) + 1] - off[size_t(i)]));
    }
    if (key.is_string()) {
      return get_attr(obj, key.str(), line);
    }
    return make_undefined(to_str(key, budget_));
  }

  Value slice(const Value &obj, const Value &a, const Value &b, const Value &c, int line) {
    if (obj.is_undefined()) {
      fail_undefined(obj, line, "slicing");
    }
    auto bound = [&](const Value &v) -> std::pair<bool, int64_t> {
      if (v.is_none() || v.is_undefined()) {
        return {false, 0};
      }
      if (!is_intlike(v)) {
        fail_at(line, "slice indices must be integers or none");
      }
      return {true, as_int(v)};
    };
    auto [has_step, step] = bound(c);
    if (!has_step) {
      step = 1;
    }
    if (step == 0) {
      fail_at(line, "slice step cannot be zero");
    }
    if (step == std::numeric_limits<int64_t>::min()) {
      step = -std::numeric_limits<int64_t>::max();
    }
    std::vector<size_t> off;
    int64_t n = 0;
    if (obj.is_list()) {
      n = int64_t(obj.list().items.size());
    } else if (obj.is_string()) {
      charge_scan(obj.str());
      off = utf8_offsets(obj.str());
      n = int64_t(off.size()) - 1;
    } else {
      fail_at(line, "'" + type_name(obj) + "' object is not subscriptable");
    }
    int64_t lower = step > 0 ? 0 : -1, upper = step > 0 ? n : n - 1;
    auto norm = [&](std::pair<bool, int64_t> x, int64_t dflt) {
      if (!x.first) {
        return dflt;
      }
      int64_t v = x.second;
      if (v < 0) {
        v = v < -n ? lower : v + n;
        if (v < lower) {
          v = lower;
        }
      } else if (v > upper) {
        v = upper;
      }
      return v;
    };
    int64_t start = norm(bound(a), step > 0 ? lower : upper);
    int64_t stop = norm(bound(b), step > 0 ? upper : lower);
    std::vector<int64_t> idx;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      idx.push_back(i);
      if ((step > 0 && i > std::numeric_limits<int64_t>::max() - step) ||
          (step < 0 && i < std::numeric_limits<int64_t>::min() - step)) {
        break;
      }
    }
    if (obj.is_list()) {
      std::vector<Value> items;
      items.reserve(idx.size());
      for (int64_t i : idx) {
        items.push_back(obj.list().items[size_t(i)]);
      }
      return list_value(std::move(items), line, obj.list().tuple);
    }
    std::string s;
    for (int64_t i : idx) {
      s.append(obj.str(), off[size_t(i)], off[size_t(i) + 1] - off[size_t(i)]);
    }
    return str_value(std::move(s), line);
  }

  // Follows "a.b.0" through getitem, as Jinja's attribute= arguments do.
  Value attr_path(const Value &item, const Value &attr, int line) {
    if (is_intlike(attr)) {
      return get_item(item, attr, line);
    }
    std::string path = to_str(attr, budget_);
    Value cur = item;
    size_t pos = 0;
    for (;;) {
      size_t dot = path.find('.', pos);
      std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
      int64_t idx = 0;
      bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char ch) {
        return ch >= '0' && ch <= '9';
      }) && parse_py_int(part, 10, &idx);
      if (cur.is_undefined()) {
        return cur;
      }
      cur = numeric ? get_item(cur, Value(idx), line) : get_item(cur, make_str(part), line);
      if (dot == std::string::npos) {
        break;
      }
      pos = dot + 1;
    }
    return cur;
  }

  // ---- calls

  Value call(const Value &callee, std::vector<Value> args,
             std::vector<std::pair<std::string, Value>> kw, int line) {
    if (callee.is_undefined()) {
      fail_undefined(callee, line, "called as a function");
    }
    if (!callee.is_callable()) {
      fail_at(line, "'" + type_name(callee) + "' object is not callable");
    }
    const Callable &c = *std::get<CallablePtr>(callee.v);
    Args a(c.name, line, std::move(args), std::move(kw));
    switch (c.kind) {
      case Callable::Kind::Global:
        return call_global(c.name, a);
      case Callable::Kind::Method:
        return call_method(c.self, c.name, a);
      case Callable::Kind::Macro:
        return call_macro(*c.macro, a);
    }
    return Value();
  }

  Value call_global(const std::string &name, Args &a) {
    int line = a.line();
    if (name == "raise_exception") {
      const Value *msg = a.get(0, "message");
      a.done(1);
      fail("chat template: ",
           msg ? to_str(*msg, budget_) : std::string("raise_exception() called"));
    }
    if (name == "range") {
      auto &p = a.positional();
      a.done(3);
      if (p.empty()) {
        fail_at(line, "range() expects 1 to 3 integer arguments");
      }
      for (const auto &v : p) {
        if (!is_intlike(v)) {
          fail_at(line, "range() arguments must be integers");
        }
      }
      int64_t start = 0, stop = 0, step = 1;
      if (p.size() == 1) {
        stop = as_int(p[0]);
      } else {
        start = as_int(p[0]);
        stop = as_int(p[1]);
        if (p.size() == 3) {
          step = as_int(p[2]);
        }
      }
      if (step == 0) {
        fail_at(line, "range() arg 3 must not be zero");
      }
      // Count first (in floating point, immune to overflow) so a huge range fails before
      // allocating.
      double count = step > 0 ? std::ceil((double(stop) - double(start)) / double(step))
                              : std::ceil((double(start) - double(stop)) / double(-double(step)));
      if (count < 0) {
        count = 0;
      }
      if (count > double(limits_.max_list_items)) {
        check_items(size_t(limits_.max_list_items) + 1, line);
      }
      std::vector<Value> items;
      for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
        items.push_back(Value(i));
        if (__builtin_add_overflow(i, step, &i)) {
          break;
        }
      }
      return list_value(std::move(items), line);
    }
    if (name == "namespace" || name == "dict") {
      std::vector<std::pair<std::string, Value>> attrs;
      auto &p = a.positional();
      if (p.size() > 1) {
        fail_at(line, name + "() takes at most 1 positional argument");
      }
      if (p.size() == 1) {
        if (p[0].is_dict()) {
          attrs = p[0].dict().items;
        } else {
          for (const auto &pair : iterate(p[0], line)) {
            std::vector<Value> kv = unpack(pair, 2, line);
            if (!kv[0].is_string()) {
              fail_at(line, name + "() keys must be strings");
            }
            attrs.emplace_back(kv[0].str(), kv[1]);
          }
        }
      }
      for (auto &[k, v] : a.keywords()) {
        bool replaced = false;
        for (auto &[kk, vv] : attrs) {
          if (kk == k) {
            vv = v;
            replaced = true;
          }
        }
        if (!replaced) {
          attrs.emplace_back(k, v);
        }
      }
      a.mark_all_used();
      if (name == "dict") {
        return make_dict(std::move(attrs));
      }
      auto ns = std::make_shared<NamespaceData>();
      ns->attrs = std::move(attrs);
      namespaces_.push_back(ns);
      return Value(NamespacePtr(std::move(ns)));
    }
    if (name == "strftime_now") {
      const Value *fmt = a.get(0, "format");
      a.done(1);
      if (!fmt || !fmt->is_string()) {
        fail_at(line, "strftime_now() expects a format string");
      }
      if (fmt->str().size() > 256) {
        fail_at(line, "strftime_now() format is too long");
      }
      std::time_t t = std::time(nullptr);
      std::tm tm{};
      localtime_r(&t, &tm);
      char buf[2048];
      size_t n = std::strftime(buf, sizeof(buf), fmt->str().c_str(), &tm);
      return str_value(std::string(buf, n), line);
    }
    fail_at(line, "unknown function '" + name + "'");
  }

  Value call_macro(const MacroNode &m, Args &a) {
    int line = a.line();
    if (call_depth_ >= limits_.max_call_depth) {
      fail_at(line, "macro calls nested deeper than " + std::to_string(limits_.max_call_depth));
    }
    if (a.positional().size() > m.params.size()) {
      fail_at(line, "macro '" + m.name + "' takes " + std::to_string(m.params.size()) +
                        " argument(s), got " + std::to_string(a.positional().size()));
    }
    frames_.emplace_back();
    size_t saved_floor = floor_;
    floor_ = frames_.size() - 1;
    ++call_depth_;
    for (size_t i = 0; i < m.params.size(); ++i) {
      const Value *v = a.get(i, m.params[i].c_str());
      Value val = v ? *v : m.defaults[i] ? eval(*m.defaults[i]) : make_undefined(m.params[i]);
      set_var(m.params[i], std::move(val));
    }
    a.done(m.params.size());
    std::string buf;
    std::string *saved = out_;
    out_ = &buf;
    exec(m.body);
    out_ = saved;
    --call_depth_;
    floor_ = saved_floor;
    frames_.pop_back();
    return str_value(std::move(buf), line);
  }

  Value call_method(const Value &self, const std::string &name, Args &a) {
    int line = a.line();
    if (self.is_loop()) {  // loop.cycle(a, b, ...)
      const LoopData &l = *std::get<LoopPtr>(self.v);
      auto &p = a.positional();
      a.done(p.size());
      if (p.empty()) {
        fail_at(line, "loop.cycle() needs at least one argument");
      }
      return p[size_t(l.index0 % int64_t(p.size()))];
    }
    if (self.is_dict()) {
      const DictData &d = self.dict();
      if (name == "get") {
        const Value *k = a.get(0, "key");
        Value dflt = a.get_or(1, "default", Value(None{}));
        a.done(2);
        if (!k) {
          fail_at(line, "get() expects a key");
        }
        if (k->is_string()) {
          if (const Value *v = d.find(k->str())) {
            return *v;
          }
        }
        return dflt;
      }
      a.done(0);
      std::vector<Value> out;
      for (const auto &[k, v] : d.items) {
        if (name == "keys") {
          out.push_back(make_str(k));
        } else if (name == "values") {
          out.push_back(v);
        } else {
          out.push_back(make_list({make_str(k), v}, true));
        }
      }
      return list_value(std::move(out), line);
    }
    if (self.is_list()) {
      const Value *x = a.get(0, "value");
      a.done(1);
      if (!x) {
        fail_at(line, name + "() takes exactly one argument");
      }
      const auto &items = self.list().items;
      int64_t count = 0;
      for (size_t i = 0; i < items.size(); ++i) {
        if (!equals(items[i], *x, budget_)) {
          continue;
        }
        if (name == "index") {
          return Value(int64_t(i));
        }
        ++count;
      }
      if (name == "index") {
        fail_at(line, repr(*x, budget_) + " is not in list");
      }
      return Value(count);
    }
    return string_method(self.str(), name, a);
  }

  std::string str_arg(Args &a, size_t i, const char *pname, bool required = true) {
    const Value *v = a.get(i, pname);
    if (!v) {
      if (required) {
        fail_at(a.line(), a.fname() + "() missing argument '" + pname + "'");
      }
      return "";
    }
    if (!v->is_string()) {
      fail_at(a.line(),
              a.fname() + "() argument '" + pname + "' must be str, not " + type_name(*v));
    }
    return v->str();
  }

  Value string_list(const std::vector<std::string> &parts, int line) {
    std::vector<Value> items;
    items.reserve(parts.size());
    for (const auto &p : parts) {
      items.push_back(make_str(p));
    }
    return list_value(std::move(items), line);
  }

  Value string_method(const std::string &s, const std::string &name, Args &a) {
    int line = a.line();
    charge_scan(s);
    for (const Value &v : a.positional()) {
      if (v.is_string()) {
        charge_search(s.size(), v.str().size());
      }
    }
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      const Value *chars = a.get(0, "chars");
      a.done(1);
      std::string cs;
      bool has = chars && !chars->is_none();
      if (has) {
        if (!chars->is_string()) {
          fail_at(line, name + "() arg must be str or None");
        }
        cs = chars->str();
      }
      return make_str(str_strip(s, has ? &cs : nullptr, name != "rstrip", name != "lstrip"));
    }
    if (name == "split" || name == "rsplit") {
      const Value *sep = a.get(0, "sep");
      Value maxv = a.get_or(1, "maxsplit", Value(int64_t(-1)));
      a.done(2);
      if (!is_intlike(maxv)) {
        fail_at(line, "maxsplit must be an integer");
      }
      int64_t maxsplit = as_int(maxv);
      if (!sep || sep->is_none()) {
        std::vector<std::string> parts;
        if (name == "split" || maxsplit < 0) {
          parts = sized(line, [&] { return str_split_ws(s, maxsplit, max_parts()); });
        } else {
          // rsplit on whitespace with a limit: split the reversed code points.
          std::vector<size_t> off = utf8_offsets(s);
          std::string rev;
          for (size_t i = off.size() - 1; i-- > 0;) {
            rev.append(s, off[i], off[i + 1] - off[i]);
          }
          parts = sized(line, [&] { return str_split_ws(rev, maxsplit, max_parts()); });
          std::reverse(parts.begin(), parts.end());
          for (auto &p : parts) {
            std::vector<size_t> po = utf8_offsets(p);
            std::string r;
            for (size_t i = po.size() - 1; i-- > 0;) {
              r.append(p, po[i], po[i + 1] - po[i]);
            }
            p = r;
          }
        }
        return string_list(parts, line);
      }
      if (!sep->is_string()) {
        fail_at(line, "split() separator must be str or None");
      }
      if (sep->str().empty()) {
        fail_at(line, "empty separator");
      }
      return string_list(sized(line,
                               [&] {
                                 return name == "split"
                                            ? str_split_sep(s, sep->str(), maxsplit, max_parts())
                                            : str_rsplit_sep(s, sep->str(), maxsplit, max_parts());
                               }),
                         line);
    }
    if (name == "splitlines") {
      Value keep = a.get_or(0, "keepends", Value(false));
      a.done(1);
      return string_list(sized(line, [&] { return str_splitlines(s, truthy(keep), max_parts()); }),
                         line);
    }
    if (name == "startswith" || name == "endswith") {
      const Value *p = a.get(0, "prefix");
      a.done(1);
      if (!p) {
        fail_at(line, name + "() takes exactly one argument");
      }
      std::vector<std::string> cands;
      if (p->is_string()) {
        cands.push_back(p->str());
      } else if (p->is_list()) {
        for (const auto &x : p->list().items) {
          if (!x.is_string()) {
            fail_at(line, name + "() tuple items must be str");
          }
          cands.push_back(x.str());
        }
      } else {
        fail_at(line, name + "() argument must be str or a tuple of str");
      }
      for (const auto &c : cands) {
        if (c.size() > s.size()) {
          continue;
        }
        if (name == "startswith" ? s.compare(0, c.size(), c) == 0
                                 : s.compare(s.size() - c.size(), c.size(), c) == 0) {
          return Value(true);
        }
      }
      return Value(false);
    }
    if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
      a.done(0);
      if (name == "upper") {
        return make_str(str_upper(s));
      }
      if (name == "lower") {
        return make_str(str_lower(s));
      }
      if (name == "title") {
        return make_str(str_title_method(s));
      }
      return make_str(str_capitalize(s));
    }
    if (name == "replace") {
      std::string old = str_arg(a, 0, "old"), rep = str_arg(a, 1, "new");
      Value count = a.get_or(2, "count", Value(int64_t(-1)));
      a.done(3);
      if (!is_intlike(count)) {
        fail_at(line, "replace() count must be an integer");
      }
      return replace_checked(s, old, rep, as_int(count), line);
    }
    if (name == "find" || name == "rfind" || name == "count") {
      std::string sub = str_arg(a, 0, "sub");
      a.done(1);
      if (name == "count") {
        if (sub.empty()) {
          return Value(int64_t(utf8_length(s) + 1));
        }
        int64_t n = 0;
        for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) {
          ++n;
        }
        return Value(n);
      }
      size_t p = name == "find" ? s.find(sub) : s.rfind(sub);
      if (p == std::string::npos) {
        return Value(int64_t(-1));
      }
      return Value(int64_t(utf8_length(std::string_view(s).substr(0, p))));
    }
    if (name == "join") {
      const Value *it = a.get(0, "iterable");
      a.done(1);
      if (!it) {
        fail_at(line, "join() takes exactly one argument");
      }
      std::string out;
      bool first = true;
      for (const auto &x : iterate(*it, line)) {
        if (!x.is_string()) {
          fail_at(line, "sequence item: expected str instance, " + type_name(x) + " found");
        }
        if (!first) {
          out += s;
        }
        first = false;
        out += x.str();
        check_bytes(out.size(), line);
      }
      return str_value(std::move(out), line);
    }
    // is* predicates
    a.done(0);
    if (s.empty()) {
      return Value(false);
    }
    bool has_cased = false;
    bool all = true;
    for (size_t p = 0; p < s.size();) {
      size_t len = 1;
      uint32_t cp = utf8_decode_at(s, p, &len);
      char c = s[p];
      bool ok = true;
      if (name == "isdigit") {
        ok = c >= '0' && c <= '9' && len == 1;
      }
      if (name == "isalpha") {
        ok = ascii_alpha(c) && len == 1;
      }
      if (name == "isalnum") {
        ok = (ascii_alpha(c) || (c >= '0' && c <= '9')) && len == 1;
      }
      if (name == "isspace") {
        ok = is_py_space(cp);
      }
      if (name == "islower") {
        ok = !(c >= 'A' && c <= 'Z');
        has_cased |= c >= 'a' && c <= 'z';
      }
      if (name == "isupper") {
        ok = !(c >= 'a' && c <= 'z');
        has_cased |= c >= 'A' && c <= 'Z';
      }
      all &= ok;
      p += len;
    }
    if (name == "islower" || name == "isupper") {
      return Value(all && has_cased);
    }
    return Value(all);
  }

  Value replace_checked(const std::string &s, const std::string &old, const std::string &rep,
                        int64_t count, int line) {
    try {
      return str_value(str_replace(s, old, rep, count, limits_.max_output_bytes), line);
    } catch (const std::length_error &) {
      check_bytes(size_t(limits_.max_output_bytes) + 1, line);
      throw;
    }
  }

  // ---- filters

  Value filter(const std::string &name, const Value &in, Args &a) {
    int line = a.line();
    tick(line);
    if (in.is_string()) {
      charge_scan(in.str());
    }
    for (const Value &v : a.positional()) {
      if (v.is_string() && in.is_string()) {
        charge_search(in.str().size(), v.str().size());
      }
    }
    if (name == "default" || name == "d") {
      Value dflt = a.get_or(0, "default_value", make_str(""));
      Value boolean = a.get_or(1, "boolean", Value(false));
      a.done(2);
      if (in.is_undefined() || (truthy(boolean) && !truthy(in))) {
        return dflt;
      }
      return in;
    }
    if (name == "safe") {
      a.done(0);
      return in;
    }
    if (name == "string") {
      a.done(0);
      return in.is_string() ? in : str_value(to_str(in, budget_), line);
    }
    if (name == "trim") {
      const Value *chars = a.get(0, "chars");
      a.done(1);
      std::string cs;
      bool has = chars && !chars->is_none() && !chars->is_undefined();
      if (has) {
        cs = to_str(*chars, budget_);
      }
      return make_str(str_strip(to_str(in, budget_), has ? &cs : nullptr, true, true));
    }
    if (name == "upper" || name == "lower" || name == "capitalize" || name == "title") {
      a.done(0);
      std::string s = to_str(in, budget_);
      if (name == "upper") {
        return make_str(str_upper(s));
      }
      if (name == "lower") {
        return make_str(str_lower(s));
      }
      if (name == "capitalize") {
        return make_str(str_capitalize(s));
      }
      return make_str(str_title_filter(s));
    }
    if (name == "escape" || name == "e" || name == "forceescape") {
      a.done(0);
      return sized(line,
                   [&] { return str_value(html_escape(to_str(in, budget_), max_bytes()), line); });
    }
    if (name == "length" || name == "count") {
      a.done(0);
      if (in.is_string()) {
        return Value(int64_t(utf8_length(in.str())));
      }
      if (in.is_list()) {
        return Value(int64_t(in.list().items.size()));
      }
      if (in.is_dict()) {
        return Value(int64_t(in.dict().items.size()));
      }
      if (in.is_undefined()) {
        return Value(int64_t(0));
      }
      fail_at(line, "object of type '" + type_name(in) + "' has no len()");
    }
    if (name == "wordcount") {
      a.done(0);
      // Jinja counts runs of \w (letters, digits, underscore; any non-ASCII byte counts too).
      std::string text = to_str(in, budget_);
      int64_t words = 0;
      bool in_word = false;
      for (char c : text) {
        bool w = ascii_alpha(c) || (c >= '0' && c <= '9') || c == '_' ||
                 static_cast<unsigned char>(c) >= 0x80;
        if (w && !in_word) {
          ++words;
        }
        in_word = w;
      }
      return Value(words);
    }
    if (name == "first" || name == "last") {
      a.done(0);
      if (in.is_list()) {
        const auto &items = in.list().items;
        if (items.empty()) {
          return make_undefined("no " + name + " item");
        }
        return name == "first" ? items.front() : items.back();
      }
      std::vector<Value> items = iterate(in, line);
      if (items.empty()) {
        return make_undefined("no " + name + " item");
      }
      return name == "first" ? items.front() : items.back();
    }
    if (name == "join") {
      Value sep = a.get_or(0, "d", make_str(""));
      const Value *attr = a.get(1, "attribute");
      a.done(2);
      std::string s = to_str(sep, budget_), out;
      bool first = true;
      for (const auto &x : iterate(in, line)) {
        if (!first) {
          out += s;
        }
        first = false;
        out += to_str(attr && !attr->is_none() ? attr_path(x, *attr, line) : x, budget_);
        check_bytes(out.size(), line);
      }
      return str_value(std::move(out), line);
    }
    if (name == "replace") {
      Value old = a.get_or(0, "old", make_str("")), rep = a.get_or(1, "new", make_str(""));
      Value count = a.get_or(2, "count", Value(None{}));
      a.done(3);
      int64_t n = -1;
      if (!count.is_none()) {
        if (!is_intlike(count)) {
          fail_at(line, "replace count must be an integer");
        }
        n = as_int(count);
      }
      return replace_checked(to_str(in, budget_), to_str(old, budget_), to_str(rep, budget_), n,
                             line);
    }
    if (name == "tojson") {
      return tojson(in, a);
    }
    if (name == "int") {
      Value dflt = a.get_or(0, "default", Value(int64_t(0)));
      Value base = a.get_or(1, "base", Value(int64_t(10)));
      a.done(2);
      if (!is_intlike(base)) {
        fail_at(line, "int() base must be an integer");
      }
      // int(Undefined) raises in Jinja rather than falling back to the default.
      if (in.is_undefined()) {
        fail_undefined(in, line, "int filter");
      }
      if (is_intlike(in)) {
        return Value(as_int(in));
      }
      if (in.is_float()) {
        double d = std::get<double>(in.v);
        if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) {
          return dflt;
        }
        return Value(int64_t(d));
      }
      if (in.is_string()) {
        int64_t v = 0;
        if (parse_py_int(in.str(), int(as_int(base)), &v)) {
          return Value(v);
        }
        double d = 0;
        if (parse_py_float(in.str(), &d) && std::isfinite(d) && std::fabs(d) < 9.2e18) {
          return Value(int64_t(d));
        }
      }
      return dflt;
    }
    if (name == "float") {
      Value dflt = a.get_or(0, "default", Value(0.0));
      a.done(1);
      if (in.is_undefined()) {
        fail_undefined(in, line, "float filter");
      }
      if (in.is_number()) {
        return Value(as_double(in));
      }
      double d = 0;
      if (in.is_string() && parse_py_float(in.str(), &d)) {
        return Value(d);
      }
      return dflt;
    }
    if (name == "abs") {
      a.done(0);
      if (in.is_float()) {
        return Value(std::fabs(std::get<double>(in.v)));
      }
      if (is_intlike(in)) {
        int64_t i = as_int(in);
        if (i == std::numeric_limits<int64_t>::min()) {
          fail_at(line, "integer overflow");
        }
        return Value(i < 0 ? -i : i);
      }
      fail_at(line, "bad operand type for abs(): '" + type_name(in) + "'");
    }
    if (name == "round") {
      return round_filter(in, a);
    }
    if (name == "list") {
      a.done(0);
      return list_value(iterate(in, line), line);
    }
    if (name == "items") {
      a.done(0);
      if (in.is_undefined()) {
        return make_list({});
      }
      if (!in.is_dict()) {
        fail_at(line, "can only get item pairs from a mapping");
      }
      std::vector<Value> out;
      for (const auto &[k, v] : in.dict().items) {
        out.push_back(make_list({make_str(k), v}, true));
      }
      return list_value(std::move(out), line);
    }
    if (name == "dictsort") {
      Value cs = a.get_or(0, "case_sensitive", Value(false));
      Value by = a.get_or(1, "by", make_str("key"));
      Value rev = a.get_or(2, "reverse", Value(false));
      a.done(3);
      if (!in.is_dict()) {
        fail_at(line, "dictsort expects a mapping");
      }
      std::vector<Value> pairs;
      for (const auto &[k, v] : in.dict().items) {
        pairs.push_back(make_list({make_str(k), v}, true));
      }
      size_t pos = to_str(by, budget_) == "value" ? 1 : 0;
      sort_values(pairs, truthy(cs), truthy(rev), line,
                  [&](const Value &p) { return p.list().items[pos]; });
      return list_value(std::move(pairs), line);
    }
    if (name == "reverse") {
      a.done(0);
      if (in.is_string()) {
        std::vector<size_t> off = utf8_offsets(in.str());
        std::string r;
        for (size_t i = off.size() - 1; i-- > 0;) {
          r.append(in.str(), off[i], off[i + 1] - off[i]);
        }
        return make_str(std::move(r));
      }
      std::vector<Value> items = iterate(in, line);
      std::reverse(items.begin(), items.end());
      return list_value(std::move(items), line);
    }
    if (name == "sort" || name == "unique" || name == "min" || name == "max") {
      bool is_sort = name == "sort";
      Value rev = is_sort ? a.get_or(0, "reverse", Value(false)) : Value(false);
      Value cs = a.get_or(is_sort ? 1 : 0, "case_sensitive", Value(false));
      const Value *attr = a.get(is_sort ? 2 : 1, "attribute");
      a.done(is_sort ? 3 : 2);
      std::vector<Value> items = iterate(in, line);
      auto key = [&](const Value &x) {
        return attr && !attr->is_none() ? attr_path(x, *attr, line) : x;
      };
      if (name == "unique") {
        std::vector<Value> out, seen;
        for (const auto &x : items) {
          tick(line);
          Value k = fold_case(key(x), truthy(cs));
          if (k.is_list() || k.is_dict()) {
            fail_at(line, "unhashable type: '" + type_name(k) + "'");
          }
          bool dup = false;
          for (const auto &s : seen) {
            if (equals(s, k, budget_)) {
              dup = true;
            }
          }
          if (!dup) {
            seen.push_back(k);
            out.push_back(x);
          }
        }
        return list_value(std::move(out), line);
      }
      if (items.empty()) {
        if (is_sort) {
          return list_value({}, line);
        }
        return make_undefined("no " + name + " item");
      }
      sort_values(items, truthy(cs), truthy(rev), line, key);
      if (is_sort) {
        return list_value(std::move(items), line);
      }
      return name == "min" ? items.front() : items.back();
    }
    if (name == "sum") {
      const Value *attr = a.get(0, "attribute");
      Value acc = a.get_or(1, "start", Value(int64_t(0)));
      a.done(2);
      for (const auto &x : iterate(in, line)) {
        acc =
            binop(BinOp::Add, acc, attr && !attr->is_none() ? attr_path(x, *attr, line) : x, line);
      }
      return acc;
    }
    if (name == "indent") {
      return indent_filter(in, a);
    }
    if (name == "attr") {
      Value n = a.get_or(0, "name", make_str(""));
      a.done(1);
      return get_attr(in, to_str(n, budget_), line);
    }
    if (name == "map") {
      return map_filter(in, a);
    }
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
      return select_filter(name, in, a);
    }
    fail_at(line, "unknown filter '" + name + "'");
  }

  Value fold_case(const Value &v, bool case_sensitive) {
    if (!case_sensitive && v.is_string()) {
      return make_str(str_lower(v.str()));
    }
    return v;
  }

  template <typename KeyFn>
  void sort_values(std::vector<Value> &items, bool case_sensitive, bool reverse, int line,
                   KeyFn key) {
    std::vector<std::pair<Value, size_t>> keyed;
    for (size_t i = 0; i < items.size(); ++i) {
      tick(line);
      keyed.emplace_back(fold_case(key(items[i]), case_sensitive), i);
    }
    // Python's sort is stable; reverse=True keeps equal items in their original order too.
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto &x, const auto &y) {
      int c = order(x.first, y.first, line);
      return reverse ? c > 0 : c < 0;
    });
    std::vector<Value> out;
    out.reserve(items.size());
    for (const auto &k : keyed) {
      out.push_back(items[k.second]);
    }
    items = std::move(out);
  }

  Value tojson(const Value &in, Args &a) {
    int line = a.line();
    Value indent = a.get_or(0, "indent", Value(None{}));
    Value ensure_ascii = a.get_or(1, "ensure_ascii", Value(false));
    Value separators = a.get_or(2, "separators", Value(None{}));
    Value sort_keys = a.get_or(3, "sort_keys", Value(false));
    a.done(4);
    JsonOptions opt;
    opt.ensure_ascii = truthy(ensure_ascii);
    opt.sort_keys = truthy(sort_keys);
    if (!indent.is_none() && !indent.is_undefined()) {
      opt.has_indent = true;
      opt.item_sep = ",";
      if (indent.is_string()) {
        opt.indent = indent.str();
      } else if (is_intlike(indent)) {
        int64_t n = as_int(indent);
        if (n > 64) {
          fail_at(line, "tojson indent is too large");
        }
        opt.indent = std::string(size_t(std::max<int64_t>(0, n)), ' ');
      } else {
        fail_at(line, "tojson indent must be an integer or a string");
      }
    }
    if (!separators.is_none() && !separators.is_undefined()) {
      if (!separators.is_list() || separators.list().items.size() != 2 ||
          !separators.list().items[0].is_string() || !separators.list().items[1].is_string()) {
        fail_at(line, "tojson separators must be a pair of strings");
      }
      opt.item_sep = separators.list().items[0].str();
      opt.key_sep = separators.list().items[1].str();
    }
    std::string out;
    try {
      json_dump(in, opt, out, budget_);
    } catch (const std::runtime_error &e) {
      fail_at(line, std::string("tojson: ") + e.what());
    }
    return str_value(std::move(out), line);
  }

  Value round_filter(const Value &in, Args &a) {
    int line = a.line();
    Value prec = a.get_or(0, "precision", Value(int64_t(0)));
    Value method = a.get_or(1, "method", make_str("common"));
    a.done(2);
    std::string m = to_str(method, budget_);
    if (m != "common" && m != "ceil" && m != "floor") {
      fail_at(line, "round method must be 'common', 'ceil' or 'floor'");
    }
    if (!in.is_number()) {
      fail_at(line, "round expects a number, got " + type_name(in));
    }
    if (!is_intlike(prec)) {
      fail_at(line, "round precision must be an integer");
    }
    int64_t p = std::clamp<int64_t>(as_int(prec), -308, 308);
    if (m == "common" && is_intlike(in) && p >= 0) {
      return Value(as_int(in));
    }
    double x = as_double(in);
    if (!std::isfinite(x)) {
      return Value(x);
    }
    if (m != "common") {
      double scale = std::pow(10.0, double(p));
      return Value((m == "ceil" ? std::ceil(x * scale) : std::floor(x * scale)) / scale);
    }
    if (p >= 0) {
      // printf rounds the exact binary value half-to-even, as Python's round() does.
      char buf[512];
      std::snprintf(buf, sizeof(buf), "%.*f", int(std::min<int64_t>(p, 100)), x);
      double r = 0;
      std::from_chars(buf, buf + std::strlen(buf), r);
      return Value(r);
    }
    double scale = std::pow(10.0, double(-p));
    return Value(std::nearbyint(x / scale) * scale);
  }

  Value indent_filter(const Value &in, Args &a) {
    int line = a.line();
    Value width = a.get_or(0, "width", Value(int64_t(4)));
    Value first = a.get_or(1, "first", Value(false));
    Value blank = a.get_or(2, "blank", Value(false));
    a.done(3);
    std::string ind;
    if (width.is_string()) {
      ind = width.str();
    } else if (is_intlike(width)) {
      ind = std::string(size_t(std::clamp<int64_t>(as_int(width), 0, 256)), ' ');
    } else {
      fail_at(line, "indent width must be an integer or a string");
    }
    if (in.is_undefined()) {
      fail_undefined(in, line, "indent");
    }
    if (!in.is_string()) {
      fail_at(line, "indent expects a string, got " + type_name(in));
    }
    std::vector<std::string> lines =
        sized(line, [&] { return str_splitlines(in.str() + "\n", false, max_parts()); });
    std::string rv;
    if (truthy(blank)) {
      for (size_t i = 0; i < lines.size(); ++i) {
        if (i) {
          rv += "\n" + ind;
        }
        rv += lines[i];
        check_bytes(rv.size(), line);
      }
    } else {
      rv = lines.empty() ? "" : lines[0];
      for (size_t i = 1; i < lines.size(); ++i) {
        rv += "\n";
        if (!lines[i].empty()) {
          rv += ind;
        }
        rv += lines[i];
        check_bytes(rv.size(), line);
      }
    }
    if (truthy(first)) {
      rv = ind + rv;
    }
    return str_value(std::move(rv), line);
  }

  Value map_filter(const Value &in, Args &a) {
    int line = a.line();
    // Jinja's map and select family yield nothing for any falsy input, iterable or not.
    std::vector<Value> items = truthy(in) ? iterate(in, line) : std::vector<Value>{};
    std::vector<Value> out;
    auto &pos = a.positional();
    if (pos.empty()) {
      const Value *attr = a.get(0, "attribute");
      const Value *dflt = a.get(1, "default");
      a.done(0);
      if (!attr) {
        fail_at(line, "map() needs a filter name or attribute=");
      }
      for (const auto &x : items) {
        tick(line);
        Value v = attr_path(x, *attr, line);
        out.push_back(v.is_undefined() && dflt ? *dflt : v);
      }
      return list_value(std::move(out), line);
    }
    std::string fname = to_str(pos[0], budget_);
    if (!is_known_filter(fname)) {
      fail_at(line, "unknown filter '" + fname + "'");
    }
    std::vector<Value> rest(pos.begin() + 1, pos.end());
    auto kw = a.keywords();
    a.mark_all_used();
    for (const auto &x : items) {
      Args sub(fname, line, rest, kw);
      out.push_back(filter(fname, x, sub));
    }
    return list_value(std::move(out), line);
  }

  Value select_filter(const std::string &name, const Value &in, Args &a) {
    int line = a.line();
    bool by_attr = name == "selectattr" || name == "rejectattr";
    bool keep_when = name == "select" || name == "selectattr";
    auto pos = a.positional();
    auto kw = a.keywords();
    a.mark_all_used();
    Value attr;
    if (by_attr) {
      if (pos.empty()) {
        fail_at(line, name + "() needs an attribute name");
      }
      attr = pos[0];
      pos.erase(pos.begin());
    }
    std::string test_name;
    if (!pos.empty()) {
      test_name = to_str(pos[0], budget_);
      pos.erase(pos.begin());
      if (!is_known_test(test_name)) {
        fail_at(line, "unknown test '" + test_name + "'");
      }
    }
    std::vector<Value> out;
    std::vector<Value> items = truthy(in) ? iterate(in, line) : std::vector<Value>{};
    for (const auto &x : items) {
      tick(line);
      Value v = by_attr ? attr_path(x, attr, line) : x;
      bool r;
      if (test_name.empty()) {
        r = truthy(v);
      } else {
        Args sub(test_name, line, pos, kw);
        r = test(test_name, v, sub);
      }
      if (r == keep_when) {
        out.push_back(x);
      }
    }
    return list_value(std::move(out), line);
  }

  // ---- tests

  bool test(const std::string &name, const Value &in, Args &a) {
    int line = a.line();
    auto arg = [&]() -> Value {
      const Value *v = a.get(0, "value");
      a.done(1);
      if (!v) {
        fail_at(line, "test '" + name + "' needs an argument");
      }
      return *v;
    };
    static const char *const kNoArg[] = {
        "defined", "undefined", "none",   "boolean", "true",     "false",    "integer",
        "float",   "number",    "string", "mapping", "iterable", "sequence", "callable",
        "escaped", "lower",     "upper",  "odd",     "even",     "filter",   "test"};
    if (in_list(kNoArg, name)) {
      a.done(0);
    }
    if (name == "defined") {
      return !in.is_undefined();
    }
    if (name == "undefined") {
      return in.is_undefined();
    }
    if (name == "none") {
      return in.is_none();
    }
    if (name == "boolean") {
      return in.is_bool();
    }
    if (name == "true") {
      return in.is_bool() && std::get<bool>(in.v);
    }
    if (name == "false") {
      return in.is_bool() && !std::get<bool>(in.v);
    }
    if (name == "integer") {
      return in.is_int();
    }
    if (name == "float") {
      return in.is_float();
    }
    if (name == "number") {
      return in.is_number();
    }
    if (name == "string") {
      return in.is_string();
    }
    if (name == "mapping") {
      return in.is_dict();
    }
    // Jinja's Undefined iterates (as empty) and has a length, so it passes both.
    if (name == "iterable" || name == "sequence") {
      return in.is_string() || in.is_list() || in.is_dict() || in.is_undefined();
    }
    if (name == "callable") {
      return in.is_callable();
    }
    if (name == "escaped") {
      return false;
    }
    if (name == "lower" || name == "upper") {
      std::string s = to_str(in, budget_);
      bool cased = false, ok = true;
      for (char c : s) {
        if (name == "lower") {
          ok &= !(c >= 'A' && c <= 'Z');
          cased |= c >= 'a' && c <= 'z';
        } else {
          ok &= !(c >= 'a' && c <= 'z');
          cased |= c >= 'A' && c <= 'Z';
        }
      }
      return ok && cased;
    }
    if (name == "odd" || name == "even") {
      if (in.is_undefined()) {
        fail_undefined(in, line, "test '" + name + "'");
      }
      if (!in.is_number()) {
        fail_at(line, "test '" + name + "' expects a number");
      }
      double r = as_double(numeric(BinOp::Mod, in, Value(int64_t(2)), line));
      return name == "odd" ? r == 1.0 : r == 0.0;
    }
    if (name == "divisibleby") {
      Value n = arg();
      if (in.is_undefined()) {
        fail_undefined(in, line, "divisibleby");
      }
      if (!in.is_number() || !n.is_number()) {
        fail_at(line, "divisibleby expects numbers");
      }
      Value m = numeric(BinOp::Mod, in, n, line);
      return as_double(m) == 0.0;
    }
    if (name == "filter") {
      return in.is_string() && is_known_filter(in.str());
    }
    if (name == "test") {
      return in.is_string() && is_known_test(in.str());
    }
    if (name == "eq" || name == "equalto" || name == "==") {
      return equals(in, arg(), budget_);
    }
    if (name == "ne" || name == "!=") {
      return !equals(in, arg(), budget_);
    }
    if (name == "lt" || name == "lessthan" || name == "<") {
      return order(in, arg(), line) < 0;
    }
    if (name == "le" || name == "<=") {
      return order(in, arg(), line) <= 0;
    }
    if (name == "gt" || name == "greaterthan" || name == ">") {
      return order(in, arg(), line) > 0;
    }
    if (name == "ge" || name == ">=") {
      return order(in, arg(), line) >= 0;
    }
    if (name == "in") {
      return contains(arg(), in, line);
    }
    if (name == "sameas") {
      Value o = arg();
      if (in.v.index() != o.v.index()) {
        return false;
      }
      if (in.is_none() || in.is_undefined() || in.is_bool()) {
        return equals(in, o, budget_);
      }
      if (in.is_string()) {
        return std::get<Str>(in.v) == std::get<Str>(o.v);
      }
      if (in.is_list()) {
        return std::get<ListPtr>(in.v) == std::get<ListPtr>(o.v);
      }
      if (in.is_dict()) {
        return std::get<DictPtr>(in.v) == std::get<DictPtr>(o.v);
      }
      return equals(in, o, budget_);
    }
    fail_at(line, "unknown test '" + name + "'");
  }

  const ChatTemplateLimits &limits_;
  std::vector<NamespacePtr> namespaces_;
  std::vector<Frame> frames_;
  size_t floor_ = 1;  // frames below this (but the root) are invisible: a macro sees root + own
  std::string result_;
  std::string *out_ = nullptr;
  Budget budget_;
  int64_t iterations_ = 0;
  int call_depth_ = 0;
  int recursion_ = 0;
};

}  // namespace

bool is_known_filter(std::string_view name) {
  return in_list(kFilters, name);
}
bool is_known_test(std::string_view name) {
  return in_list(kTests, name);
}

std::string render(const Program &program, const std::vector<std::pair<std::string, Value>> &vars,
                   const ChatTemplateLimits &limits) {
  Renderer r(limits, vars);
  return r.run(program.body);
}

}  // namespace lmkit::jinja
