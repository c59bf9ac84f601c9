// Quantized matmul benchmarks beside their baselines, all measured in this run: a plain streaming
// read (the machine's memory bandwidth, 1 and 2 threads), the f32 ref matvec and the f32/f16 SIMD
// matvecs, then every block type on every quant table this CPU runs (1 thread), the tables in use
// on 2 threads (rows split as the decoder splits them, M = 1 and the serving batches M = 4, 8, 16),
// and M = 16 / 128 matmuls. Counters: W_bytes = weight bytes streamed per second (decode matvec),
// FLOP = flop/s (M > 1).
// "cold" runs rotate through copies of W totalling >= 192 MiB (more than any cache here), so each
// call streams W from DRAM as a decode step of a large model does; "hot" reuses one copy.
// Not an end-to-end figure: model-level tokens/s come from `lmkit bench` / bench_decode.
//
//   bench_quant                               all (about a minute)
//   bench_quant --benchmark_filter=cold
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

namespace {

using lmkit::DType;
namespace kernels = lmkit::kernels;

std::vector<float> random_floats(size_t n, uint64_t seed, float scale = 1.0f) {
  std::vector<float> v(n);
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto &x : v) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    x = (float((s >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f) * scale;
  }
  return v;
}

// 64-byte aligned bytes.
struct Buf {
  std::unique_ptr<uint8_t[], void (*)(uint8_t *)> p{nullptr, [](uint8_t *q) { std::free(q); }};
  size_t n = 0;
  explicit Buf(size_t bytes) : n(bytes) {
    p.reset(static_cast<uint8_t *>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
  }
};

constexpr size_t kColdBytes = size_t(192) << 20;

// W (N, K) in dtype t, `copies` times back to back (each copy at a 64-byte boundary).
struct Weights {
  size_t bytes;  // one copy
  size_t stride;
  int copies;
  Buf buf;
  Weights(DType t, int64_t N, int64_t K, bool cold)
      : bytes(lmkit::dtype_row_bytes(t, K) * size_t(N)),
        stride((bytes + 63) / 64 * 64),
        copies(cold ? int((kColdBytes + stride - 1) / stride) : 1),
        buf(stride * size_t(copies)) {
    const auto w = random_floats(size_t(N * K), 7, 0.1f);
    uint8_t *dst = buf.p.get();
    if (t == DType::F32) {
      std::memcpy(dst, w.data(), bytes);
    } else if (t == DType::F16) {
      for (size_t i = 0; i < w.size(); ++i) {
        const uint16_t h = lmkit::f32_to_f16(w[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
    } else {
      const size_t rb = lmkit::dtype_row_bytes(t, K);
      for (int64_t n = 0; n < N; ++n) kernels::quantize_row(t, w.data() + n * K, dst + rb * n, K);
    }
    for (int c = 1; c < copies; ++c) std::memcpy(dst + stride * size_t(c), dst, bytes);
  }
  const void *copy(int c) const { return buf.p.get() + stride * size_t(c); }
};

// Memory bandwidth: sum of 64-bit words over a 256 MiB buffer split across `threads` threads.
void bm_stream_read(benchmark::State &st, int threads) {
  const size_t n = (size_t(256) << 20) / 8;
  static std::vector<uint64_t> data(n, 1);
  for (auto _ : st) {
    std::vector<std::thread> pool;
    std::vector<uint64_t> sums(size_t(threads) * 8);
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        const size_t b = n * size_t(t) / size_t(threads), e = n * size_t(t + 1) / size_t(threads);
        uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (size_t i = b; i + 4 <= e; i += 4) {
          a0 += data[i];
          a1 += data[i + 1];
          a2 += data[i + 2];
          a3 += data[i + 3];
        }
        sums[size_t(t) * 8] = a0 + a1 + a2 + a3;
      });
    for (auto &th : pool) th.join();
    benchmark::DoNotOptimize(sums.data());
  }
  st.counters["W_bytes"] =
      benchmark::Counter(double(n * 8), benchmark::Counter::kIsIterationInvariantRate);
}

// M = 1: weight bytes per second (decode is a stream of W); else flop/s.
void set_rate(benchmark::State &st, int64_t M, int64_t N, int64_t K, size_t w_bytes) {
  if (M == 1)
    st.counters["W_bytes"] =
        benchmark::Counter(double(w_bytes), benchmark::Counter::kIsIterationInvariantRate);
  else
    st.counters["FLOP"] =
        benchmark::Counter(2.0 * double(M * N * K), benchmark::Counter::kIsIterationInvariantRate);
}

// y(M, N) = x(M, K) W^T with the given kernel.
void bm_matmul(benchmark::State &st, kernels::matmul_fn fn, DType t, int64_t M, int64_t N,
               int64_t K, bool cold) {
  Weights w(t, N, K, cold);
  const auto x = random_floats(size_t(M * K), 1);
  std::vector<float> y(size_t(M * N));
  const auto bias = random_floats(size_t(N), 2);
  int c = 0;
  for (auto _ : st) {
    fn(y.data(), N, x.data(), K, w.copy(c), bias.data(), M, N, K);
    c = c + 1 == w.copies ? 0 : c + 1;
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_rate(st, M, N, K, w.bytes);
}

// Decode as the model runs it: W rows split over a persistent 2-thread pool (as the decoder's
// linear_fwd does), cold W. Compare with stream_read/threads:2. M = 4, 8, 16: a decode step of
// that many sequences in lmkit serve's continuous batching.
void bm_matvec_pool(benchmark::State &st, kernels::matmul_fn fn, DType t, int64_t M, int64_t N,
                    int64_t K) {
  static lmkit::ThreadPool pool(2);
  Weights w(t, N, K, true);
  const auto x = random_floats(size_t(M * K), 1);
  std::vector<float> y(size_t(M * N));
  const size_t rb = lmkit::dtype_row_bytes(t, K);
  int c = 0;
  for (auto _ : st) {
    const char *wc = static_cast<const char *>(w.copy(c));
    pool.parallel_for(
        N,
        [&](int64_t n0, int64_t n1, int) {
          fn(y.data() + n0, N, x.data(), K, wc + rb * size_t(n0), nullptr, M, n1 - n0, K);
        },
        16);
    c = c + 1 == w.copies ? 0 : c + 1;
    benchmark::DoNotOptimize(y.data());
  }
  set_rate(st, M, N, K, w.bytes);
}

const DType kQuantTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_0X8, DType::Q4_1, DType::Q5_0,
                             DType::Q5_1, DType::Q4_K, DType::Q5_K,   DType::Q6_K};

void register_all() {
  for (int th : {1, 2})
    benchmark::RegisterBenchmark(("stream_read/threads:" + std::to_string(th)).c_str(),
                                 bm_stream_read, th)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  struct Shape {
    int64_t N, K;
  };
  const Shape shapes[] = {{2048, 768}, {32000, 768}};
  auto name = [](const char *table, DType t, const char *what, int64_t M, int64_t N, int64_t K) {
    return std::string(what) + "/" + table + "/" + std::string(lmkit::dtype_name(t)) + "/" +
           std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K);
  };
  // Baselines: f32 ref (the scalar oracle) and the f32/f16 kernels of every KernelTable.
  for (const Shape &sh : shapes)
    for (bool cold : {false, true})
      for (const kernels::KernelTable *k : kernels::available())
        for (DType t : {DType::F32, DType::F16}) {
          if (std::string(k->name) == "ref" && (t != DType::F32 || sh.N > 2048)) continue;
          benchmark::RegisterBenchmark(
              name(k->name, t, cold ? "matvec_cold" : "matvec_hot", 1, sh.N, sh.K).c_str(),
              bm_matmul, k->matmul_for(t), t, 1, sh.N, sh.K, cold)
              ->Unit(benchmark::kMicrosecond);
        }
  for (const Shape &sh : shapes)
    for (bool cold : {false, true})
      for (const kernels::QuantKernels *q : kernels::quant_available())
        for (DType t : kQuantTypes) {
          if (std::string(q->name) == "ref" && (sh.N > 2048 || cold)) continue;  // slow, hot only
          benchmark::RegisterBenchmark(
              name(q->name, t, cold ? "matvec_cold" : "matvec_hot", 1, sh.N, sh.K).c_str(),
              bm_matmul, q->matmul_for(t), t, 1, sh.N, sh.K, cold)
              ->Unit(benchmark::kMicrosecond);
        }
  // Decode on 2 threads with the tables in use (LMKIT_KERNELS or the widest), cold W.
  for (const Shape &sh : shapes) {
    for (DType t : {DType::F32, DType::F16})
      benchmark::RegisterBenchmark(
          name(kernels::active().name, t, "matvec_2threads_cold", 1, sh.N, sh.K).c_str(),
          bm_matvec_pool, kernels::active().matmul_for(t), t, 1, sh.N, sh.K)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    for (int64_t M : {1, 4, 8, 16})
      for (DType t : kQuantTypes)
        benchmark::RegisterBenchmark(
            name(kernels::quant_active().name, t,
                 M == 1 ? "matvec_2threads_cold" : "matmul_2threads_cold", M, sh.N, sh.K)
                .c_str(),
            bm_matvec_pool, kernels::quant_active().matmul_for(t), t, M, sh.N, sh.K)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
  }
  // Prefill: M = 128 (GFLOP/s), hot W.
  for (const kernels::KernelTable *k : kernels::available()) {
    if (std::string(k->name) == "ref") continue;
    benchmark::RegisterBenchmark(name(k->name, DType::F32, "matmul", 128, 2048, 768).c_str(),
                                 bm_matmul, k->matmul_for(DType::F32), DType::F32, 128, 2048, 768,
                                 false)
        ->Unit(benchmark::kMillisecond);
  }
  // M = 16: a continuous-batching decode step of 16 sequences (lmkit serve).
  for (const kernels::QuantKernels *q : kernels::quant_available()) {
    if (std::string(q->name) == "ref") continue;
    for (int64_t M : {16, 128})
      for (DType t : kQuantTypes)
        benchmark::RegisterBenchmark(name(q->name, t, "matmul", M, 2048, 768).c_str(), bm_matmul,
                                     q->matmul_for(t), t, M, 2048, 768, false)
            ->Unit(benchmark::kMillisecond);
    for (DType t : kQuantTypes)
      benchmark::RegisterBenchmark(name(q->name, t, "matmul_cold", 16, 2048, 768).c_str(),
                                   bm_matmul, q->matmul_for(t), t, 16, 2048, 768, true)
          ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace

int main(int argc, char **argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
