// Microbenchmarks of every kernel table this CPU runs, "ref" included as the in-process baseline;
// a closing summary prints each SIMD table's speed-up over ref. Single thread. Counters are rates:
// W_bytes = weight bytes/s (decode matvec), FLOP = flop/s, KV_bytes = K and V bytes/s.
// Not an end-to-end figure: model-level tokens/s come from `lmkit bench`.
//
//   bench_kernels                          all (about half a minute)
//   bench_kernels --benchmark_filter=matvec
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kernels/kernels.h"

namespace {

using lmkit::DType;
using lmkit::kernels::AttentionArgs;
using lmkit::kernels::KernelTable;

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

// A weight (N, K) in dtype t: f32 values or 16-bit patterns.
struct Weight {
  std::vector<float> f32;
  std::vector<uint16_t> u16;
  Weight(DType t, int64_t N, int64_t K) {
    auto w = random_floats(size_t(N * K), 7, 0.1f);
    if (t == DType::F32) {
      f32 = std::move(w);
      return;
    }
    u16.resize(w.size());
    for (size_t i = 0; i < w.size(); ++i)
      u16[i] = t == DType::F16 ? lmkit::f32_to_f16(w[i]) : lmkit::f32_to_bf16(w[i]);
  }
  const void *data() const {
    return f32.empty() ? static_cast<const void *>(u16.data()) : f32.data();
  }
  size_t bytes() const { return f32.size() * 4 + u16.size() * 2; }
};

// y(M, N) = x(M, K) W^T: GB/s of weight bytes for M = 1 (decode is bandwidth bound), GFLOP/s else.
void bm_matmul(benchmark::State &st, const KernelTable *t, DType dt, int64_t M, int64_t N,
               int64_t K) {
  Weight w(dt, N, K);
  auto x = random_floats(size_t(M * K), 1);
  std::vector<float> y(size_t(M * N)), bias = random_floats(size_t(N), 2);
  const auto fn = t->matmul_for(dt);
  for (auto _ : st) {
    fn(y.data(), N, x.data(), K, w.data(), bias.data(), M, N, K);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  if (M == 1)
    st.counters["W_bytes"] =
        benchmark::Counter(double(w.bytes()), benchmark::Counter::kIsIterationInvariantRate);
  else
    st.counters["FLOP"] =
        benchmark::Counter(2.0 * double(M * N * K), benchmark::Counter::kIsIterationInvariantRate);
}

void bm_rmsnorm(benchmark::State &st, const KernelTable *t, int64_t rows, int64_t dim) {
  auto x = random_floats(size_t(rows * dim), 1), w = random_floats(size_t(dim), 2);
  std::vector<float> y(x.size()), rstd(static_cast<size_t>(rows));
  for (auto _ : st) {
    t->rmsnorm_fwd(y.data(), rstd.data(), x.data(), w.data(), rows, dim, 1e-5f);
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["bytes"] =
      benchmark::Counter(double(x.size()) * 8, benchmark::Counter::kIsIterationInvariantRate);
}

void bm_softmax(benchmark::State &st, const KernelTable *t, int64_t rows, int64_t cols) {
  auto x = random_floats(size_t(rows * cols), 1, 10.0f);
  std::vector<float> y(x.size());
  for (auto _ : st) {
    t->softmax_fwd(y.data(), x.data(), rows, cols);
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["elems"] =
      benchmark::Counter(double(x.size()), benchmark::Counter::kIsIterationInvariantRate);
}

void bm_unary(benchmark::State &st, const KernelTable *t, int which, int64_t n) {
  auto x = random_floats(size_t(n), 1, 4.0f);
  std::vector<float> y(x.size());
  auto fn = which == 0 ? t->silu_fwd : which == 1 ? t->gelu_fwd : t->gelu_tanh_fwd;
  for (auto _ : st) {
    fn(y.data(), x.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["elems"] =
      benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}

// Decode: one query per head against n_kv cached keys (GPT-2 small: 12 heads of 64).
void bm_attention(benchmark::State &st, const KernelTable *t, int64_t n_q, int64_t n_kv,
                  int64_t n_head, int64_t head_dim) {
  const int64_t width = n_head * head_dim;
  auto q = random_floats(size_t(n_q * width), 1),
       k = random_floats(size_t(n_head * n_kv * head_dim), 2),
       v = random_floats(size_t(n_head * n_kv * head_dim), 3);
  std::vector<float> out(size_t(n_q * width)), scratch(static_cast<size_t>(n_kv));
  std::vector<int32_t> pos(static_cast<size_t>(n_q));
  for (int64_t i = 0; i < n_q; ++i) pos[size_t(i)] = int32_t(n_kv - n_q + i);
  AttentionArgs a;
  a.out = out.data();
  a.ld_out = width;
  a.q = q.data();
  a.ld_q = width;
  a.k = k.data();
  a.v = v.data();
  a.ld_kv_head = n_kv * head_dim;
  a.q_pos = pos.data();
  a.n_q = n_q;
  a.n_kv = n_kv;
  a.n_head = a.n_head_kv = n_head;
  a.head_dim = head_dim;
  a.scale = float(1 / std::sqrt(double(head_dim)));
  a.scratch = scratch.data();
  a.head_begin = 0;
  a.head_end = n_head;
  for (auto _ : st) {
    t->attention_fwd(a);
    benchmark::DoNotOptimize(out.data());
  }
  // K and V bytes read per call (causal prefill reads about half of them per query), and the
  // flops of the scores and the weighted sum over the keys each query sees.
  st.counters["KV_bytes"] = benchmark::Counter(double(2 * n_head * n_kv * head_dim * 4),
                                               benchmark::Counter::kIsIterationInvariantRate);
  double seen = 0;
  for (int64_t i = 0; i < n_q; ++i) seen += double(pos[size_t(i)] + 1);
  st.counters["FLOP"] = benchmark::Counter(4.0 * seen * double(n_head * head_dim),
                                           benchmark::Counter::kIsIterationInvariantRate);
}

// Console output plus, at the end, each benchmark's speed-up over its ref twin.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run> &runs) override {
    for (const Run &r : runs) {
      const std::string name = r.benchmark_name();
      const size_t slash = name.rfind('/');
      if (slash == std::string::npos || r.iterations == 0) continue;
      // names look like "op/params/table" (Google Benchmark may append "/min_time:...")
      const std::string base = name.substr(0, slash);
      const size_t s2 = base.rfind('/');
      const bool has_min = name.find("min_time") != std::string::npos;
      const std::string key = has_min ? base.substr(0, s2) : base;
      const std::string table = has_min ? base.substr(s2 + 1) : name.substr(slash + 1);
      times_[key][table] = r.GetAdjustedCPUTime();  // robust to being descheduled
      if (order_.empty() || order_.back() != key) order_.push_back(key);
    }
    ConsoleReporter::ReportRuns(runs);
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\nSpeed-up over ref (CPU time, same run, 1 thread):\n");
    for (const std::string &key : order_) {
      const auto &m = times_[key];
      auto ref = m.find("ref");
      if (ref == m.end()) continue;
      std::printf("  %-44s", key.c_str());
      for (const auto &[table, time] : m)
        if (table != "ref") std::printf("  %s %7.1fx", table.c_str(), ref->second / time);
      std::printf("\n");
    }
  }

 private:
  std::map<std::string, std::map<std::string, double>> times_;
  std::vector<std::string> order_;
};

void register_all() {
  const double min_time = 0.05;
  const std::vector<const KernelTable *> tables = lmkit::kernels::available();
  const std::pair<DType, const char *> dtypes[] = {
      {DType::F32, "f32"}, {DType::F16, "f16"}, {DType::BF16, "bf16"}};
  auto reg = [&](const std::string &name, const KernelTable *t, auto fn) {
    benchmark::RegisterBenchmark((name + "/" + t->name).c_str(), fn)->MinTime(min_time);
  };
  for (auto [dt, dname] : dtypes)
    for (auto [N, K] : {std::pair<int64_t, int64_t>{768, 768}, {2048, 768}, {32000, 768}})
      for (const KernelTable *t : tables)
        reg(std::string("matvec_") + dname + "/N=" + std::to_string(N) + ",K=" + std::to_string(K),
            t, [=](benchmark::State &st) { bm_matmul(st, t, dt, 1, N, K); });
  for (auto [dt, dname] : dtypes)
    for (int64_t M : {16, 64, 128})
      for (const KernelTable *t : tables)
        reg(std::string("matmul_") + dname + "/M=" + std::to_string(M) + ",N=768,K=768", t,
            [=](benchmark::State &st) { bm_matmul(st, t, dt, M, 768, 768); });
  for (const KernelTable *t : tables)
    reg("rmsnorm/rows=16,dim=4096", t, [=](benchmark::State &st) { bm_rmsnorm(st, t, 16, 4096); });
  for (const KernelTable *t : tables)
    reg("softmax/rows=12,cols=1024", t, [=](benchmark::State &st) { bm_softmax(st, t, 12, 1024); });
  const char *unary[] = {"silu", "gelu", "gelu_tanh"};
  for (int u = 0; u < 3; ++u)
    for (const KernelTable *t : tables)
      reg(std::string(unary[u]) + "/n=11008", t,
          [=](benchmark::State &st) { bm_unary(st, t, u, 11008); });
  for (const KernelTable *t : tables)
    reg("attention_decode/n_kv=512,heads=12,hd=64", t,
        [=](benchmark::State &st) { bm_attention(st, t, 1, 512, 12, 64); });
  for (const KernelTable *t : tables)
    reg("attention_prefill/n=128,heads=12,hd=64", t,
        [=](benchmark::State &st) { bm_attention(st, t, 128, 128, 12, 64); });
  // A long prompt: each head's K and V are 512 KiB each (about L2's size).
  for (const KernelTable *t : tables)
    reg("attention_prefill/n=2048,heads=12,hd=64", t,
        [=](benchmark::State &st) { bm_attention(st, t, 2048, 2048, 12, 64); });
}

}  // namespace

int main(int argc, char **argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all();
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
