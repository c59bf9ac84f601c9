// Helpers for the compress tests: logits of a model over a token sequence, error measures, the
// reference models and a random model whose matrices fit the K-quants. Not a test by itself.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compress/gguf_export.h"
#include "compress/quantize.h"
#include "core/mmap.h"
#include "model/decoder.h"
#include "model/loader.h"
#include "test_util.h"
#include "train/init.h"

namespace lmkit::test {

inline std::string ref_dir() {
  return std::string(LMKIT_BUILD_DIR) + "/reference";
}

// The HF reference models of every family (tests/reference/make_models.py).
inline const std::vector<std::string> &ref_models() {
  static const std::vector<std::string> m = {"llama_gqa_tied",      "llama_untied_scaled",
                                             "llama_linear_scaled", "mistral_swa",
                                             "qwen2_bias",          "gpt2"};
  return m;
}

inline nlohmann::json ref_expected(const std::string &model) {
  return nlohmann::json::parse(read_file(ref_dir() + "/" + model + "/expected.json"));
}

inline std::vector<int32_t> ref_prompt(const std::string &model) {
  return ref_expected(model).at("prompt_ids").get<std::vector<int32_t>>();
}

// Logits (n, vocab) at every position of `tokens`, two threads.
inline std::vector<float> logits_all(const Model &m, const std::vector<int32_t> &tokens) {
  ThreadPool pool(2);
  State st(m, int64_t(tokens.size()) + 1, 64);
  std::vector<float> out(tokens.size() * size_t(m.config().n_vocab));
  m.forward(st, tokens, 0, out.data(), /*all_logits=*/true, pool);
  return out;
}

// sqrt(sum (a-b)^2 / sum b^2): the error of a relative to the reference b.
inline double rel_rms(const std::vector<float> &a, const std::vector<float> &b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num / den);
}

// max |a-b| / max |b|.
inline double rel_max(const std::vector<float> &a, const std::vector<float> &b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0, s = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
    s = std::max(s, std::fabs(double(b[i])));
  }
  return m / s;
}

inline bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

// A llama with every matrix row a multiple of 256 (so each block type applies as asked), half
// RoPE pairing as Hugging Face checkpoints have, and GPT-2-style random weights whose scale is
// varied per row (real weights have rows of very different norms).
inline std::shared_ptr<const Model> kquant_model(bool tied, uint64_t seed) {
  ModelConfig c;
  c.arch = "llama";
  c.n_vocab = 512;
  c.n_embd = 256;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.head_dim = 64;
  c.n_ff = 512;
  c.n_ctx_train = 128;
  c.rope_dim = 64;
  c.rope_style = kernels::RopeStyle::Half;
  c.tied_embeddings = tied;
  Weights w = weights_init(c, seed);
  for (auto &[name, t] : w.table) {
    if (t.ndim() != 2) continue;
    const int64_t rows = t.dim(0), cols = t.dim(1);
    std::vector<float> s = random_floats(size_t(rows), seed * 31 + uint64_t(cols), 1.0f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < cols; ++k) t.f32()[r * cols + k] *= 1.0f + 0.8f * s[size_t(r)];
  }
  return std::make_shared<const Model>(c, std::move(w));
}

// Every dtype `lmkit quantize --type` takes.
inline const std::vector<DType> &all_types() {
  static const std::vector<DType> t = {DType::Q8_0, DType::Q6_K, DType::Q5_K, DType::Q5_1,
                                       DType::Q5_0, DType::Q4_K, DType::Q4_1, DType::Q4_0,
                                       DType::F16,  DType::BF16, DType::F32};
  return t;
}

}  // namespace lmkit::test
