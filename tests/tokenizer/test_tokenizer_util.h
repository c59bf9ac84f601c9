// Helpers for the tokenizer tests: the shared conformance vectors (.inp/.out) and a report of
// the inputs a tokenizer gets wrong. Not a test by itself.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/mmap.h"
#include "io/gguf.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace lmkit::test {

struct VocabCase {
  std::string text;
  std::vector<int32_t> ids;
};

inline std::string vocab_path(const std::string &name) {
  return shared_dir() + "/tokenizers/ggml-vocab-" + name + ".gguf";
}

// NAME.gguf.inp: each string followed by "\n__ggml_vocab_test__\n"; NAME.gguf.out: one line of
// ids per string.
inline std::vector<VocabCase> load_vocab_cases(const std::string &name) {
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::string inp = read_file(vocab_path(name) + ".inp");
  std::string out = read_file(vocab_path(name) + ".out");
  std::vector<VocabCase> cases;
  size_t pos = 0;
  while (pos < inp.size()) {
    size_t k = inp.find(sep, pos);
    if (k == std::string::npos) break;
    cases.push_back({inp.substr(pos, k - pos), {}});
    pos = k + sep.size();
  }
  size_t line = 0, lpos = 0;
  while (lpos < out.size() && line < cases.size()) {
    size_t e = out.find('\n', lpos);
    if (e == std::string::npos) e = out.size();
    std::string l = out.substr(lpos, e - lpos);
    size_t i = 0;
    while (i < l.size()) {
      while (i < l.size() && l[i] == ' ') ++i;
      if (i >= l.size()) break;
      size_t j = i;
      while (j < l.size() && l[j] != ' ') ++j;
      cases[line].ids.push_back(int32_t(std::stol(l.substr(i, j - i))));
      i = j;
    }
    ++line;
    lpos = e + 1;
  }
  EXPECT_EQ(line, cases.size()) << name << ": .inp and .out disagree on the number of cases";
  return cases;
}

inline std::string ids_str(const std::vector<int32_t> &ids) {
  std::string s;
  for (int32_t id : ids) s += " " + std::to_string(id);
  return s;
}

// Runs every case with add_special=false, parse_special=false; returns a report of failures
// ("" when all pass).
inline std::string conformance_report(const Tokenizer &tok, const std::vector<VocabCase> &cases) {
  std::string report;
  for (size_t k = 0; k < cases.size(); ++k) {
    std::vector<int32_t> got = tok.encode(cases[k].text, false, false);
    if (got != cases[k].ids) {
      std::string shown = nlohmann::json(cases[k].text).dump();
      report += "case " + std::to_string(k) + " " + shown +
                "\n  expected:" + ids_str(cases[k].ids) + "\n  got:     " + ids_str(got) + "\n";
    }
  }
  return report;
}

inline void write_text(const std::string &path, const std::string &text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

}  // namespace lmkit::test
