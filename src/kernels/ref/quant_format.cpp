// The GGUF block formats in plain scalar code: reference quantizers and exact dequantization.
// Not vectorised: it runs when weights are converted, and per token only for embedding rows
// (dequantize_row never allocates).
//
// The quantizers follow the reference algorithms of the formats (llama.cpp's quantize_row_*_ref,
// re-derived here): absmax scaling for the 32-value types, and for the K-quants a weighted
// least-squares search over candidate scales (and mins) per sub-block, then 6- or 8-bit
// quantization of those scales. Dequantization evaluates ggml's formulas in ggml's operation order
// so values match llama.cpp's bit for bit.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/quant.h"

namespace lmkit::kernels {
namespace {

// Round half to even, as ggml's nearest_int (|v| < 2^22 there; NaN gives 0 here, never UB).
int nearest_int(float v) {
  if (!(std::fabs(v) < 4194304.0f)) return v > 0 ? 4194304 : v < 0 ? -4194304 : 0;
  return int(std::nearbyint(v));
}

uint16_t h(float v) {
  return f32_to_f16(v);
}
float f(uint16_t v) {
  return f16_to_f32(v);
}

// ---- 32-value formats ------------------------------------------------------------------------

// The value of largest magnitude (first one on ties), keeping its sign.
float signed_absmax(const float *x, int n, float *amax_out = nullptr) {
  float amax = 0, mx = 0;
  for (int j = 0; j < n; ++j)
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      mx = x[j];
    }
  if (amax_out) *amax_out = amax;
  return mx;
}

void quantize_q4_0(const float *x, BlockQ4_0 *y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    // d maps the extreme value to -8, so the 16 levels cover [-8d, 7d] with the extreme exact.
    const float d = signed_absmax(x, kQK) / -8;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = h(d);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(15, int(int8_t(x[j] * id + 8.5f)));
      const int q1 = std::min(15, int(int8_t(x[j + 16] * id + 8.5f)));
      y[i].qs[j] = uint8_t(q0 | (q1 << 4));
    }
  }
}

void quantize_q4_1(const float *x, BlockQ4_1 *y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < kQK; ++j) lo = std::min(lo, x[j]), hi = std::max(hi, x[j]);
    const float d = (hi - lo) / 15;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = h(d);
    y[i].m = h(lo);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(15, int(int8_t((x[j] - lo) * id + 0.5f)));
      const int q1 = std::min(15, int(int8_t((x[j + 16] - lo) * id + 0.5f)));
      y[i].qs[j] = uint8_t(q0 | (q1 << 4));
    }
  }
}

void quantize_q5_0(const float *x, BlockQ5_0 *y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const float d = signed_absmax(x, kQK) / -16;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = h(d);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(31, int(int8_t(x[j] * id + 16.5f)));
      const int q1 = std::min(31, int(int8_t(x[j + 16] * id + 16.5f)));
      y[i].qs[j] = uint8_t((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= uint32_t((q0 >> 4) & 1) << j;
      qh |= uint32_t((q1 >> 4) & 1) << (j + 16);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

void quantize_q5_1(const float *x, BlockQ5_1 *y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < kQK; ++j) lo = std::min(lo, x[j]), hi = std::max(hi, x[j]);
    const float d = (hi - lo) / 31;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = h(d);
    y[i].m = h(lo);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(31, int(uint8_t((x[j] - lo) * id + 0.5f)));
      const int q1 = std::min(31, int(uint8_t((x[j + 16] - lo) * id + 0.5f)));
      y[i].qs[j] = uint8_t((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= uint32_t((q0 >> 4) & 1) << j;
      qh |= uint32_t((q1 >> 4) & 1) << (j + 16);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

void quantize_q8_0(const float *x, BlockQ8_0 *y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float amax;
    signed_absmax(x, kQK, &amax);
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = h(d);
    for (int j = 0; j < kQK; ++j) y[i].qs[j] = int8_t(std::round(x[j] * id));
  }
}

void quantize_q8_1(const float *x, BlockQ8_1 *y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float amax;
    signed_absmax(x, kQK, &amax);
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = h(d);
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      y[i].qs[j] = int8_t(std::round(x[j] * id));
      sum += y[i].qs[j];
    }
    y[i].s = h(float(sum) * d);
  }
}

void quantize_q8_k(const float *x, BlockQ8_K *y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    float amax;
    const float mx = signed_absmax(x, kQKK, &amax);
    std::memset(&y[i], 0, sizeof(BlockQ8_K));
    if (amax == 0) continue;
    // The extreme value maps to -127; values of the other sign may round to 128: clamp.
    const float iscale = -127.0f / mx;
    for (int j = 0; j < kQKK; ++j) y[i].qs[j] = int8_t(std::min(127, nearest_int(iscale * x[j])));
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += y[i].qs[16 * g + l];
      y[i].bsums[g] = int16_t(s);
    }
    y[i].d = 1 / iscale;
  }
}

// ---- K-quant searches ------------------------------------------------------------------------

// Fits x[i] ~= scale * L[i] - mn with L in [0, nmax], minimising sum w[i] (...)^2: starting from
// the min/max grid, tries nstep slightly stretched grids, each refined by weighted least squares
// for (scale, min) given its L. The min is kept <= 0 (x's offset is a subtraction). Returns scale,
// sets *mn_out = -min.
float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *mn_out,
                    uint8_t *Laux, float rmin, float rdelta, int nstep) {
  float lo = x[0], hi = x[0], sum_w = w[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (lo > 0) lo = 0;
  if (hi == lo) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *mn_out = -lo;
    return 0;
  }
  float iscale = nmax / (hi - lo);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(iscale * (x[i] - lo)), 0, nmax);
    L[i] = uint8_t(l);
    const float diff = scale * L[i] + lo - x[i];
    best_error += w[i] * (diff * diff);
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (hi - lo);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - lo)), 0, nmax);
      Laux[i] = uint8_t(l);
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_xl += w[i] * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float err = 0;
      for (int i = 0; i < n; ++i) {
        const float diff = this_scale * Laux[i] + this_min - x[i];
        err += w[i] * (diff * diff);
      }
      if (err < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = err;
        scale = this_scale;
        lo = this_min;
      }
    }
  }
  *mn_out = -lo;
  return scale;
}

// Fits x[i] ~= scale * (L[i] - nmax) with L - nmax in [-nmax, nmax - 1] (the extreme value of x
// on the -nmax side), weights x^2, trying 18 stretched grids around the absmax one; returns scale.
float fit_scale_symmetric(int n, int nmax, const float *x, int8_t *L) {
  float amax;
  const float mx = signed_absmax(x, n, &amax);
  if (amax < 1e-15f) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0;
  }
  float iscale = -nmax / mx;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = int8_t(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / mx;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i)
        L[i] = int8_t(nmax + std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Shared by q4_K (nmax 15) and q5_K (nmax 31): per sub-block scale/min search, the scales and
// mins quantized to 6 bits against the super-block's d and dmin, then L recomputed with them.
// L: (256) levels in [0, nmax].
void quantize_k_scales(const float *x, int nmax, float rmin, int nstep, uint16_t &d_out,
                       uint16_t &dmin_out, uint8_t *packed, uint8_t *L) {
  float scales[8], mins[8], w[32];
  uint8_t Laux[32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float *xs = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(xs[l]);
    scales[j] = fit_scale_min(32, nmax, xs, w, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  std::memset(packed, 0, 12);
  for (int j = 0; j < 8; ++j) {
    const int ls = std::min(63, nearest_int(inv_scale * scales[j]));
    const int lm = std::min(63, nearest_int(inv_min * mins[j]));
    if (j < 4) {
      packed[j] = uint8_t(ls);
      packed[j + 4] = uint8_t(lm);
    } else {
      packed[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
      packed[j - 4] |= uint8_t((ls >> 4) << 6);
      packed[j] |= uint8_t((lm >> 4) << 6);
    }
  }
  d_out = h(max_scale / 63);
  dmin_out = h(max_min / 63);
  for (int j = 0; j < 8; ++j) {
    int sc, mn;
    q4k_scale_min(packed, j, sc, mn);
    const float d = f(d_out) * sc;
    if (d == 0) continue;
    const float dm = f(dmin_out) * mn;
    for (int l = 0; l < 32; ++l)
      L[32 * j + l] = uint8_t(std::clamp(nearest_int((x[32 * j + l] + dm) / d), 0, nmax));
  }
}

void quantize_q4_k(const float *x, BlockQ4_K *y, int64_t nb) {
  uint8_t L[kQKK];
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    quantize_k_scales(x, 15, -1.0f, 20, y[i].d, y[i].dmin, y[i].scales, L);
    for (int g = 0; g < 4; ++g)
      for (int l = 0; l < 32; ++l)
        y[i].qs[32 * g + l] = uint8_t(L[64 * g + l] | (L[64 * g + 32 + l] << 4));
  }
}

void quantize_q5_k(const float *x, BlockQ5_K *y, int64_t nb) {
  uint8_t L[kQKK];
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    quantize_k_scales(x, 31, -0.5f, 15, y[i].d, y[i].dmin, y[i].scales, L);
    std::memset(y[i].qh, 0, 32);
    for (int g = 0; g < 4; ++g)
      for (int l = 0; l < 32; ++l) {
        const int l1 = L[64 * g + l], l2 = L[64 * g + 32 + l];
        y[i].qs[32 * g + l] = uint8_t((l1 & 0xF) | ((l2 & 0xF) << 4));
        y[i].qh[l] |= uint8_t(((l1 >> 4) << (2 * g)) | ((l2 >> 4) << (2 * g + 1)));
      }
  }
}

void quantize_q6_k(const float *x, BlockQ6_K *y, int64_t nb) {
  int8_t L[kQKK];
  float scales[16];
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    float max_scale = 0, max_abs_scale = 0;
    for (int j = 0; j < 16; ++j) {
      scales[j] = fit_scale_symmetric(16, 32, x + 16 * j, L + 16 * j);
      if (std::fabs(scales[j]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    std::memset(&y[i], 0, sizeof(BlockQ6_K));
    if (max_abs_scale < 1e-15f) continue;
    // The largest scale maps to -128, so the int8 scales use their full range.
    const float iscale = -128.0f / max_scale;
    y[i].d = h(1 / iscale);
    for (int j = 0; j < 16; ++j)
      y[i].scales[j] = int8_t(std::min(127, nearest_int(iscale * scales[j])));
    for (int j = 0; j < 16; ++j) {
      const float d = f(y[i].d) * y[i].scales[j];
      if (d == 0) continue;
      for (int l = 0; l < 16; ++l)
        L[16 * j + l] = int8_t(std::clamp(nearest_int(x[16 * j + l] / d), -32, 31) + 32);
    }
    for (int half = 0; half < 2; ++half) {
      const int8_t *Lh = L + 128 * half;
      uint8_t *ql = y[i].ql + 64 * half, *qh = y[i].qh + 32 * half;
      for (int l = 0; l < 32; ++l) {
        const int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
        ql[l] = uint8_t((q1 & 0xF) | ((q3 & 0xF) << 4));
        ql[l + 32] = uint8_t((q2 & 0xF) | ((q4 & 0xF) << 4));
        qh[l] = uint8_t((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
      }
    }
  }
}

// ---- dequantization (ggml's formulas and op order) -------------------------------------------

void dequantize_q4_0(const BlockQ4_0 *x, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = f(x[i].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = float((x[i].qs[j] & 0xF) - 8) * d;
      y[j + 16] = float((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_q4_1(const BlockQ4_1 *x, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = f(x[i].d), m = f(x[i].m);
    for (int j = 0; j < 16; ++j) {
      y[j] = float(x[i].qs[j] & 0xF) * d + m;
      y[j + 16] = float(x[i].qs[j] >> 4) * d + m;
    }
  }
}

uint32_t qh32(const uint8_t *p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

void dequantize_q5_0(const BlockQ5_0 *x, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = f(x[i].d);
    const uint32_t qh = qh32(x[i].qh);
    for (int j = 0; j < 16; ++j) {
      const int h0 = int((qh >> j) & 1) << 4, h1 = int((qh >> (j + 16)) & 1) << 4;
      y[j] = float(((x[i].qs[j] & 0xF) | h0) - 16) * d;
      y[j + 16] = float(((x[i].qs[j] >> 4) | h1) - 16) * d;
    }
  }
}

void dequantize_q5_1(const BlockQ5_1 *x, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = f(x[i].d), m = f(x[i].m);
    const uint32_t qh = qh32(x[i].qh);
    for (int j = 0; j < 16; ++j) {
      const int h0 = int((qh >> j) & 1) << 4, h1 = int((qh >> (j + 16)) & 1) << 4;
      y[j] = float((x[i].qs[j] & 0xF) | h0) * d + m;
      y[j + 16] = float((x[i].qs[j] >> 4) | h1) * d + m;
    }
  }
}

void dequantize_q8_0(const BlockQ8_0 *x, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = f(x[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = float(x[i].qs[j]) * d;
  }
}

void dequantize_q8_1(const BlockQ8_1 *x, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = f(x[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = float(x[i].qs[j]) * d;
  }
}

void dequantize_q8_k(const BlockQ8_K *x, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQKK)
    for (int j = 0; j < kQKK; ++j) y[j] = x[i].d * float(x[i].qs[j]);
}

void dequantize_q4_k(const BlockQ4_K *x, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQKK) {
    const float d = f(x[i].d), dmin = f(x[i].dmin);
    for (int g = 0; g < 4; ++g) {
      int sc, mn;
      q4k_scale_min(x[i].scales, 2 * g, sc, mn);
      const float d1 = d * float(sc), m1 = dmin * float(mn);
      q4k_scale_min(x[i].scales, 2 * g + 1, sc, mn);
      const float d2 = d * float(sc), m2 = dmin * float(mn);
      const uint8_t *q = x[i].qs + 32 * g;
      for (int l = 0; l < 32; ++l) y[64 * g + l] = d1 * float(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) y[64 * g + 32 + l] = d2 * float(q[l] >> 4) - m2;
    }
  }
}

void dequantize_q5_k(const BlockQ5_K *x, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQKK) {
    const float d = f(x[i].d), dmin = f(x[i].dmin);
    for (int g = 0; g < 4; ++g) {
      int sc, mn;
      q4k_scale_min(x[i].scales, 2 * g, sc, mn);
      const float d1 = d * float(sc), m1 = dmin * float(mn);
      q4k_scale_min(x[i].scales, 2 * g + 1, sc, mn);
      const float d2 = d * float(sc), m2 = dmin * float(mn);
      const uint8_t *q = x[i].qs + 32 * g;
      const int u1 = 1 << (2 * g), u2 = 2 << (2 * g);
      for (int l = 0; l < 32; ++l)
        y[64 * g + l] = d1 * float((q[l] & 0xF) + (x[i].qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l)
        y[64 * g + 32 + l] = d2 * float((q[l] >> 4) + (x[i].qh[l] & u2 ? 16 : 0)) - m2;
    }
  }
}

void dequantize_q6_k(const BlockQ6_K *x, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQKK) {
    const float d = f(x[i].d);
    for (int half = 0; half < 2; ++half) {
      const uint8_t *ql = x[i].ql + 64 * half, *qh = x[i].qh + 32 * half;
      const int8_t *sc = x[i].scales + 8 * half;
      float *yh = y + 128 * half;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = int((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
        const int q2 = int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        yh[l] = d * float(sc[is]) * float(q1);
        yh[l + 32] = d * float(sc[is + 2]) * float(q2);
        yh[l + 64] = d * float(sc[is + 4]) * float(q3);
        yh[l + 96] = d * float(sc[is + 6]) * float(q4);
      }
    }
  }
}

int64_t blocks_of(DType t, int64_t n) {
  const int64_t b = dtype_info(t).block;
  LMKIT_CHECK(b > 1, "quantize/dequantize: ", dtype_name(t), " is not a block type");
  LMKIT_CHECK(n >= 0 && n % b == 0, "a row of ", n, " values is not a whole number of ",
              dtype_name(t), " blocks (", b, ")");
  return n / b;
}

}  // namespace

void pack_row_q4_0x8(const void *q4_0, void *q4_0x8, int64_t K) {
  const BlockQ4_0 *src = static_cast<const BlockQ4_0 *>(q4_0);
  BlockQ4_0x8 *dst = static_cast<BlockQ4_0x8 *>(q4_0x8);
  for (int64_t s = 0; s < K / kQKK; ++s, src += 8, ++dst) {
    for (int j = 0; j < 8; ++j) dst->d[j] = src[j].d;
    for (int p = 0; p < 4; ++p)
      for (int i = 0; i < 32; ++i) {
        auto q = [&](const BlockQ4_0 &b) { return i < 16 ? b.qs[i] & 0xF : b.qs[i - 16] >> 4; };
        dst->qs[32 * p + i] = uint8_t(q(src[2 * p]) | (q(src[2 * p + 1]) << 4));
      }
  }
}

void unpack_row_q4_0x8(const void *q4_0x8, void *q4_0, int64_t K) {
  const BlockQ4_0x8 *src = static_cast<const BlockQ4_0x8 *>(q4_0x8);
  BlockQ4_0 *dst = static_cast<BlockQ4_0 *>(q4_0);
  for (int64_t s = 0; s < K / kQKK; ++s, ++src, dst += 8)
    for (int j = 0; j < 8; ++j) {
      dst[j].d = src->d[j];
      const int p = j / 2, shift = 4 * (j % 2);
      for (int i = 0; i < 16; ++i)
        dst[j].qs[i] = uint8_t(((src->qs[32 * p + i] >> shift) & 0xF) |
                               (((src->qs[32 * p + i + 16] >> shift) & 0xF) << 4));
    }
}

void quantize_row(DType t, const float *x, void *blocks, int64_t n) {
  const int64_t nb = blocks_of(t, n);
  switch (t) {
    case DType::Q4_0:
      return quantize_q4_0(x, static_cast<BlockQ4_0 *>(blocks), nb);
    case DType::Q4_1:
      return quantize_q4_1(x, static_cast<BlockQ4_1 *>(blocks), nb);
    case DType::Q5_0:
      return quantize_q5_0(x, static_cast<BlockQ5_0 *>(blocks), nb);
    case DType::Q5_1:
      return quantize_q5_1(x, static_cast<BlockQ5_1 *>(blocks), nb);
    case DType::Q8_0:
      return quantize_q8_0(x, static_cast<BlockQ8_0 *>(blocks), nb);
    case DType::Q8_1:
      return quantize_q8_1(x, static_cast<BlockQ8_1 *>(blocks), nb);
    case DType::Q4_K:
      return quantize_q4_k(x, static_cast<BlockQ4_K *>(blocks), nb);
    case DType::Q5_K:
      return quantize_q5_k(x, static_cast<BlockQ5_K *>(blocks), nb);
    case DType::Q6_K:
      return quantize_q6_k(x, static_cast<BlockQ6_K *>(blocks), nb);
    case DType::Q8_K:
      return quantize_q8_k(x, static_cast<BlockQ8_K *>(blocks), nb);
    case DType::Q4_0X8:  // one super-block at a time: no allocation
      for (int64_t s = 0; s < n / kQKK; ++s) {
        BlockQ4_0 q[8];
        quantize_q4_0(x + s * kQKK, q, 8);
        pack_row_q4_0x8(q, static_cast<BlockQ4_0x8 *>(blocks) + s, kQKK);
      }
      return;
    default:
      fail("no quantizer for ", dtype_name(t));
  }
}

void dequantize_row(DType t, const void *blocks, float *y, int64_t n) {
  const int64_t nb = blocks_of(t, n);
  switch (t) {
    case DType::Q4_0:
      return dequantize_q4_0(static_cast<const BlockQ4_0 *>(blocks), y, nb);
    case DType::Q4_1:
      return dequantize_q4_1(static_cast<const BlockQ4_1 *>(blocks), y, nb);
    case DType::Q5_0:
      return dequantize_q5_0(static_cast<const BlockQ5_0 *>(blocks), y, nb);
    case DType::Q5_1:
      return dequantize_q5_1(static_cast<const BlockQ5_1 *>(blocks), y, nb);
    case DType::Q8_0:
      return dequantize_q8_0(static_cast<const BlockQ8_0 *>(blocks), y, nb);
    case DType::Q8_1:
      return dequantize_q8_1(static_cast<const BlockQ8_1 *>(blocks), y, nb);
    case DType::Q4_K:
      return dequantize_q4_k(static_cast<const BlockQ4_K *>(blocks), y, nb);
    case DType::Q5_K:
      return dequantize_q5_k(static_cast<const BlockQ5_K *>(blocks), y, nb);
    case DType::Q6_K:
      return dequantize_q6_k(static_cast<const BlockQ6_K *>(blocks), y, nb);
    case DType::Q8_K:
      return dequantize_q8_k(static_cast<const BlockQ8_K *>(blocks), y, nb);
    case DType::Q4_0X8:  // one super-block at a time: no allocation (embedding lookups)
      for (int64_t s = 0; s < n / kQKK; ++s) {
        BlockQ4_0 q[8];
        unpack_row_q4_0x8(static_cast<const BlockQ4_0x8 *>(blocks) + s, q, kQKK);
        dequantize_q4_0(q, y + s * kQKK, 8);
      }
      return;
    default:
      fail("no dequantizer for ", dtype_name(t));
  }
}

}  // namespace lmkit::kernels
