// Helpers shared by the tests: where the shared models live, temp folders, comparisons.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

namespace lmkit::test {

// ../shared beside the checkout (or $LMKIT_SHARED_DIR); "" when absent.
inline std::string shared_dir() {
  const char *env = std::getenv("LMKIT_SHARED_DIR");
  std::string d = env && *env ? env : LMKIT_SHARED_DIR_DEFAULT;
  return std::filesystem::is_directory(d) ? d : std::string();
}

// Skips the current test with a clear message when the shared folder is missing.
#define LMKIT_REQUIRE_SHARED()                                                               \
  do {                                                                                       \
    if (::lmkit::test::shared_dir().empty())                                                 \
      GTEST_SKIP() << "../shared (models and vocabularies) not found; set LMKIT_SHARED_DIR"; \
  } while (0)

// A fresh empty folder under the build tree, removed when the object dies.
class TempDir {
 public:
  explicit TempDir(const std::string &tag) {
    path_ = std::filesystem::path(LMKIT_BUILD_DIR) / "test-tmp" /
            (tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string &name) const { return (path_ / name).string(); }

 private:
  static int &counter() {
    static int c = 0;
    return c;
  }
  std::filesystem::path path_;
};

// Normalised mean squared error: sum((a-b)^2) / sum(a^2) (0 when both are zero).
inline double nmse(const float *a, const float *b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(a[i]) * double(a[i]);
  }
  if (den == 0) return num;
  return num / den;
}
inline double nmse(const std::vector<float> &a, const std::vector<float> &b) {
  EXPECT_EQ(a.size(), b.size());
  return nmse(a.data(), b.data(), std::min(a.size(), b.size()));
}

// Deterministic pseudo-random floats in [-scale, scale).
inline std::vector<float> random_floats(size_t n, uint64_t seed, float scale = 1.0f) {
  std::vector<float> v(n);
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto &x : v) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    x = (float((s >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f) * scale;
  }
  return v;
}

}  // namespace lmkit::test
