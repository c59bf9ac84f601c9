// The same weights written as llama2.c v0 (shared and separate classifier), llama2.c v1 and GGUF
// give identical logits: the header variants and tensor orders are read correctly.
#include <cstring>
#include <fstream>

#include "io/gguf.h"
#include "model/loader.h"
#include "runtime/session.h"
#include "test_util.h"

namespace lmkit {
namespace {

struct Dims {
  int32_t dim = 16, hidden = 40, layers = 2, heads = 4, kv_heads = 2, vocab = 48, seq = 32;
};

// All arrays of a random llama model, keyed by canonical name, in f32.
std::map<std::string, std::vector<float>> random_llama(const Dims &d, bool separate_cls) {
  const int32_t kv = d.dim / d.heads * d.kv_heads;
  std::map<std::string, std::vector<float>> w;
  uint64_t seed = 1;
  auto add = [&](const std::string &n, size_t count, float scale, float offset = 0) {
    auto v = test::random_floats(count, seed++, scale);
    for (auto &x : v) x += offset;
    w[n] = v;
  };
  add("token_embd.weight", size_t(d.vocab * d.dim), 1.0f);
  for (int l = 0; l < d.layers; ++l) {
    std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", size_t(d.dim), 0.2f, 1.0f);
    add(p + "attn_q.weight", size_t(d.dim * d.dim), 0.3f);
    add(p + "attn_k.weight", size_t(kv * d.dim), 0.3f);
    add(p + "attn_v.weight", size_t(kv * d.dim), 0.3f);
    add(p + "attn_output.weight", size_t(d.dim * d.dim), 0.3f);
    add(p + "ffn_norm.weight", size_t(d.dim), 0.2f, 1.0f);
    add(p + "ffn_gate.weight", size_t(d.hidden * d.dim), 0.3f);
    add(p + "ffn_down.weight", size_t(d.dim * d.hidden), 0.3f);
    add(p + "ffn_up.weight", size_t(d.hidden * d.dim), 0.3f);
  }
  add("output_norm.weight", size_t(d.dim), 0.2f, 1.0f);
  if (separate_cls) add("output.weight", size_t(d.vocab * d.dim), 0.5f);
  return w;
}

void append(std::string &out, const std::vector<float> &v) {
  out.append(reinterpret_cast<const char *>(v.data()), v.size() * 4);
}

// llama2.c export.py legacy_export (v0) or version1_export (v1) layout.
void write_llama2c(const std::string &path, const Dims &d,
                   std::map<std::string, std::vector<float>> &w, int version) {
  const bool shared = !w.count("output.weight");
  std::string out;
  auto per_layer = [&](const char *suffix) {
    for (int l = 0; l < d.layers; ++l) append(out, w["blk." + std::to_string(l) + "." + suffix]);
  };
  int32_t hdr[7] = {d.dim, d.hidden, d.layers, d.heads, d.kv_heads, d.vocab, d.seq};
  if (version == 0) {
    if (!shared) hdr[5] = -d.vocab;
    out.append(reinterpret_cast<const char *>(hdr), sizeof hdr);
    append(out, w["token_embd.weight"]);
    for (const char *s : {"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
                          "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight",
                          "ffn_down.weight", "ffn_up.weight"})
      per_layer(s);
    append(out, w["output_norm.weight"]);
    out.append(size_t(d.seq * (d.dim / d.heads / 2) * 2 * 4), '\0');  // freq_cis_real, imag
  } else {
    uint32_t magic = 0x616b3432;
    int32_t ver = 1;
    out.append(reinterpret_cast<const char *>(&magic), 4);
    out.append(reinterpret_cast<const char *>(&ver), 4);
    out.append(reinterpret_cast<const char *>(hdr), sizeof hdr);
    out.push_back(char(shared ? 1 : 0));
    out.resize(256, '\0');
    per_layer("attn_norm.weight");
    per_layer("ffn_norm.weight");
    append(out, w["output_norm.weight"]);
    append(out, w["token_embd.weight"]);
    for (const char *s : {"attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
                          "ffn_gate.weight", "ffn_down.weight", "ffn_up.weight"})
      per_layer(s);
  }
  if (!shared) append(out, w["output.weight"]);
  std::ofstream(path, std::ios::binary).write(out.data(), std::streamsize(out.size()));
}

void write_gguf(const std::string &path, const Dims &d,
                std::map<std::string, std::vector<float>> &w) {
  GGUFWriter g;
  g.set_str("general.architecture", "llama");
  g.set_u32("llama.context_length", uint32_t(d.seq));
  g.set_u32("llama.embedding_length", uint32_t(d.dim));
  g.set_u32("llama.block_count", uint32_t(d.layers));
  g.set_u32("llama.feed_forward_length", uint32_t(d.hidden));
  g.set_u32("llama.attention.head_count", uint32_t(d.heads));
  g.set_u32("llama.attention.head_count_kv", uint32_t(d.kv_heads));
  g.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  std::vector<Tensor> keep;
  const int32_t kv = d.dim / d.heads * d.kv_heads;
  for (auto &[name, v] : w) {
    Shape s = v.size() == size_t(d.dim) ? Shape{d.dim}
              : name.find("attn_k") != std::string::npos || name.find("attn_v") != std::string::npos
                  ? Shape{kv, d.dim}
              : name.find("ffn_down") != std::string::npos ? Shape{d.dim, d.hidden}
              : name.find("ffn_") != std::string::npos     ? Shape{d.hidden, d.dim}
              : name.find("token_embd") != std::string::npos || name == "output.weight"
                  ? Shape{d.vocab, d.dim}
                  : Shape{d.dim, d.dim};
    keep.push_back(Tensor::view_of(v.data(), DType::F32, s));
    g.add_tensor(name, keep.back());
  }
  g.write(path);
}

std::vector<float> logits_of(const std::string &path) {
  LoadedModel lm = load_model(path);
  auto pool = std::make_shared<ThreadPool>(1);
  Session s(lm.model, pool, 16);
  const float *l = s.eval(std::vector<int32_t>{1, 7, 30, 2, 47});
  return std::vector<float>(l, l + lm.model->config().n_vocab);
}

TEST(Llama2cFormats, V0V1AndGGUFAgree) {
  test::TempDir dir("l2c");
  Dims d;
  for (bool separate : {false, true}) {
    SCOPED_TRACE(separate ? "separate classifier" : "shared classifier");
    auto w = random_llama(d, separate);
    write_llama2c(dir / "v0.bin", d, w, 0);
    write_llama2c(dir / "v1.bin", d, w, 1);
    write_gguf(dir / "m.gguf", d, w);
    auto a = logits_of(dir / "v0.bin"), b = logits_of(dir / "v1.bin"),
         c = logits_of(dir / "m.gguf");
    EXPECT_EQ(a, b);
    EXPECT_EQ(a, c);
    LoadedModel lm = load_model(dir / "v0.bin");
    EXPECT_EQ(lm.model->config().tied_embeddings, !separate);
  }
}

}  // namespace
}  // namespace lmkit
