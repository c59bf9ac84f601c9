// Chat-template lexer and parser: Jinja source -> syntax tree, with trim_blocks/lstrip_blocks.
// Not a renderer (chat_template_eval.cpp); every failure is an lmkit::Error naming the line.
#include <charconv>
#include <cstring>

#include "core/error.h"
#include "tokenizer/chat_template_jinja.h"
#include "tokenizer/unicode.h"

namespace lmkit::jinja {
namespace {

// Deep enough for any real template; shallow enough that the recursive descent (and the
// evaluator walking the tree it builds) cannot exhaust the stack on hostile input.
constexpr int kMaxExprDepth = 400;
constexpr int kMaxBlockDepth = 100;

[[noreturn]] void fail_at(int line, const std::string &msg) {
  fail("chat template: line ", line, ": ", msg);
}

struct Token {
  enum class Type { Name, String, Int, Float, Op };
  Type type = Type::Op;
  std::string text;  // name, operator, or the decoded string
  int64_t i = 0;
  double f = 0;
  int line = 1;
};

struct Item {
  enum class Kind { Text, Output, Block };
  Kind kind = Kind::Text;
  std::string text;
  std::vector<Token> tokens;
  int line = 1;
};

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' ||
         (c >= 0x1C && c <= 0x1F);
}

class Lexer {
 public:
  explicit Lexer(const std::string &source) {
    // Jinja normalizes newlines and drops one trailing newline (keep_trailing_newline=False).
    src_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_ += '\n';
        if (i + 1 < source.size() && source[i + 1] == '\n') {
          ++i;
        }
      } else {
        src_ += source[i];
      }
    }
    if (!src_.empty() && src_.back() == '\n') {
      src_.pop_back();
    }
  }

  std::vector<Item> run() {
    while (pos_ < src_.size()) {
      size_t start = find_tag(pos_);
      if (start == std::string::npos) {
        emit_text(src_.substr(pos_), line_);
        break;
      }
      std::string text = src_.substr(pos_, start - pos_);
      int text_line = line_;
      advance_to(start);
      char kind = src_[start + 1];
      char marker = start + 2 < src_.size() ? src_[start + 2] : '\0';
      bool has_marker = marker == '-' || marker == '+';
      if (marker == '-') {
        rstrip(text);
      } else if (marker != '+' && kind != '{') {
        lstrip_line(text);
      }
      emit_text(std::move(text), text_line);
      advance_to(start + 2 + (has_marker ? 1 : 0));
      if (kind == '#') {
        lex_comment();
      } else {
        lex_tag(kind == '{' ? Item::Kind::Output : Item::Kind::Block);
      }
    }
    return std::move(items_);
  }

 private:
  size_t find_tag(size_t from) const {
    for (size_t i = from; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return std::string::npos;
  }

  void advance_to(size_t p) {
    for (; pos_ < p; ++pos_) {
      if (src_[pos_] == '\n') {
        ++line_;
      }
    }
  }

  static void rstrip(std::string &t) {
    size_t n = t.size();
    while (n > 0 && is_ws(t[n - 1])) {
      --n;
    }
    t.resize(n);
  }

  // lstrip_blocks: spaces and tabs between a line's start and a block or comment tag go.
  void lstrip_line(std::string &t) const {
    size_t l = t.rfind('\n');
    l = l == std::string::npos ? 0 : l + 1;
    if (l == 0 && !line_starting_) {
      return;
    }
    if (l == t.size()) {
      return;
    }
    for (size_t i = l; i < t.size(); ++i) {
      if (!is_ws(t[i])) {
        return;
      }
    }
    t.resize(l);
  }

  void emit_text(std::string t, int line) {
    if (t.empty()) {
      return;
    }
    Item it;
    it.kind = Item::Kind::Text;
    it.text = std::move(t);
    it.line = line;
    items_.push_back(std::move(it));
  }

  // After a tag's closing delimiter: "-" eats all following whitespace, otherwise trim_blocks
  // eats one newline after block and comment tags (never after {{ }}).
  void after_tag(bool strip, bool keep, bool trim_newline) {
    size_t p = pos_;
    if (strip) {
      while (p < src_.size() && is_ws(src_[p])) {
        ++p;
      }
    } else if (!keep && trim_newline && p < src_.size() && src_[p] == '\n') {
      ++p;
    }
    line_starting_ = p > 0 && src_[p - 1] == '\n';
    advance_to(p);
  }

  void lex_comment() {
    int line = line_;
    size_t body = pos_;
    size_t end = src_.find("#}", body);
    if (end == std::string::npos) {
      fail_at(line, "unterminated comment (missing '#}')");
    }
    bool strip = end > body && src_[end - 1] == '-';
    advance_to(end + 2);
    after_tag(strip, false, true);
  }

  void lex_tag(Item::Kind kind) {
    Item it;
    it.kind = kind;
    it.line = line_;
    const char *close = kind == Item::Kind::Output ? "}}" : "%}";
    int depth = 0;
    for (;;) {
      while (pos_ < src_.size() && is_ws(src_[pos_])) {
        advance_to(pos_ + 1);
      }
      if (pos_ >= src_.size()) {
        fail_at(it.line, std::string("unterminated tag (missing '") + close + "')");
      }
      if (depth == 0) {
        bool minus = src_[pos_] == '-' && src_.compare(pos_ + 1, 2, close) == 0;
        bool plus =
            kind == Item::Kind::Block && src_[pos_] == '+' && src_.compare(pos_ + 1, 2, close) == 0;
        if (minus || plus || src_.compare(pos_, 2, close) == 0) {
          advance_to(pos_ + (minus || plus ? 3 : 2));
          prev_was_dot_ = false;
          bool raw = kind == Item::Kind::Block && it.tokens.size() == 1 &&
                     it.tokens[0].type == Token::Type::Name && it.tokens[0].text == "raw";
          if (raw) {
            lex_raw(it.line, minus);
            return;
          }
          items_.push_back(std::move(it));
          after_tag(minus, plus, kind == Item::Kind::Block);
          return;
        }
      }
      Token t = lex_token();
      prev_was_dot_ = t.type == Token::Type::Op && t.text == ".";
      if (t.type == Token::Type::Op) {
        if (t.text == "(" || t.text == "[" || t.text == "{") {
          ++depth;
        }
        if ((t.text == ")" || t.text == "]" || t.text == "}") && depth > 0) {
          --depth;
        }
      }
      it.tokens.push_back(std::move(t));
    }
  }

  // {% raw %}...{% endraw %}: the body is text, tags and all.
  void lex_raw(int line, bool strip_after_open) {
    if (strip_after_open) {
      while (pos_ < src_.size() && is_ws(src_[pos_])) {
        advance_to(pos_ + 1);
      }
    }
    line_starting_ = pos_ > 0 && src_[pos_ - 1] == '\n';
    size_t search = pos_;
    for (;;) {
      size_t open = src_.find("{%", search);
      if (open == std::string::npos) {
        fail_at(line, "missing {% endraw %} for this {% raw %}");
      }
      size_t p = open + 2;
      char marker = p < src_.size() ? src_[p] : '\0';
      if (marker == '-' || marker == '+') {
        ++p;
      }
      while (p < src_.size() && is_ws(src_[p])) {
        ++p;
      }
      if (src_.compare(p, 6, "endraw") != 0) {
        search = open + 2;
        continue;
      }
      p += 6;
      while (p < src_.size() && is_ws(src_[p])) {
        ++p;
      }
      bool minus = false, plus = false;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) {
        minus = src_[p] == '-';
        plus = src_[p] == '+';
        ++p;
      }
      if (src_.compare(p, 2, "%}") != 0) {
        search = open + 2;
        continue;
      }
      std::string text = src_.substr(pos_, open - pos_);
      if (marker == '-') {
        rstrip(text);
      } else if (marker != '+') {
        lstrip_line(text);
      }
      emit_text(std::move(text), line_);
      advance_to(p + 2);
      after_tag(minus, plus, true);
      return;
    }
  }

  Token lex_token() {
    Token t;
    t.line = line_;
    char c = src_[pos_];
    auto is_alpha = [](char ch) {
      return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
    };
    auto is_digit = [](char ch) { return ch >= '0' && ch <= '9'; };
    if (is_alpha(c)) {
      size_t e = pos_;
      while (e < src_.size() && (is_alpha(src_[e]) || is_digit(src_[e]))) {
        ++e;
      }
      t.type = Token::Type::Name;
      t.text = src_.substr(pos_, e - pos_);
      advance_to(e);
      return t;
    }
    if (is_digit(c)) {
      return lex_number(t);
    }
    if (c == '\'' || c == '"') {
      return lex_string(t);
    }
    static const char *const kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*",
                                       "/",  "%",  "~",  "(",  ")",  "[",  "]", "{", "}",
                                       ".",  ",",  ":",  "|",  "<",  ">",  "=", ";"};
    for (const char *op : kOps) {
      size_t n = std::strlen(op);
      if (src_.compare(pos_, n, op) == 0) {
        t.type = Token::Type::Op;
        t.text = op;
        advance_to(pos_ + n);
        return t;
      }
    }
    std::string shown = (c >= 0x20 && c < 0x7F) ? std::string(1, c) : "\\x" + hex(c);
    fail_at(line_, "unexpected character '" + shown + "'");
  }

  static std::string hex(char c) {
    const char *d = "0123456789abcdef";
    unsigned char u = static_cast<unsigned char>(c);
    return std::string{d[u >> 4], d[u & 15]};
  }

  Token lex_number(Token &t) {
    auto is_digit = [](char ch) { return ch >= '0' && ch <= '9'; };
    auto digits = [&](size_t p) {
      while (p < src_.size() && (is_digit(src_[p]) || (src_[p] == '_' && p + 1 < src_.size() &&
                                                       is_digit(src_[p + 1])))) {
        ++p;
      }
      return p;
    };
    size_t e = digits(pos_);
    bool is_float = false;
    // "x.0" is an index, not a float: after a dot only an integer is lexed.
    if (e + 1 < src_.size() && src_[e] == '.' && is_digit(src_[e + 1]) && !prev_was_dot_) {
      e = digits(e + 1);
      is_float = true;
    }
    if (!prev_was_dot_ && e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t p = e + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) {
        ++p;
      }
      if (p < src_.size() && is_digit(src_[p])) {
        e = digits(p);
        is_float = true;
      }
    }
    std::string text;
    for (size_t i = pos_; i < e; ++i) {
      if (src_[i] != '_') {
        text += src_[i];
      }
    }
    if (is_float) {
      t.type = Token::Type::Float;
      auto r = std::from_chars(text.data(), text.data() + text.size(), t.f);
      if (r.ec != std::errc()) {
        fail_at(line_, "invalid number '" + text + "'");
      }
    } else {
      t.type = Token::Type::Int;
      auto r = std::from_chars(text.data(), text.data() + text.size(), t.i);
      if (r.ec != std::errc()) {
        fail_at(line_, "integer '" + text + "' is too large");
      }
    }
    t.text = text;
    advance_to(e);
    return t;
  }

  // Python string-literal escapes, as Jinja decodes them ("unicode-escape"); an unknown escape
  // keeps its backslash.
  Token lex_string(Token &t) {
    char q = src_[pos_];
    int line = line_;
    size_t p = pos_ + 1;
    std::string out;
    auto hexval = [&](size_t at, int n, uint32_t *v) {
      if (at + n > src_.size()) {
        return false;
      }
      *v = 0;
      for (int k = 0; k < n; ++k) {
        char h = src_[at + k];
        int d = (h >= '0' && h <= '9')   ? h - '0'
                : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                         : -1;
        if (d < 0) {
          return false;
        }
        *v = *v * 16 + uint32_t(d);
      }
      return true;
    };
    for (;;) {
      if (p >= src_.size()) {
        fail_at(line, "unterminated string literal");
      }
      char c = src_[p];
      if (c == q) {
        break;
      }
      if (c != '\\') {
        out += c;
        ++p;
        continue;
      }
      if (p + 1 >= src_.size()) {
        fail_at(line, "unterminated string literal");
      }
      char e = src_[p + 1];
      p += 2;
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'v':
          out += '\v';
          break;
        case '\n':
          break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t v = 0;
          if (!hexval(p, n, &v) || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
            fail_at(line_, std::string("invalid \\") + e + " escape in string literal");
          }
          unicode::append_utf8(out, v);
          p += n;
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t v = uint32_t(e - '0');
            for (int k = 0; k < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7';
                 ++k, ++p) {
              v = v * 8 + uint32_t(src_[p] - '0');
            }
            unicode::append_utf8(out, v);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    advance_to(p + 1);
    t.type = Token::Type::String;
    t.text = std::move(out);
    return t;
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  bool prev_was_dot_ = false;  // lex "x.0.1" as x . 0 . 1, not x . 0.1
  std::vector<Item> items_;
};

class Parser {
 public:
  explicit Parser(std::vector<Item> items) : items_(std::move(items)) {}

  Program run() {
    Program p;
    std::string stop = parse_body(p.body, {});
    if (!stop.empty()) {
      fail_at(items_[ip_].line, "unexpected '" + stop + "'");
    }
    return p;
  }

 private:
  // ---- statements

  // Parses items into `body` until a block tag whose keyword is in `stops` (left unconsumed and
  // returned) or the end of input (returns "").
  std::string parse_body(Body &body, std::initializer_list<const char *> stops) {
    if (++block_depth_ > kMaxBlockDepth) {
      fail_at(cur_line(), "blocks nested too deeply");
    }
    std::string stop;
    while (ip_ < items_.size()) {
      Item &it = items_[ip_];
      if (it.kind == Item::Kind::Text) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::Text;
        n->line = it.line;
        n->text = std::move(it.text);
        body.push_back(std::move(n));
        ++ip_;
        continue;
      }
      begin_tag(it);
      if (it.kind == Item::Kind::Output) {
        if (at_end()) {
          fail_at(it.line, "empty expression '{{ }}'");
        }
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::Output;
        n->line = it.line;
        n->expr = parse_tuple_expr();
        expect_end();
        body.push_back(std::move(n));
        ++ip_;
        continue;
      }
      if (at_end() || peek().type != Token::Type::Name) {
        fail_at(it.line, "expected a statement name after '{%'");
      }
      const std::string kw = peek().text;
      bool is_stop = false;
      for (const char *s : stops) {
        if (kw == s) {
          is_stop = true;
        }
      }
      if (is_stop) {
        stop = kw;
        break;
      }
      parse_statement(body, kw);
    }
    --block_depth_;
    return stop;
  }

  void parse_statement(Body &body, const std::string &kw) {
    int line = items_[ip_].line;
    next();
    if (kw == "if") {
      body.push_back(parse_if(line));
    } else if (kw == "for") {
      body.push_back(parse_for(line));
    } else if (kw == "set") {
      body.push_back(parse_set(line));
    } else if (kw == "break" || kw == "continue") {
      expect_end();
      if (loop_depth_ == 0) {
        fail_at(line, "'" + kw + "' outside a for loop");
      }
      auto n = std::make_unique<Node>();
      n->kind = kw == "break" ? Node::Kind::Break : Node::Kind::Continue;
      n->line = line;
      body.push_back(std::move(n));
      ++ip_;
    } else if (kw == "macro") {
      body.push_back(parse_macro(line));
    } else if (kw == "generation") {
      // transformers' {% generation %} marks assistant text for masking; it renders its body.
      expect_end();
      ++ip_;
      std::string stop = parse_body(body, {"endgeneration"});
      if (stop.empty()) {
        fail_at(line, "missing {% endgeneration %} for this {% generation %}");
      }
      begin_tag(items_[ip_]);
      next();
      expect_end();
      ++ip_;
    } else if (kw == "elif" || kw == "else" || kw.rfind("end", 0) == 0) {
      fail_at(line, "unexpected '" + kw + "'");
    } else if (kw == "include" || kw == "import" || kw == "from" || kw == "extends" ||
               kw == "block" || kw == "call" || kw == "filter" || kw == "with" ||
               kw == "autoescape" || kw == "do" || kw == "trans") {
      fail_at(line, "unsupported statement '" + kw + "' (chat templates support if, for, set, " +
                        "macro, break, continue, raw)");
    } else {
      fail_at(line, "unknown statement '" + kw + "'");
    }
  }

  // Consumes the block tag at ip_ whose keyword was a stop word; returns its keyword.
  std::string take_stop() {
    begin_tag(items_[ip_]);
    return next().text;
  }

  NodePtr parse_if(int line) {
    auto n = std::make_unique<Node>();
    n->kind = Node::Kind::If;
    n->line = line;
    ExprPtr cond = parse_expr();
    expect_end();
    ++ip_;
    for (;;) {
      Body b;
      std::string stop = parse_body(b, {"elif", "else", "endif"});
      n->branches.emplace_back(std::move(cond), std::move(b));
      if (stop.empty()) {
        fail_at(line, "missing {% endif %} for this {% if %}");
      }
      take_stop();
      if (stop == "elif") {
        cond = parse_expr();
        expect_end();
        ++ip_;
        continue;
      }
      expect_end();
      ++ip_;
      if (stop == "else") {
        std::string s2 = parse_body(n->else_body, {"endif", "elif", "else"});
        if (s2.empty()) {
          fail_at(line, "missing {% endif %} for this {% if %}");
        }
        if (s2 != "endif") {
          fail_at(items_[ip_].line, "unexpected '" + s2 + "' after {% else %}");
        }
        take_stop();
        expect_end();
        ++ip_;
      }
      return n;
    }
  }

  NodePtr parse_for(int line) {
    auto n = std::make_unique<Node>();
    n->kind = Node::Kind::For;
    n->line = line;
    parse_targets(*n, "in");
    if (at_end() || peek().type != Token::Type::Name || peek().text != "in") {
      fail_at(line, "expected 'in' in for loop");
    }
    next();
    // The iterable stops before "if" (the loop filter), so no conditional expression here.
    ExprPtr first = parse_or();
    if (!at_end() && is_op(",")) {
      auto t = std::make_unique<Expr>();
      t->kind = Expr::Kind::Tuple;
      t->line = line;
      t->args.push_back(std::move(first));
      while (!at_end() && is_op(",")) {
        next();
        if (at_end() || is_name("if")) {
          break;
        }
        t->args.push_back(parse_or());
      }
      n->expr = std::move(t);
    } else {
      n->expr = std::move(first);
    }
    if (!at_end() && is_name("if")) {
      next();
      n->filter = parse_expr();
    }
    if (!at_end() && is_name("recursive")) {
      fail_at(line, "recursive for loops are not supported");
    }
    expect_end();
    ++ip_;
    ++loop_depth_;
    std::string stop = parse_body(n->body, {"else", "endfor"});
    --loop_depth_;
    if (stop.empty()) {
      fail_at(line, "missing {% endfor %} for this {% for %}");
    }
    take_stop();
    expect_end();
    ++ip_;
    if (stop == "else") {
      int saved = loop_depth_;
      loop_depth_ = 0;  // break/continue in a loop's else belong to no loop
      std::string s2 = parse_body(n->else_body, {"endfor", "else"});
      loop_depth_ = saved;
      if (s2 != "endfor") {
        fail_at(line, "missing {% endfor %} for this {% for %}");
      }
      take_stop();
      expect_end();
      ++ip_;
    }
    return n;
  }

  // "a" or "a, b" (also "(a, b)"), stopping at `stop_word` or "=".
  void parse_targets(Node &n, const char *stop_word) {
    bool paren = !at_end() && is_op("(");
    if (paren) {
      next();
    }
    for (;;) {
      if (at_end() || peek().type != Token::Type::Name) {
        fail_at(n.line, "expected a variable name");
      }
      n.targets.push_back(next().text);
      if (!at_end() && is_op(",")) {
        next();
        n.unpack = true;
        if (!at_end() && (is_name(stop_word) || is_op("=") || is_op(")"))) {
          break;
        }
        continue;
      }
      break;
    }
    if (paren) {
      if (at_end() || !is_op(")")) {
        fail_at(n.line, "expected ')'");
      }
      next();
      n.unpack = true;
    }
  }

  NodePtr parse_set(int line) {
    auto n = std::make_unique<Node>();
    n->line = line;
    if (at_end() || peek().type != Token::Type::Name) {
      fail_at(line, "expected a name after 'set'");
    }
    if (pos_ + 1 < toks_->size() && (*toks_)[pos_ + 1].type == Token::Type::Op &&
        (*toks_)[pos_ + 1].text == ".") {
      n->kind = Node::Kind::SetAttr;
      n->targets.push_back(next().text);
      next();
      if (at_end() || peek().type != Token::Type::Name) {
        fail_at(line, "expected an attribute name after '.'");
      }
      n->targets.push_back(next().text);
      if (at_end() || !is_op("=")) {
        fail_at(line, "expected '=' after 'set " + n->targets[0] + "." + n->targets[1] + "'");
      }
      next();
      n->expr = parse_tuple_expr();
      expect_end();
      ++ip_;
      return n;
    }
    parse_targets(*n, "=");
    if (!at_end() && is_op("=")) {
      next();
      n->kind = Node::Kind::Set;
      n->expr = parse_tuple_expr();
      expect_end();
      ++ip_;
      return n;
    }
    if (n->unpack || n->targets.size() != 1) {
      fail_at(line, "expected '=' in set");
    }
    if (!at_end() && is_op("|")) {
      fail_at(line, "filtered block set is not supported");
    }
    expect_end();
    ++ip_;
    n->kind = Node::Kind::SetBlock;
    std::string stop = parse_body(n->body, {"endset"});
    if (stop.empty()) {
      fail_at(line, "missing {% endset %} for this {% set %}");
    }
    take_stop();
    expect_end();
    ++ip_;
    return n;
  }

  NodePtr parse_macro(int line) {
    auto m = std::make_unique<MacroNode>();
    if (at_end() || peek().type != Token::Type::Name) {
      fail_at(line, "expected a macro name");
    }
    m->name = next().text;
    if (at_end() || !is_op("(")) {
      fail_at(line, "expected '(' after the macro name");
    }
    next();
    while (!at_end() && !is_op(")")) {
      if (peek().type != Token::Type::Name) {
        fail_at(line, "expected a parameter name");
      }
      m->params.push_back(next().text);
      if (!at_end() && is_op("=")) {
        next();
        m->defaults.push_back(parse_expr());
      } else {
        m->defaults.push_back(nullptr);
      }
      if (!at_end() && is_op(",")) {
        next();
        continue;
      }
      break;
    }
    if (at_end() || !is_op(")")) {
      fail_at(line, "expected ')' after the macro parameters");
    }
    next();
    expect_end();
    ++ip_;
    int saved = loop_depth_;
    loop_depth_ = 0;
    std::string stop = parse_body(m->body, {"endmacro"});
    loop_depth_ = saved;
    if (stop.empty()) {
      fail_at(line, "missing {% endmacro %} for this {% macro %}");
    }
    take_stop();
    if (!at_end() && peek().type == Token::Type::Name) {
      next();  // {% endmacro name %}
    }
    expect_end();
    ++ip_;
    auto n = std::make_unique<Node>();
    n->kind = Node::Kind::Macro;
    n->line = line;
    n->macro = std::move(m);
    return n;
  }

  // ---- expressions (Jinja's precedence: condition < or < and < not < compare < + - < ~ <
  // * / // % < ** < unary, with filters and tests binding to the unary operand)

  struct DepthGuard {
    Parser &p;
    explicit DepthGuard(Parser &parser) : p(parser) {
      if (++p.expr_depth_ > kMaxExprDepth) {
        fail_at(p.cur_line(), "expression nested too deeply");
      }
    }
    ~DepthGuard() { --p.expr_depth_; }
  };
  // Left-associative chains ("a + b + c ...") nest the tree without recursing here; each link
  // still counts towards the depth the evaluator will recurse.
  struct ChainGuard {
    Parser &p;
    int n = 0;
    explicit ChainGuard(Parser &parser) : p(parser) {}
    void step() {
      ++n;
      if (++p.expr_depth_ > kMaxExprDepth) {
        fail_at(p.cur_line(), "expression nested too deeply");
      }
    }
    ~ChainGuard() { p.expr_depth_ -= n; }
  };

  ExprPtr make(Expr::Kind k, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = line;
    return e;
  }

  // An expression, or a bare tuple "a, b" (allowed in {{ }} and set).
  ExprPtr parse_tuple_expr() {
    int line = cur_line();
    ExprPtr first = parse_expr();
    if (at_end() || !is_op(",")) {
      return first;
    }
    auto t = make(Expr::Kind::Tuple, line);
    t->args.push_back(std::move(first));
    while (!at_end() && is_op(",")) {
      next();
      if (at_end()) {
        break;
      }
      t->args.push_back(parse_expr());
    }
    return t;
  }

  ExprPtr parse_expr() {
    DepthGuard g(*this);
    ChainGuard chain(*this);
    ExprPtr e = parse_or();
    while (!at_end() && is_name("if")) {
      chain.step();
      int line = cur_line();
      next();
      auto c = make(Expr::Kind::Cond, line);
      c->args.push_back(std::move(e));
      c->args.push_back(parse_or());
      if (!at_end() && is_name("else")) {
        next();
        c->args.push_back(parse_expr());
      } else {
        c->args.push_back(nullptr);
      }
      e = std::move(c);
    }
    return e;
  }

  ExprPtr parse_or() {
    DepthGuard g(*this);
    ChainGuard chain(*this);
    ExprPtr e = parse_and();
    while (!at_end() && is_name("or")) {
      chain.step();
      int line = cur_line();
      next();
      auto o = make(Expr::Kind::Or, line);
      o->args.push_back(std::move(e));
      o->args.push_back(parse_and());
      e = std::move(o);
    }
    return e;
  }

  ExprPtr parse_and() {
    DepthGuard g(*this);
    ChainGuard chain(*this);
    ExprPtr e = parse_not();
    while (!at_end() && is_name("and")) {
      chain.step();
      int line = cur_line();
      next();
      auto a = make(Expr::Kind::And, line);
      a->args.push_back(std::move(e));
      a->args.push_back(parse_not());
      e = std::move(a);
    }
    return e;
  }

  ExprPtr parse_not() {
    DepthGuard g(*this);
    if (!at_end() && is_name("not")) {
      int line = cur_line();
      next();
      auto n = make(Expr::Kind::Not, line);
      n->args.push_back(parse_not());
      return n;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    DepthGuard g(*this);
    ChainGuard chain(*this);
    int line = cur_line();
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    for (;;) {
      if (at_end()) {
        break;
      }
      CmpOp op;
      if (is_op("==")) {
        op = CmpOp::Eq;
      } else if (is_op("!=")) {
        op = CmpOp::Ne;
      } else if (is_op("<")) {
        op = CmpOp::Lt;
      } else if (is_op("<=")) {
        op = CmpOp::Le;
      } else if (is_op(">")) {
        op = CmpOp::Gt;
      } else if (is_op(">=")) {
        op = CmpOp::Ge;
      } else if (is_name("in")) {
        op = CmpOp::In;
      } else if (is_name("not") && pos_ + 1 < toks_->size() &&
                 (*toks_)[pos_ + 1].type == Token::Type::Name && (*toks_)[pos_ + 1].text == "in") {
        next();
        op = CmpOp::NotIn;
      } else {
        break;
      }
      next();
      chain.step();
      if (!cmp) {
        cmp = make(Expr::Kind::Compare, line);
        cmp->args.push_back(std::move(first));
      }
      cmp->cmp.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr binary(BinOp op, ExprPtr l, ExprPtr r, int line) {
    auto b = make(Expr::Kind::Binary, line);
    b->binop = op;
    b->args.push_back(std::move(l));
    b->args.push_back(std::move(r));
    return b;
  }

  ExprPtr parse_math1() {
    DepthGuard g(*this);
    ChainGuard chain(*this);
    ExprPtr e = parse_concat();
    while (!at_end() && (is_op("+") || is_op("-"))) {
      chain.step();
      int line = cur_line();
      BinOp op = next().text == "+" ? BinOp::Add : BinOp::Sub;
      e = binary(op, std::move(e), parse_concat(), line);
    }
    return e;
  }

  ExprPtr parse_concat() {
    DepthGuard g(*this);
    ChainGuard chain(*this);
    ExprPtr e = parse_math2();
    while (!at_end() && is_op("~")) {
      chain.step();
      int line = cur_line();
      next();
      e = binary(BinOp::Concat, std::move(e), parse_math2(), line);
    }
    return e;
  }

  ExprPtr parse_math2() {
    DepthGuard g(*this);
    ChainGuard chain(*this);
    ExprPtr e = parse_pow();
    for (;;) {
      if (at_end()) {
        break;
      }
      chain.step();
      BinOp op;
      if (is_op("*")) {
        op = BinOp::Mul;
      } else if (is_op("/")) {
        op = BinOp::Div;
      } else if (is_op("//")) {
        op = BinOp::FloorDiv;
      } else if (is_op("%")) {
        op = BinOp::Mod;
      } else {
        break;
      }
      int line = cur_line();
      next();
      e = binary(op, std::move(e), parse_pow(), line);
    }
    return e;
  }

  ExprPtr parse_pow() {
    DepthGuard g(*this);
    ChainGuard chain(*this);
    ExprPtr e = parse_unary(true);
    while (!at_end() && is_op("**")) {
      chain.step();
      int line = cur_line();
      next();
      e = binary(BinOp::Pow, std::move(e), parse_unary(true), line);
    }
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard g(*this);
    if (at_end()) {
      fail_at(cur_line(), "expected an expression");
    }
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      int line = cur_line();
      bool neg = next().text == "-";
      e = make(neg ? Expr::Kind::Neg : Expr::Kind::Pos, line);
      e->args.push_back(parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) {
      e = parse_filter_expr(std::move(e));
    }
    return e;
  }

  ExprPtr parse_primary() {
    DepthGuard g(*this);
    if (at_end()) {
      fail_at(cur_line(), "expected an expression");
    }
    const Token &t = peek();
    int line = t.line;
    if (t.type == Token::Type::Name) {
      std::string name = next().text;
      auto e = make(Expr::Kind::Literal, line);
      if (name == "true" || name == "True") {
        e->value = Value(true);
      } else if (name == "false" || name == "False") {
        e->value = Value(false);
      } else if (name == "none" || name == "None") {
        e->value = Value(None{});
      } else if (name == "not" || name == "and" || name == "or" || name == "in" || name == "is" ||
                 name == "if" || name == "else") {
        fail_at(line, "unexpected '" + name + "'");
      } else {
        e->kind = Expr::Kind::Name;
        e->name = name;
      }
      return e;
    }
    if (t.type == Token::Type::String) {
      std::string s = next().text;
      while (!at_end() && peek().type == Token::Type::String) {
        s += next().text;
      }
      auto e = make(Expr::Kind::Literal, line);
      e->value = make_str(std::move(s));
      return e;
    }
    if (t.type == Token::Type::Int || t.type == Token::Type::Float) {
      auto e = make(Expr::Kind::Literal, line);
      e->value = t.type == Token::Type::Int ? Value(t.i) : Value(t.f);
      next();
      return e;
    }
    if (is_op("(")) {
      next();
      if (!at_end() && is_op(")")) {
        next();
        return make(Expr::Kind::Tuple, line);
      }
      ExprPtr first = parse_expr();
      if (!at_end() && is_op(",")) {
        auto tup = make(Expr::Kind::Tuple, line);
        tup->args.push_back(std::move(first));
        while (!at_end() && is_op(",")) {
          next();
          if (!at_end() && is_op(")")) {
            break;
          }
          tup->args.push_back(parse_expr());
        }
        first = std::move(tup);
      }
      expect_op(")");
      return first;
    }
    if (is_op("[")) {
      next();
      auto l = make(Expr::Kind::List, line);
      while (!at_end() && !is_op("]")) {
        l->args.push_back(parse_expr());
        if (!at_end() && is_op(",")) {
          next();
          continue;
        }
        break;
      }
      expect_op("]");
      return l;
    }
    if (is_op("{")) {
      next();
      auto d = make(Expr::Kind::Dict, line);
      while (!at_end() && !is_op("}")) {
        d->args.push_back(parse_expr());
        expect_op(":");
        d->args.push_back(parse_expr());
        if (!at_end() && is_op(",")) {
          next();
          continue;
        }
        break;
      }
      expect_op("}");
      return d;
    }
    fail_at(line, "unexpected '" + t.text + "'");
  }

  ExprPtr parse_postfix(ExprPtr e) {
    ChainGuard chain(*this);
    for (;;) {
      if (at_end()) {
        return e;
      }
      chain.step();
      int line = cur_line();
      if (is_op(".")) {
        next();
        if (at_end()) {
          fail_at(line, "expected an attribute name after '.'");
        }
        if (peek().type == Token::Type::Name) {
          auto a = make(Expr::Kind::Attr, line);
          a->name = next().text;
          a->args.push_back(std::move(e));
          e = std::move(a);
        } else if (peek().type == Token::Type::Int) {
          auto idx = make(Expr::Kind::Literal, line);
          idx->value = Value(next().i);
          auto it = make(Expr::Kind::Item, line);
          it->args.push_back(std::move(e));
          it->args.push_back(std::move(idx));
          e = std::move(it);
        } else {
          fail_at(line, "expected an attribute name after '.'");
        }
      } else if (is_op("[")) {
        next();
        e = parse_subscript(std::move(e), line);
      } else if (is_op("(")) {
        e = parse_call(std::move(e), line);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, int line) {
    DepthGuard g(*this);
    ExprPtr start, stop, step;
    if (at_end()) {
      fail_at(line, "expected ']'");
    }
    if (!is_op(":")) {
      start = parse_expr();
      if (!at_end() && is_op("]")) {
        next();
        auto it = make(Expr::Kind::Item, line);
        it->args.push_back(std::move(obj));
        it->args.push_back(std::move(start));
        return it;
      }
    }
    expect_op(":");
    if (!at_end() && !is_op("]") && !is_op(":")) {
      stop = parse_expr();
    }
    if (!at_end() && is_op(":")) {
      next();
      if (!at_end() && !is_op("]")) {
        step = parse_expr();
      }
    }
    expect_op("]");
    auto s = make(Expr::Kind::Slice, line);
    s->args.push_back(std::move(obj));
    s->args.push_back(std::move(start));
    s->args.push_back(std::move(stop));
    s->args.push_back(std::move(step));
    return s;
  }

  // Call arguments after '(' into e->args (after what is already there) and e->kwargs.
  void parse_call_args(Expr &e) {
    expect_op("(");
    while (!at_end() && !is_op(")")) {
      if (is_op("*") || is_op("**")) {
        fail_at(e.line, "*args and **kwargs are not supported");
      }
      if (peek().type == Token::Type::Name && pos_ + 1 < toks_->size() &&
          (*toks_)[pos_ + 1].type == Token::Type::Op && (*toks_)[pos_ + 1].text == "=") {
        std::string name = next().text;
        next();
        e.kwargs.emplace_back(name, parse_expr());
      } else {
        if (!e.kwargs.empty()) {
          fail_at(e.line, "positional argument after keyword argument");
        }
        e.args.push_back(parse_expr());
      }
      if (!at_end() && is_op(",")) {
        next();
        continue;
      }
      break;
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee, int line) {
    DepthGuard g(*this);
    auto c = make(Expr::Kind::Call, line);
    c->args.push_back(std::move(callee));
    parse_call_args(*c);
    return c;
  }

  std::string dotted_name(int line, const char *what) {
    if (at_end() || peek().type != Token::Type::Name) {
      fail_at(line, std::string("expected a ") + what + " name");
    }
    std::string name = next().text;
    while (!at_end() && is_op(".")) {
      next();
      if (at_end() || peek().type != Token::Type::Name) {
        fail_at(line, std::string("expected a ") + what + " name");
      }
      name += "." + next().text;
    }
    return name;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    ChainGuard chain(*this);
    for (;;) {
      if (at_end()) {
        return e;
      }
      chain.step();
      int line = cur_line();
      if (is_op("|")) {
        next();
        DepthGuard g(*this);
        auto f = make(Expr::Kind::Filter, line);
        f->name = dotted_name(line, "filter");
        if (!is_known_filter(f->name)) {
          fail_at(line, "unknown filter '" + f->name + "'");
        }
        f->args.push_back(std::move(e));
        if (!at_end() && is_op("(")) {
          parse_call_args(*f);
        }
        e = std::move(f);
      } else if (is_name("is")) {
        next();
        DepthGuard g(*this);
        auto t = make(Expr::Kind::Test, line);
        if (!at_end() && is_name("not")) {
          next();
          t->negated = true;
        }
        t->name = dotted_name(line, "test");
        if (!is_known_test(t->name)) {
          fail_at(line, "unknown test '" + t->name + "'");
        }
        t->args.push_back(std::move(e));
        if (!at_end() && is_op("(")) {
          parse_call_args(*t);
        } else if (!at_end() && starts_primary() && !is_name("else") && !is_name("or") &&
                   !is_name("and")) {
          if (is_name("is")) {
            fail_at(line, "tests cannot be chained with 'is'");
          }
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        e = parse_call(std::move(e), line);
      } else {
        return e;
      }
    }
  }

  bool starts_primary() const {
    const Token &t = peek();
    return t.type == Token::Type::Name || t.type == Token::Type::String ||
           t.type == Token::Type::Int || t.type == Token::Type::Float ||
           (t.type == Token::Type::Op && (t.text == "(" || t.text == "[" || t.text == "{"));
  }

  // ---- token cursor over the current tag

  void begin_tag(const Item &it) {
    toks_ = &it.tokens;
    pos_ = 0;
    tag_line_ = it.line;
  }
  bool at_end() const { return pos_ >= toks_->size(); }
  const Token &peek() const { return (*toks_)[pos_]; }
  const Token &next() { return (*toks_)[pos_++]; }
  int cur_line() const {
    if (toks_ && pos_ < toks_->size()) {
      return (*toks_)[pos_].line;
    }
    if (toks_ && !toks_->empty()) {
      return toks_->back().line;
    }
    return tag_line_;
  }
  bool is_op(const char *op) const { return peek().type == Token::Type::Op && peek().text == op; }
  bool is_name(const char *name) const {
    return peek().type == Token::Type::Name && peek().text == name;
  }
  void expect_op(const char *op) {
    if (at_end()) {
      fail_at(cur_line(), std::string("expected '") + op + "' before the end of the tag");
    }
    if (!is_op(op)) {
      fail_at(cur_line(), std::string("expected '") + op + "', got '" + peek().text + "'");
    }
    next();
  }
  void expect_end() {
    if (!at_end()) {
      fail_at(cur_line(), "unexpected '" + peek().text + "'");
    }
  }

  std::vector<Item> items_;
  size_t ip_ = 0;
  const std::vector<Token> *toks_ = nullptr;
  size_t pos_ = 0;
  int tag_line_ = 1;
  int expr_depth_ = 0, block_depth_ = 0, loop_depth_ = 0;
};

}  // namespace

Program parse(const std::string &source) {
  Lexer lexer(source);
  Parser parser(lexer.run());
  return parser.run();
}

}  // namespace lmkit::jinja
