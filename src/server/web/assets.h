// web assets: the chat page's static files (src/server/web/static), compiled into the binary and
// looked up by URL path for `lmkit serve`'s GET routes. Not an HTTP handler and not a file
// server: it never touches the disk, sets no caching headers and knows nothing of requests.
#pragma once

#include <span>
#include <string_view>

namespace lmkit::web {

struct Asset {
  std::string_view path;          // URL path, e.g. "/index.html"
  std::string_view content_type;  // e.g. "text/html; charset=utf-8"
  std::string_view body;          // the file's bytes
};

// The asset for a URL path: "/" is "/index.html"; a query ("?...") or fragment ("#...") is
// ignored. Returns nullptr for an unknown path, anything outside the root, or a path with "..".
const Asset *find_asset(std::string_view url_path);

// Every embedded asset, sorted by path.
std::span<const Asset> all_assets();

}  // namespace lmkit::web
