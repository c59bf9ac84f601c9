// Initialisation through the loader: a TensorSource that makes each tensor the loader asks for.
#include "train/init.h"

#include <cmath>

#include "core/rng.h"

namespace lmkit {

namespace {

class InitSource : public TensorSource {
 public:
  InitSource(const ModelConfig &c, uint64_t seed) : c_(c), seed_(seed) {}

  std::optional<Tensor> get(const std::string &) const override { return std::nullopt; }
  std::optional<Tensor> get(const std::string &name, const Shape &shape) const override {
    Tensor t = Tensor::zeros(DType::F32, shape);
    float *p = t.f32();
    const int64_t n = t.numel();
    auto ends = [&](const char *s) {
      const std::string suf(s);
      return name.size() >= suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0;
    };
    if (ends("norm.weight")) {
      for (int64_t i = 0; i < n; ++i) p[i] = 1.0f;
    } else if (!ends(".bias")) {
      // Each tensor gets its own stream (seed, name), so adding a tensor changes no other one.
      uint64_t h = 1469598103934665603ull;
      for (char ch : name) h = (h ^ uint8_t(ch)) * 1099511628211ull;
      Rng rng(seed_ ^ h);
      const bool residual_out = ends("attn_output.weight") || ends("ffn_down.weight");
      const double std = 0.02 / (residual_out ? std::sqrt(2.0 * double(c_.n_layer)) : 1.0);
      for (int64_t i = 0; i < n; i += 2) {  // Box-Muller, two normals per draw
        double u1 = std::max(rng.uniform_double(), 1e-300), u2 = rng.uniform_double();
        double r = std::sqrt(-2.0 * std::log(u1));
        p[i] = float(std * r * std::cos(2 * M_PI * u2));
        if (i + 1 < n) p[i + 1] = float(std * r * std::sin(2 * M_PI * u2));
      }
    }
    return t;
  }
  bool has(const std::string &name) const override {
    if (name.find("attn_qkv") != std::string::npos) return c_.arch == "gpt2";
    return name.find("rope_freqs") == std::string::npos;
  }
  std::string describe(const std::string &name) const override { return "init: " + name; }

 private:
  const ModelConfig &c_;
  uint64_t seed_;
};

}  // namespace

Weights weights_init(const ModelConfig &c, uint64_t seed) {
  return weights_load(c, InitSource(c, seed));
}

}  // namespace lmkit
