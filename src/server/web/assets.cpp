// web assets: lookup over the table generated from static/ (embed_assets.cmake writes
// web_assets_gen.cpp, which defines all_assets()). Not the table itself and not HTTP.
#include "server/web/assets.h"

namespace lmkit::web {

const Asset *find_asset(std::string_view url_path) {
  size_t cut = url_path.find_first_of("?#");
  if (cut != std::string_view::npos) url_path = url_path.substr(0, cut);
  if (url_path.empty() || url_path.front() != '/') return nullptr;
  if (url_path == "/") url_path = "/index.html";
  for (const Asset &a : all_assets())
    if (a.path == url_path) return &a;
  return nullptr;
}

}  // namespace lmkit::web
