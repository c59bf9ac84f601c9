// Picks the kernel table once at start-up from cpuid, or from LMKIT_KERNELS=ref|avx2|avx512.
// Not a kernel: every op lives in ref/ (the oracle) and cpu/ (SIMD), this only points at them.
#include "kernels/kernels.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "core/cpu.h"
#include "core/error.h"
#include "kernels/cpu/tables.h"
#include "kernels/quant.h"
#include "kernels/ref/ref.h"

namespace lmkit::kernels {
namespace {

struct Candidate {
  const char *name;
  const KernelTable *table;  // null when this build has no such table
  bool (*runs_here)();       // does this CPU run it?
};

// Narrowest first: available() lists ref first, active() takes the last one that runs.
// A function-local static, so that it is ready even for callers running in static initialisers.
const Candidate (&candidates())[3] {
  static const Candidate list[3] = {
    {"ref", &ref::ref_table(), [] { return true; }},
#if defined(LMKIT_KERNELS_X86)
    {"avx2", &avx2::table,
     [] {
       const CpuFeatures &f = cpu_features();
       return f.avx2 && f.fma && f.f16c;
     }},
    {"avx512", &avx512::table,
     [] {
       const CpuFeatures &f = cpu_features();
       return f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
     }},
#else
    {"avx2", nullptr, [] { return false; }},
    {"avx512", nullptr, [] { return false; }},
#endif
  };
  return list;
}

std::string runnable_names() {
  std::string s;
  for (const Candidate &c : candidates())
    if (c.table && c.runs_here()) s += (s.empty() ? "" : ", ") + std::string(c.name);
  return s;
}

}  // namespace

matmul_fn KernelTable::matmul_for(DType t) const {
  switch (t) {
    case DType::F32:
      return matmul_f32;
    case DType::F16:
      return matmul_f16;
    case DType::BF16:
      return matmul_bf16;
    default:
      // Block-quantized weights: the quant table of this instruction set (kernels/quant.h).
      if (matmul_fn f = quant_kernels_for(*this).matmul_for(t)) return f;
      break;
  }
  fail("no matmul kernel for weights of dtype ", dtype_name(t),
       " (kernels exist for f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_K, q5_K, q6_K); "
       "convert the weights at load time");
}

const KernelTable *find(std::string_view name) {
  for (const Candidate &c : candidates())
    if (name == c.name) return c.table && c.runs_here() ? c.table : nullptr;
  return nullptr;
}

const KernelTable &require(std::string_view name) {
  for (const Candidate &c : candidates()) {
    if (name != c.name) continue;
    LMKIT_CHECK(c.table && c.runs_here(), "LMKIT_KERNELS=", name, ": this CPU (",
                cpu_features().str(), ") or this build cannot run the ", name,
                " kernels; choose one of: ", runnable_names());
    return *c.table;
  }
  fail("LMKIT_KERNELS=", name, ": unknown kernel table; choose one of: ", runnable_names());
}

namespace {
// The table in use; null until first asked for (then LMKIT_KERNELS or the widest that runs).
std::atomic<const KernelTable *> &active_slot() {
  static std::atomic<const KernelTable *> slot{nullptr};
  return slot;
}
}  // namespace

const KernelTable &active() {
  if (const KernelTable *t = active_slot().load(std::memory_order_acquire)) return *t;
  const KernelTable *pick = nullptr;
  const char *env = std::getenv("LMKIT_KERNELS");
  if (env && *env) {
    pick = &require(env);
  } else {
    for (const Candidate &c : candidates())
      if (c.table && c.runs_here()) pick = c.table;
  }
  const KernelTable *expected = nullptr;
  active_slot().compare_exchange_strong(expected, pick, std::memory_order_acq_rel);
  return *active_slot().load(std::memory_order_acquire);
}

void set_active(const KernelTable &t) {
  active_slot().store(&t, std::memory_order_release);
}

std::vector<const KernelTable *> available() {
  std::vector<const KernelTable *> v;
  for (const Candidate &c : candidates())
    if (c.table && c.runs_here()) v.push_back(c.table);
  return v;
}

}  // namespace lmkit::kernels
