// Running the lmkit binary from tests: capture exit code, stdout and stderr; check one-line errors.
#pragma once

#include <sys/wait.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
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

// A small story corpus, a byte-level BPE tokenizer trained on it and its token shards, made once
// per test binary and tag (under the build tree, kept until exit); returns the data folder.
inline const std::string &story_data(const std::string &tag, int64_t bytes, int vocab) {
  struct Made {
    std::unique_ptr<TempDir> dir;  // removed at exit
    std::string data;
  };
  static std::map<std::string, Made> made;
  auto it = made.find(tag);
  if (it != made.end()) return it->second.data;
  auto dir = std::make_unique<TempDir>(tag);
  const std::string d = dir->str();
  EXPECT_EQ(
      lmkit("data stories --out " + d + "/s.txt --bytes " + std::to_string(bytes) + " --seed 3")
          .code,
      0);
  EXPECT_EQ(lmkit("tokenizer train -i " + d + "/s.txt -o " + d + "/tok --vocab-size " +
                  std::to_string(vocab))
                .code,
            0);
  CliRun r = lmkit("data prepare --tokenizer " + d + "/tok --input " + d + "/s.txt --out " + d +
                   "/data --val-fraction 0.1");
  EXPECT_EQ(r.code, 0) << r.err;
  Made &m = made[tag];
  m.dir = std::move(dir);
  m.data = d + "/data";
  return m.data;
}

// An error is exactly one line on stderr starting "lmkit: error: ", and exit code 1.
inline void expect_clean_error(const CliRun &r, const std::string &needle) {
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind("lmkit: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
}

}  // namespace lmkit::test
