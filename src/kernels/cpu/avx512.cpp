// The "avx512" kernel table: the generic SIMD kernels compiled with AVX-512 F/BW/VL/DQ (this file).
// Not for CPUs without those: kernels.cpp offers the table only when cpuid reports them. The
// BF16/VNNI dot-product instructions are deliberately unused: they round x to bf16, which breaks
// agreement with the f32 reference; the weight conversions they would save are cheap here.
// GCC 12 reports its own _mm512_undefined_*() placeholders (self-initialised on purpose) as
// "(may be) used uninitialized" once they are inlined here; that is a false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "kernels/cpu/simd_kernels.h"

static_assert(LMKIT_SIMD_AVX512 == 1, "avx512.cpp must be compiled with the AVX-512 flags");
