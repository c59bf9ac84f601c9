// GGUF layout changes (Q/K row permutation, rope_freqs) and the GGUF model writer.
#include "compress/gguf_export.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "io/gguf.h"

namespace lmkit::compress {

namespace {

bool llama_like(const ModelConfig &c) {
  return c.arch == "llama" || c.arch == "mistral";
}

// Rows of a (rows, ...) tensor reordered: out row r = in row src_row[r]. Any dtype (a row of a
// block type is whole blocks), 1-D tensors are permuted element-wise.
Tensor permute_rows(const Tensor &t, const std::vector<int64_t> &src_row) {
  const Tensor c = t.contiguous();
  const int64_t rows = c.dim(0);
  LMKIT_CHECK(int64_t(src_row.size()) == rows, "row permutation of ", rows, " rows");
  const size_t rb =
      c.ndim() == 1 ? dtype_row_bytes(c.dtype(), 1) : dtype_row_bytes(c.dtype(), c.numel() / rows);
  Tensor out = Tensor::zeros(c.dtype(), c.shape());
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(out.data_as<char>() + size_t(r) * rb,
                c.data_as<const char>() + size_t(src_row[size_t(r)]) * rb, rb);
  return out;
}

// For n_head heads of head_dim rows whose first rope_dim rows are RoPE pairs: the source row of
// every output row, half pairs (i, i + r/2) -> adjacent pairs (2i, 2i + 1) (to_interleaved), or
// back.
std::vector<int64_t> rope_row_order(int64_t n_head, int64_t head_dim, int64_t rope_dim,
                                    bool to_interleaved) {
  std::vector<int64_t> src(size_t(n_head * head_dim));
  const int64_t half = rope_dim / 2;
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t d = 0; d < head_dim; ++d) {
      int64_t s = d;
      if (d < rope_dim) {
        // interleaved index 2i + j holds half index j * half + i
        s = to_interleaved ? (d % 2) * half + d / 2 : (d % half) * 2 + d / half;
      }
      src[size_t(h * head_dim + d)] = h * head_dim + s;
    }
  return src;
}

void permute_qk(ModelTensors &m, bool to_interleaved) {
  const ModelConfig &c = m.config;
  const auto q = rope_row_order(c.n_head, c.head_dim, c.rope_dim, to_interleaved);
  const auto k = rope_row_order(c.n_head_kv, c.head_dim, c.rope_dim, to_interleaved);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    for (const char *suffix : {"attn_q.weight", "attn_q.bias", "attn_k.weight", "attn_k.bias"}) {
      Tensor *t = m.find(p + suffix);
      if (t) *t = permute_rows(*t, suffix[5] == 'q' ? q : k);
    }
  }
}

// Per-frequency divisors of llama3 scaling: unscaled / scaled inverse frequency (the decoder's
// formula), as llama.cpp's converter stores them in rope_freqs.weight.
std::vector<float> llama3_divisors(const ModelConfig &c) {
  std::vector<float> out;
  const double lo = c.rope_low_freq_factor, hi = c.rope_high_freq_factor;
  const double orig = double(c.rope_orig_ctx);
  for (int64_t i = 0; i < c.rope_dim / 2; ++i) {
    const double f = std::pow(double(c.rope_theta), -2.0 * double(i) / double(c.rope_dim));
    const double wavelen = 2.0 * M_PI / f;
    double scaled = f;
    if (wavelen > orig / lo) {
      scaled = f / c.rope_factor;
    } else if (wavelen >= orig / hi) {
      const double smooth = (orig / wavelen - lo) / (hi - lo);
      scaled = (1.0 - smooth) * f / c.rope_factor + smooth * f;
    }
    out.push_back(float(f / scaled));
  }
  return out;
}

}  // namespace

std::string gguf_arch(const ModelConfig &c) {
  if (llama_like(c)) return "llama";
  if (c.arch == "qwen2" || c.arch == "gpt2") return c.arch;
  fail("cannot write a '", c.arch, "' model as GGUF (llama, mistral, qwen2, gpt2)");
}

ModelTensors to_gguf_layout(ModelTensors m, Llama3Rope *llama3) {
  ModelConfig &c = m.config;
  if (llama3) *llama3 = {};
  if (c.arch == "gpt2" && c.tied_embeddings) {
    // llama.cpp's gpt2 requires output.weight; its converter writes a copy of the embeddings.
    const Tensor *e = m.find("token_embd.weight");
    LMKIT_CHECK(e, "gpt2 model without token_embd.weight");
    m.tensors.emplace_back("output.weight", *e);
    c.tied_embeddings = false;
  }
  if (c.pos != PosEncoding::RoPE) return m;
  if (llama_like(c) && c.rope_style == kernels::RopeStyle::Half) {
    permute_qk(m, /*to_interleaved=*/true);
    c.rope_style = kernels::RopeStyle::Interleaved;
  }
  if (c.rope_scaling == RopeScaling::Llama3) {
    LMKIT_CHECK(!m.find("rope_freqs.weight"), "a model with llama3 RoPE scaling and rope_freqs");
    if (llama3)
      *llama3 = {c.rope_factor, c.rope_low_freq_factor, c.rope_high_freq_factor, c.rope_orig_ctx};
    const std::vector<float> div = llama3_divisors(c);
    Tensor t = Tensor::zeros(DType::F32, {int64_t(div.size())});
    std::memcpy(t.data(), div.data(), div.size() * 4);
    m.tensors.emplace_back("rope_freqs.weight", t);
    c.rope_scaling = RopeScaling::None;
    c.rope_factor = 1.0f;
  }
  return m;
}

ModelTensors to_hf_layout(ModelTensors m, const Llama3Rope *llama3) {
  ModelConfig &c = m.config;
  if (c.pos != PosEncoding::RoPE) return m;
  if (llama_like(c) && c.rope_style == kernels::RopeStyle::Interleaved) {
    permute_qk(m, /*to_interleaved=*/false);
    c.rope_style = kernels::RopeStyle::Half;
  }
  if (c.arch == "llama" && !c.sliding_window.empty()) c.arch = "mistral";
  if (const Tensor *rf = m.find("rope_freqs.weight")) {
    LMKIT_CHECK(llama3 && llama3->factor > 0,
                "the model's RoPE frequencies come as rope_freqs.weight without the llama3 "
                "settings that made them; a Hugging Face config.json cannot express them");
    c.rope_scaling = RopeScaling::Llama3;
    c.rope_factor = llama3->factor;
    c.rope_low_freq_factor = llama3->low_freq_factor;
    c.rope_high_freq_factor = llama3->high_freq_factor;
    c.rope_orig_ctx = llama3->orig_ctx;
    // The settings must give the divisors the file holds.
    const std::vector<float> div = llama3_divisors(c);
    const Tensor f = rf->to(DType::F32);
    LMKIT_CHECK(f.numel() == int64_t(div.size()), "rope_freqs.weight has ", f.numel(),
                " values for ", div.size(), " RoPE frequencies");
    for (size_t i = 0; i < div.size(); ++i)
      LMKIT_CHECK(std::fabs(f.f32()[i] - div[i]) <= 1e-6f * std::fabs(div[i]),
                  "rope_freqs.weight does not match its llama3 settings (frequency ", i, ")");
    std::erase_if(m.tensors, [](const auto &p) { return p.first == "rope_freqs.weight"; });
  }
  return m;
}

bool gguf_read_llama3_rope(const GGUFFile &f, Llama3Rope &out) {
  if (!f.has("lmkit.rope.llama3.factor")) return false;
  out.factor = float(f.get_float("lmkit.rope.llama3.factor"));
  out.low_freq_factor = float(f.get_float("lmkit.rope.llama3.low_freq_factor"));
  out.high_freq_factor = float(f.get_float("lmkit.rope.llama3.high_freq_factor"));
  out.orig_ctx = f.get_int("lmkit.rope.llama3.original_context_length");
  return true;
}

void gguf_write(const ModelTensors &m, const Vocab *vocab, const std::string &path,
                const GGUFExportOptions &opt) {
  const ModelConfig &c = m.config;
  const std::string a = gguf_arch(c);
  auto key = [&](const char *k) { return a + "." + k; };
  GGUFWriter w;
  w.set_str("general.architecture", a);
  if (!opt.name.empty()) w.set_str("general.name", opt.name);
  w.set_u32("general.file_type", llama_file_type(opt.file_type));
  bool quantized = false;
  for (const auto &[name, t] : m.tensors) quantized = quantized || dtype_is_quantized(t.dtype());
  if (quantized) w.set_u32("general.quantization_version", 2);
  w.set_u32(key("vocab_size"), uint32_t(c.n_vocab));
  w.set_u32(key("context_length"), uint32_t(c.n_ctx_train));
  w.set_u32(key("embedding_length"), uint32_t(c.n_embd));
  w.set_u32(key("block_count"), uint32_t(c.n_layer));
  w.set_u32(key("feed_forward_length"), uint32_t(c.n_ff));
  w.set_u32(key("attention.head_count"), uint32_t(c.n_head));
  w.set_u32(key("attention.head_count_kv"), uint32_t(c.n_head_kv));
  if (a == "gpt2") {
    LMKIT_CHECK(c.mlp == MlpType::GELUTanh, "GGUF gpt2 means GELU (tanh); this model uses ",
                c.mlp == MlpType::GELU ? "GELU (erf)" : "another activation");
    w.set_f32(key("attention.layer_norm_epsilon"), c.norm_eps);
  } else {
    LMKIT_CHECK(
        c.norm == NormType::RMSNorm && c.mlp == MlpType::SwiGLU && c.pos == PosEncoding::RoPE,
        "GGUF ", a, " means RMSNorm, SwiGLU and RoPE");
    const kernels::RopeStyle want =
        a == "llama" ? kernels::RopeStyle::Interleaved : kernels::RopeStyle::Half;
    LMKIT_CHECK(c.rope_style == want, "GGUF ", a, " needs ",
                a == "llama" ? "adjacent-pair" : "half-pair", " RoPE (call to_gguf_layout first)");
    LMKIT_CHECK(!c.mlp_bias, "GGUF ", a, " has no MLP biases; this model has them");
    if (c.head_dim * c.n_head != c.n_embd) {
      w.set_u32(key("attention.key_length"), uint32_t(c.head_dim));
      w.set_u32(key("attention.value_length"), uint32_t(c.head_dim));
    }
    w.set_f32(key("attention.layer_norm_rms_epsilon"), c.norm_eps);
    w.set_f32(key("rope.freq_base"), c.rope_theta);
    w.set_u32(key("rope.dimension_count"), uint32_t(c.rope_dim));
    if (c.rope_scaling == RopeScaling::Linear) {
      w.set_str(key("rope.scaling.type"), "linear");
      w.set_f32(key("rope.scaling.factor"), c.rope_factor);
    } else {
      LMKIT_CHECK(c.rope_scaling == RopeScaling::None,
                  "llama3 RoPE scaling goes into rope_freqs.weight (call to_gguf_layout first)");
    }
    if (!c.sliding_window.empty()) {
      for (int64_t win : c.sliding_window)
        LMKIT_CHECK(win == c.sliding_window[0],
                    "per-layer sliding windows cannot be written to GGUF (one window for all "
                    "layers only)");
      if (c.sliding_window[0] > 0)
        w.set_u32(key("attention.sliding_window"), uint32_t(c.sliding_window[0]));
    }
  }
  if (opt.llama3.factor > 0) {
    w.set_f32("lmkit.rope.llama3.factor", opt.llama3.factor);
    w.set_f32("lmkit.rope.llama3.low_freq_factor", opt.llama3.low_freq_factor);
    w.set_f32("lmkit.rope.llama3.high_freq_factor", opt.llama3.high_freq_factor);
    w.set_u32("lmkit.rope.llama3.original_context_length", uint32_t(opt.llama3.orig_ctx));
  }
  if (vocab) {
    Vocab v = *vocab;
    vocab_pad(v, c.n_vocab);
    vocab_to_gguf(v, w);
  }
  for (const auto &[name, t] : m.tensors) w.add_tensor(name, t);
  w.write(path);
}

}  // namespace lmkit::compress
