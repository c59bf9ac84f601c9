// The generic decoder forward pass: embeddings, blocks of (norm, attention, norm, MLP) with
// residual adds, final norm and classifier; every value passes a named hook point.
#include "model/decoder.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/kernels.h"

namespace lmkit {

namespace {

using kernels::KernelTable;

// Elementwise work below this many elements runs on the calling thread: waking the pool costs
// more than it saves (decode of one token is the common case).
constexpr int64_t kParallelMin = 1 << 15;

template <typename F>
void for_rows(ThreadPool &pool, int64_t rows, int64_t cols, F &&f) {
  if (rows < 2 || rows * cols < kParallelMin) {
    f(int64_t(0), rows);
    return;
  }
  pool.parallel_for(rows, [&](int64_t b, int64_t e, int) { f(b, e); });
}

// y(M, N) (row stride ldy) = x(M, K) (row stride ldx) · W^T + b, split over output features.
void linear_fwd(const KernelTable &k, ThreadPool &pool, float *y, int64_t ldy, const float *x,
                int64_t ldx, int64_t M, const Linear &l) {
  kernels::matmul_fn mm = k.matmul_for(l.w.dtype());
  const int64_t N = l.n_out(), K = l.n_in();
  const size_t row_bytes = dtype_row_bytes(l.w.dtype(), K);
  const char *w = static_cast<const char *>(l.w.data());
  const float *b = l.has_bias() ? l.b.f32() : nullptr;
  pool.parallel_for(
      N,
      [&](int64_t n0, int64_t n1, int) {
        mm(y + n0, ldy, x, ldx, w + size_t(n0) * row_bytes, b ? b + n0 : nullptr, M, n1 - n0, K);
      },
      16);
}

void norm_fwd(const KernelTable &k, ThreadPool &pool, const ModelConfig &c, float *y,
              const float *x, int64_t rows, const Tensor &w, const Tensor &b) {
  const int64_t d = c.n_embd;
  for_rows(pool, rows, d, [&](int64_t r0, int64_t r1) {
    if (c.norm == NormType::RMSNorm)
      k.rmsnorm_fwd(y + r0 * d, nullptr, x + r0 * d, w.f32(), r1 - r0, d, c.norm_eps);
    else
      k.layernorm_fwd(y + r0 * d, nullptr, nullptr, x + r0 * d, w.f32(),
                      b.data() ? b.f32() : nullptr, r1 - r0, d, c.norm_eps);
  });
}

// A hook view of rows [0, n) of a (rows, ld) f32 buffer, columns [col, col + heads*dh) split
// into (n, heads, dh).
Tensor head_view(float *buf, int64_t ld, int64_t col, int64_t n, int64_t heads, int64_t dh) {
  return Tensor::view_strided(buf + col, DType::F32, {n, heads, dh},
                              {size_t(ld) * 4, size_t(dh) * 4, 4, 0});
}

}  // namespace

State::State(const Model &m, int64_t n_ctx, int64_t n_batch, int n_threads)
    : n_ctx_(n_ctx), n_batch_(n_batch) {
  const ModelConfig &c = m.config();
  LMKIT_CHECK(n_ctx >= 1 && n_ctx <= c.n_ctx_train * 64, "context size ", n_ctx,
              " is out of range (1 to ", c.n_ctx_train * 64, ")");
  LMKIT_CHECK(n_batch >= 1, "batch size must be at least 1, got ", n_batch);
  LMKIT_CHECK(n_threads >= 1, "thread count must be at least 1");
  n_batch_ = std::min(n_batch, n_ctx);
  k_ = Tensor::zeros(DType::F32, {c.n_layer, c.n_head_kv, n_ctx, c.head_dim});
  v_ = Tensor::zeros(DType::F32, {c.n_layer, c.n_head_kv, n_ctx, c.head_dim});
  if (c.pos == PosEncoding::RoPE) {
    const int64_t half = c.rope_dim / 2;
    rope_cos_ = Tensor::zeros(DType::F32, {n_ctx, half});
    rope_sin_ = Tensor::zeros(DType::F32, {n_ctx, half});
    const std::vector<double> &f = m.rope_inv_freq();
    for (int64_t p = 0; p < n_ctx; ++p)
      for (int64_t i = 0; i < half; ++i) {
        double a = double(p) * f[size_t(i)];
        rope_cos_.f32()[p * half + i] = float(std::cos(a));
        rope_sin_.f32()[p * half + i] = float(std::sin(a));
      }
  }
  const int64_t B = n_batch_;
  x_ = Tensor::zeros(DType::F32, {B, c.n_embd});
  h_ = Tensor::zeros(DType::F32, {B, c.n_embd});
  qkv_ = Tensor::zeros(DType::F32, {B, c.q_dim() + 2 * c.kv_dim()});
  z_ = Tensor::zeros(DType::F32, {B, c.q_dim()});
  out_ = Tensor::zeros(DType::F32, {B, c.n_embd});
  gate_ = Tensor::zeros(DType::F32, {B, c.n_ff});
  up_ = Tensor::zeros(DType::F32, {B, c.n_ff});
  scratch_ = Tensor::zeros(DType::F32, {n_threads, n_ctx});
  pos_.resize(size_t(B));
}

Model::Model(ModelConfig c, Weights w) : cfg_(std::move(c)), w_(std::move(w)) {
  cfg_.validate();
  LMKIT_CHECK(int64_t(w_.layers.size()) == cfg_.n_layer, "weights have ", w_.layers.size(),
              " layers, config says ", cfg_.n_layer);
  if (cfg_.pos != PosEncoding::RoPE) return;
  // inv_freq[i] = theta^(-2i/rope_dim), then the configured scaling.
  const int64_t half = cfg_.rope_dim / 2;
  inv_freq_.resize(size_t(half));
  for (int64_t i = 0; i < half; ++i) {
    double f = std::pow(double(cfg_.rope_theta), -2.0 * double(i) / double(cfg_.rope_dim));
    if (cfg_.rope_scaling == RopeScaling::Linear) {
      f /= cfg_.rope_factor;
    } else if (cfg_.rope_scaling == RopeScaling::Llama3) {
      // Llama 3.1: keep high frequencies, divide low ones by factor, blend in between.
      const double lo = cfg_.rope_low_freq_factor, hi = cfg_.rope_high_freq_factor;
      const double orig = double(cfg_.rope_orig_ctx);
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > orig / lo) {
        f /= cfg_.rope_factor;
      } else if (wavelen >= orig / hi) {
        double smooth = (orig / wavelen - lo) / (hi - lo);
        f = (1.0 - smooth) * f / cfg_.rope_factor + smooth * f;
      }
    }
    if (w_.rope_freqs.data()) f /= double(w_.rope_freqs.f32()[i]);
    inv_freq_[size_t(i)] = f;
  }
}

void Model::forward(State &st, std::span<const int32_t> tokens, int64_t pos, float *logits,
                    bool all_logits, ThreadPool &pool, const Hooks *hooks) const {
  const int64_t n = int64_t(tokens.size());
  LMKIT_CHECK(n > 0, "forward: no tokens");
  LMKIT_CHECK(pos >= 0 && pos + n <= st.n_ctx(), "forward: positions [", pos, ", ", pos + n,
              ") exceed the context size ", st.n_ctx());
  if (cfg_.pos == PosEncoding::Learned)
    LMKIT_CHECK(pos + n <= cfg_.n_ctx_train, "forward: position ", pos + n - 1,
                " is past the model's ", cfg_.n_ctx_train, " learned positions");
  LMKIT_CHECK(pool.size() <= st.scratch_.dim(0), "forward: the state was sized for ",
              st.scratch_.dim(0), " threads, the pool has ", pool.size());
  for (int32_t t : tokens)
    LMKIT_CHECK(t >= 0 && t < cfg_.n_vocab, "token id ", t, " is outside the vocabulary [0, ",
                cfg_.n_vocab, ")");
  if (hooks && hooks->empty()) hooks = nullptr;
  for (int64_t i = 0; i < n; i += st.n_batch()) {
    int64_t m = std::min(st.n_batch(), n - i);
    bool last = i + m == n;
    float *lg = all_logits ? logits + i * cfg_.n_vocab : (last ? logits : nullptr);
    forward_chunk(st, tokens.data() + i, m, pos + i, lg, all_logits, pool, hooks);
  }
}

void Model::forward_chunk(State &st, const int32_t *tokens, int64_t m, int64_t pos, float *logits,
                          bool all_logits, ThreadPool &pool, const Hooks *hooks) const {
  const KernelTable &k = kernels::active();
  const ModelConfig &c = cfg_;
  const int64_t d = c.n_embd, hd = c.head_dim, nh = c.n_head, nkv = c.n_head_kv;
  const int64_t q_dim = c.q_dim(), kv_dim = c.kv_dim();
  const int64_t ld_qkv = q_dim + 2 * kv_dim;
  float *x = st.x_.f32(), *h = st.h_.f32(), *qkv = st.qkv_.f32(), *z = st.z_.f32();
  float *out = st.out_.f32(), *gate = st.gate_.f32(), *up = st.up_.f32();
  int32_t *positions = st.pos_.data();
  for (int64_t i = 0; i < m; ++i) positions[i] = int32_t(pos + i);
  const int64_t n_kv = pos + m;  // keys visible to the last query of this chunk

  auto hook = [&](HookPoint p, int64_t layer, Tensor value) {
    if (hooks && hooks->wants(p, layer))
      hooks->fire(HookEvent{p, layer, std::move(value), positions, m});
  };
  auto rows = [&](float *buf, int64_t cols) { return Tensor::view_of(buf, DType::F32, {m, cols}); };
  auto residual_add = [&](const float *y) {
    for_rows(pool, m, d, [&](int64_t r0, int64_t r1) {
      k.add_fwd(x + r0 * d, x + r0 * d, y + r0 * d, (r1 - r0) * d);
    });
  };

  k.embedding_fwd(x, tokens, m, w_.tok_embd.data(), w_.tok_embd.dtype(), d);
  if (c.pos == PosEncoding::Learned) k.add_fwd(x, x, w_.pos_embd.f32() + pos * d, m * d);

  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerWeights &L = w_.layers[size_t(l)];
    hook(HookPoint::ResidPre, l, rows(x, d));

    // --- attention ---
    norm_fwd(k, pool, c, h, x, m, L.attn_norm, L.attn_norm_b);
    hook(HookPoint::Ln1, l, rows(h, d));
    if (L.fused_qkv()) {
      linear_fwd(k, pool, qkv, ld_qkv, h, d, m, L.wqkv);
    } else {
      linear_fwd(k, pool, qkv, ld_qkv, h, d, m, L.wq);
      linear_fwd(k, pool, qkv + q_dim, ld_qkv, h, d, m, L.wk);
      linear_fwd(k, pool, qkv + q_dim + kv_dim, ld_qkv, h, d, m, L.wv);
    }
    hook(HookPoint::AttnQ, l, head_view(qkv, ld_qkv, 0, m, nh, hd));
    hook(HookPoint::AttnK, l, head_view(qkv, ld_qkv, q_dim, m, nkv, hd));
    hook(HookPoint::AttnV, l, head_view(qkv, ld_qkv, q_dim + kv_dim, m, nkv, hd));
    if (c.pos == PosEncoding::RoPE) {
      const int64_t half = c.rope_dim / 2;
      const float *cs = st.rope_cos_.f32() + pos * half, *sn = st.rope_sin_.f32() + pos * half;
      k.rope_fwd(qkv, ld_qkv, cs, sn, m, nh, hd, c.rope_dim, c.rope_style);
      k.rope_fwd(qkv + q_dim, ld_qkv, cs, sn, m, nkv, hd, c.rope_dim, c.rope_style);
      hook(HookPoint::AttnRotQ, l, head_view(qkv, ld_qkv, 0, m, nh, hd));
      hook(HookPoint::AttnRotK, l, head_view(qkv, ld_qkv, q_dim, m, nkv, hd));
    }
    // Append this chunk's K/V to the cache (head-major: (n_head_kv, n_ctx, head_dim) per layer).
    const int64_t ld_head = st.n_ctx() * hd;
    float *kc = st.k_.f32() + l * nkv * ld_head, *vc = st.v_.f32() + l * nkv * ld_head;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t g = 0; g < nkv; ++g) {
        std::memcpy(kc + g * ld_head + (pos + i) * hd, qkv + i * ld_qkv + q_dim + g * hd,
                    size_t(hd) * 4);
        std::memcpy(vc + g * ld_head + (pos + i) * hd, qkv + i * ld_qkv + q_dim + kv_dim + g * hd,
                    size_t(hd) * 4);
      }
    kernels::AttentionArgs a;
    a.out = z;
    a.ld_out = q_dim;
    a.q = qkv;
    a.ld_q = ld_qkv;
    a.k = kc;
    a.v = vc;
    a.ld_kv_head = ld_head;
    a.q_pos = positions;
    a.n_q = m;
    a.n_kv = n_kv;
    a.n_head = nh;
    a.n_head_kv = nkv;
    a.head_dim = hd;
    a.window = c.window(l);
    a.scale = float(1.0 / std::sqrt(double(hd)));
    const bool want_pattern = hooks && hooks->wants(HookPoint::AttnPattern, l);
    if (want_pattern) {
      st.pattern_.assign(size_t(nh * m * n_kv), 0.0f);
      a.pattern = st.pattern_.data();
    }
    pool.parallel_for(nh, [&](int64_t h0, int64_t h1, int t) {
      kernels::AttentionArgs ta = a;
      ta.head_begin = h0;
      ta.head_end = h1;
      ta.scratch = st.scratch_.f32() + t * st.n_ctx();
      k.attention_fwd(ta);
    });
    if (want_pattern) {
      hook(HookPoint::AttnPattern, l,
           Tensor::view_of(st.pattern_.data(), DType::F32, {nh, m, n_kv}));
      // A listener may have patched the pattern: recompute z = pattern · V from it.
      const int64_t group = nh / nkv;
      for (int64_t hq = 0; hq < nh; ++hq)
        for (int64_t i = 0; i < m; ++i) {
          float *zi = z + i * q_dim + hq * hd;
          std::fill(zi, zi + hd, 0.0f);
          const float *p = st.pattern_.data() + (hq * m + i) * n_kv;
          const float *vh = vc + (hq / group) * ld_head;
          for (int64_t j = 0; j < n_kv; ++j)
            if (p[j] != 0.0f)
              for (int64_t e = 0; e < hd; ++e) zi[e] += p[j] * vh[j * hd + e];
        }
    }
    hook(HookPoint::AttnZ, l, head_view(z, q_dim, 0, m, nh, hd));
    linear_fwd(k, pool, out, d, z, q_dim, m, L.wo);
    hook(HookPoint::AttnOut, l, rows(out, d));
    residual_add(out);
    hook(HookPoint::ResidMid, l, rows(x, d));

    // --- MLP ---
    norm_fwd(k, pool, c, h, x, m, L.ffn_norm, L.ffn_norm_b);
    hook(HookPoint::Ln2, l, rows(h, d));
    const int64_t ff = c.n_ff;
    if (c.mlp == MlpType::SwiGLU) {
      linear_fwd(k, pool, gate, ff, h, d, m, L.w_gate);
      linear_fwd(k, pool, up, ff, h, d, m, L.w_up);
      hook(HookPoint::MlpPre, l, rows(gate, ff));
      for_rows(pool, m, ff, [&](int64_t r0, int64_t r1) {
        k.swiglu_fwd(up + r0 * ff, gate + r0 * ff, up + r0 * ff, (r1 - r0) * ff);
      });
    } else {
      linear_fwd(k, pool, up, ff, h, d, m, L.w_up);
      hook(HookPoint::MlpPre, l, rows(up, ff));
      auto act = c.mlp == MlpType::GELU ? k.gelu_fwd : k.gelu_tanh_fwd;
      for_rows(pool, m, ff,
               [&](int64_t r0, int64_t r1) { act(up + r0 * ff, up + r0 * ff, (r1 - r0) * ff); });
    }
    hook(HookPoint::MlpPost, l, rows(up, ff));
    linear_fwd(k, pool, out, d, up, ff, m, L.w_down);
    hook(HookPoint::MlpOut, l, rows(out, d));
    residual_add(out);
    hook(HookPoint::ResidPost, l, rows(x, d));
  }

  // Final norm and classifier: every row when asked (or hooked), else only the last.
  const bool final_all = all_logits || (hooks && hooks->wants(HookPoint::LnFinal, -1));
  const int64_t r0 = final_all ? 0 : m - 1;
  norm_fwd(k, pool, c, h + r0 * d, x + r0 * d, m - r0, w_.output_norm, w_.output_norm_b);
  hook(HookPoint::LnFinal, -1, rows(h, d));
  if (!logits) return;
  if (all_logits)
    linear_fwd(k, pool, logits, c.n_vocab, h, d, m, w_.output);
  else
    linear_fwd(k, pool, logits, c.n_vocab, h + (m - 1) * d, d, 1, w_.output);
}

}  // namespace lmkit
