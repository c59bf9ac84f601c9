// What this CPU can run (read once from cpuid). Not a dispatcher: kernels/ picks its table from it.
#pragma once

#include <string>

namespace lmkit {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_vnni = false, avx512_bf16 = false, avx_vnni = false;
  std::string str() const;  // "avx2 fma f16c avx512f ..."
};

const CpuFeatures &cpu_features();

}  // namespace lmkit
