// Sequence partitioning for sequence-level pipeline schedules (Seq1F1B, Sun et al., NAACL 2025,
// arXiv:2406.03488, whose computation-wise partition this implements): the FLOP model of one
// decoder layer on a chunk of a causal sequence, and the even and computation-wise splits of a
// sequence into k chunks. Pure arithmetic: no model, no tensors, no MPI.
//
// The FLOP model (forward, one sequence, one decoder layer; d = n_embd, f = n_ff, a chunk holds
// the L tokens at positions s .. s+L-1 and attends causally to every position before it):
//
//   linear(L)      = L * (8 d^2 + 4 d f)            QKV (6 d^2), output projection (2 d^2) and the
//                                                   two MLP matrices (4 d f), 2 FLOPs per MAC;
//                                                   24 L d^2 for GPT's f = 4d
//   attention(s,L) = 4 d * pairs(s, L)              QK^T and PV, 2 FLOPs per MAC each, over the
//   pairs(s, L)    = L*s + L*(L+1)/2                (query, key) pairs a causal mask keeps
//                  ~ L * (s + L/2)
//
// Norms, softmax, activations and residual adds are left out (O(L d) and O(a L s) terms, under
// 1% at d >= 2048). The FLOPs of a whole prefix of n tokens are G(n) = linear(n) + 4 d n(n+1)/2,
// and a chunk's FLOPs are G(s+L) - G(s) exactly, so a computation-wise split only needs G's
// inverse. Backward costs 2x forward (the usual approximation; FlashAttention's recomputation of
// the probabilities in backward is not counted).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lmkit::parallel {

// A GPT-style decoder as the cost models see it (multi-head attention, a two-matrix MLP).
struct ModelShape {
  std::string name = "custom";
  int64_t n_layer = 0;
  int64_t n_embd = 0;  // d
  int64_t n_head = 0;
  int64_t n_ff = 0;     // MLP hidden size f (4 d when built by model_shape_named)
  int64_t n_vocab = 0;  // 0: embedding and classifier are not modelled (layers only)

  void validate() const;            // throws lmkit::Error naming the bad field
  double params_per_layer() const;  // 4 d^2 + 2 d f + biases and norms
};

// The sizes of the Seq1F1B paper's experiments (layers / hidden / heads as in the paper's
// scripts: 1.3b 24/2048/16, 2.7b 32/2560/32, 7b 32/4096/32, 13b 40/5120/40, 30b 64/6144/64),
// with f = 4d and n_vocab = 0. Throws for an unknown name, listing the known ones.
ModelShape model_shape_named(std::string_view name);
std::vector<std::string> model_shape_names();

// Causal (query, key) pairs of a chunk of `len` queries starting at position `start`.
double causal_pairs(int64_t start, int64_t len);
// Forward FLOPs of one layer on one sequence's chunk [start, start + len) (the model above).
double layer_fwd_flops(const ModelShape &m, int64_t start, int64_t len);
// G(n): forward FLOPs of one layer on the prefix [0, n).
double prefix_fwd_flops(const ModelShape &m, int64_t n);

enum class SeqSplit { Even, Compute };
SeqSplit seq_split_parse(std::string_view s);  // "even" | "compute"; throws otherwise
const char *seq_split_name(SeqSplit s);

// Chunk lengths (k of them, each >= 1, summing to n). Even: n/k each, the first n%k chunks one
// token longer (the earlier chunks are the cheaper ones). Throws when n < k.
std::vector<int64_t> seq_split_even(int64_t n, int k);
// Computation-wise: chunk i ends at the integer boundary b_i (a multiple of `align`, except
// b_k = n) whose prefix FLOPs G(b_i) lie nearest to i/k of G(n), so every chunk's FLOPs are within
// `align` tokens' worth of the ideal G(n)/k. Later chunks attend to longer prefixes and come out
// shorter. Throws when n < k * align.
std::vector<int64_t> seq_split_compute(const ModelShape &m, int64_t n, int k, int64_t align = 1);
std::vector<int64_t> seq_split(SeqSplit how, const ModelShape &m, int64_t n, int k,
                               int64_t align = 1);
// Start offsets of chunks with the given lengths (exclusive prefix sums).
std::vector<int64_t> chunk_starts(const std::vector<int64_t> &lens);

}  // namespace lmkit::parallel
