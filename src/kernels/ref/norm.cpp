// Reference RMSNorm and LayerNorm, forward and backward, one row at a time in double precision.
// Not fused with anything and not vectorised: the formulas as written in the comments.
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

// Backward of y = x * r * w,  r = rstd[r] = (mean(x^2) + eps)^(-1/2).  With g = dy * w:
//   dx = r * (g - x * r^2 * mean(g * x))        (dr/dx = -r^3 x / dim)
//   dw += dy * x * r
// x, dy, dx: (rows, dim), dx may alias dy (each row's dy is fully read before dx is written);
// w, dw: (dim);  rstd: (rows).
void rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w,
                 const float *rstd, int64_t rows, int64_t dim) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * dim, *dyr = dy + r * dim;
    const double rs = rstd[r];
    double gx = 0;
    for (int64_t d = 0; d < dim; ++d) gx += double(dyr[d]) * w[d] * xr[d];
    const double c = rs * rs * gx / double(dim);
    for (int64_t d = 0; d < dim; ++d) {
      const double g = double(dyr[d]) * w[d], xd = xr[d];
      dw[d] = float(dw[d] + double(dyr[d]) * xd * rs);
      dx[r * dim + d] = float(rs * (g - xd * c));
    }
  }
}

// Backward of y = xhat * w + b,  xhat = (x - mean) * r.  With g = dy * w:
//   dx = r * (g - mean(g) - xhat * mean(g * xhat))
//   dw += dy * xhat,   db += dy
// x, dy, dx: (rows, dim), dx may alias dy;  w, dw, db: (dim), db may be null;  mean, rstd: (rows).
void layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                   const float *mean, const float *rstd, int64_t rows, int64_t dim) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * dim, *dyr = dy + r * dim;
    const double mu = mean[r], rs = rstd[r];
    double g_mean = 0, gx_mean = 0;
    for (int64_t d = 0; d < dim; ++d) {
      const double g = double(dyr[d]) * w[d];
      g_mean += g;
      gx_mean += g * (xr[d] - mu) * rs;
    }
    g_mean /= double(dim);
    gx_mean /= double(dim);
    for (int64_t d = 0; d < dim; ++d) {
      const double xhat = (xr[d] - mu) * rs, dyd = dyr[d];
      dw[d] = float(dw[d] + dyd * xhat);
      if (db) db[d] = float(db[d] + dyd);
      dx[r * dim + d] = float(rs * (dyd * w[d] - g_mean - xhat * gx_mean));
    }
  }
}

}  // namespace lmkit::kernels::ref
