// Reference RMSNorm and LayerNorm forward, one row at a time with double-precision statistics.
// Not fused with anything and not vectorised; the backward passes live with the training code.
#include <cmath>

#include "kernels/ref/ref.h"

namespace lmkit::kernels::ref {

// y[r,:] = x[r,:] * rstd[r] * w[:],  rstd[r] = 1/sqrt(mean(x[r,:]^2) + eps)
// x, y: (rows, dim), y may alias x;  w: (dim);  rstd: (rows) or null.
void rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t rows, int64_t dim,
                 float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * dim;
    double ss = 0;
    for (int64_t d = 0; d < dim; ++d) ss += double(xr[d]) * xr[d];
    double rs = 1.0 / std::sqrt(ss / double(dim) + eps);
    for (int64_t d = 0; d < dim; ++d) y[r * dim + d] = float(xr[d] * rs * w[d]);
    if (rstd) rstd[r] = float(rs);
  }
}

// y[r,:] = (x[r,:] - mean[r]) * rstd[r] * w[:] + b[:]
// mean[r] = mean(x[r,:]),  rstd[r] = 1/sqrt(mean((x[r,:] - mean[r])^2) + eps)  (biased variance)
// x, y: (rows, dim), y may alias x;  w, b: (dim), b may be null;  mean, rstd: (rows) or null.
void layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w,
                   const float *b, int64_t rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * dim;
    double mu = 0;
    for (int64_t d = 0; d < dim; ++d) mu += xr[d];
    mu /= double(dim);
    double var = 0;
    for (int64_t d = 0; d < dim; ++d) var += (xr[d] - mu) * (xr[d] - mu);
    var /= double(dim);
    double rs = 1.0 / std::sqrt(var + eps);
    for (int64_t d = 0; d < dim; ++d)
      y[r * dim + d] = float((xr[d] - mu) * rs * w[d] + (b ? b[d] : 0.0));
    if (mean) mean[r] = float(mu);
    if (rstd) rstd[r] = float(rs);
  }
}

}  // namespace lmkit::kernels::ref
