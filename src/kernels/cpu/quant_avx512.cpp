// The "avx512" quant table: quant_simd.h compiled with AVX-512 F/BW/VL/DQ + VNNI (vpdpbusd,
// vpdpwssd on 256-bit vectors). Not for CPUs without VNNI: quant.cpp falls back to "avx2" there.
// GCC 12 reports its own _mm*_undefined_*() placeholders as "(may be) used uninitialized" once
// they are inlined here; that is a false positive (as in avx512.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "kernels/cpu/quant_simd.h"

static_assert(LMKIT_QUANT_VNNI == 1, "quant_avx512.cpp must be compiled with the AVX-512 flags");
