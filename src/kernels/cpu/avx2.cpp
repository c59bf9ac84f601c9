// The "avx2" kernel table: the generic SIMD kernels compiled with -mavx2 -mfma -mf16c (this file).
// Not for CPUs without those: kernels.cpp offers the table only when cpuid reports them.
#include "kernels/cpu/simd_kernels.h"

static_assert(LMKIT_SIMD_AVX512 == 0, "avx2.cpp must be compiled with AVX2 flags only");
