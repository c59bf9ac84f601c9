// The read-bandwidth probe. The wide loops use per-function target attributes, chosen at run
// time from cpuid, so the library still runs on a plain x86-64 (no global ISA flags).
#include "core/membw.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <vector>

#include "core/cpu.h"
#include "core/error.h"
#include "core/timer.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lmkit {

namespace {

constexpr size_t kPage = 4096;
constexpr size_t kMiB = size_t(1) << 20;

// Eight independent accumulators so that the adds never wait on each other: the loop is bound by
// loads alone. The compiler vectorises this with the baseline ISA (SSE2 on x86-64).
double sum_scalar(const float *x, int64_t n) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += x[i + j];
  double s = 0;
  for (; i < n; ++i) s += x[i];
  for (float a : acc) s += a;
  return s;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) double sum_avx2(const float *x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(x + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(x + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(x + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(x + i + 24));
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  double s = 0;
  for (float v : t) s += v;
  return s + sum_scalar(x + i, n - i);
}

__attribute__((target("avx512f"))) double sum_avx512(const float *x, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_load_ps(x + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(x + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(x + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(x + i + 48));
  }
  alignas(64) float t[16];
  _mm512_store_ps(t, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  double s = 0;
  for (float v : t) s += v;
  return s + sum_scalar(x + i, n - i);
}
#endif

using SumFn = double (*)(const float *, int64_t);

SumFn pick_sum(std::string &isa) {
#if defined(__x86_64__)
  const CpuFeatures &f = cpu_features();
  if (f.avx512f) {
    isa = "avx512";
    return sum_avx512;
  }
  if (f.avx2) {
    isa = "avx2";
    return sum_avx2;
  }
#endif
  isa = "scalar";
  return sum_scalar;
}

// "32768K", "1M", "512" -> bytes; 0 when unparsable.
size_t parse_cache_size(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (s.empty()) return 0;
  size_t mult = 1;
  if (s.back() == 'K')
    mult = 1024, s.pop_back();
  else if (s.back() == 'M')
    mult = kMiB, s.pop_back();
  else if (s.back() == 'G')
    mult = 1024 * kMiB, s.pop_back();
  try {
    return size_t(std::stoull(s)) * mult;
  } catch (...) {
    return 0;
  }
}

std::string read_line(const std::filesystem::path &p) {
  std::ifstream f(p);
  std::string s;
  std::getline(f, s);
  return s;
}

// Anonymous pages, returned to the system on destruction (a freed malloc block might not be).
class PageBuffer {
 public:
  explicit PageBuffer(size_t bytes) : bytes_(bytes) {
    void *p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    LMKIT_CHECK(p != MAP_FAILED, "memory bandwidth probe: cannot map ", bytes / kMiB,
                " MiB (lower the probe size)");
    data_ = static_cast<float *>(p);
  }
  ~PageBuffer() { ::munmap(data_, bytes_); }
  PageBuffer(const PageBuffer &) = delete;
  PageBuffer &operator=(const PageBuffer &) = delete;
  float *data() const { return data_; }

 private:
  size_t bytes_;
  float *data_ = nullptr;
};

}  // namespace

size_t membw_llc_bytes() {
  size_t best = 0;
  int best_level = 0;
  std::error_code ec;
  const std::filesystem::path dir = "/sys/devices/system/cpu/cpu0/cache";
  for (const auto &e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().filename().string().rfind("index", 0) != 0) continue;
    const std::string type = read_line(e.path() / "type");
    if (type == "Instruction") continue;
    int level = 0;
    try {
      level = std::stoi(read_line(e.path() / "level"));
    } catch (...) {
      continue;
    }
    const size_t sz = parse_cache_size(read_line(e.path() / "size"));
    if (sz > 0 && (level > best_level || (level == best_level && sz > best)))
      best = sz, best_level = level;
  }
  if (best > 0) return best;
#ifdef _SC_LEVEL3_CACHE_SIZE
  long l3 = ::sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l3 > 0) return size_t(l3);
#endif
#ifdef _SC_LEVEL2_CACHE_SIZE
  long l2 = ::sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (l2 > 0) return size_t(l2);
#endif
  return 0;
}

size_t membw_default_bytes() {
  size_t b = std::max(256 * kMiB, 4 * membw_llc_bytes());
  return std::min(b, 2048 * kMiB);
}

MemBandwidth membw_measure(ThreadPool &pool, size_t bytes, int passes) {
  LMKIT_CHECK(passes >= 1, "memory bandwidth probe: passes must be >= 1, got ", passes);
  if (bytes == 0) bytes = membw_default_bytes();
  bytes = (bytes + kPage - 1) / kPage * kPage;
  const int64_t n = int64_t(bytes / sizeof(float));
  PageBuffer buf(bytes);
  float *x = buf.data();
  // Each thread's share, 1024 floats (4 KiB) at a time: aligned for the wide loads.
  constexpr int64_t grain = 1024;
  const int nt = pool.size();
  pool.run([&](int ti, int nth) {
    int64_t b, e;
    ThreadPool::split_range(n, grain, ti, nth, b, e);
    // Small integers: float sums of a small buffer are exact (a check for the tests).
    for (int64_t i = b; i < e; ++i) x[i] = float(i & 7);
  });

  MemBandwidth r;
  const SumFn sum = pick_sum(r.isa);
  r.bytes = bytes;
  r.passes = passes;
  r.threads = nt;
  std::vector<double> partial(size_t(nt) * 8, 0.0);  // a cache line per thread
  double total_gbs = 0;
  for (int p = 0; p < passes; ++p) {
    const double t0 = now_seconds();
    pool.run([&](int ti, int nth) {
      int64_t b, e;
      ThreadPool::split_range(n, grain, ti, nth, b, e);
      partial[size_t(ti) * 8] = b < e ? sum(x + b, e - b) : 0.0;
    });
    const double dt = std::max(now_seconds() - t0, 1e-9);
    const double gbs = double(bytes) / dt / 1e9;
    r.gbs = std::max(r.gbs, gbs);
    total_gbs += gbs;
    double s = 0;
    for (int t = 0; t < nt; ++t) s += partial[size_t(t) * 8];
    r.checksum = s;
  }
  r.mean_gbs = total_gbs / passes;
  return r;
}

}  // namespace lmkit
