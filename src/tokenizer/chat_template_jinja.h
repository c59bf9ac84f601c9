// Internals of the chat-template interpreter: values, the syntax tree, the parser and the renderer
// that chat_template.cpp drives. Not a public API: only chat_template*.cpp include this file.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "tokenizer/chat_template.h"

namespace lmkit::jinja {

// ---------------------------------------------------------------------------------------------
// Values. Python semantics (what Hugging Face's Jinja sees), immutable except namespaces: lists and
// dicts are shared, never mutated in place, which is what ImmutableSandboxedEnvironment allows.

struct Value;
struct ListData;
struct DictData;
struct NamespaceData;
struct LoopData;
struct Callable;

// jinja2.Undefined: falsy, renders as "", iterates as empty; reading from it is an error. `hint`
// names what was looked up, for that error's message.
struct Undefined {
  std::shared_ptr<const std::string> hint;
};
struct None {};

using Str = std::shared_ptr<const std::string>;
using ListPtr = std::shared_ptr<const ListData>;
using DictPtr = std::shared_ptr<const DictData>;
using NamespacePtr = std::shared_ptr<NamespaceData>;
using LoopPtr = std::shared_ptr<const LoopData>;
using CallablePtr = std::shared_ptr<const Callable>;

struct Value {
  std::variant<Undefined, None, bool, int64_t, double, Str, ListPtr, DictPtr, NamespacePtr, LoopPtr,
               CallablePtr>
      v;

  Value() = default;
  Value(None n) : v(n) {}
  Value(bool b) : v(b) {}
  Value(int64_t i) : v(i) {}
  Value(double d) : v(d) {}
  Value(Str s) : v(std::move(s)) {}
  Value(ListPtr l) : v(std::move(l)) {}
  Value(DictPtr d) : v(std::move(d)) {}
  Value(NamespacePtr n) : v(std::move(n)) {}
  Value(LoopPtr l) : v(std::move(l)) {}
  Value(CallablePtr c) : v(std::move(c)) {}
  Value(Undefined u) : v(std::move(u)) {}

  bool is_undefined() const { return std::holds_alternative<Undefined>(v); }
  bool is_none() const { return std::holds_alternative<None>(v); }
  bool is_bool() const { return std::holds_alternative<bool>(v); }
  bool is_int() const { return std::holds_alternative<int64_t>(v); }
  bool is_float() const { return std::holds_alternative<double>(v); }
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return std::holds_alternative<Str>(v); }
  bool is_list() const { return std::holds_alternative<ListPtr>(v); }
  bool is_dict() const { return std::holds_alternative<DictPtr>(v); }
  bool is_namespace() const { return std::holds_alternative<NamespacePtr>(v); }
  bool is_loop() const { return std::holds_alternative<LoopPtr>(v); }
  bool is_callable() const { return std::holds_alternative<CallablePtr>(v); }

  const std::string &str() const { return *std::get<Str>(v); }
  const ListData &list() const { return *std::get<ListPtr>(v); }
  const DictData &dict() const { return *std::get<DictPtr>(v); }
};

// Lists and dicts record how deeply they nest, so a template cannot build a value whose
// recursive walk (==, repr, tojson, destruction) would exhaust the stack.
constexpr int kMaxValueDepth = 256;

struct ListData {
  std::vector<Value> items;
  bool tuple = false;  // renders as (a, b), as Python prints tuples
  int depth = 1;
};

// Insertion-ordered, as Python dicts and the JSON they come from.
struct DictData {
  std::vector<std::pair<std::string, Value>> items;
  int depth = 1;
  const Value *find(std::string_view key) const;
};

struct NamespaceData {
  std::vector<std::pair<std::string, Value>> attrs;
  const Value *find(std::string_view key) const;
  void set(const std::string &key, Value value);
};

// The `loop` variable of a for loop.
struct LoopData {
  int64_t index0 = 0, length = 0, depth0 = 0;
  Value previtem, nextitem;  // Undefined at the ends
};

// Something a template can call: a global function, a bound method ("abc".strip), a macro.
struct MacroNode;
struct Callable {
  enum class Kind { Global, Method, Macro };
  Kind kind = Kind::Global;
  std::string name;
  Value self;                        // the bound object of a method
  const MacroNode *macro = nullptr;  // Kind::Macro
};

Value make_str(std::string s);
// Throw lmkit::Error when the result would nest deeper than kMaxValueDepth.
Value make_list(std::vector<Value> items, bool tuple = false);
Value make_dict(std::vector<std::pair<std::string, Value>> items);
Value make_undefined(std::string hint);

// The work a render may do and the size of any string it builds. Walks over values charge it
// too: lists can share sublists ([l, l] nested n times), so a walk can cost 2^n without it.
struct Budget {
  int64_t steps = 0;
  int64_t max_steps = std::numeric_limits<int64_t>::max();
  int64_t max_bytes = std::numeric_limits<int64_t>::max();
  int line = 0;  // where the render is, for the error message
  void charge(int64_t n = 1) {
    steps += n;
    if (steps > max_steps) {
      exceeded_steps();
    }
  }
  void check_bytes(size_t n) const {
    if (int64_t(n) > max_bytes) {
      exceeded_bytes(n);
    }
  }
  [[noreturn]] void exceeded_steps() const;
  [[noreturn]] void exceeded_bytes(size_t n) const;
};

bool truthy(const Value &v);
std::string type_name(const Value &v);
// Python's str() and repr(); Undefined prints as "" (str) or "Undefined" (repr).
std::string to_str(const Value &v, Budget &budget);
std::string repr(const Value &v, Budget &budget);
std::string format_float(double d);  // Python's repr(float): "1.0", "0.1", "1e+16"
bool equals(const Value &a, const Value &b, Budget &budget);

struct JsonOptions {
  std::string indent;  // per level; used when has_indent
  bool has_indent = false;
  std::string item_sep = ", ", key_sep = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;
};
// Python's json.dumps. Throws std::runtime_error (no line) for values JSON cannot hold.
void json_dump(const Value &v, const JsonOptions &opt, std::string &out, Budget &budget,
               int level = 0);

// UTF-8 helpers: strings index, slice and count by code point, as Python does. A byte that does not
// start a valid sequence counts as one code point, so no input is rejected.
std::vector<size_t> utf8_offsets(std::string_view s);  // start of each code point, then s.size()
size_t utf8_length(std::string_view s);
uint32_t utf8_decode_at(std::string_view s, size_t pos, size_t *len);
bool is_py_space(uint32_t cp);  // str.isspace()

// ---------------------------------------------------------------------------------------------
// Syntax tree.

enum class BinOp { Add, Sub, Mul, Div, FloorDiv, Mod, Pow, Concat };
enum class CmpOp { Eq, Ne, Lt, Le, Gt, Ge, In, NotIn };

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal,  // value
    Name,     // name
    List,     // args: items
    Tuple,    // args: items
    Dict,     // args: key0, value0, key1, value1, ...
    Attr,     // args[0].name
    Item,     // args[0][args[1]]
    Slice,    // args[0][args[1]:args[2]:args[3]], absent parts null
    Call,     // args[0](args[1..], kwargs)
    Filter,   // args[0] | name(args[1..], kwargs)
    Test,     // args[0] is [not] name(args[1..])
    Not,      // not args[0]
    Neg,      // -args[0]
    Pos,      // +args[0]
    Binary,   // args[0] binop args[1]
    And,      // args[0] and args[1]
    Or,       // args[0] or args[1]
    Compare,  // args[0] cmp[0] args[1] cmp[1] args[2] ...
    Cond,     // args[0] if args[1] else args[2] (null: undefined)
  };
  Kind kind = Kind::Literal;
  int line = 1;
  Value value;
  std::string name;
  BinOp binop = BinOp::Add;
  bool negated = false;
  std::vector<CmpOp> cmp;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

struct MacroNode {
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // one per param, null when it has none
  Body body;
};

struct Node {
  enum class Kind { Text, Output, If, For, Set, SetAttr, SetBlock, Break, Continue, Macro };
  Kind kind = Kind::Text;
  int line = 1;
  std::string text;                  // Text
  ExprPtr expr;                      // Output, Set/SetAttr value, For iterable
  std::vector<std::string> targets;  // For loop names, Set names, SetAttr {object, attribute}
  bool unpack = false;               // Set/For: targets came as a tuple ("a, b")
  ExprPtr filter;                    // For: "if" condition
  std::vector<std::pair<ExprPtr, Body>> branches;  // If: condition and body, in order
  Body body, else_body;                            // For, SetBlock; If/For else
  std::unique_ptr<MacroNode> macro;                // Macro
};

struct Program {
  Body body;
};

// Throws lmkit::Error("chat template: line L: ...").
Program parse(const std::string &source);

// Renders with `vars` as the template's variables (messages, bos_token, ...).
std::string render(const Program &program, const std::vector<std::pair<std::string, Value>> &vars,
                   const ChatTemplateLimits &limits);

bool is_known_filter(std::string_view name);
bool is_known_test(std::string_view name);

}  // namespace lmkit::jinja
