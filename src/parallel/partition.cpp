// Sequence partitioning: the per-layer FLOP model and the even / computation-wise splits (see
// partition.h for the model). Not a scheduler: schedule.h orders the chunks this file sizes.
#include "parallel/partition.h"

#include <cmath>

#include "core/error.h"

namespace lmkit::parallel {

void ModelShape::validate() const {
  LMKIT_CHECK(n_layer >= 1, "the model needs at least 1 layer (got ", n_layer, ")");
  LMKIT_CHECK(n_embd >= 1, "the hidden size must be positive (got ", n_embd, ")");
  LMKIT_CHECK(n_head >= 1, "the head count must be positive (got ", n_head, ")");
  LMKIT_CHECK(n_embd % n_head == 0, "hidden size ", n_embd, " is not divisible by ", n_head,
              " heads");
  LMKIT_CHECK(n_ff >= 1, "the MLP size must be positive (got ", n_ff, ")");
  LMKIT_CHECK(n_vocab >= 0, "the vocabulary size must not be negative (got ", n_vocab, ")");
}

double ModelShape::params_per_layer() const {
  const double d = double(n_embd), f = double(n_ff);
  // Q, K, V, O with biases; two MLP matrices with biases; two norms (weight and bias).
  return 4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d;
}

namespace {

struct NamedShape {
  const char *name;
  int64_t n_layer, n_embd, n_head;
};

// From the Seq1F1B authors' experiment script (thunlp/Seq1F1B exp.sh), which matches the
// paper's table of model sizes.
constexpr NamedShape kNamed[] = {
    {"1.3b", 24, 2048, 16}, {"2.7b", 32, 2560, 32}, {"7b", 32, 4096, 32},
    {"13b", 40, 5120, 40},  {"30b", 64, 6144, 64},
};

}  // namespace

ModelShape model_shape_named(std::string_view name) {
  for (const NamedShape &s : kNamed) {
    if (name == s.name) {
      ModelShape m;
      m.name = s.name;
      m.n_layer = s.n_layer;
      m.n_embd = s.n_embd;
      m.n_head = s.n_head;
      m.n_ff = 4 * s.n_embd;
      return m;
    }
  }
  std::string names;
  for (const NamedShape &s : kNamed) names += (names.empty() ? "" : ", ") + std::string(s.name);
  fail("unknown model size '", name, "' (known: ", names, "; or give --layers/--hidden/--heads)");
}

std::vector<std::string> model_shape_names() {
  std::vector<std::string> out;
  for (const NamedShape &s : kNamed) out.emplace_back(s.name);
  return out;
}

double causal_pairs(int64_t start, int64_t len) {
  const double s = double(start), l = double(len);
  return l * s + l * (l + 1) / 2;
}

double layer_fwd_flops(const ModelShape &m, int64_t start, int64_t len) {
  const double d = double(m.n_embd), f = double(m.n_ff);
  return double(len) * (8 * d * d + 4 * d * f) + 4 * d * causal_pairs(start, len);
}

double prefix_fwd_flops(const ModelShape &m, int64_t n) {
  return layer_fwd_flops(m, 0, n);
}

SeqSplit seq_split_parse(std::string_view s) {
  if (s == "even") return SeqSplit::Even;
  if (s == "compute") return SeqSplit::Compute;
  fail("unknown sequence split '", s, "' (use even or compute)");
}

const char *seq_split_name(SeqSplit s) {
  return s == SeqSplit::Even ? "even" : "compute";
}

std::vector<int64_t> seq_split_even(int64_t n, int k) {
  LMKIT_CHECK(k >= 1, "the chunk count must be positive (got ", k, ")");
  LMKIT_CHECK(n >= k, "cannot split ", n, " tokens into ", k, " non-empty chunks");
  std::vector<int64_t> lens(size_t(k), n / k);
  for (int64_t i = 0; i < n % k; ++i) ++lens[size_t(i)];
  return lens;
}

std::vector<int64_t> seq_split_compute(const ModelShape &m, int64_t n, int k, int64_t align) {
  LMKIT_CHECK(k >= 1, "the chunk count must be positive (got ", k, ")");
  LMKIT_CHECK(align >= 1, "the chunk alignment must be positive (got ", align, ")");
  LMKIT_CHECK(n >= int64_t(k) * align, "cannot split ", n, " tokens into ", k,
              " non-empty chunks of multiples of ", align, " tokens");
  // G(x) = c x + 2 d x (x + 1) with c the linear FLOPs per token: invert the quadratic for the
  // real boundary, then take the nearer of the two aligned integers around it.
  const double d = double(m.n_embd);
  const double c = 8 * d * d + 4 * d * double(m.n_ff);
  const double total = prefix_fwd_flops(m, n);
  const int64_t top = (n - 1) / align;  // largest aligned boundary index below n
  std::vector<int64_t> bounds{0};
  for (int i = 1; i < k; ++i) {
    const double target = total * double(i) / double(k);
    const double bq = c + 2 * d;  // 2d x^2 + (c + 2d) x - target = 0
    const double x = (-bq + std::sqrt(bq * bq + 8 * d * target)) / (4 * d);
    const int64_t lo = bounds.back() + align;
    const int64_t hi = (top - (k - i - 1)) * align;
    int64_t best = -1;
    double best_err = 0;
    const int64_t base = int64_t(std::floor(x / double(align)));
    for (int64_t cand : {base * align, (base + 1) * align}) {
      cand = std::min(std::max(cand, lo), hi);
      const double err = std::fabs(prefix_fwd_flops(m, cand) - target);
      if (best < 0 || err < best_err) best = cand, best_err = err;
    }
    bounds.push_back(best);
  }
  bounds.push_back(n);
  std::vector<int64_t> lens;
  for (size_t i = 1; i < bounds.size(); ++i) lens.push_back(bounds[i] - bounds[i - 1]);
  return lens;
}

std::vector<int64_t> seq_split(SeqSplit how, const ModelShape &m, int64_t n, int k, int64_t align) {
  return how == SeqSplit::Even ? seq_split_even(n, k) : seq_split_compute(m, n, k, align);
}

std::vector<int64_t> chunk_starts(const std::vector<int64_t> &lens) {
  std::vector<int64_t> out;
  int64_t s = 0;
  for (int64_t l : lens) out.push_back(s), s += l;
  return out;
}

}  // namespace lmkit::parallel
