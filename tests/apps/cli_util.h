// Running the lmkit binary from tests: capture exit code, stdout and stderr; check one-line errors.
#pragma once

#include <sys/wait.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "test_util.h"

namespace lmkit::test {

struct CliRun {
  int code;
  std::string out, err;
};

inline std::string slurp(const std::string &p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Runs `[ENV...] lmkit ARGS` through the shell (args are shell words) with stdin_text as input.
// A process killed by a signal reports 128 + the signal number.
inline CliRun lmkit(const std::string &args, const std::string &stdin_text = "",
                    const std::string &env = "") {
  TempDir dir("cli");
  const std::string in = dir / "in", out = dir / "out", err = dir / "err";
  std::ofstream(in) << stdin_text;
  const std::string cmd = env + (env.empty() ? "" : " ") + std::string(LMKIT_BUILD_DIR) +
                          "/lmkit " + args + " <" + in + " >" + out + " 2>" + err;
  const int st = std::system(cmd.c_str());
  // The shell reports a child killed by signal S as exit code 128 + S.
  return {WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), slurp(out), slurp(err)};
}

// An error is exactly one line on stderr starting "lmkit: error: ", and exit code 1.
inline void expect_clean_error(const CliRun &r, const std::string &needle) {
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind("lmkit: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
}

}  // namespace lmkit::test
