// Reference fused softmax + cross-entropy (loss and dlogits) over the vocabulary, in double.
// Not a loss reduction: one loss per row; averaging over tokens is the caller's dscale and sum.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/ref/ref.h"

namespace lmkit::kernels::ref {

// Per row r with target t = targets[r] (t < 0: ignored, loss 0, dlogits row 0):
//   mx = max_j l_j,  Z = sum_j exp(l_j - mx)
//   loss[r] = mx + log Z - l_t
//   dlogits[r, j] = (exp(l_j - mx) / Z - [j == t]) * dscale
// logits: (rows, n_vocab) stride ld;  dlogits: same shape, stride ld_d, may be null or alias logits
// (l_t and the row are read before the row is written).
void cross_entropy_fwd_bwd(float *loss, float *dlogits, int64_t ld_d, const float *logits,
                           int64_t ld, const int32_t *targets, int64_t rows, int64_t n_vocab,
                           float dscale) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *l = logits + r * ld;
    float *dl = dlogits ? dlogits + r * ld_d : nullptr;
    const int64_t t = targets[r];
    if (t < 0 || n_vocab <= 0) {
      loss[r] = 0.0f;
      if (dl)
        for (int64_t j = 0; j < n_vocab; ++j) dl[j] = 0.0f;
      continue;
    }
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < n_vocab; ++j) mx = std::max(mx, double(l[j]));
    double z = 0;
    for (int64_t j = 0; j < n_vocab; ++j) z += std::exp(l[j] - mx);
    const double lt = l[t];
    loss[r] = float(mx + std::log(z) - lt);
    if (dl)
      for (int64_t j = 0; j < n_vocab; ++j)
        dl[j] = float((std::exp(l[j] - mx) / z - (j == t ? 1.0 : 0.0)) * dscale);
  }
}

}  // namespace lmkit::kernels::ref
