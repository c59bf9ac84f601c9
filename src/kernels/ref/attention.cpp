// Reference causal attention (forward and backward) with grouped KV heads and a sliding window.
// Not flash attention: one query row at a time, its scores in scratch, all sums in double.
#include <algorithm>
#include <cmath>

#include "kernels/ref/ref.h"

namespace lmkit::kernels::ref {
namespace {

// The keys a query at position pos sees form one range [lo, hi] (empty when lo > hi).
void visible_range(int64_t pos, int64_t n_kv, int64_t window, int64_t &lo, int64_t &hi) {
  hi = std::min(pos, n_kv - 1);
  lo = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
}

}  // namespace

// For query head h (KV head hk = h / (n_head/n_head_kv)) and query i at position p = q_pos[i]:
//   visible keys j:  j <= p  and  (window == 0 or p - j < window),  j < n_kv
//   s_j = scale * q[i, h, :] · k[hk, j, :]
//   P_j = exp(s_j - max s) / sum exp(s - max s)  over visible j (0 elsewhere)
//   out[i, h, :] = sum_j P_j v[hk, j, :],   lse[i, h] = max s + log sum exp(s - max s)
void attention_fwd(const AttentionArgs &a) {
  const int64_t group = a.n_head / a.n_head_kv;
  const int64_t hd = a.head_dim;
  const int64_t kr = a.ld_kv_row ? a.ld_kv_row : hd;  // key row stride
  for (int64_t h = a.head_begin; h < a.head_end; ++h) {
    const int64_t hk = h / group;
    const float *kh = a.k + hk * a.ld_kv_head;  // (n_kv, hd) row stride kr
    const float *vh = a.v + hk * a.ld_kv_head;  // (n_kv, hd) row stride kr
    for (int64_t i = 0; i < a.n_q; ++i) {
      int64_t lo, hi;
      visible_range(a.q_pos[i], a.n_kv, a.window, lo, hi);
      const float *q = a.q + i * a.ld_q + h * hd;
      float *out = a.out + i * a.ld_out + h * hd;
      float *pat = a.pattern ? a.pattern + (h * a.n_q + i) * a.n_kv : nullptr;
      float *s = a.scratch;  // s[j - lo]

      double mx = -INFINITY;
      for (int64_t j = lo; j <= hi; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < hd; ++d) dot += double(q[d]) * kh[j * kr + d];
        s[j - lo] = float(a.scale * dot);
        mx = std::max(mx, double(s[j - lo]));
      }
      double sum = 0;
      for (int64_t j = lo; j <= hi; ++j) sum += std::exp(s[j - lo] - mx);
      for (int64_t j = lo; j <= hi; ++j) s[j - lo] = float(std::exp(s[j - lo] - mx) / sum);
      if (a.lse) a.lse[i * a.n_head + h] = lo <= hi ? float(mx + std::log(sum)) : -INFINITY;

      for (int64_t d = 0; d < hd; ++d) {
        double acc = 0;
        for (int64_t j = lo; j <= hi; ++j) acc += double(s[j - lo]) * vh[j * kr + d];
        out[d] = float(acc);
      }
      if (pat)
        for (int64_t j = 0; j < a.n_kv; ++j) pat[j] = j >= lo && j <= hi ? s[j - lo] : 0.0f;
    }
  }
}

// For each KV head hk in range, each of its query heads h and each query i, over visible j:
//   p_j = exp(scale q_i·k_j - lse_i),   D = do_i·o_i,   ds_j = p_j (do_i·v_j - D)
//   dv_j += p_j do_i,   dk_j += scale ds_j q_i,   dq_i += scale sum_j ds_j k_j
// scratch: p (n_kv) then ds (n_kv), indexed j - lo.
void attention_bwd(const AttentionBwdArgs &a) {
  const int64_t group = a.n_head / a.n_head_kv;
  const int64_t hd = a.head_dim;
  const int64_t kr = a.ld_kv_row ? a.ld_kv_row : hd;
  for (int64_t hk = a.kv_head_begin; hk < a.kv_head_end; ++hk) {
    const float *kh = a.k + hk * a.ld_kv_head;
    const float *vh = a.v + hk * a.ld_kv_head;
    float *dkh = a.dk + hk * a.ld_kv_head;
    float *dvh = a.dv + hk * a.ld_kv_head;
    for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
      for (int64_t i = 0; i < a.n_q; ++i) {
        int64_t lo, hi;
        visible_range(a.q_pos[i], a.n_kv, a.window, lo, hi);
        if (lo > hi) continue;  // sees nothing: no gradient flows
        const float *q = a.q + i * a.ld_q + h * hd;
        const float *o = a.out + i * a.ld_out + h * hd;
        const float *dout = a.dout + i * a.ld_dout + h * hd;
        float *dq = a.dq + i * a.ld_dq + h * hd;
        const double lse = a.lse[i * a.n_head + h];
        float *p = a.scratch, *ds = a.scratch + a.n_kv;

        double dsum = 0;  // D = do · o
        for (int64_t d = 0; d < hd; ++d) dsum += double(dout[d]) * o[d];
        for (int64_t j = lo; j <= hi; ++j) {
          double qk = 0, dov = 0;
          for (int64_t d = 0; d < hd; ++d) {
            qk += double(q[d]) * kh[j * kr + d];
            dov += double(dout[d]) * vh[j * kr + d];
          }
          const double pj = std::exp(a.scale * qk - lse);
          p[j - lo] = float(pj);
          ds[j - lo] = float(pj * (dov - dsum));
        }
        for (int64_t d = 0; d < hd; ++d) {
          double acc = 0;
          for (int64_t j = lo; j <= hi; ++j) acc += double(ds[j - lo]) * kh[j * kr + d];
          dq[d] = float(dq[d] + a.scale * acc);
        }
        for (int64_t j = lo; j <= hi; ++j)
          for (int64_t d = 0; d < hd; ++d) {
            dkh[j * kr + d] = float(dkh[j * kr + d] + double(a.scale) * ds[j - lo] * q[d]);
            dvh[j * kr + d] = float(dvh[j * kr + d] + double(p[j - lo]) * dout[d]);
          }
      }
    }
  }
}

}  // namespace lmkit::kernels::ref
