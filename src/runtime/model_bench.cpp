// model_bench: the measurement loop, peak RSS and RAPL readers, and the report formats.
#include "runtime/model_bench.h"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "core/rng.h"
#include "core/timer.h"
#include "kernels/kernels.h"
#include "runtime/sampler.h"
#include "runtime/session.h"

namespace lmkit {

namespace {

std::optional<double> read_number(const std::string &path) {
  std::ifstream f(path);
  double v = 0;
  if (!(f >> v)) return std::nullopt;
  return v;
}

std::string read_word(const std::filesystem::path &path) {
  std::ifstream f(path);
  std::string s;
  f >> s;
  return s;
}

}  // namespace

void ModelBenchOptions::validate(int64_t n_ctx) const {
  LMKIT_CHECK(n_prompt >= 1, "prompt tokens (-p) must be >= 1, got ", n_prompt);
  LMKIT_CHECK(n_gen >= 1, "decoded tokens (-n) must be >= 1, got ", n_gen);
  LMKIT_CHECK(reps >= 1, "repetitions (-r) must be >= 1, got ", reps);
  LMKIT_CHECK(warmup >= 0, "warmup repetitions must be >= 0, got ", warmup);
  LMKIT_CHECK(bw_passes >= 1, "bandwidth passes must be >= 1, got ", bw_passes);
  LMKIT_CHECK(n_ctx <= 0 || n_prompt + n_gen <= n_ctx, "-p ", n_prompt, " + -n ", n_gen, " = ",
              n_prompt + n_gen, " positions exceed the model's context of ", n_ctx,
              " (lower -p or -n)");
}

MeanStd mean_std(const std::vector<double> &v) {
  MeanStd r;
  if (v.empty()) return r;
  for (double x : v) r.mean += x;
  r.mean /= double(v.size());
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - r.mean) * (x - r.mean);
    r.std = std::sqrt(ss / double(v.size() - 1));
  }
  return r;
}

size_t model_stream_bytes(const Model &m) {
  const Weights &w = m.weights();
  const int64_t d = m.config().n_embd;
  size_t bytes = 0;
  for (const auto &[name, t] : w.table) {
    if (name == "token_embd.weight" || name == "position_embd.weight") {
      bytes += dtype_row_bytes(t.dtype(), d);  // one row per token
    } else if (name == "rope_freqs.weight") {
      continue;  // folded into the RoPE table at load; never read by a forward
    } else {
      bytes += t.nbytes();
    }
  }
  // A tied classifier is the embedding matrix, read whole (it is in the table once, as the
  // embedding); an untied one is in the table as output.weight.
  if (w.output.w.data() == w.tok_embd.data()) bytes += w.tok_embd.nbytes();
  return bytes;
}

std::vector<int32_t> bench_prompt(int64_t n_vocab, int64_t p, uint64_t seed) {
  LMKIT_CHECK(n_vocab >= 1, "bench_prompt: empty vocabulary");
  Rng rng(seed);
  std::vector<int32_t> ids(size_t(std::max<int64_t>(p, 0)));
  for (auto &id : ids) id = int32_t(rng.next_u64() % uint64_t(n_vocab));
  return ids;
}

bool peak_rss_reset() {
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  f.flush();
  return bool(f);
}

size_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      long long kb = 0;
      if (std::sscanf(line.c_str() + 6, "%lld", &kb) == 1 && kb > 0) return size_t(kb) * 1024;
    }
  }
  rusage ru{};
  if (::getrusage(RUSAGE_SELF, &ru) == 0) return size_t(ru.ru_maxrss) * 1024;  // Linux: KiB
  return 0;
}

RaplCounter::RaplCounter(const std::string &powercap_dir) {
  std::error_code ec;
  std::vector<std::filesystem::path> dirs;
  for (const auto &e : std::filesystem::directory_iterator(powercap_dir, ec)) dirs.push_back(e);
  std::sort(dirs.begin(), dirs.end());
  // A package can appear twice (intel-rapl:0 and intel-rapl-mmio:0, both "package-0").
  std::set<std::string> seen;
  for (const auto &d : dirs) {
    const std::string name = read_word(d / "name");
    if (name.rfind("package", 0) != 0) continue;
    const std::string energy = (d / "energy_uj").string();
    if (!read_number(energy)) continue;  // absent or unreadable (root only)
    if (!seen.insert(name).second) continue;
    domains_.push_back({energy, read_number((d / "max_energy_range_uj").string()).value_or(0)});
  }
}

std::optional<std::vector<double>> RaplCounter::read() const {
  std::vector<double> v;
  for (const Domain &d : domains_) {
    std::optional<double> x = read_number(d.energy_path);
    if (!x) return std::nullopt;
    v.push_back(*x);
  }
  return v;
}

double RaplCounter::delta_uj(const std::vector<double> &start,
                             const std::vector<double> &end) const {
  double sum = 0;
  for (size_t i = 0; i < domains_.size() && i < start.size() && i < end.size(); ++i) {
    double d = end[i] - start[i];
    if (d < 0 && domains_[i].max_range_uj > 0) d += domains_[i].max_range_uj;
    sum += std::max(d, 0.0);
  }
  return sum;
}

ModelBenchResult model_bench_run(const std::shared_ptr<const Model> &model, int threads,
                                 const ModelBenchOptions &opt, const ModelBenchProgress &progress) {
  const ModelConfig &c = model->config();
  opt.validate(c.n_ctx_train);
  auto pool = std::make_shared<ThreadPool>(threads);

  ModelBenchResult r;
  r.model_type = c.arch;
  r.dtype = std::string(dtype_name(c.dtype));
  r.kernels = kernels::active().name;
  r.n_params = model->weights().n_params();
  r.threads = pool->size();
  r.n_prompt = opt.n_prompt;
  r.n_gen = opt.n_gen;
  r.reps = opt.reps;
  r.model_bytes = model_stream_bytes(*model);

  const int64_t V = c.n_vocab, p = opt.n_prompt, n = opt.n_gen;
  const std::vector<int32_t> prompt = bench_prompt(V, p, opt.seed);
  const RaplCounter rapl(opt.powercap_dir);
  const int steps = opt.warmup + opt.reps + 1;
  int step = 0;
  auto report = [&](const std::string &what) {
    if (progress) progress(what, step, steps);
  };

  std::vector<double> prefill, decode, ttft, energy;
  bool energy_ok = rapl.available();
  std::vector<int32_t> generated;
  generated.reserve(size_t(n) + 1);
  auto one_rep = [&](bool timed) {
    Session s(model, pool, p + n);
    generated.clear();
    const double t0 = now_seconds();
    const float *lg = s.eval(prompt);
    const double t1 = now_seconds();
    int32_t tok = argmax(lg, V);
    const double t2 = now_seconds();
    generated.push_back(tok);
    std::optional<std::vector<double>> e0 = energy_ok ? rapl.read() : std::nullopt;
    const double t3 = now_seconds();
    for (int64_t i = 0; i < n; ++i) {
      lg = s.eval(std::span<const int32_t>(&tok, 1));
      tok = argmax(lg, V);
      generated.push_back(tok);
    }
    const double t4 = now_seconds();
    std::optional<std::vector<double>> e1 = energy_ok ? rapl.read() : std::nullopt;
    if (!timed) return;
    prefill.push_back(double(p) / std::max(t1 - t0, 1e-12));
    ttft.push_back((t2 - t0) * 1e3);
    decode.push_back(double(n) / std::max(t4 - t3, 1e-12));
    if (e0 && e1)
      energy.push_back(rapl.delta_uj(*e0, *e1) / 1e3 / double(n));  // mJ per token
    else
      energy_ok = false;
    r.last_logits.assign(lg, lg + V);
  };

  for (int i = 0; i < opt.warmup; ++i, ++step) {
    report(str_cat("warmup ", i + 1, "/", opt.warmup));
    one_rep(false);
  }
  // Peak RSS of this configuration: the high-water mark restarts after the warmup (the weights
  // are resident by then, as they are while serving).
  r.peak_rss_per_config = peak_rss_reset();
  for (int i = 0; i < opt.reps; ++i, ++step) {
    report(str_cat("rep ", i + 1, "/", opt.reps));
    one_rep(true);
  }
  r.peak_rss_mb = double(peak_rss_bytes()) / 1e6;
  r.prompt = prompt;
  r.generated = generated;
  r.prefill_tok_s = mean_std(prefill);
  r.decode_tok_s = mean_std(decode);
  r.ttft_ms = mean_std(ttft);
  if (energy_ok && !energy.empty()) r.energy_mj_per_tok = mean_std(energy);

  // The bound, after the reps so that its buffer never counts in this configuration's peak RSS.
  report("memory bandwidth");
  r.bandwidth = membw_measure(*pool, opt.bw_bytes, opt.bw_passes);
  ++step;
  report("done");
  r.achieved_gbs = double(r.model_bytes) * r.decode_tok_s.mean / 1e9;
  r.pct_of_bound = r.bandwidth.gbs > 0 ? 100.0 * r.achieved_gbs / r.bandwidth.gbs : 0;
  return r;
}

nlohmann::ordered_json model_bench_json(const ModelBenchResult &r, const std::string &model) {
  nlohmann::ordered_json j;
  j["model"] = model;
  j["model_type"] = r.model_type;
  j["dtype"] = r.dtype;
  j["n_params"] = r.n_params;
  j["kernels"] = r.kernels;
  j["threads"] = r.threads;
  j["n_prompt"] = r.n_prompt;
  j["n_gen"] = r.n_gen;
  j["reps"] = r.reps;
  j["prefill_tok_s"] = r.prefill_tok_s.mean;
  j["prefill_tok_s_std"] = r.prefill_tok_s.std;
  j["decode_tok_s"] = r.decode_tok_s.mean;
  j["decode_tok_s_std"] = r.decode_tok_s.std;
  j["ttft_ms"] = r.ttft_ms.mean;
  j["ttft_ms_std"] = r.ttft_ms.std;
  j["peak_rss_mb"] = r.peak_rss_mb;
  j["peak_rss_scope"] = r.peak_rss_per_config ? "config" : "process";
  j["model_bytes"] = r.model_bytes;
  j["achieved_gbs"] = r.achieved_gbs;
  j["bandwidth_gbs"] = r.bandwidth.gbs;
  j["bandwidth_mean_gbs"] = r.bandwidth.mean_gbs;
  j["bandwidth_bytes"] = r.bandwidth.bytes;
  j["bandwidth_isa"] = r.bandwidth.isa;
  j["pct_of_bound"] = r.pct_of_bound;
  if (r.energy_mj_per_tok) {
    j["energy_mj_per_tok"] = r.energy_mj_per_tok->mean;
    j["energy_mj_per_tok_std"] = r.energy_mj_per_tok->std;
  } else {
    j["energy_mj_per_tok"] = nullptr;
    j["energy_mj_per_tok_std"] = nullptr;
  }
  return j;
}

namespace {

std::string fmt(const char *f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
std::string pm(const char *f, const MeanStd &m) {
  return fmt(f, m.mean) + " ± " + fmt(f, m.std);
}

// The last path component ("models/x/" -> "x").
std::string base_name(const std::string &path) {
  std::filesystem::path p(path);
  if (p.filename().empty()) p = p.parent_path();
  std::string s = p.filename().string();
  return s.empty() ? path : s;
}

}  // namespace

std::string model_bench_markdown(const std::vector<ModelBenchResult> &rs,
                                 const std::string &model) {
  if (rs.empty()) return "";
  const ModelBenchResult &f = rs.front();
  std::string s = str_cat(
      "| model | type | threads | prefill tok/s (p", f.n_prompt, ") | decode tok/s (n", f.n_gen,
      ") | TTFT ms | peak RSS MB | model MB | GB/s | mem BW GB/s | % of bound | mJ/tok |\n");
  s += "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
  for (const ModelBenchResult &r : rs) {
    s += str_cat("| ", base_name(model), " | ", r.model_type, " ", r.dtype, " | ", r.threads, " | ",
                 pm("%.1f", r.prefill_tok_s), " | ", pm("%.1f", r.decode_tok_s), " | ",
                 pm("%.2f", r.ttft_ms), " | ", fmt("%.1f", r.peak_rss_mb), " | ",
                 fmt("%.2f", double(r.model_bytes) / 1e6), " | ", fmt("%.2f", r.achieved_gbs),
                 " | ", fmt("%.2f", r.bandwidth.gbs), " | ", fmt("%.1f", r.pct_of_bound), " | ",
                 r.energy_mj_per_tok ? pm("%.3f", *r.energy_mj_per_tok) : std::string("n/a"),
                 " |\n");
  }
  return s;
}

}  // namespace lmkit
