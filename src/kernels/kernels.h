// Kernel tables: every op the model families need, as plain functions on pointers and sizes.
// One table per instruction set (scalar "ref", "avx2", "avx512"), all with the same signatures;
// the best one this CPU runs is chosen once at start-up and can be forced with LMKIT_KERNELS.
// Kernels never allocate, never see a model, and never start threads: callers split work across
// the thread pool by giving each call a range (rows of a matmul, heads of attention).
//
// Conventions: row-major; "ld" arguments are row strides in elements; a Linear weight W is (N, K)
// with each of its N rows holding K contiguous elements of the weight's dtype (PyTorch layout).
// Pointers need only the natural alignment of their element type (4 bytes for f32, 2 for f16/bf16):
// the SIMD kernels use unaligned loads, and their results do not depend on pointer alignment.
// Sizes of 0 are allowed everywhere (nothing is read or written). Arguments are not validated here:
// callers check shapes and token ids once, outside the hot loop.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace lmkit::kernels {

// How RoPE pairs the dimensions of a head:
//  Interleaved: pairs (2i, 2i+1)          (GPT-J, llama2.c, GGUF "llama" after llama.cpp's permute)
//  Half:        pairs (i, i + rot_dim/2)  (GPT-NeoX, Hugging Face rotate_half)
enum class RopeStyle : int { Interleaved = 0, Half = 1 };

// Causal (optionally sliding-window) multi-head attention with grouped KV heads, for n_q queries
// of one sequence against n_kv cached keys/values (the cache already holds the queries' own K/V).
// Query head h reads KV head h / (n_head / n_head_kv).
struct AttentionArgs {
  float *out = nullptr;  // (n_q, n_head*head_dim), row stride ld_out
  int64_t ld_out = 0;
  const float *q = nullptr;  // (n_q, n_head*head_dim), row stride ld_q
  int64_t ld_q = 0;
  const float *k = nullptr;        // k[hk*ld_kv_head + j*ld_kv_row + d], j < n_kv, d < head_dim
  const float *v = nullptr;        // same layout as k
  int64_t ld_kv_head = 0;          // elements between consecutive KV heads
  const int32_t *q_pos = nullptr;  // (n_q) absolute position of each query; key j is at position j
  int64_t n_q = 0, n_kv = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
  int64_t window = 0;        // key j is visible to a query at pos iff j <= pos and (window == 0
                             // or pos - j < window)
  float scale = 1.0f;        // usually 1/sqrt(head_dim)
  float *pattern = nullptr;  // optional (n_head, n_q, n_kv): the softmax probabilities, 0 if masked
  float *scratch = nullptr;  // at least n_kv floats, private to the calling thread
  int64_t head_begin = 0, head_end = 0;  // compute query heads [head_begin, head_end)
  // Elements between consecutive keys of one head; 0 means head_dim (the head-major KV cache,
  // ld_kv_head >= n_kv*head_dim). Training reads K/V straight from the fused QKV activation:
  // ld_kv_head = head_dim, ld_kv_row = the QKV row stride.
  int64_t ld_kv_row = 0;
  // Optional (n_q, n_head), lse[i*n_head + h]: log-sum-exp of query i's scaled, masked scores
  // (saved for attention_bwd); -inf for a query that sees no key.
  float *lse = nullptr;
};

// Backward of attention_fwd for KV heads [kv_head_begin, kv_head_end) and all their query heads.
// Per query row i, head h (KV head hk), over the keys j the query sees:
//   p_ij = exp(scale q_i·k_j - lse_i),  D_i = do_i·o_i,  ds_ij = p_ij (do_i·v_j - D_i)
//   dv_j += p_ij do_i,   dk_j += scale ds_ij q_i,   dq_i += scale Σ_j ds_ij k_j
// dq, dk, dv are accumulated (+=) and may all live in one fused dQKV buffer (dk = dqkv + q_dim,
// ...). Callers split KV heads across threads, so no two calls touch the same dk/dv rows or dq
// columns. Memory is O(n_kv) per call (never an (n_q, n_kv) matrix).
struct AttentionBwdArgs {
  const float *q = nullptr;  // (n_q, n_head*head_dim), row stride ld_q, as forward
  int64_t ld_q = 0;
  const float *k = nullptr, *v = nullptr;  // as forward: k[hk*ld_kv_head + j*ld_kv_row + d]
  int64_t ld_kv_head = 0, ld_kv_row = 0;   // ld_kv_row 0 means head_dim
  const float *out = nullptr;              // (n_q, n_head*head_dim) forward output o
  int64_t ld_out = 0;
  const float *dout = nullptr;  // (n_q, n_head*head_dim) dL/do, row stride ld_dout
  int64_t ld_dout = 0;
  const float *lse = nullptr;  // (n_q, n_head) from attention_fwd
  float *dq = nullptr;         // (n_q, n_head*head_dim), row stride ld_dq, accumulated
  int64_t ld_dq = 0;
  float *dk = nullptr, *dv = nullptr;  // same layout and strides as k, v; accumulated
  const int32_t *q_pos = nullptr;      // (n_q) as forward
  int64_t n_q = 0, n_kv = 0, n_head = 0, n_head_kv = 0, head_dim = 0, window = 0;
  float scale = 1.0f;
  float *scratch = nullptr;                    // at least 2*n_kv floats, private to the thread
  int64_t kv_head_begin = 0, kv_head_end = 0;  // KV heads [begin, end) and their query heads
};

// y(M, N) = x(M, K) · W(N, K)^T (+ bias(N) if not null). y rows have stride ldy, x rows ldx.
// Within one table, y[m, n] depends only on x[m, :], W[n, :] and bias[n]: the same bits whatever M
// is and however callers split M or N into calls (so prefill and decode agree exactly).
// y must not overlap x or W.
using matmul_fn = void (*)(float *y, int64_t ldy, const float *x, int64_t ldx, const void *w,
                           const float *bias, int64_t M, int64_t N, int64_t K);

struct KernelTable {
  const char *name;  // "ref", "avx2", "avx512"

  // Linear layers, one entry per weight dtype (see matmul_for).
  matmul_fn matmul_f32;
  matmul_fn matmul_f16;
  matmul_fn matmul_bf16;

  // y(n, dim) = table[ids[i], :] converted to f32; table is (vocab, dim) of dtype t.
  void (*embedding_fwd)(float *y, const int32_t *ids, int64_t n, const void *table, DType t,
                        int64_t dim);

  // y[r,:] = x[r,:] * rstd[r] * w[:],  rstd[r] = 1/sqrt(mean(x[r,:]^2) + eps).
  // x, y: (rows, dim) contiguous (y may alias x); w: (dim); rstd: (rows) or null.
  void (*rmsnorm_fwd)(float *y, float *rstd, const float *x, const float *w, int64_t rows,
                      int64_t dim, float eps);

  // y[r,:] = (x[r,:] - mean[r]) * rstd[r] * w[:] + b[:]; b may be null; mean/rstd (rows) or null.
  void (*layernorm_fwd)(float *y, float *mean, float *rstd, const float *x, const float *w,
                        const float *b, int64_t rows, int64_t dim, float eps);

  // In-place rotary embedding of the first rot_dim dims of every head of every token.
  // x: (n_tok, n_head*head_dim) with row stride ld; cos, sin: (n_tok, rot_dim/2) per token.
  // For pair i with dims (a, b): (x_a, x_b) <- (x_a*cos_i - x_b*sin_i, x_b*cos_i + x_a*sin_i).
  void (*rope_fwd)(float *x, int64_t ld, const float *cos, const float *sin, int64_t n_tok,
                   int64_t n_head, int64_t head_dim, int64_t rot_dim, RopeStyle style);

  // Elementwise activations, y may alias x.
  void (*silu_fwd)(float *y, const float *x, int64_t n);       // x * sigmoid(x)
  void (*gelu_fwd)(float *y, const float *x, int64_t n);       // exact: 0.5x(1 + erf(x/sqrt2))
  void (*gelu_tanh_fwd)(float *y, const float *x, int64_t n);  // GPT-2's tanh approximation
  // y = silu(gate) * up; y may alias gate or up.
  void (*swiglu_fwd)(float *y, const float *gate, const float *up, int64_t n);
  // y = a + b; y may alias a or b.
  void (*add_fwd)(float *y, const float *a, const float *b, int64_t n);
  // Row-wise softmax over (rows, cols), max-subtracted; y may alias x. A row that is all -inf
  // (fully masked) becomes all zeros.
  void (*softmax_fwd)(float *y, const float *x, int64_t rows, int64_t cols);

  // See AttentionArgs. A query that sees no key (e.g. q_pos < 0) gets zero output and pattern rows.
  void (*attention_fwd)(const AttentionArgs &a);

  // ---- Backward (training, f32 weights). Rows are tokens. "Accumulated" outputs are += (the
  // parameter gradients, llm.c's convention); "written" ones are overwritten.

  // dx(M, K) += dy(M, N) · W(N, K), W the forward's (N, K) f32 weight (y = x W^T). dx rows stride
  // lddx, dy rows lddy. For each dx[m, :] the summation order over n is fixed (it does not depend
  // on M), so callers may split M across threads. dx must not overlap dy or W.
  void (*matmul_bwd_x)(float *dx, int64_t lddx, const float *dy, int64_t lddy, const float *w,
                       int64_t M, int64_t N, int64_t K);
  // dw(N, K) += dy^T · x, i.e. dw[n, k] += Σ_m dy[m, n] x[m, k]; db(N) += Σ_m dy[m, n] if db is
  // not null. dw contiguous (row stride K); dy rows lddy, x rows ldx. The sum over m runs in a
  // fixed order. Callers split N across threads (dy + n0, same lddy; dw + n0*K; db + n0).
  void (*matmul_bwd_w)(float *dw, float *db, const float *dy, int64_t lddy, const float *x,
                       int64_t ldx, int64_t M, int64_t N, int64_t K);

  // dw[ids[i], :] += dy[i, :] for i = 0 .. n-1 in order (repeated ids accumulate).
  // dw: (vocab, dim) f32;  dy: (n, dim).
  void (*embedding_bwd)(float *dw, const int32_t *ids, int64_t n, const float *dy, int64_t dim);

  // Backward of rmsnorm_fwd. x, dy, dx: (rows, dim) contiguous; dx written (may alias dy);
  // w: (dim); dw: (dim) accumulated; rstd: (rows) as saved by rmsnorm_fwd.
  void (*rmsnorm_bwd)(float *dx, float *dw, const float *dy, const float *x, const float *w,
                      const float *rstd, int64_t rows, int64_t dim);
  // Backward of layernorm_fwd. dx written (may alias dy); dw, db (dim) accumulated, db may be
  // null; mean, rstd: (rows) as saved by layernorm_fwd.
  void (*layernorm_bwd)(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, const float *mean, const float *rstd, int64_t rows,
                        int64_t dim);

  // dx = dy * f'(x) for the activations above; dx written, may alias dy (or x).
  void (*silu_bwd)(float *dx, const float *x, const float *dy, int64_t n);
  void (*gelu_bwd)(float *dx, const float *x, const float *dy, int64_t n);
  void (*gelu_tanh_bwd)(float *dx, const float *x, const float *dy, int64_t n);
  // For y = silu(gate) * up: dgate = dy * up * silu'(gate), dup = dy * silu(gate). Both written;
  // dgate may alias gate (or dy) and dup may alias up (or dy): in place saves the memory.
  void (*swiglu_bwd)(float *dgate, float *dup, const float *gate, const float *up, const float *dy,
                     int64_t n);

  // Fused softmax + cross-entropy over the vocabulary, per row r of logits (rows, n_vocab) with
  // row stride ld:  loss[r] = logsumexp(logits[r, :]) - logits[r, targets[r]]  (max-subtracted).
  // If dlogits is not null: dlogits[r, :] = (softmax(logits[r, :]) - onehot(targets[r])) * dscale
  // (row stride ld_d; written; may alias logits exactly, ld_d == ld). targets[r] < 0 ignores the
  // row: loss[r] = 0 and its dlogits row is 0. Targets are not range-checked here.
  void (*cross_entropy_fwd_bwd)(float *loss, float *dlogits, int64_t ld_d, const float *logits,
                                int64_t ld, const int32_t *targets, int64_t rows, int64_t n_vocab,
                                float dscale);

  // See AttentionBwdArgs.
  void (*attention_bwd)(const AttentionBwdArgs &a);

  matmul_fn matmul_for(DType t) const;  // throws lmkit::Error for a dtype with no kernel
};

// The table in use: LMKIT_KERNELS=ref|avx2|avx512 if set (an error if this CPU cannot run it),
// else the widest this CPU supports.
const KernelTable &active();
// Switches the table in use for the whole process (tests, benchmarks comparing tables). Not for
// use while another thread runs a forward pass.
void set_active(const KernelTable &t);
// Every table this CPU can run, "ref" first. Tests compare each against ref.
std::vector<const KernelTable *> available();
// A table by name, or null if unknown or unsupported here.
const KernelTable *find(std::string_view name);
// A table by name, as LMKIT_KERNELS=name selects it: throws lmkit::Error naming the choices if the
// name is unknown or this CPU cannot run that table.
const KernelTable &require(std::string_view name);

}  // namespace lmkit::kernels
