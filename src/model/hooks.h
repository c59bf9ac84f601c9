// Hook points: named places in the forward pass where activations are produced, with
// TransformerLens names ("blocks.3.hook_resid_post", "blocks.0.attn.hook_pattern"). A callback
// can read the value and may overwrite it in place (patching); the forward pass then continues
// with the patched value. Free when nobody listens: one pointer test per point.
// Not an activation store: analysis/ builds caches on top of these callbacks.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace lmkit {

enum class HookPoint : int {
  ResidPre,     // blocks.L.hook_resid_pre        (n, d_model)  residual stream entering block L
  Ln1,          // blocks.L.ln1.hook_normalized   (n, d_model)
  AttnQ,        // blocks.L.attn.hook_q           (n, n_head, d_head)     before RoPE
  AttnK,        // blocks.L.attn.hook_k           (n, n_head_kv, d_head)  before RoPE
  AttnV,        // blocks.L.attn.hook_v           (n, n_head_kv, d_head)
  AttnRotQ,     // blocks.L.attn.hook_rot_q       (n, n_head, d_head)     after RoPE
  AttnRotK,     // blocks.L.attn.hook_rot_k       (n, n_head_kv, d_head)  after RoPE
  AttnPattern,  // blocks.L.attn.hook_pattern     (n_head, n, n_kv) softmax probabilities
  AttnZ,        // blocks.L.attn.hook_z           (n, n_head, d_head)  per-head attention output
  AttnOut,      // blocks.L.hook_attn_out         (n, d_model)  after the output projection
  ResidMid,     // blocks.L.hook_resid_mid        (n, d_model)
  Ln2,          // blocks.L.ln2.hook_normalized   (n, d_model)
  MlpPre,       // blocks.L.mlp.hook_pre          (n, d_mlp)  gate (SwiGLU) or up projection
  MlpPost,      // blocks.L.mlp.hook_post         (n, d_mlp)  after the activation (and gating)
  MlpOut,       // blocks.L.hook_mlp_out          (n, d_model)
  ResidPost,    // blocks.L.hook_resid_post       (n, d_model)
  LnFinal,      // ln_final.hook_normalized       (n, d_model)  (layer -1)
  Count
};

// The TransformerLens-style name of a point at a layer ("blocks.2.hook_mlp_out").
std::string hook_name(HookPoint p, int64_t layer);

struct HookEvent {
  HookPoint point;
  int64_t layer;             // -1 for points outside the blocks
  Tensor value;              // a view of the live activation: writes patch the forward pass
  const int32_t *positions;  // (n) absolute position of each row/query
  int64_t n_tokens;
};

using HookFn = std::function<void(const HookEvent &)>;

class Hooks {
 public:
  // Registers fn for a name: "blocks.3.hook_resid_post", "blocks.*.attn.hook_pattern" (every
  // layer) or "ln_final.hook_normalized". Throws lmkit::Error for an unknown name.
  void add(const std::string &name, HookFn fn);
  void clear();
  bool empty() const { return n_ == 0; }

  // True when someone listens at (p, layer). Cheap: called at every point of every layer.
  bool wants(HookPoint p, int64_t layer) const {
    const auto &v = fns_[size_t(p)];
    if (v.empty()) return false;
    for (const auto &e : v)
      if (e.layer < 0 || e.layer == layer) return true;
    return false;
  }
  void fire(const HookEvent &ev) const;

  // Every hook name a model with n_layer blocks offers.
  static std::vector<std::string> names(int64_t n_layer);

 private:
  struct Entry {
    int64_t layer;  // -1: every layer
    HookFn fn;
  };
  std::array<std::vector<Entry>, size_t(HookPoint::Count)> fns_;
  int n_ = 0;
};

}  // namespace lmkit
