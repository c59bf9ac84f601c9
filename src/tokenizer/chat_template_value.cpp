// Chat-template values as Python sees them: truthiness, str/repr, ==, json.dumps, code points.
// Not an evaluator (chat_template_eval.cpp), and not a JSON parser (nlohmann parses input).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "core/error.h"
#include "tokenizer/chat_template_jinja.h"

namespace lmkit::jinja {

void Budget::exceeded_steps() const {
  fail("chat template: line ", line, ": template exceeded ", max_steps,
       " evaluation steps (runaway template?)");
}

void Budget::exceeded_bytes(size_t n) const {
  fail("chat template: line ", line, ": string of ", n, " bytes exceeds the limit of ", max_bytes);
}

const Value *DictData::find(std::string_view key) const {
  for (const auto &[k, v] : items) {
    if (k == key) {
      return &v;
    }
  }
  return nullptr;
}

const Value *NamespaceData::find(std::string_view key) const {
  for (const auto &[k, v] : attrs) {
    if (k == key) {
      return &v;
    }
  }
  return nullptr;
}

void NamespaceData::set(const std::string &key, Value value) {
  for (auto &[k, v] : attrs) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  attrs.emplace_back(key, std::move(value));
}

Value make_str(std::string s) {
  return Value(std::make_shared<const std::string>(std::move(s)));
}

namespace {

int child_depth(const Value &v) {
  if (v.is_list()) {
    return v.list().depth;
  }
  if (v.is_dict()) {
    return v.dict().depth;
  }
  return 0;
}

void check_depth(int depth) {
  if (depth > kMaxValueDepth) {
    fail("chat template: a list or dict nests deeper than ", kMaxValueDepth, " levels");
  }
}

}  // namespace

Value make_list(std::vector<Value> items, bool tuple) {
  auto l = std::make_shared<ListData>();
  for (const auto &v : items) {
    l->depth = std::max(l->depth, child_depth(v) + 1);
  }
  check_depth(l->depth);
  l->items = std::move(items);
  l->tuple = tuple;
  return Value(ListPtr(std::move(l)));
}

Value make_dict(std::vector<std::pair<std::string, Value>> items) {
  auto d = std::make_shared<DictData>();
  for (const auto &kv : items) {
    d->depth = std::max(d->depth, child_depth(kv.second) + 1);
  }
  check_depth(d->depth);
  d->items = std::move(items);
  return Value(DictPtr(std::move(d)));
}

Value make_undefined(std::string hint) {
  return Value(Undefined{std::make_shared<const std::string>(std::move(hint))});
}

bool truthy(const Value &v) {
  struct Visitor {
    bool operator()(const Undefined &) const { return false; }
    bool operator()(const None &) const { return false; }
    bool operator()(bool b) const { return b; }
    bool operator()(int64_t i) const { return i != 0; }
    bool operator()(double d) const { return d != 0.0; }
    bool operator()(const Str &s) const { return !s->empty(); }
    bool operator()(const ListPtr &l) const { return !l->items.empty(); }
    bool operator()(const DictPtr &d) const { return !d->items.empty(); }
    bool operator()(const NamespacePtr &) const { return true; }
    bool operator()(const LoopPtr &) const { return true; }
    bool operator()(const CallablePtr &) const { return true; }
  };
  return std::visit(Visitor{}, v.v);
}

std::string type_name(const Value &v) {
  struct Visitor {
    std::string operator()(const Undefined &) const { return "undefined"; }
    std::string operator()(const None &) const { return "NoneType"; }
    std::string operator()(bool) const { return "bool"; }
    std::string operator()(int64_t) const { return "int"; }
    std::string operator()(double) const { return "float"; }
    std::string operator()(const Str &) const { return "str"; }
    std::string operator()(const ListPtr &l) const { return l->tuple ? "tuple" : "list"; }
    std::string operator()(const DictPtr &) const { return "dict"; }
    std::string operator()(const NamespacePtr &) const { return "Namespace"; }
    std::string operator()(const LoopPtr &) const { return "LoopContext"; }
    std::string operator()(const CallablePtr &) const { return "function"; }
  };
  return std::visit(Visitor{}, v.v);
}

// Python's float repr: the shortest digits that round-trip, fixed notation for exponents -4..15,
// scientific ("1e+16", "1.5e-05") outside, and always a ".0" on integral fixed values.
std::string format_float(double d) {
  if (std::isnan(d)) {
    return "nan";
  }
  if (std::isinf(d)) {
    return d < 0 ? "-inf" : "inf";
  }
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  bool neg = false;
  size_t p = 0;
  if (sci[0] == '-') {
    neg = true;
    p = 1;
  }
  size_t epos = sci.find('e');
  std::string digits;
  for (size_t i = p; i < epos; ++i) {
    if (sci[i] != '.') {
      digits += sci[i];
    }
  }
  int exp = std::stoi(sci.substr(epos + 1));
  while (digits.size() > 1 && digits.back() == '0') {
    digits.pop_back();
  }
  std::string out = neg ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      std::string ip = digits.substr(0, std::min(digits.size(), size_t(exp) + 1));
      while (ip.size() < size_t(exp) + 1) {
        ip += '0';
      }
      std::string fp = digits.size() > size_t(exp) + 1 ? digits.substr(exp + 1) : "0";
      out += ip + "." + fp;
    } else {
      out += "0." + std::string(size_t(-exp - 1), '0') + digits;
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) {
      out += "." + digits.substr(1);
    }
    char e[16];
    std::snprintf(e, sizeof(e), "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += e;
  }
  return out;
}

uint32_t utf8_decode_at(std::string_view s, size_t pos, size_t *len) {
  auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  unsigned char c = b(pos);
  size_t n = 0;
  uint32_t cp = 0;
  if (c < 0x80) {
    *len = 1;
    return c;
  } else if ((c & 0xE0) == 0xC0) {
    n = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    cp = c & 0x07;
  } else {
    *len = 1;
    return 0xFFFD;
  }
  if (pos + n > s.size()) {
    *len = 1;
    return 0xFFFD;
  }
  for (size_t i = 1; i < n; ++i) {
    if ((b(pos + i) & 0xC0) != 0x80) {
      *len = 1;
      return 0xFFFD;
    }
    cp = (cp << 6) | (b(pos + i) & 0x3F);
  }
  // Overlong forms and surrogates are not valid UTF-8; count their first byte alone.
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
      (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF)) {
    *len = 1;
    return 0xFFFD;
  }
  *len = n;
  return cp;
}

std::vector<size_t> utf8_offsets(std::string_view s) {
  std::vector<size_t> off;
  off.reserve(s.size() + 1);
  size_t pos = 0;
  while (pos < s.size()) {
    off.push_back(pos);
    size_t len = 1;
    utf8_decode_at(s, pos, &len);
    pos += len;
  }
  off.push_back(s.size());
  return off;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0, pos = 0;
  while (pos < s.size()) {
    size_t len = 1;
    utf8_decode_at(s, pos, &len);
    pos += len;
    ++n;
  }
  return n;
}

bool is_py_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

namespace {

void repr_string(const std::string &s, std::string &out) {
  bool has_single = s.find('\'') != std::string::npos;
  bool has_double = s.find('"') != std::string::npos;
  char q = has_single && !has_double ? '"' : '\'';
  out += q;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t len = 1;
    uint32_t cp = utf8_decode_at(s, pos, &len);
    char c = s[pos];
    if (c == q || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0xA0 && len == 2)) {
      char b[8];
      std::snprintf(b, sizeof(b), "\\x%02x", unsigned(cp));
      out += b;
    } else {
      out.append(s, pos, len);
    }
    pos += len;
  }
  out += q;
}

struct ReprState {
  Budget &budget;
  std::vector<const NamespaceData *> active;  // namespaces being printed, as Python's reprlib
};

void repr_into(const Value &v, std::string &out, ReprState &st);

void repr_seq(const ListData &l, std::string &out, ReprState &st) {
  out += l.tuple ? '(' : '[';
  for (size_t i = 0; i < l.items.size(); ++i) {
    if (i) {
      out += ", ";
    }
    repr_into(l.items[i], out, st);
  }
  if (l.tuple && l.items.size() == 1) {
    out += ',';
  }
  out += l.tuple ? ')' : ']';
}

void repr_into(const Value &v, std::string &out, ReprState &st) {
  st.budget.charge();
  st.budget.check_bytes(out.size());
  if (v.is_string()) {
    repr_string(v.str(), out);
    st.budget.check_bytes(out.size());  // escapes can quadruple a string
  } else if (v.is_list()) {
    repr_seq(v.list(), out, st);
  } else if (v.is_dict()) {
    out += '{';
    bool first = true;
    for (const auto &[k, x] : v.dict().items) {
      if (!first) {
        out += ", ";
      }
      first = false;
      repr_string(k, out);
      out += ": ";
      repr_into(x, out, st);
    }
    out += '}';
  } else if (v.is_undefined()) {
    out += "Undefined";
  } else if (v.is_namespace()) {
    const NamespaceData *ns = std::get<NamespacePtr>(v.v).get();
    // A namespace may hold itself; Python prints the inner occurrence as {...}.
    if (std::find(st.active.begin(), st.active.end(), ns) != st.active.end() ||
        st.active.size() >= size_t(kMaxValueDepth)) {
      out += "<Namespace {...}>";
      return;
    }
    st.active.push_back(ns);
    out += "<Namespace {";
    bool first = true;
    for (const auto &[k, x] : ns->attrs) {
      if (!first) {
        out += ", ";
      }
      first = false;
      repr_string(k, out);
      out += ": ";
      repr_into(x, out, st);
    }
    out += "}>";
    st.active.pop_back();
  } else {
    out += to_str(v, st.budget);
  }
}

}  // namespace

std::string to_str(const Value &v, Budget &budget) {
  struct Visitor {
    const Value &self;
    Budget &budget;
    std::string operator()(const Undefined &) const { return ""; }
    std::string operator()(const None &) const { return "None"; }
    std::string operator()(bool b) const { return b ? "True" : "False"; }
    std::string operator()(int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const { return format_float(d); }
    std::string operator()(const Str &s) const { return *s; }
    std::string operator()(const ListPtr &) const { return repr(self, budget); }
    std::string operator()(const DictPtr &) const { return repr(self, budget); }
    std::string operator()(const NamespacePtr &) const { return repr(self, budget); }
    std::string operator()(const LoopPtr &l) const {
      return "<LoopContext " + std::to_string(l->index0 + 1) + "/" + std::to_string(l->length) +
             ">";
    }
    std::string operator()(const CallablePtr &c) const {
      if (c->kind == Callable::Kind::Macro) {
        return "<Macro '" + c->name + "'>";
      }
      return "<function " + c->name + ">";
    }
  };
  return std::visit(Visitor{v, budget}, v.v);
}

std::string repr(const Value &v, Budget &budget) {
  std::string out;
  ReprState st{budget, {}};
  repr_into(v, out, st);
  budget.check_bytes(out.size());
  return out;
}

bool equals(const Value &a, const Value &b, Budget &budget) {
  budget.charge();
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      auto as_d = [](const Value &x) {
        return x.is_float() ? std::get<double>(x.v)
               : x.is_int() ? double(std::get<int64_t>(x.v))
                            : double(std::get<bool>(x.v));
      };
      return as_d(a) == as_d(b);
    }
    auto as_i = [](const Value &x) {
      return x.is_int() ? std::get<int64_t>(x.v) : int64_t(std::get<bool>(x.v));
    };
    return as_i(a) == as_i(b);
  }
  if (a.v.index() != b.v.index()) {
    return false;
  }
  if (a.is_undefined() || a.is_none()) {
    return true;
  }
  if (a.is_string()) {
    return a.str() == b.str();
  }
  if (a.is_list()) {
    if (std::get<ListPtr>(a.v) == std::get<ListPtr>(b.v)) {
      return true;
    }
    const auto &x = a.list(), &y = b.list();
    if (x.tuple != y.tuple || x.items.size() != y.items.size()) {
      return false;
    }
    for (size_t i = 0; i < x.items.size(); ++i) {
      if (!equals(x.items[i], y.items[i], budget)) {
        return false;
      }
    }
    return true;
  }
  if (a.is_dict()) {
    if (std::get<DictPtr>(a.v) == std::get<DictPtr>(b.v)) {
      return true;
    }
    const auto &x = a.dict(), &y = b.dict();
    if (x.items.size() != y.items.size()) {
      return false;
    }
    for (const auto &[k, v] : x.items) {
      const Value *o = y.find(k);
      if (!o || !equals(v, *o, budget)) {
        return false;
      }
    }
    return true;
  }
  if (a.is_namespace()) {
    return std::get<NamespacePtr>(a.v) == std::get<NamespacePtr>(b.v);
  }
  if (a.is_loop()) {
    return std::get<LoopPtr>(a.v) == std::get<LoopPtr>(b.v);
  }
  if (a.is_callable()) {
    return std::get<CallablePtr>(a.v) == std::get<CallablePtr>(b.v);
  }
  return false;
}

namespace {

void json_string(const std::string &s, bool ensure_ascii, std::string &out) {
  out += '"';
  size_t pos = 0;
  char b[16];
  while (pos < s.size()) {
    size_t len = 1;
    uint32_t cp = utf8_decode_at(s, pos, &len);
    unsigned char c = static_cast<unsigned char>(s[pos]);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20 || (ensure_ascii && c == 0x7F)) {
          std::snprintf(b, sizeof(b), "\\u%04x", unsigned(c));
          out += b;
        } else if (ensure_ascii && cp >= 0x80) {
          if (cp >= 0x10000) {
            uint32_t x = cp - 0x10000;
            std::snprintf(b, sizeof(b), "\\u%04x\\u%04x", unsigned(0xD800 + (x >> 10)),
                          unsigned(0xDC00 + (x & 0x3FF)));
          } else {
            std::snprintf(b, sizeof(b), "\\u%04x", unsigned(cp));
          }
          out += b;
        } else {
          out.append(s, pos, len);
        }
    }
    pos += len;
  }
  out += '"';
}

void json_newline(const JsonOptions &opt, std::string &out, int level) {
  out += '\n';
  for (int i = 0; i < level; ++i) {
    out += opt.indent;
  }
}

}  // namespace

void json_dump(const Value &v, const JsonOptions &opt, std::string &out, Budget &budget,
               int level) {
  budget.charge();
  budget.check_bytes(out.size());
  if (level > kMaxValueDepth) {
    throw std::runtime_error("value nested too deeply");
  }
  if (v.is_none()) {
    out += "null";
  } else if (v.is_bool()) {
    out += std::get<bool>(v.v) ? "true" : "false";
  } else if (v.is_int()) {
    out += std::to_string(std::get<int64_t>(v.v));
  } else if (v.is_float()) {
    double d = std::get<double>(v.v);
    out += std::isnan(d)   ? "NaN"
           : std::isinf(d) ? (d < 0 ? "-Infinity" : "Infinity")
                           : format_float(d);
  } else if (v.is_string()) {
    json_string(v.str(), opt.ensure_ascii, out);
    budget.check_bytes(out.size());  // escapes can grow a string sixfold
  } else if (v.is_list()) {
    const auto &items = v.list().items;
    if (items.empty()) {
      out += "[]";
      return;
    }
    out += '[';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) {
        out += opt.item_sep;
      }
      if (opt.has_indent) {
        json_newline(opt, out, level + 1);
      }
      json_dump(items[i], opt, out, budget, level + 1);
    }
    if (opt.has_indent) {
      json_newline(opt, out, level);
    }
    out += ']';
  } else if (v.is_dict()) {
    std::vector<const std::pair<std::string, Value> *> items;
    for (const auto &kv : v.dict().items) {
      items.push_back(&kv);
    }
    if (opt.sort_keys) {
      std::stable_sort(items.begin(), items.end(),
                       [](const auto *a, const auto *b) { return a->first < b->first; });
    }
    if (items.empty()) {
      out += "{}";
      return;
    }
    out += '{';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) {
        out += opt.item_sep;
      }
      if (opt.has_indent) {
        json_newline(opt, out, level + 1);
      }
      json_string(items[i]->first, opt.ensure_ascii, out);
      out += opt.key_sep;
      json_dump(items[i]->second, opt, out, budget, level + 1);
    }
    if (opt.has_indent) {
      json_newline(opt, out, level);
    }
    out += '}';
  } else {
    throw std::runtime_error("Object of type " + type_name(v) + " is not JSON serializable");
  }
}

}  // namespace lmkit::jinja
