// cpuid via the compiler's builtins (which also check that the OS saves the wide registers).
#include "core/cpu.h"

namespace lmkit {

const CpuFeatures &cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures c;
#if defined(__x86_64__)
    __builtin_cpu_init();
    c.avx2 = __builtin_cpu_supports("avx2");
    c.fma = __builtin_cpu_supports("fma");
    c.f16c = __builtin_cpu_supports("f16c");
    c.avx512f = __builtin_cpu_supports("avx512f");
    c.avx512bw = __builtin_cpu_supports("avx512bw");
    c.avx512vl = __builtin_cpu_supports("avx512vl");
    c.avx512dq = __builtin_cpu_supports("avx512dq");
    c.avx512_vnni = __builtin_cpu_supports("avx512vnni");
    c.avx512_bf16 = __builtin_cpu_supports("avx512bf16");
    c.avx_vnni = __builtin_cpu_supports("avxvnni");
#endif
    return c;
  }();
  return f;
}

std::string CpuFeatures::str() const {
  std::string s;
  auto add = [&](bool on, const char *n) {
    if (on) s += (s.empty() ? "" : " ") + std::string(n);
  };
  add(avx2, "avx2");
  add(fma, "fma");
  add(f16c, "f16c");
  add(avx512f, "avx512f");
  add(avx512bw, "avx512bw");
  add(avx512vl, "avx512vl");
  add(avx512dq, "avx512dq");
  add(avx512_vnni, "avx512vnni");
  add(avx512_bf16, "avx512bf16");
  add(avx_vnni, "avxvnni");
  return s.empty() ? "scalar" : s;
}

}  // namespace lmkit
