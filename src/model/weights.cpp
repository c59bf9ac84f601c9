// Loading weights through a TensorSource: name mapping, shape checks, f32 conversion of vectors,
// block-quantized matrices packed for their kernels (kernels::pack_weight).
#include "model/weights.h"

#include <cstring>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/gguf.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "kernels/quant.h"
#include "model/tensor_names.h"

namespace lmkit {

int64_t Weights::n_params() const {
  std::set<const void *> seen;
  int64_t n = 0;
  for (const auto &[name, t] : table)
    if (seen.insert(t.data()).second) n += t.numel();
  return n;
}

namespace {

// (rows, cols) -> (cols, rows), any 2- or 4-byte element type.
Tensor transpose2d(const Tensor &t) {
  LMKIT_CHECK(t.ndim() == 2, "transpose of a ", t.ndim(), "-dim tensor");
  Tensor src = t.contiguous();
  int64_t r = src.dim(0), c = src.dim(1);
  Tensor out = Tensor::zeros(src.dtype(), {c, r});
  size_t es = dtype_info(src.dtype()).block_bytes;
  const char *s = static_cast<const char *>(src.data());
  char *d = static_cast<char *>(out.data());
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j)
      std::memcpy(d + size_t(j * r + i) * es, s + size_t(i * c + j) * es, es);
  return out;
}

// An owned f32 copy of any loadable tensor (block types dequantized with the GGUF formula).
Tensor to_f32(const Tensor &t) {
  if (!dtype_is_quantized(t.dtype())) return t.to(DType::F32);
  return kernels::dequantize(t.contiguous());
}

class HFSource : public TensorSource {
 public:
  HFSource(const std::string &dir, std::string arch)
      : set_(SafetensorsSet::open_dir(dir)), arch_(std::move(arch)) {}

  std::optional<Tensor> get(const std::string &canonical) const override {
    auto n = hf_tensor_name(arch_, canonical);
    if (!n) return std::nullopt;
    std::string name = resolve(n->name);
    if (name.empty()) return std::nullopt;
    Tensor t = set_.get(name);
    return n->conv1d ? transpose2d(t) : t;
  }
  std::string describe(const std::string &canonical) const override {
    auto n = hf_tensor_name(arch_, canonical);
    return str_cat(set_.dir(), ": tensor '", n ? n->name : canonical, "'");
  }
  std::map<std::string, std::string> metadata() const override { return set_.metadata(); }

 private:
  // GPT-2 checkpoints exist with and without the "transformer." prefix.
  std::string resolve(const std::string &name) const {
    if (set_.has(name)) return name;
    const std::string prefix = "transformer.";
    if (name.rfind(prefix, 0) == 0 && set_.has(name.substr(prefix.size())))
      return name.substr(prefix.size());
    return "";
  }
  SafetensorsSet set_;
  std::string arch_;
};

class GGUFSource : public TensorSource {
 public:
  explicit GGUFSource(std::shared_ptr<const GGUFFile> f) : f_(std::move(f)) {}
  std::optional<Tensor> get(const std::string &canonical) const override {
    const GGUFTensorInfo *t = f_->find_tensor(canonical);
    if (!t) return std::nullopt;
    return f_->tensor(*t);
  }
  std::string describe(const std::string &canonical) const override {
    return str_cat(f_->path(), ": tensor '", canonical, "'");
  }

 private:
  std::shared_ptr<const GGUFFile> f_;
};

class Llama2cSource : public TensorSource {
 public:
  explicit Llama2cSource(std::shared_ptr<const Llama2cFile> f) : f_(std::move(f)) {}
  std::optional<Tensor> get(const std::string &canonical) const override {
    auto it = f_->tensors.find(canonical);
    if (it == f_->tensors.end()) return std::nullopt;
    return it->second;
  }
  std::string describe(const std::string &canonical) const override {
    return str_cat(f_->path, ": array '", canonical, "'");
  }

 private:
  std::shared_ptr<const Llama2cFile> f_;
};

class TableSource : public TensorSource {
 public:
  TableSource(std::vector<std::pair<std::string, Tensor>> tensors, std::string what)
      : what_(std::move(what)) {
    for (auto &[name, t] : tensors) map_[name] = std::move(t);
  }
  std::optional<Tensor> get(const std::string &canonical) const override {
    auto it = map_.find(canonical);
    if (it == map_.end()) return std::nullopt;
    return it->second;
  }
  std::string describe(const std::string &canonical) const override {
    return str_cat(what_, ": tensor '", canonical, "'");
  }

 private:
  std::map<std::string, Tensor> map_;
  std::string what_;
};

// The dtypes a matrix may have: f32/f16/bf16 and the block types with a matmul kernel.
bool loadable_matrix_dtype(DType d) {
  return d == DType::F32 || d == DType::F16 || d == DType::BF16 || kernels::quant_has_matmul(d);
}

// Pulls tensors from a source, checking presence, shape and dtype.
struct Loader {
  const TensorSource &src;
  Weights &w;

  // convert: the caller makes an f32 copy, so any block type will do.
  Tensor fetch(const std::string &name, const Shape &shape, bool required, bool convert = false) {
    std::optional<Tensor> t = src.get(name, shape);
    if (!t) {
      LMKIT_CHECK(!required, src.describe(name), " is missing");
      return {};
    }
    LMKIT_CHECK(t->shape() == shape, src.describe(name), " has shape ", t->shape().str(),
                ", the config expects ", shape.str());
    DType d = t->dtype();
    LMKIT_CHECK(loadable_matrix_dtype(d) || (convert && dtype_is_quantized(d)), src.describe(name),
                " has dtype ", dtype_name(d),
                " (supported: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_K, q5_K, q6_K)");
    LMKIT_CHECK(t->is_contiguous(), src.describe(name), " is not contiguous");
    w.table.emplace_back(name, *t);
    return *t;
  }
  // Matrices stay in their file dtype (the matmul kernels read f16/bf16 and the block types
  // directly), re-packed where the kernels prefer another layout (q4_0 -> q4_0x8). The table
  // holds what the fields hold, so tied and trainable tensors keep one address.
  Tensor matrix(const std::string &name, int64_t rows, int64_t cols, bool required = true) {
    Tensor t = fetch(name, {rows, cols}, required);
    if (!t.data() || !dtype_is_quantized(t.dtype())) return t;
    Tensor p = kernels::pack_weight(t);
    w.table.back().second = p;
    return p;
  }
  // Vectors (norms, biases) and learned positions become f32 copies: small, and the kernels
  // want f32.
  Tensor f32(const std::string &name, const Shape &shape, bool required = true) {
    Tensor t = fetch(name, shape, required, /*convert=*/true);
    if (!t.data() || t.dtype() == DType::F32) return t;
    Tensor f = to_f32(t);
    w.table.back().second = f;
    return f;
  }
  Tensor vector(const std::string &name, int64_t n, bool required = true) {
    return f32(name, {n}, required);
  }
  Linear linear(const std::string &base, int64_t out, int64_t in, bool bias) {
    Linear l;
    l.w = matrix(base + ".weight", out, in);
    if (bias) l.b = vector(base + ".bias", out);
    return l;
  }
};

}  // namespace

std::unique_ptr<TensorSource> tensor_source_hf(const std::string &dir, const std::string &arch) {
  return std::make_unique<HFSource>(dir, arch);
}
std::unique_ptr<TensorSource> tensor_source_gguf(std::shared_ptr<const GGUFFile> f) {
  return std::make_unique<GGUFSource>(std::move(f));
}
std::unique_ptr<TensorSource> tensor_source_llama2c(std::shared_ptr<const Llama2cFile> f) {
  return std::make_unique<Llama2cSource>(std::move(f));
}
std::unique_ptr<TensorSource> tensor_source_table(
    std::vector<std::pair<std::string, Tensor>> tensors, std::string what) {
  return std::make_unique<TableSource>(std::move(tensors), std::move(what));
}

Weights weights_load(const ModelConfig &c, const TensorSource &src) {
  c.validate();
  Weights w;
  Loader ld{src, w};
  const int64_t d = c.n_embd;
  const bool ln = c.norm == NormType::LayerNorm;
  w.tok_embd = ld.matrix("token_embd.weight", c.n_vocab, d);
  if (c.pos == PosEncoding::Learned)
    w.pos_embd = ld.f32("position_embd.weight", {c.n_ctx_train, d});
  w.layers.resize(size_t(c.n_layer));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    LayerWeights &L = w.layers[size_t(l)];
    const std::string p = "blk." + std::to_string(l) + ".";
    L.attn_norm = ld.vector(p + "attn_norm.weight", d);
    if (ln) L.attn_norm_b = ld.vector(p + "attn_norm.bias", d, c.norm_bias);
    if (src.has(p + "attn_qkv.weight")) {
      L.wqkv = ld.linear(p + "attn_qkv", c.q_dim() + 2 * c.kv_dim(), d, c.qkv_bias);
    } else {
      L.wq = ld.linear(p + "attn_q", c.q_dim(), d, c.qkv_bias);
      L.wk = ld.linear(p + "attn_k", c.kv_dim(), d, c.qkv_bias);
      L.wv = ld.linear(p + "attn_v", c.kv_dim(), d, c.qkv_bias);
    }
    L.wo = ld.linear(p + "attn_output", d, c.q_dim(), c.attn_out_bias);
    L.ffn_norm = ld.vector(p + "ffn_norm.weight", d);
    if (ln) L.ffn_norm_b = ld.vector(p + "ffn_norm.bias", d, c.norm_bias);
    if (c.mlp == MlpType::SwiGLU) L.w_gate = ld.linear(p + "ffn_gate", c.n_ff, d, c.mlp_bias);
    L.w_up = ld.linear(p + "ffn_up", c.n_ff, d, c.mlp_bias);
    L.w_down = ld.linear(p + "ffn_down", d, c.n_ff, c.mlp_bias);
  }
  w.output_norm = ld.vector("output_norm.weight", d);
  if (ln) w.output_norm_b = ld.vector("output_norm.bias", d, c.norm_bias);
  if (c.tied_embeddings) {
    w.output.w = w.tok_embd;
  } else {
    w.output.w = ld.matrix("output.weight", c.n_vocab, d);
  }
  if (c.pos == PosEncoding::RoPE && src.has("rope_freqs.weight"))
    w.rope_freqs = ld.vector("rope_freqs.weight", c.rope_dim / 2);
  return w;
}

void weights_save_hf(const ModelConfig &c, const Weights &w, const std::string &dir) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto &[name, t] : w.table) {
    LMKIT_CHECK(!dtype_is_quantized(t.dtype()), "tensor '", name, "' is ", dtype_name(t.dtype()),
                "; safetensors holds f32, f16 and bf16 only (dequantize first: lmkit convert "
                "--type f32)");
    auto hf = hf_tensor_name(c.arch, name);
    LMKIT_CHECK(hf.has_value(), "no Hugging Face name for tensor '", name, "' of arch ", c.arch);
    out.emplace_back(hf->name, hf->conv1d ? transpose2d(t) : t.contiguous());
  }
  write_file_atomic(dir + "/config.json", config_to_hf(c).dump(2) + "\n");
  safetensors_write(dir + "/model.safetensors", out);
}

Weights weights_to_f32(const Weights &w) {
  // Copy each distinct tensor once, then point every field at its copy (tied tensors stay tied).
  std::map<const void *, Tensor> copies;
  auto conv = [&](const Tensor &t) -> Tensor {
    if (!t.data()) return t;
    auto it = copies.find(t.data());
    if (it != copies.end() && it->second.shape() == t.shape()) return it->second;
    Tensor f = to_f32(t);
    copies[t.data()] = f;
    return f;
  };
  Weights r;
  r.tok_embd = conv(w.tok_embd);
  r.pos_embd = conv(w.pos_embd);
  r.output_norm = conv(w.output_norm);
  r.output_norm_b = conv(w.output_norm_b);
  r.output.w = conv(w.output.w);
  r.output.b = conv(w.output.b);
  r.rope_freqs = conv(w.rope_freqs);
  for (const LayerWeights &L : w.layers) {
    LayerWeights n;
    n.attn_norm = conv(L.attn_norm);
    n.attn_norm_b = conv(L.attn_norm_b);
    for (auto [dst, src] : {std::pair{&n.wq, &L.wq},
                            {&n.wk, &L.wk},
                            {&n.wv, &L.wv},
                            {&n.wqkv, &L.wqkv},
                            {&n.wo, &L.wo},
                            {&n.w_gate, &L.w_gate},
                            {&n.w_up, &L.w_up},
                            {&n.w_down, &L.w_down}}) {
      dst->w = conv(src->w);
      dst->b = conv(src->b);
    }
    n.ffn_norm = conv(L.ffn_norm);
    n.ffn_norm_b = conv(L.ffn_norm_b);
    r.layers.push_back(n);
  }
  for (const auto &[name, t] : w.table) r.table.emplace_back(name, conv(t));
  return r;
}

}  // namespace lmkit
