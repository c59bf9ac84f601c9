// The SIMD quantized-matmul tables, one per instruction set, each defined in its ISA-flagged
// source. Not callable blindly: take one only after cpu_features() says this CPU runs it
// (quant.cpp).
#pragma once

#include "kernels/quant_blocks.h"

namespace lmkit::kernels {

// Constant-initialised data (no code runs at start-up), so merely linking them is safe anywhere.
namespace avx2 {
extern const QuantKernels quant_table;  // AVX2 + FMA + F16C: pmaddubsw integer dots
}
namespace avx512 {
extern const QuantKernels quant_table;  // AVX-512 F/BW/VL/DQ + VNNI: vpdpbusd/vpdpwssd
}

}  // namespace lmkit::kernels
