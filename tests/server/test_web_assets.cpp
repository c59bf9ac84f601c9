// The chat page's embedded files: every file under src/server/web/static is in the binary byte
// for byte, with its content type, and only those paths resolve.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "server/web/assets.h"

namespace lmkit::web {
namespace {

namespace fs = std::filesystem;

TEST(WebAssets, EveryStaticFileIsEmbeddedByteForByte) {
  const fs::path root = fs::path(LMKIT_SOURCE_DIR) / "src/server/web/static";
  size_t n = 0;
  for (const auto &e : fs::recursive_directory_iterator(root)) {
    if (!e.is_regular_file()) continue;
    ++n;
    const std::string url = "/" + fs::relative(e.path(), root).generic_string();
    const Asset *a = find_asset(url);
    ASSERT_NE(a, nullptr) << url;
    std::ifstream f(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    EXPECT_EQ(a->body, ss.str()) << url;
  }
  EXPECT_EQ(all_assets().size(), n);
  EXPECT_GE(n, 2u);
}

TEST(WebAssets, LookupRules) {
  const Asset *index = find_asset("/index.html");
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(find_asset("/"), index);
  EXPECT_EQ(find_asset("/?theme=dark"), index);
  EXPECT_EQ(index->content_type, "text/html; charset=utf-8");
  ASSERT_NE(find_asset("/app.js"), nullptr);
  EXPECT_NE(find_asset("/app.js")->content_type.find("javascript"), std::string_view::npos);
  EXPECT_EQ(find_asset("/nothing.html"), nullptr);
  EXPECT_EQ(find_asset("/../CMakeLists.txt"), nullptr);
  EXPECT_EQ(find_asset("index.html"), nullptr);
}

}  // namespace
}  // namespace lmkit::web
