// Hook names and dispatch.
#include "model/hooks.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"

namespace lmkit {

namespace {

// Suffix after "blocks.L." for each block point (LnFinal is outside the blocks).
constexpr const char *kSuffix[] = {
    "hook_resid_pre",
    "ln1.hook_normalized",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_rot_q",
    "attn.hook_rot_k",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_normalized",
    "mlp.hook_pre",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
    "ln_final.hook_normalized",
};
static_assert(sizeof(kSuffix) / sizeof(kSuffix[0]) == size_t(HookPoint::Count));

}  // namespace

std::string hook_name(HookPoint p, int64_t layer) {
  if (p == HookPoint::LnFinal) return kSuffix[int(p)];
  return "blocks." + std::to_string(layer) + "." + kSuffix[int(p)];
}

void Hooks::add(const std::string &name, HookFn fn) {
  if (name == kSuffix[int(HookPoint::LnFinal)]) {
    fns_[size_t(HookPoint::LnFinal)].push_back({-1, std::move(fn)});
    ++n_;
    return;
  }
  const std::string pre = "blocks.";
  LMKIT_CHECK(name.rfind(pre, 0) == 0, "unknown hook '", name,
              "' (expected blocks.L.<point> or ln_final.hook_normalized)");
  size_t dot = name.find('.', pre.size());
  LMKIT_CHECK(dot != std::string::npos, "unknown hook '", name, "'");
  std::string l = name.substr(pre.size(), dot - pre.size());
  int64_t layer = -1;
  if (l != "*") {
    LMKIT_CHECK(
        !l.empty() && l.size() < 7 &&
            std::all_of(l.begin(), l.end(), [](char c) { return std::isdigit(uint8_t(c)); }),
        "hook '", name, "': layer must be a number or *");
    layer = std::stoll(l);
  }
  std::string suffix = name.substr(dot + 1);
  for (int p = 0; p < int(HookPoint::LnFinal); ++p) {
    if (suffix == kSuffix[p]) {
      fns_[size_t(p)].push_back({layer, std::move(fn)});
      ++n_;
      return;
    }
  }
  fail("unknown hook point '", suffix, "' in '", name, "'");
}

void Hooks::clear() {
  for (auto &v : fns_) v.clear();
  n_ = 0;
}

void Hooks::fire(const HookEvent &ev) const {
  for (const auto &e : fns_[size_t(ev.point)])
    if (e.layer < 0 || e.layer == ev.layer) e.fn(ev);
}

std::vector<std::string> Hooks::names(int64_t n_layer) {
  std::vector<std::string> out;
  for (int64_t l = 0; l < n_layer; ++l)
    for (int p = 0; p < int(HookPoint::LnFinal); ++p) out.push_back(hook_name(HookPoint(p), l));
  out.push_back(hook_name(HookPoint::LnFinal, -1));
  return out;
}

}  // namespace lmkit
