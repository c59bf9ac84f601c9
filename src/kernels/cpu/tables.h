// The SIMD kernel tables, one per instruction set, each defined in its own ISA-flagged source.
// Not callable blindly: take a table only after cpu_features() says this CPU runs it (kernels.cpp).
#pragma once

#include "kernels/kernels.h"

namespace lmkit::kernels {

// Constant-initialised data (no code runs at start-up), so merely linking them is safe anywhere.
namespace avx2 {
extern const KernelTable table;  // AVX2 + FMA + F16C
}
namespace avx512 {
extern const KernelTable table;  // AVX-512 F/BW/VL/DQ (+ AVX2, FMA, F16C)
}

}  // namespace lmkit::kernels
