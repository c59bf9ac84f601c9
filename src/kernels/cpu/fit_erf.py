#!/usr/bin/env python3
# Derives the polynomial coefficients of the vectorised erf used by gelu_fwd (cpu/simd_math.h).
# Not run by the build: the printed constants are pasted into simd_math.h; rerun to check them.
#
# Method: Chebyshev interpolation (near-minimax) in 40-digit arithmetic (mpmath), converted to
# monomials in the mapped variable t in [-1, 1], evaluated there with Horner in float32.
#   Region A, |z| < 1:  erf(z) = z * PA(t),            t = 2 z^2 - 1            (degree 6)
#   Region B, |z| >= 1: erfc(z) = exp(-z^2) * PB(t),  w = 1/(1+|z|) in [1/12.5, 1/2],
#                        t = (2w - (wa + wb)) / (wb - wa)                        (degree 10)
# Both keep the relative error of the float evaluation under ~3 ulp (printed below).
import struct

import mpmath as mp

mp.mp.dps = 40


def f32(x):
    return struct.unpack('f', struct.pack('f', float(x)))[0]


def cheb_fit(f, a, b, deg):
    n = deg + 1
    nodes = [mp.cos(mp.pi * (k + 0.5) / n) for k in range(n)]
    vals = [f(a + (b - a) * (t + 1) / 2) for t in nodes]
    c = [2 * sum(vals[k] * mp.cos(mp.pi * j * (k + 0.5) / n) for k in range(n)) / n
         for j in range(n)]
    c[0] /= 2
    T = [[mp.mpf(1)], [mp.mpf(0), mp.mpf(1)]]
    for j in range(2, n):
        new = [mp.mpf(0)] * (j + 1)
        for i, v in enumerate(T[-1]):
            new[i + 1] += 2 * v
        for i, v in enumerate(T[-2]):
            new[i] -= v
        T.append(new)
    mono = [mp.mpf(0)] * n
    for j in range(n):
        for i, v in enumerate(T[j]):
            mono[i] += c[j] * v
    return [f32(m) for m in mono]


def horner_f32(co, t):
    r = co[-1]
    for c in reversed(co[:-1]):
        r = f32(r * t + c)
    return r


def max_rel_err(f, a, b, co, n=4000):
    worst = 0
    for i in range(n + 1):
        t = f32(-1 + 2 * i / n)
        exact = f(mp.mpf(a) + (b - a) * (mp.mpf(t) + 1) / 2)
        worst = max(worst, abs((horner_f32(co, t) - exact) / exact))
    return float(worst)


def fa(s):  # erf(z)/z as a function of s = z^2
    return mp.erf(mp.sqrt(s)) / mp.sqrt(s) if s > 0 else 2 / mp.sqrt(mp.pi)


def fb(w):  # erfc(z) * exp(z^2) as a function of w = 1/(1+z)
    z = 1 / w - 1
    return mp.erfc(z) * mp.exp(z * z)


WA, WB = 1 / 12.5, 0.5
for name, f, a, b, deg in (('kErfA', fa, 0, 1, 6), ('kErfcB', fb, WA, WB, 10)):
    co = cheb_fit(f, a, b, deg)
    print(f'// max relative error {max_rel_err(f, a, b, co):.2e}')
    print(f'constexpr float {name}[{deg + 1}] = {{')
    print(',\n'.join(f'    {c!r}f' for c in co) + '};')
