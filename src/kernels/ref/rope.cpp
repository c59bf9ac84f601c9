// Reference rotary position embedding (RoPE), in place, both pairings of a head's dimensions.
// Not the cos/sin tables: callers build them (frequency scaling variants live with the model).
#include "kernels/ref/ref.h"

namespace lmkit::kernels::ref {

// For token t, head h, pair i < rot_dim/2 with dims (a, b) of that head:
//   (x_a, x_b) <- (x_a*cos[t,i] - x_b*sin[t,i],  x_b*cos[t,i] + x_a*sin[t,i])
//   Interleaved: a = 2i, b = 2i+1;   Half: a = i, b = i + rot_dim/2.
// x: (n_tok, n_head*head_dim) row stride ld;  cos, sin: (n_tok, rot_dim/2).
void rope_fwd(float *x, int64_t ld, const float *cos, const float *sin, int64_t n_tok,
              int64_t n_head, int64_t head_dim, int64_t rot_dim, RopeStyle style) {
  const int64_t half = rot_dim / 2;
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int64_t h = 0; h < n_head; ++h) {
      float *xh = x + t * ld + h * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        int64_t a = style == RopeStyle::Interleaved ? 2 * i : i;
        int64_t b = style == RopeStyle::Interleaved ? 2 * i + 1 : i + half;
        double c = cos[t * half + i], s = sin[t * half + i];
        double xa = xh[a], xb = xh[b];
        xh[a] = float(xa * c - xb * s);
        xh[b] = float(xb * c + xa * s);
      }
    }
  }
}

}  // namespace lmkit::kernels::ref
