// Differentiable ops over Vars, coarse and fused (DESIGN §5): each computes its forward with the
// kernel table and, when the context records, pushes the backward step that accumulates input
// and parameter gradients. The decoder is written in these ops, so inference and training run
// the same code. Not a general tensor library: 2-D row-major activations only.
#pragma once

#include <cstdint>
#include <span>

#include "autograd/context.h"

namespace lmkit {

// y = x W^T + b.
struct Linear {
  Tensor w;  // (out, in), rows contiguous; f32 for training, any kernel dtype for inference
  Tensor b;  // (out) f32, or undefined when there is no bias
  int64_t n_out() const { return w.dim(0); }
  int64_t n_in() const { return w.dim(1); }
  bool has_bias() const { return b.data() != nullptr; }
};

}  // namespace lmkit

namespace lmkit::ag {

// y(n, d) = table[ids]; gradients scatter-add into the table.
Var embedding(Context &c, const Tensor &table, const int32_t *ids, int64_t n);
// x[i, :] += table[idx[i], :] in place (learned positions); gradients scatter-add into table.
void add_rows_(Context &c, Var x, const Tensor &table, const int32_t *idx);

Var rmsnorm(Context &c, Var x, const Tensor &w, float eps);
Var layernorm(Context &c, Var x, const Tensor &w, const Tensor &b, float eps);

// y = x W^T + b written into y (a fresh Var or a column slice of one).
void linear_into(Context &c, Var y, Var x, const Linear &l);
// y[i] = x W_i^T + b_i for weights that share x (q, k, v; gate, up). Without gradients, the pool
// splits the outputs of all of them in one pass (one dispatch, not one per weight); while
// recording, one linear_into each.
void linears_into(Context &c, std::span<const Var> y, Var x, std::span<const Linear *const> l);
Var linear(Context &c, Var x, const Linear &l);

// In-place rotary embedding of n_head heads of each row of x; cos/sin: (rows, rot_dim/2).
void rope_(Context &c, Var x, const float *cos, const float *sin, int64_t n_head, int64_t head_dim,
           int64_t rot_dim, kernels::RopeStyle style);

// One sequence's queries (rows [row_begin, row_end) of the batch) and the keys/values they see:
// k[hk*ld_head + j*ld_row + d] for j < n_kv, key j at position j.
struct AttnSeq {
  int64_t row_begin = 0, row_end = 0;
  const float *k = nullptr, *v = nullptr;
  int64_t ld_head = 0, ld_row = 0, n_kv = 0;
  bool in_batch = false;  // k/v are the batch's own qkv rows: gradients flow into them
};
// Where the gradients of a sequence's keys outside the batch accumulate (same layout as its k
// and v): a sequence chunk attending to the kept keys of its earlier chunks and its own (see
// KVStore). Null: they take none (a KV cache).
struct KVGrad {
  float *dk = nullptr, *dv = nullptr;
};
struct AttnShape {
  int64_t n_head = 0, n_head_kv = 0, head_dim = 0;
  int64_t window = 0;  // sliding window (0 = none)
  float scale = 1.0f;
};
// z(n, n_head*head_dim) = causal attention of the queries in qkv (columns [0, q_dim)) over each
// sequence's keys. pattern, if not null: (n_head, n, n_kv) probabilities (one sequence only).
// kv_grad: empty, or one per sequence (used for those not in the batch, when recording).
Var attention(Context &c, Var qkv, std::span<const AttnSeq> seqs, const int32_t *pos,
              const AttnShape &s, float *pattern = nullptr, std::span<const KVGrad> kv_grad = {});

// One sequence's keys and values kept across chunks recorded in separate contexts (Seq1F1B):
// chunk i's queries attend to the K/V of chunks 0..i, kept from their forwards (not recomputed),
// and its backward adds to the K/V gradients of every earlier chunk. Head-major like the KV cache:
// k[hk*ld_head + pos*head_dim + d]; dk, dv accumulate with the same layout (start at zero).
struct KVStore {
  float *k = nullptr, *v = nullptr, *dk = nullptr, *dv = nullptr;
  int64_t n_head_kv = 0, head_dim = 0, n_ctx = 0;
  int64_t ld_head() const { return n_ctx * head_dim; }
  // The keys of positions [0, n_kv) as one sequence of an attention call, and where their
  // gradients go.
  AttnSeq seq(int64_t row_begin, int64_t row_end, int64_t n_kv) const;
  KVGrad grad() const { return {dk, dv}; }
};
// Copies the K and V columns of qkv (after RoPE; K at column k_col, V at v_col) of rows at
// positions [pos0, pos0 + rows) into the store. When recording, its backward adds the store's
// dK/dV of those positions into qkv's gradient: record it before the attention that reads the
// store, so it runs after that attention's backward; chunks run backward last chunk first, so the
// store then holds every later chunk's contribution too.
void kv_store_append(Context &c, Var qkv, int64_t k_col, int64_t v_col, const KVStore &s,
                     int64_t pos0);

Var swiglu(Context &c, Var gate, Var up);       // silu(gate) * up
Var gelu(Context &c, Var x, bool tanh_approx);  // GELU (erf) or GPT-2's tanh form

// x + y. Without recording, x is updated in place and returned. When recording, the result has
// its own data but shares x's gradient buffer (the residual stream's gradient), so x must not be
// used again afterwards.
Var residual(Context &c, Var x, Var y);

// Cross-entropy of the classifier logits h W^T against targets (a target < 0 is ignored),
// computed in row chunks so the (n, vocab) logits never exist at once. When recording, the
// gradients of h, W (and b) for the objective grad_scale * sum(row losses) are computed here and
// h's is handed to backward. row_loss (n), if not null, receives each row's loss.
struct LossSum {
  double sum = 0;     // sum of the row losses
  int64_t count = 0;  // rows with a target
};
LossSum cross_entropy(Context &c, Var h, const Linear &out, const int32_t *targets,
                      float grad_scale, float *row_loss = nullptr);

}  // namespace lmkit::ag
