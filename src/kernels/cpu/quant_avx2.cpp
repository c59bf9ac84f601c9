// The "avx2" quant table: the quantized matmuls of quant_simd.h compiled with -mavx2 -mfma -mf16c.
// Not for CPUs without those: quant.cpp offers the table only when cpuid reports them.
#include "kernels/cpu/quant_simd.h"

static_assert(LMKIT_QUANT_VNNI == 0, "quant_avx2.cpp must be compiled with AVX2 flags only");
