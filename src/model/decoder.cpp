// The generic decoder: embeddings, blocks of (norm, attention, norm, MLP) with residual adds, the
// final norm; every value passes a named hook point. Written in autograd ops: without recording
// the residual stream is updated in place and each block's temporaries are released as it ends.
#include "model/decoder.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/kernels.h"

namespace lmkit {

// ---- KV cache and RoPE table ------------------------------------------------------------------

KVCache::KVCache(const ModelConfig &c, int64_t n_slots, int64_t n_ctx)
    : n_slots_(n_slots), n_ctx_(n_ctx), n_head_kv_(c.n_head_kv), head_dim_(c.head_dim) {
  LMKIT_CHECK(n_slots >= 1 && n_ctx >= 1, "a KV cache needs at least one slot and position");
  k_ = Tensor::zeros(DType::F32, {c.n_layer * n_slots, c.n_head_kv, n_ctx, c.head_dim});
  v_ = Tensor::zeros(DType::F32, {c.n_layer * n_slots, c.n_head_kv, n_ctx, c.head_dim});
}

RopeTable::RopeTable(const Model &m, int64_t n_pos) {
  const ModelConfig &c = m.config();
  if (c.pos != PosEncoding::RoPE) return;
  n_pos_ = n_pos;
  half_ = c.rope_dim / 2;
  cos_ = Tensor::zeros(DType::F32, {n_pos, half_});
  sin_ = Tensor::zeros(DType::F32, {n_pos, half_});
  const std::vector<double> &f = m.rope_inv_freq();
  for (int64_t p = 0; p < n_pos; ++p)
    for (int64_t i = 0; i < half_; ++i) {
      const double a = double(p) * f[size_t(i)];
      cos_.f32()[p * half_ + i] = float(std::cos(a));
      sin_.f32()[p * half_ + i] = float(std::sin(a));
    }
}

namespace {
int64_t checked_ctx(const Model &m, int64_t n_ctx, int64_t n_batch) {
  const int64_t max_ctx = m.config().n_ctx_train * 64;
  LMKIT_CHECK(n_ctx >= 1 && n_ctx <= max_ctx, "context size ", n_ctx, " is out of range (1 to ",
              max_ctx, ")");
  LMKIT_CHECK(n_batch >= 1, "batch size must be at least 1, got ", n_batch);
  return n_ctx;
}
}  // namespace

State::State(const Model &m, int64_t n_ctx, int64_t n_batch)
    : n_batch_(std::min(n_batch, checked_ctx(m, n_ctx, n_batch))),
      cache_(m.config(), 1, n_ctx),
      rope_(m, n_ctx),
      pos_(size_t(n_batch_)) {}

// ---- model -----------------------------------------------------------------------------------

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

void Model::validate(const Batch &b, const RopeTable &rope, const KVCache *cache,
                     const Stage *stage) const {
  const bool chunks = stage && !stage->kv.empty();
  if (stage) {
    const int64_t last = stage->last < 0 ? cfg_.n_layer : stage->last;
    LMKIT_CHECK(stage->first >= 0 && stage->first < last && last <= cfg_.n_layer, "stage: layers [",
                stage->first, ", ", last, ") of ", cfg_.n_layer);
    LMKIT_CHECK(
        stage->first == 0 || (stage->input.data && stage->input.rows == int64_t(b.tokens.size()) &&
                              stage->input.cols == cfg_.n_embd),
        "stage: layer ", stage->first, " needs the residual stream (", b.tokens.size(), ", ",
        cfg_.n_embd, ") as input");
    LMKIT_CHECK(
        !chunks || int64_t(stage->kv.size()) == (last - stage->first) * int64_t(b.seqs.size()),
        "stage: ", stage->kv.size(), " KV stores for ", last - stage->first, " layers x ",
        b.seqs.size(), " sequences");
    LMKIT_CHECK(!chunks || !cache, "stage: chunks keep their keys in KV stores, not a cache");
  }
  const int64_t n = int64_t(b.tokens.size());
  LMKIT_CHECK(n > 0, "forward: no tokens");
  LMKIT_CHECK(int64_t(b.pos.size()) == n, "forward: ", b.pos.size(), " positions for ", n,
              " tokens");
  for (int32_t t : b.tokens)
    LMKIT_CHECK(t >= 0 && t < cfg_.n_vocab, "token id ", t, " is outside the vocabulary [0, ",
                cfg_.n_vocab, ")");
  int64_t row = 0;
  for (const SeqRows &s : b.seqs) {
    LMKIT_CHECK(s.begin == row && s.end > s.begin && s.end <= n,
                "forward: sequences must cover the batch rows in order");
    for (int64_t r = s.begin; r < s.end; ++r) {
      const int64_t p = b.pos[size_t(r)];
      if (s.slot < 0 && !chunks)
        LMKIT_CHECK(p == r - s.begin,
                    "forward: a sequence without a cache slot must hold "
                    "positions 0, 1, 2, ... (row ",
                    r, " has position ", p, ")");
      else if (r > s.begin)
        LMKIT_CHECK(p == b.pos[size_t(r - 1)] + 1,
                    "forward: positions of a sequence must be "
                    "consecutive (row ",
                    r, ")");
      LMKIT_CHECK(p >= 0, "forward: negative position ", p);
      if (cfg_.pos == PosEncoding::RoPE)
        LMKIT_CHECK(p < rope.n_pos(), "forward: position ", p, " exceeds the context size ",
                    rope.n_pos());
      else
        LMKIT_CHECK(p < cfg_.n_ctx_train, "forward: position ", p, " is past the model's ",
                    cfg_.n_ctx_train, " learned positions");
    }
    if (s.slot >= 0) {
      LMKIT_CHECK(cache && s.slot < cache->n_slots(), "forward: KV slot ", s.slot,
                  " does not exist");
      LMKIT_CHECK(b.pos[size_t(s.end - 1)] < cache->n_ctx(), "forward: positions up to ",
                  b.pos[size_t(s.end - 1)], " exceed the context size ", cache->n_ctx());
    }
    row = s.end;
  }
  LMKIT_CHECK(row == n, "forward: sequences cover ", row, " of ", n, " rows");
}

namespace {

ag::Var norm(ag::Context &ctx, const ModelConfig &c, ag::Var x, const Tensor &w, const Tensor &b) {
  return c.norm == NormType::RMSNorm ? ag::rmsnorm(ctx, x, w, c.norm_eps)
                                     : ag::layernorm(ctx, x, w, b, c.norm_eps);
}

// A hook view of columns [col, col + heads*dh) of v, split into (rows, heads, dh).
Tensor head_view(const ag::Var &v, int64_t col, int64_t heads, int64_t dh) {
  return Tensor::view_strided(v.data + col, DType::F32, {v.rows, heads, dh},
                              {size_t(v.ld) * 4, size_t(dh) * 4, 4, 0});
}

}  // namespace

ag::Var Model::hidden(ag::Context &ctx, const Batch &b, const RopeTable &rope, KVCache *cache,
                      const Hooks *hooks, const Stage *stage) const {
  validate(b, rope, cache, stage);
  const int64_t first = stage ? stage->first : 0;
  const int64_t last = stage && stage->last >= 0 ? stage->last : cfg_.n_layer;
  const bool chunks = stage && !stage->kv.empty();
  if (hooks && hooks->empty()) hooks = nullptr;
  const ModelConfig &c = cfg_;
  const int64_t n = int64_t(b.tokens.size());
  const int64_t hd = c.head_dim, nh = c.n_head, nkv = c.n_head_kv;
  const int64_t q_dim = c.q_dim(), kv_dim = c.kv_dim();
  const int32_t *pos = b.pos.data();
  auto hook = [&](HookPoint p, int64_t layer, Tensor value) {
    if (hooks && hooks->wants(p, layer)) hooks->fire(HookEvent{p, layer, std::move(value), pos, n});
  };

  ag::Var x;
  if (first > 0) {
    x = stage->input;
  } else {
    x = ag::embedding(ctx, w_.tok_embd, b.tokens.data(), n);
    if (c.pos == PosEncoding::Learned) ag::add_rows_(ctx, x, w_.pos_embd, pos);
  }
  // cos/sin of each row's position.
  float *cs = nullptr, *sn = nullptr;
  if (c.pos == PosEncoding::RoPE) {
    const int64_t half = rope.half();
    cs = ctx.scratch(n * half);
    sn = ctx.scratch(n * half);
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(cs + i * half, rope.cos(pos[i]), size_t(half) * 4);
      std::memcpy(sn + i * half, rope.sin(pos[i]), size_t(half) * 4);
    }
  }
  const size_t ns = b.seqs.size();
  auto *seqs = static_cast<ag::AttnSeq *>(ctx.arena().alloc(sizeof(ag::AttnSeq) * ns));
  auto *kv_grad =
      chunks ? static_cast<ag::KVGrad *>(ctx.arena().alloc(sizeof(ag::KVGrad) * ns)) : nullptr;
  ag::AttnShape shape;
  shape.n_head = nh;
  shape.n_head_kv = nkv;
  shape.head_dim = hd;
  shape.scale = float(1.0 / std::sqrt(double(hd)));

  for (int64_t l = first; l < last; ++l) {
    const LayerWeights &L = w_.layers[size_t(l)];
    const Arena::Mark mark = ctx.scope_begin();
    hook(HookPoint::ResidPre, l, x.tensor());

    // --- attention ---
    ag::Var h = norm(ctx, c, x, L.attn_norm, L.attn_norm_b);
    hook(HookPoint::Ln1, l, h.tensor());
    ag::Var qkv = ctx.new_var(n, q_dim + 2 * kv_dim);
    if (L.fused_qkv()) {
      ag::linear_into(ctx, qkv, h, L.wqkv);
    } else {
      const ag::Var parts[] = {qkv.cols_slice(0, q_dim), qkv.cols_slice(q_dim, kv_dim),
                               qkv.cols_slice(q_dim + kv_dim, kv_dim)};
      const Linear *w[] = {&L.wq, &L.wk, &L.wv};
      ag::linears_into(ctx, parts, h, w);
    }
    hook(HookPoint::AttnQ, l, head_view(qkv, 0, nh, hd));
    hook(HookPoint::AttnK, l, head_view(qkv, q_dim, nkv, hd));
    hook(HookPoint::AttnV, l, head_view(qkv, q_dim + kv_dim, nkv, hd));
    if (c.pos == PosEncoding::RoPE) {
      ag::rope_(ctx, qkv.cols_slice(0, q_dim), cs, sn, nh, hd, c.rope_dim, c.rope_style);
      ag::rope_(ctx, qkv.cols_slice(q_dim, kv_dim), cs, sn, nkv, hd, c.rope_dim, c.rope_style);
      hook(HookPoint::AttnRotQ, l, head_view(qkv, 0, nh, hd));
      hook(HookPoint::AttnRotK, l, head_view(qkv, q_dim, nkv, hd));
    }
    // Where each sequence's keys live: its cache slot or its chunk's KV store (this batch's K/V
    // appended first), or the batch's own rows.
    for (size_t s = 0; s < ns; ++s) {
      const SeqRows &r = b.seqs[s];
      ag::AttnSeq &a = seqs[s];
      a.row_begin = r.begin;
      a.row_end = r.end;
      if (chunks) {
        const ag::KVStore &st = stage->kv[size_t(l - first) * ns + s];
        ag::kv_store_append(ctx, qkv.rows_slice(r.begin, r.end - r.begin), q_dim, q_dim + kv_dim,
                            st, pos[r.begin]);
        a = st.seq(r.begin, r.end, pos[r.end - 1] + 1);
        kv_grad[s] = st.grad();
      } else if (r.slot >= 0) {
        float *kc = cache->k(l, r.slot), *vc = cache->v(l, r.slot);
        const int64_t ldh = cache->ld_head();
        for (int64_t i = r.begin; i < r.end; ++i)
          for (int64_t g = 0; g < nkv; ++g) {
            std::memcpy(kc + g * ldh + pos[i] * hd, qkv.row(i) + q_dim + g * hd, size_t(hd) * 4);
            std::memcpy(vc + g * ldh + pos[i] * hd, qkv.row(i) + q_dim + kv_dim + g * hd,
                        size_t(hd) * 4);
          }
        a.k = kc;
        a.v = vc;
        a.ld_head = ldh;
        a.ld_row = hd;
        a.n_kv = pos[r.end - 1] + 1;
        a.in_batch = false;
      } else {
        a.k = qkv.row(r.begin) + q_dim;
        a.v = qkv.row(r.begin) + q_dim + kv_dim;
        a.ld_head = hd;
        a.ld_row = qkv.ld;
        a.n_kv = r.end - r.begin;
        a.in_batch = true;
      }
    }
    shape.window = c.window(l);
    const bool want_pattern = hooks && hooks->wants(HookPoint::AttnPattern, l);
    LMKIT_CHECK(!want_pattern || ns == 1, "attention-pattern hooks need one sequence per batch");
    float *pattern = nullptr;
    if (want_pattern) {
      pattern = ctx.scratch(nh * n * seqs[0].n_kv);
      std::memset(pattern, 0, size_t(nh * n * seqs[0].n_kv) * 4);
    }
    ag::Var z = ag::attention(ctx, qkv, std::span<const ag::AttnSeq>(seqs, ns), pos, shape, pattern,
                              std::span<const ag::KVGrad>(kv_grad, chunks ? ns : 0));
    if (want_pattern) {
      const ag::AttnSeq &a = seqs[0];
      hook(HookPoint::AttnPattern, l, Tensor::view_of(pattern, DType::F32, {nh, n, a.n_kv}));
      // A listener may have patched the pattern: recompute z = pattern · V from it.
      const int64_t group = nh / nkv;
      for (int64_t hq = 0; hq < nh; ++hq)
        for (int64_t i = 0; i < n; ++i) {
          float *zi = z.row(i) + hq * hd;
          std::fill(zi, zi + hd, 0.0f);
          const float *p = pattern + (hq * n + i) * a.n_kv;
          const float *vh = a.v + (hq / group) * a.ld_head;
          for (int64_t j = 0; j < a.n_kv; ++j)
            if (p[j] != 0.0f)
              for (int64_t e = 0; e < hd; ++e) zi[e] += p[j] * vh[j * a.ld_row + e];
        }
    }
    hook(HookPoint::AttnZ, l, head_view(z, 0, nh, hd));
    ag::Var o = ag::linear(ctx, z, L.wo);
    hook(HookPoint::AttnOut, l, o.tensor());
    x = ag::residual(ctx, x, o);
    hook(HookPoint::ResidMid, l, x.tensor());

    // --- MLP ---
    ag::Var h2 = norm(ctx, c, x, L.ffn_norm, L.ffn_norm_b);
    hook(HookPoint::Ln2, l, h2.tensor());
    ag::Var act;
    if (c.mlp == MlpType::SwiGLU) {
      const ag::Var gu[] = {ctx.new_var(n, L.w_gate.n_out()), ctx.new_var(n, L.w_up.n_out())};
      const Linear *w[] = {&L.w_gate, &L.w_up};
      ag::linears_into(ctx, gu, h2, w);
      const ag::Var g = gu[0], u = gu[1];
      hook(HookPoint::MlpPre, l, g.tensor());
      act = ag::swiglu(ctx, g, u);
    } else {
      ag::Var u = ag::linear(ctx, h2, L.w_up);
      hook(HookPoint::MlpPre, l, u.tensor());
      act = ag::gelu(ctx, u, c.mlp == MlpType::GELUTanh);
    }
    hook(HookPoint::MlpPost, l, act.tensor());
    ag::Var mo = ag::linear(ctx, act, L.w_down);
    hook(HookPoint::MlpOut, l, mo.tensor());
    x = ag::residual(ctx, x, mo);
    hook(HookPoint::ResidPost, l, x.tensor());
    ctx.scope_end(mark);
  }
  if (last < c.n_layer) return x;
  ag::Var out = norm(ctx, c, x, w_.output_norm, w_.output_norm_b);
  hook(HookPoint::LnFinal, -1, out.tensor());
  return out;
}

void Model::logits(ag::Context &ctx, ag::Var h, std::span<const int64_t> rows, float *out) const {
  const int64_t m = int64_t(rows.size()), d = h.cols;
  ag::Var sel = ctx.new_var(m, d, /*tracked=*/false);
  for (int64_t i = 0; i < m; ++i) std::memcpy(sel.row(i), h.row(rows[size_t(i)]), size_t(d) * 4);
  ag::Var y;
  y.data = out;
  y.rows = m;
  y.cols = y.ld = cfg_.n_vocab;
  ag::Context plain(ctx.pool(), ctx.arena());  // no recording: logits are for sampling
  ag::linear_into(plain, y, sel, w_.output);
}

void Model::forward(State &st, std::span<const int32_t> tokens, int64_t pos, float *logits,
                    bool all_logits, ThreadPool &pool, const Hooks *hooks) const {
  const int64_t n = int64_t(tokens.size());
  LMKIT_CHECK(n > 0, "forward: no tokens");
  LMKIT_CHECK(pos >= 0 && pos + n <= st.n_ctx(), "forward: positions [", pos, ", ", pos + n,
              ") exceed the context size ", st.n_ctx());
  for (int64_t i = 0; i < n; i += st.n_batch()) {
    const int64_t m = std::min(st.n_batch(), n - i);
    st.arena_.reset();
    ag::Context ctx(pool, st.arena_);
    for (int64_t j = 0; j < m; ++j) st.pos_[size_t(j)] = int32_t(pos + i + j);
    const SeqRows seq{0, m, 0};
    Batch b{tokens.subspan(size_t(i), size_t(m)),
            std::span<const int32_t>(st.pos_.data(), size_t(m)), std::span<const SeqRows>(&seq, 1)};
    ag::Var h = hidden(ctx, b, st.rope_, &st.cache_, hooks);
    const bool last = i + m == n;
    if (!all_logits && !last) continue;
    const int64_t first = all_logits ? 0 : m - 1;
    auto *rows = static_cast<int64_t *>(st.arena_.alloc(size_t(m) * 8));
    for (int64_t r = first; r < m; ++r) rows[r - first] = r;
    float *dst = all_logits ? logits + i * cfg_.n_vocab : logits;
    this->logits(ctx, h, std::span<const int64_t>(rows, size_t(m - first)), dst);
  }
}

}  // namespace lmkit
