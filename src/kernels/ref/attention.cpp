// Reference causal attention with grouped KV heads and an optional sliding window.
// Not flash attention: scores for one query go to scratch, then softmax, then the weighted sum.
#include <algorithm>
#include <cmath>

#include "kernels/ref/ref.h"

namespace lmkit::kernels::ref {

// For query head h (KV head hk = h / (n_head/n_head_kv)) and query i at position p = q_pos[i]:
//   visible keys j:  j <= p  and  (window == 0 or p - j < window),  j < n_kv
//   s_j = scale * q[i, h, :] · k[hk, j, :]
//   P_j = exp(s_j - max s) / sum exp(s - max s)  over visible j (0 elsewhere)
//   out[i, h, :] = sum_j P_j v[hk, j, :]
void attention_fwd(const AttentionArgs &a) {
  const int64_t group = a.n_head / a.n_head_kv;
  const int64_t hd = a.head_dim;
  for (int64_t h = a.head_begin; h < a.head_end; ++h) {
    const int64_t hk = h / group;
    const float *kh = a.k + hk * a.ld_kv_head;  // (n_kv, hd)
    const float *vh = a.v + hk * a.ld_kv_head;  // (n_kv, hd)
    for (int64_t i = 0; i < a.n_q; ++i) {
      const int64_t pos = a.q_pos[i];
      // Visible keys form one range [lo, hi] (empty when lo > hi).
      const int64_t hi = std::min(pos, a.n_kv - 1);
      const int64_t lo = a.window > 0 ? std::max<int64_t>(0, pos - a.window + 1) : 0;
      const float *q = a.q + i * a.ld_q + h * hd;
      float *out = a.out + i * a.ld_out + h * hd;
      float *pat = a.pattern ? a.pattern + (h * a.n_q + i) * a.n_kv : nullptr;
      float *s = a.scratch;  // s[j - lo]

      double mx = -INFINITY;
      for (int64_t j = lo; j <= hi; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < hd; ++d) dot += double(q[d]) * kh[j * hd + d];
        s[j - lo] = float(a.scale * dot);
        mx = std::max(mx, double(s[j - lo]));
      }
      double sum = 0;
      for (int64_t j = lo; j <= hi; ++j) sum += std::exp(s[j - lo] - mx);
      for (int64_t j = lo; j <= hi; ++j) s[j - lo] = float(std::exp(s[j - lo] - mx) / sum);

      for (int64_t d = 0; d < hd; ++d) {
        double acc = 0;
        for (int64_t j = lo; j <= hi; ++j) acc += double(s[j - lo]) * vh[j * hd + d];
        out[d] = float(acc);
      }
      if (pat)
        for (int64_t j = 0; j < a.n_kv; ++j) pat[j] = j >= lo && j <= hi ? s[j - lo] : 0.0f;
    }
  }
}

}  // namespace lmkit::kernels::ref
