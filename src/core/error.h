// lmkit::Error: the one exception type lmkit throws, with a message a user can act on.
// Not a logging facility: the CLI turns an Error into one line on stderr and exit code 1.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace lmkit {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string &msg) : std::runtime_error(msg) {}
};

// Concatenates its arguments with operator<< ("tensor '", name, "' has ", n, " dims").
template <typename... Args>
std::string str_cat(Args &&...args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

template <typename... Args>
[[noreturn]] void fail(Args &&...args) {
  throw Error(str_cat(std::forward<Args>(args)...));
}

}  // namespace lmkit

// LMKIT_CHECK(cond, "message parts", ...): throws lmkit::Error when cond is false.
#define LMKIT_CHECK(cond, ...)    \
  do {                            \
    if (!(cond)) [[unlikely]]     \
      ::lmkit::fail(__VA_ARGS__); \
  } while (0)
