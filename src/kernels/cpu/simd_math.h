// Vectorised exp and normal CDF (for exact GELU) over Vf, accurate to a few float ulp.
// Not a general libm: the argument ranges are the ones the activations and softmax need, and
// NaN inputs give NaN but other IEEE corner cases (signalling NaNs, flags) are not honoured.
#pragma once

#include "kernels/cpu/simd.h"

namespace lmkit::kernels::LMKIT_SIMD_ISA {
namespace {

// exp(x) = 2^n * exp(r),  n = round(x / ln2),  r = x - n ln2 in [-ln2/2, ln2/2].
// ln2 is split in two floats so n*ln2 is subtracted without error (each step is one FMA);
// exp(r) is its Taylor series to r^7, whose truncation error (< 1e-8 relative) is below half an
// ulp. Inputs are clamped to [-104, 89]: exp(-104) rounds to 0 and exp(89) overflows to inf, so
// -inf gives 0 and +inf gives inf. 2^n is applied in two halves so that results in the
// subnormal range are still correct (n can reach -150, below the smallest normal exponent).
inline Vf exp(Vf x) {
  const float ln2_hi = 0.693145751953125f;      // 12 significant bits: n * ln2_hi is exact
  const float ln2_lo = 1.428606765330187e-06f;  // ln2 - ln2_hi
  x = min(set1(89.0f), max(set1(-104.0f), x));
  Vf n = round_nearest(x * set1(1.44269504088896341f));
  Vf r = fnma(n, set1(ln2_hi), x);
  r = fnma(n, set1(ln2_lo), r);
  Vf p = set1(1.0f / 5040);
  p = fma(p, r, set1(1.0f / 720));
  p = fma(p, r, set1(1.0f / 120));
  p = fma(p, r, set1(1.0f / 24));
  p = fma(p, r, set1(1.0f / 6));
  p = fma(p, r, set1(0.5f));
  p = fma(p, r, set1(1.0f));
  p = fma(p, r, set1(1.0f));
  Vf n1 = half_floor(n);
  return p * pow2i(n1) * pow2i(n - n1);
}

// Coefficients from cpu/fit_erf.py (Chebyshev fits, monomials in t in [-1, 1]).
// Region A, |z| < 1: erf(z) = z * PA(2 z^2 - 1). Max relative error 8.6e-08.
constexpr float kErfA[7] = {0.9654687643051147f,     -0.1405360996723175f,
                            0.019852496683597565f,   -0.002285419497638941f,
                            0.00021751354506704956f, -1.766906825650949e-05f,
                            1.2306054486543871e-06f};
// Region B, 1 <= z <= 11.5: erfc(z) = exp(-z^2) * PB(t), w = 1/(1+z), t = (2w - (wa+wb))/(wb-wa)
// with [wa, wb] = [1/12.5, 1/2]. Max relative error 1.8e-07.
constexpr float kErfcB[11] = {
    0.214719757437706f,      0.1922530084848404f,      0.02426943928003311f,
    -0.003120790235698223f,  -0.0007741498993709683f,  0.00024074681277852505f,
    1.1730895494110882e-05f, -2.0486744688241743e-05f, 3.8228222365432885e-06f,
    1.032175418913539e-06f,  -5.423719926511694e-07f};

template <int N>
inline Vf horner(const float (&c)[N], Vf t) {
  Vf p = set1(c[N - 1]);
  for (int i = N - 2; i >= 0; --i) p = fma(p, t, set1(c[i]));
  return p;
}

// Phi(x) = 0.5 erfc(-x / sqrt2), the standard normal CDF, with small relative error also in the
// lower tail (where 1 + erf(z) would cancel): gelu(x) = x * Phi(x).
inline Vf normal_cdf(Vf x) {
  const float inv_sqrt2 = 0.70710678118654752f;
  const float wa = 1.0f / 12.5f, wb = 0.5f;
  // |x| > 16 is saturated: Phi is then 0 or 1 to far below float resolution.
  Vf xc = min(set1(16.0f), max(set1(-16.0f), x));
  Vf z = xc * set1(inv_sqrt2);
  Vf az = abs(z);
  // Region A: Phi = 0.5 + 0.5 erf(z).
  Vf erf_a = z * horner(kErfA, fms(az * az, set1(2.0f), set1(1.0f)));
  Vf phi_a = fma(erf_a, set1(0.5f), set1(0.5f));
  // Region B: q = 0.5 erfc(|z|); Phi = q below zero, 1 - q above. exp(-z^2) needs z^2 = x^2/2
  // to better than float precision (an error e in z^2 is a relative error e in the result, and
  // z^2 reaches 128), so x^2 is split exactly as hi + lo with an FMA.
  Vf w = set1(1.0f) / (set1(1.0f) + az);
  Vf t = fms(w, set1(2.0f / (wb - wa)), set1((wa + wb) / (wb - wa)));
  Vf x2_hi = xc * xc;
  Vf x2_lo = fms(xc, xc, x2_hi);
  Vf e = exp(x2_hi * set1(-0.5f));
  e = fnma(e, x2_lo * set1(0.5f), e);  // exp(-(hi+lo)/2) = exp(-hi/2) * (1 - lo/2)
  Vf q = e * horner(kErfcB, t) * set1(0.5f);
  Vf phi_b = select(xc > zero(), set1(1.0f) - q, q);
  return select(az < set1(1.0f), phi_a, phi_b);
}

}  // namespace
}  // namespace lmkit::kernels::LMKIT_SIMD_ISA
