// Forward and backward of every op, parallel over the thread pool with fixed partitions (the
// same thread count gives the same bits). Backward steps capture only what they need.
#include "autograd/ops.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "kernels/quant.h"

namespace lmkit::ag {

namespace {

using kernels::KernelTable;

// Elementwise work below this many elements stays on the calling thread.
constexpr int64_t kParallelMin = 1 << 15;

template <typename F>
void for_rows(ThreadPool &pool, int64_t rows, int64_t cols, F &&f) {
  if (rows < 2 || rows * cols < kParallelMin) {
    if (rows > 0) f(int64_t(0), rows, 0);
    return;
  }
  pool.parallel_for(rows, [&](int64_t b, int64_t e, int t) { f(b, e, t); });
}

// dst(rows, cols) += src(rows, cols), both row-strided.
void add_into(Context &c, float *dst, int64_t ld_dst, const float *src, int64_t ld_src,
              int64_t rows, int64_t cols) {
  const KernelTable &k = c.k();
  for_rows(c.pool(), rows, cols, [&](int64_t r0, int64_t r1, int) {
    if (ld_dst == cols && ld_src == cols) {
      k.add_fwd(dst + r0 * cols, dst + r0 * cols, src + r0 * cols, (r1 - r0) * cols);
      return;
    }
    for (int64_t r = r0; r < r1; ++r)
      k.add_fwd(dst + r * ld_dst, dst + r * ld_dst, src + r * ld_src, cols);
  });
}

// ids outlive the caller's buffer: the backward step reads them later.
const int32_t *keep_ids(Context &c, const int32_t *ids, int64_t n) {
  auto *p = static_cast<int32_t *>(c.arena().alloc(size_t(n) * 4));
  std::memcpy(p, ids, size_t(n) * 4);
  return p;
}

// A dense (rows, cols) copy-free view check: kernels that take contiguous rows need ld == cols.
void require_dense(const Var &v, const char *what) {
  LMKIT_CHECK(v.ld == v.cols, what, ": expects contiguous rows");
}

// Parameter-gradient accumulation for row-parallel backward kernels: each thread sums into its
// own zeroed partial of `width` floats; the partials are then added in thread order.
template <typename F>
void with_partials(Context &c, int64_t rows, int64_t cols, int n_out, int64_t width,
                   float *const *outs, F &&f) {
  const int nt = c.pool().size();
  float *part = c.scratch(int64_t(nt) * n_out * width);
  std::memset(part, 0, size_t(nt) * size_t(n_out) * size_t(width) * 4);
  for_rows(c.pool(), rows, cols,
           [&](int64_t r0, int64_t r1, int t) { f(r0, r1, part + int64_t(t) * n_out * width); });
  // Threads that got no rows left their partial at zero; adding it changes nothing.
  for (int t = 0; t < nt; ++t)
    for (int o = 0; o < n_out; ++o)
      if (outs[o]) c.k().add_fwd(outs[o], outs[o], part + (int64_t(t) * n_out + o) * width, width);
}

}  // namespace

// ---- embeddings ------------------------------------------------------------------------------

Var embedding(Context &c, const Tensor &table, const int32_t *ids, int64_t n) {
  const int64_t d = table.dim(1);
  Var y = c.new_var(n, d);
  if (dtype_is_quantized(table.dtype())) {
    // GGUF block types: rows are dequantized (the GGUF formula, the same bits on every table).
    // Their values are not trainable: gradients need f32 master weights.
    LMKIT_CHECK(!c.param_grad(table), "training a ", dtype_name(table.dtype()),
                " embedding table is not supported (train from f32 weights)");
    kernels::embedding_lookup(y.data, ids, n, table.data(), table.dtype(), d);
    return y;
  }
  c.k().embedding_fwd(y.data, ids, n, table.data(), table.dtype(), d);
  if (float *pg = c.param_grad(table)) {
    const int32_t *kept = keep_ids(c, ids, n);
    c.record([&c, y, pg, kept, n, d] { c.k().embedding_bwd(pg, kept, n, c.grad(y), d); });
  }
  return y;
}

void add_rows_(Context &c, Var x, const Tensor &table, const int32_t *idx) {
  require_dense(x, "add_rows_");
  const int64_t d = x.cols;
  const float *t = table.f32();
  for (int64_t i = 0; i < x.rows; ++i)
    c.k().add_fwd(x.row(i), x.row(i), t + int64_t(idx[i]) * d, d);
  if (float *pg = c.param_grad(table)) {
    const int32_t *kept = keep_ids(c, idx, x.rows);
    c.record([&c, x, pg, kept, d] { c.k().embedding_bwd(pg, kept, x.rows, c.grad(x), d); });
  }
}

// ---- norms -----------------------------------------------------------------------------------

Var rmsnorm(Context &c, Var x, const Tensor &w, float eps) {
  require_dense(x, "rmsnorm");
  const int64_t n = x.rows, d = x.cols;
  Var y = c.new_var(n, d);
  float *rstd = c.recording() ? c.scratch(n) : nullptr;
  const float *wp = w.f32();
  for_rows(c.pool(), n, d, [&](int64_t r0, int64_t r1, int) {
    c.k().rmsnorm_fwd(y.row(r0), rstd ? rstd + r0 : nullptr, x.row(r0), wp, r1 - r0, d, eps);
  });
  if (c.recording() && (x.tracked() || c.param_grad(w))) {
    float *pw = c.param_grad(w);
    c.record([&c, x, y, wp, rstd, pw, n, d] {
      float *dx = c.scratch(n * d);
      const float *dy = c.grad(y);
      float *outs[1] = {pw};
      with_partials(c, n, d, 1, d, outs, [&](int64_t r0, int64_t r1, float *part) {
        c.k().rmsnorm_bwd(dx + r0 * d, part, dy + r0 * d, x.row(r0), wp, rstd + r0, r1 - r0, d);
      });
      if (x.tracked()) add_into(c, c.grad(x), c.grad_ld(x), dx, d, n, d);
    });
  }
  return y;
}

Var layernorm(Context &c, Var x, const Tensor &w, const Tensor &b, float eps) {
  require_dense(x, "layernorm");
  const int64_t n = x.rows, d = x.cols;
  Var y = c.new_var(n, d);
  float *mean = c.recording() ? c.scratch(n) : nullptr;
  float *rstd = c.recording() ? c.scratch(n) : nullptr;
  const float *wp = w.f32(), *bp = b.data() ? b.f32() : nullptr;
  for_rows(c.pool(), n, d, [&](int64_t r0, int64_t r1, int) {
    c.k().layernorm_fwd(y.row(r0), mean ? mean + r0 : nullptr, rstd ? rstd + r0 : nullptr,
                        x.row(r0), wp, bp, r1 - r0, d, eps);
  });
  float *pw = c.param_grad(w), *pb = b.data() ? c.param_grad(b) : nullptr;
  if (c.recording() && (x.tracked() || pw || pb)) {
    c.record([&c, x, y, wp, mean, rstd, pw, pb, n, d] {
      float *dx = c.scratch(n * d);
      const float *dy = c.grad(y);
      float *outs[2] = {pw, pb};
      with_partials(c, n, d, 2, d, outs, [&](int64_t r0, int64_t r1, float *part) {
        c.k().layernorm_bwd(dx + r0 * d, part, part + d, dy + r0 * d, x.row(r0), wp, mean + r0,
                            rstd + r0, r1 - r0, d);
      });
      if (x.tracked()) add_into(c, c.grad(x), c.grad_ld(x), dx, d, n, d);
    });
  }
  return y;
}

// ---- linear ----------------------------------------------------------------------------------

namespace {

void check_linear(Var y, Var x, const Linear &l) {
  LMKIT_CHECK(x.cols == l.n_in() && y.cols == l.n_out() && y.rows == x.rows, "linear: x (", x.rows,
              ", ", x.cols, ") and y (", y.rows, ", ", y.cols, ") do not fit W ",
              l.w.shape().str());
}

// Outputs [n0, n1) of y = x W^T + b, on the calling thread.
void linear_cols(Context &c, Var y, Var x, const Linear &l, int64_t n0, int64_t n1) {
  const size_t row_bytes = dtype_row_bytes(l.w.dtype(), l.n_in());
  c.k().matmul_for(l.w.dtype())(y.data + n0, y.ld, x.data, x.ld,
                                static_cast<const char *>(l.w.data()) + size_t(n0) * row_bytes,
                                l.has_bias() ? l.b.f32() + n0 : nullptr, x.rows, n1 - n0, l.n_in());
}

}  // namespace

void linear_into(Context &c, Var y, Var x, const Linear &l) {
  const int64_t M = x.rows, N = l.n_out(), K = l.n_in();
  check_linear(y, x, l);
  c.pool().parallel_for(
      N, [&](int64_t n0, int64_t n1, int) { linear_cols(c, y, x, l, n0, n1); }, 16);
  if (!c.recording()) return;
  float *pw = c.param_grad(l.w);
  float *pb = l.has_bias() ? c.param_grad(l.b) : nullptr;
  if (!x.tracked() && !pw && !pb) return;
  LMKIT_CHECK(!x.tracked() || l.w.dtype() == DType::F32, "training through a ",
              dtype_name(l.w.dtype()), " weight is not supported (f32 only)");
  const float *wf = static_cast<const float *>(l.w.data());
  c.record([&c, x, y, wf, pw, pb, M, N, K] {
    const float *dy = c.grad(y);
    const int64_t lddy = c.grad_ld(y);
    const KernelTable &k = c.k();
    if (x.tracked()) {
      float *dx = c.grad(x);
      const int64_t lddx = c.grad_ld(x);
      c.pool().parallel_for(M, [&](int64_t m0, int64_t m1, int) {
        k.matmul_bwd_x(dx + m0 * lddx, lddx, dy + m0 * lddy, lddy, wf, m1 - m0, N, K);
      });
    }
    if (pw || pb) {
      // A frozen weight with a trainable bias still needs db: accumulate into scratch then.
      float *dw = pw ? pw : c.scratch(N * K);
      c.pool().parallel_for(
          N,
          [&](int64_t n0, int64_t n1, int) {
            k.matmul_bwd_w(dw + n0 * K, pb ? pb + n0 : nullptr, dy + n0, lddy, x.data, x.ld, M,
                           n1 - n0, K);
          },
          16);
    }
  });
}

void linears_into(Context &c, std::span<const Var> y, Var x, std::span<const Linear *const> l) {
  LMKIT_CHECK(y.size() == l.size(), "linears: ", y.size(), " outputs for ", l.size(), " weights");
  if (c.recording()) {
    for (size_t i = 0; i < l.size(); ++i) linear_into(c, y[i], x, *l[i]);
    return;
  }
  int64_t total = 0;
  for (size_t i = 0; i < l.size(); ++i) {
    check_linear(y[i], x, *l[i]);
    total += l[i]->n_out();
  }
  // Outputs [n0, n1) of the concatenation: the part of each weight that falls in it.
  c.pool().parallel_for(
      total,
      [&](int64_t n0, int64_t n1, int) {
        int64_t off = 0;
        for (size_t i = 0; i < l.size(); ++i) {
          const int64_t N = l[i]->n_out();
          const int64_t b = std::max(n0, off) - off, e = std::min(n1, off + N) - off;
          if (b < e) linear_cols(c, y[i], x, *l[i], b, e);
          off += N;
        }
      },
      16);
}

Var linear(Context &c, Var x, const Linear &l) {
  Var y = c.new_var(x.rows, l.n_out());
  linear_into(c, y, x, l);
  return y;
}

// ---- rope ------------------------------------------------------------------------------------

void rope_(Context &c, Var x, const float *cos, const float *sin, int64_t n_head, int64_t head_dim,
           int64_t rot_dim, kernels::RopeStyle style) {
  const int64_t n = x.rows, half = rot_dim / 2;
  for_rows(c.pool(), n, x.cols, [&](int64_t r0, int64_t r1, int) {
    c.k().rope_fwd(x.row(r0), x.ld, cos + r0 * half, sin + r0 * half, r1 - r0, n_head, head_dim,
                   rot_dim, style);
  });
  if (!c.recording() || !x.tracked()) return;
  // The rotation is orthogonal: its backward rotates the gradient by the negated angle.
  float *cs = c.scratch(n * half), *ns = c.scratch(n * half);
  std::memcpy(cs, cos, size_t(n * half) * 4);
  for (int64_t i = 0; i < n * half; ++i) ns[i] = -sin[i];
  c.record([&c, x, cs, ns, n, half, n_head, head_dim, rot_dim, style] {
    float *g = c.grad(x);
    const int64_t ld = c.grad_ld(x);
    for_rows(c.pool(), n, x.cols, [&](int64_t r0, int64_t r1, int) {
      c.k().rope_fwd(g + r0 * ld, ld, cs + r0 * half, ns + r0 * half, r1 - r0, n_head, head_dim,
                     rot_dim, style);
    });
  });
}

// ---- attention -------------------------------------------------------------------------------

namespace {

// The fields the attention kernels' forward and backward arguments share, for sequence q's rows.
template <class Args>
void attn_args(Args &a, const Var &qkv, const AttnSeq &q, const int32_t *pos, const AttnShape &s,
               float *scratch) {
  const int64_t rb = q.row_begin;
  a.q = qkv.row(rb);
  a.ld_q = qkv.ld;
  a.k = q.k;
  a.v = q.v;
  a.ld_kv_head = q.ld_head;
  a.ld_kv_row = q.ld_row;
  a.q_pos = pos + rb;
  a.n_q = q.row_end - rb;
  a.n_kv = q.n_kv;
  a.n_head = s.n_head;
  a.n_head_kv = s.n_head_kv;
  a.head_dim = s.head_dim;
  a.window = s.window;
  a.scale = s.scale;
  a.scratch = scratch;
}

}  // namespace

Var attention(Context &c, Var qkv, std::span<const AttnSeq> seqs, const int32_t *pos,
              const AttnShape &s, float *pattern, std::span<const KVGrad> kv_grad) {
  const int64_t n = qkv.rows, q_dim = s.n_head * s.head_dim;
  LMKIT_CHECK(!pattern || seqs.size() == 1, "attention patterns are reported for one sequence");
  Var z = c.new_var(n, q_dim);
  float *lse = c.recording() ? c.scratch(n * s.n_head) : nullptr;
  LMKIT_CHECK(kv_grad.empty() || kv_grad.size() == seqs.size(), "attention: ", kv_grad.size(),
              " key-gradient buffers for ", seqs.size(), " sequences");
  int64_t max_kv = 1;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const AttnSeq &q = seqs[i];
    max_kv = std::max(max_kv, q.n_kv);
    LMKIT_CHECK(
        !c.recording() || q.in_batch || (!kv_grad.empty() && kv_grad[i].dk && kv_grad[i].dv),
        "training attends within the batch or to a KVStore; cached keys cannot take "
        "gradients");
  }
  float *scratch = c.scratch(int64_t(c.pool().size()) * max_kv * 2);
  const int64_t tasks = int64_t(seqs.size()) * s.n_head;
  c.pool().parallel_for(tasks, [&](int64_t t0, int64_t t1, int ti) {
    for (int64_t t = t0; t < t1; ++t) {
      const AttnSeq &q = seqs[size_t(t / s.n_head)];
      const int64_t h = t % s.n_head, rb = q.row_begin;
      kernels::AttentionArgs a;
      attn_args(a, qkv, q, pos, s, scratch + int64_t(ti) * max_kv * 2);
      a.out = z.row(rb);
      a.ld_out = z.ld;
      a.pattern = pattern;
      a.lse = lse ? lse + rb * s.n_head : nullptr;
      a.head_begin = h;
      a.head_end = h + 1;
      c.k().attention_fwd(a);
    }
  });
  if (!c.recording() || !qkv.tracked()) return z;
  std::vector<AttnSeq> kept(seqs.begin(), seqs.end());
  std::vector<KVGrad> kept_grad(seqs.size());
  if (!kv_grad.empty()) kept_grad.assign(kv_grad.begin(), kv_grad.end());
  const int32_t *kpos = keep_ids(c, pos, n);
  c.record(
      [&c, qkv, z, lse, kept = std::move(kept), kept_grad = std::move(kept_grad), kpos, s, max_kv] {
        float *gq = c.grad(qkv);
        const float *gz = c.grad(z);
        const int64_t ld_gq = c.grad_ld(qkv), ld_gz = c.grad_ld(z);
        float *scratch = c.scratch(int64_t(c.pool().size()) * max_kv * 2);
        const int64_t tasks = int64_t(kept.size()) * s.n_head_kv;
        c.pool().parallel_for(tasks, [&](int64_t t0, int64_t t1, int ti) {
          for (int64_t t = t0; t < t1; ++t) {
            const AttnSeq &q = kept[size_t(t / s.n_head_kv)];
            const KVGrad &qg = kept_grad[size_t(t / s.n_head_kv)];
            const int64_t hk = t % s.n_head_kv, rb = q.row_begin;
            kernels::AttentionBwdArgs a;
            attn_args(a, qkv, q, kpos, s, scratch + int64_t(ti) * max_kv * 2);
            a.out = z.row(rb);
            a.ld_out = z.ld;
            a.dout = gz + rb * ld_gz;
            a.ld_dout = ld_gz;
            a.lse = lse + rb * s.n_head;
            a.dq = gq + rb * ld_gq;
            a.ld_dq = ld_gq;
            // In the batch, k/v live in qkv's rows, so their gradients sit at the same offsets in
            // its gradient; otherwise they accumulate in the caller's buffers (a KVStore).
            a.dk = q.in_batch ? gq + (q.k - qkv.data) : qg.dk;
            a.dv = q.in_batch ? gq + (q.v - qkv.data) : qg.dv;
            a.kv_head_begin = hk;
            a.kv_head_end = hk + 1;
            c.k().attention_bwd(a);
          }
        });
      });
  return z;
}

AttnSeq KVStore::seq(int64_t row_begin, int64_t row_end, int64_t n_kv) const {
  LMKIT_CHECK(n_kv >= 1 && n_kv <= n_ctx, "KV store: ", n_kv, " keys do not fit its ", n_ctx,
              " positions");
  AttnSeq a;
  a.row_begin = row_begin;
  a.row_end = row_end;
  a.k = k;
  a.v = v;
  a.ld_head = ld_head();
  a.ld_row = head_dim;
  a.n_kv = n_kv;
  return a;
}

void kv_store_append(Context &c, Var qkv, int64_t k_col, int64_t v_col, const KVStore &s,
                     int64_t pos0) {
  const int64_t n = qkv.rows, hd = s.head_dim, kv_dim = s.n_head_kv * hd;
  LMKIT_CHECK(pos0 >= 0 && pos0 + n <= s.n_ctx, "KV store: positions [", pos0, ", ", pos0 + n,
              ") exceed its ", s.n_ctx);
  LMKIT_CHECK(k_col >= 0 && k_col + kv_dim <= qkv.cols && v_col >= 0 && v_col + kv_dim <= qkv.cols,
              "KV store: K/V columns outside the QKV rows");
  const int64_t ldh = s.ld_head();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t g = 0; g < s.n_head_kv; ++g) {
      std::memcpy(s.k + g * ldh + (pos0 + i) * hd, qkv.row(i) + k_col + g * hd, size_t(hd) * 4);
      std::memcpy(s.v + g * ldh + (pos0 + i) * hd, qkv.row(i) + v_col + g * hd, size_t(hd) * 4);
    }
  if (!c.recording() || !qkv.tracked()) return;
  c.record([&c, qkv, k_col, v_col, s, pos0, n, hd, ldh] {
    float *g = c.grad(qkv);
    const int64_t ld = c.grad_ld(qkv);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t h = 0; h < s.n_head_kv; ++h) {
        float *gk = g + i * ld + k_col + h * hd, *gv = g + i * ld + v_col + h * hd;
        const float *sk = s.dk + h * ldh + (pos0 + i) * hd, *sv = s.dv + h * ldh + (pos0 + i) * hd;
        for (int64_t d = 0; d < hd; ++d) {
          gk[d] += sk[d];
          gv[d] += sv[d];
        }
      }
  });
}

// ---- activations -----------------------------------------------------------------------------

Var swiglu(Context &c, Var gate, Var up) {
  require_dense(gate, "swiglu");
  require_dense(up, "swiglu");
  const int64_t n = gate.rows, f = gate.cols;
  Var y = c.new_var(n, f);
  for_rows(c.pool(), n, f, [&](int64_t r0, int64_t r1, int) {
    c.k().swiglu_fwd(y.row(r0), gate.row(r0), up.row(r0), (r1 - r0) * f);
  });
  if (c.recording() && (gate.tracked() || up.tracked())) {
    c.record([&c, gate, up, y, n, f] {
      float *dg = c.scratch(n * f), *du = c.scratch(n * f);
      const float *dy = c.grad(y);
      for_rows(c.pool(), n, f, [&](int64_t r0, int64_t r1, int) {
        c.k().swiglu_bwd(dg + r0 * f, du + r0 * f, gate.row(r0), up.row(r0), dy + r0 * f,
                         (r1 - r0) * f);
      });
      if (gate.tracked()) add_into(c, c.grad(gate), c.grad_ld(gate), dg, f, n, f);
      if (up.tracked()) add_into(c, c.grad(up), c.grad_ld(up), du, f, n, f);
    });
  }
  return y;
}

Var gelu(Context &c, Var x, bool tanh_approx) {
  require_dense(x, "gelu");
  const int64_t n = x.rows, f = x.cols;
  Var y = c.new_var(n, f);
  auto fwd = tanh_approx ? c.k().gelu_tanh_fwd : c.k().gelu_fwd;
  for_rows(c.pool(), n, f,
           [&](int64_t r0, int64_t r1, int) { fwd(y.row(r0), x.row(r0), (r1 - r0) * f); });
  if (c.recording() && x.tracked()) {
    c.record([&c, x, y, n, f, tanh_approx] {
      auto bwd = tanh_approx ? c.k().gelu_tanh_bwd : c.k().gelu_bwd;
      float *dx = c.scratch(n * f);
      const float *dy = c.grad(y);
      for_rows(c.pool(), n, f, [&](int64_t r0, int64_t r1, int) {
        bwd(dx + r0 * f, x.row(r0), dy + r0 * f, (r1 - r0) * f);
      });
      add_into(c, c.grad(x), c.grad_ld(x), dx, f, n, f);
    });
  }
  return y;
}

Var residual(Context &c, Var x, Var y) {
  LMKIT_CHECK(x.rows == y.rows && x.cols == y.cols, "residual: shapes differ");
  if (!c.recording()) {
    add_into(c, x.data, x.ld, y.data, y.ld, x.rows, x.cols);
    return x;
  }
  require_dense(x, "residual");
  Var z = c.new_var(x.rows, x.cols, /*tracked=*/false);
  z.buf = x.buf;  // the residual stream keeps one gradient buffer
  z.col = x.col;
  for_rows(c.pool(), x.rows, x.cols, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) c.k().add_fwd(z.row(r), x.row(r), y.row(r), x.cols);
  });
  if (y.tracked() && z.tracked())
    c.record([&c, z, y] {
      add_into(c, c.grad(y), c.grad_ld(y), c.grad(z), c.grad_ld(z), z.rows, z.cols);
    });
  return z;
}

// ---- loss ------------------------------------------------------------------------------------

LossSum cross_entropy(Context &c, Var h, const Linear &out, const int32_t *targets,
                      float grad_scale, float *row_loss) {
  const int64_t n = h.rows, d = h.cols, V = out.n_out();
  LMKIT_CHECK(out.n_in() == d, "cross_entropy: hidden size ", d, " does not fit the classifier ",
              out.w.shape().str());
  for (int64_t i = 0; i < n; ++i)
    LMKIT_CHECK(targets[i] < V, "target id ", targets[i], " is outside the vocabulary of ", V);
  const bool grads = c.recording();
  float *pw = grads ? c.param_grad(out.w) : nullptr;
  float *pb = grads && out.has_bias() ? c.param_grad(out.b) : nullptr;
  const bool want_dh = grads && h.tracked();
  LMKIT_CHECK(!(want_dh || pw) || out.w.dtype() == DType::F32, "training through a ",
              dtype_name(out.w.dtype()), " classifier is not supported");
  // Rows per chunk: keep the chunk's logits around 32 MiB.
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(n, (int64_t(8) << 20) / V));
  float *logits = c.scratch(chunk * V);
  float *loss = row_loss ? row_loss : c.scratch(n);
  float *dh = want_dh ? c.scratch(n * d) : nullptr;
  if (dh) std::memset(dh, 0, size_t(n * d) * 4);
  const KernelTable &k = c.k();
  kernels::matmul_fn mm = k.matmul_for(out.w.dtype());
  const size_t row_bytes = dtype_row_bytes(out.w.dtype(), d);
  const char *w = static_cast<const char *>(out.w.data());
  const float *b = out.has_bias() ? out.b.f32() : nullptr;
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t m = std::min(chunk, n - r0);
    c.pool().parallel_for(
        V,
        [&](int64_t n0, int64_t n1, int) {
          mm(logits + n0, V, h.row(r0), h.ld, w + size_t(n0) * row_bytes, b ? b + n0 : nullptr, m,
             n1 - n0, d);
        },
        16);
    c.pool().parallel_for(m, [&](int64_t i0, int64_t i1, int) {
      k.cross_entropy_fwd_bwd(loss + r0 + i0, grads ? logits + i0 * V : nullptr, V, logits + i0 * V,
                              V, targets + r0 + i0, i1 - i0, V, grad_scale);
    });
    if (!grads) continue;
    const float *wf = static_cast<const float *>(out.w.data());
    if (dh)
      c.pool().parallel_for(m, [&](int64_t m0, int64_t m1, int) {
        k.matmul_bwd_x(dh + (r0 + m0) * d, d, logits + m0 * V, V, wf, m1 - m0, V, d);
      });
    if (pw || pb) {
      float *dw = pw ? pw : c.scratch(V * d);
      c.pool().parallel_for(
          V,
          [&](int64_t n0, int64_t n1, int) {
            k.matmul_bwd_w(dw + n0 * d, pb ? pb + n0 : nullptr, logits + n0, V, h.row(r0), h.ld, m,
                           n1 - n0, d);
          },
          16);
    }
  }
  LossSum s;
  for (int64_t i = 0; i < n; ++i)
    if (targets[i] >= 0) {
      s.sum += double(loss[i]);
      ++s.count;
    }
  if (dh) c.record([&c, h, dh, n, d] { add_into(c, c.grad(h), c.grad_ld(h), dh, d, n, d); });
  return s;
}

}  // namespace lmkit::ag
