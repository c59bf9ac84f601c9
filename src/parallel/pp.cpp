// Pipeline-parallel training: the decoder as an executor stage, and the StepSync of a dp x pp grid.
#include "parallel/pp.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <new>
#include <numeric>

#include <sys/mman.h>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace lmkit::parallel {

std::pair<int64_t, int64_t> stage_layers(int64_t n_layer, int n_stage, int stage,
                                         const std::vector<int64_t> &layers) {
  LMKIT_CHECK(n_stage >= 1 && 0 <= stage && stage < n_stage, "pipeline: stage ", stage, " of ",
              n_stage);
  if (layers.empty()) {
    LMKIT_CHECK(n_layer >= n_stage, "--pp ", n_stage, " needs at least one layer per stage; the ",
                "model has ", n_layer);
    const int64_t base = n_layer / n_stage, extra = n_layer % n_stage;
    const int64_t first = stage * base + std::min<int64_t>(stage, extra);
    return {first, first + base + (stage < extra ? 1 : 0)};
  }
  LMKIT_CHECK(int64_t(layers.size()) == n_stage, "--pp-layers names ", layers.size(),
              " stages but --pp is ", n_stage);
  for (int64_t l : layers) LMKIT_CHECK(l >= 1, "--pp-layers: every stage needs a layer, got ", l);
  const int64_t sum = std::accumulate(layers.begin(), layers.end(), int64_t(0));
  LMKIT_CHECK(sum == n_layer, "--pp-layers adds up to ", sum, " layers; the model has ", n_layer);
  const int64_t first = std::accumulate(layers.begin(), layers.begin() + stage, int64_t(0));
  return {first, first + layers[size_t(stage)]};
}

ModelShape model_shape_of(const ModelConfig &c) {
  ModelShape s;
  s.name = "model";
  s.n_layer = c.n_layer;
  s.n_embd = c.n_embd;
  s.n_head = c.n_head;
  s.n_ff = c.mlp == MlpType::SwiGLU ? c.n_ff * 3 / 2 : c.n_ff;
  return s;
}

// ---- the decoder as a stage ---------------------------------------------------------------------

DecoderStage::ZeroPages::ZeroPages(size_t n_floats) : bytes(n_floats * sizeof(float)) {
  void *p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  data = static_cast<float *>(p);
}

DecoderStage::ZeroPages::~ZeroPages() {
  ::munmap(data, bytes);
}

DecoderStage::DecoderStage(Setup s) : s_(std::move(s)) {
  LMKIT_CHECK(s_.model && s_.grads && s_.pool && s_.rope && !s_.micro.empty(),
              "pipeline stage: incomplete setup");
  const int64_t T = s_.micro[0].T;
  for (const MicroBatchView &mv : s_.micro)
    LMKIT_CHECK(mv.T == T && int64_t(mv.tokens.size()) == mv.B * mv.T,
                "pipeline stage: every micro-batch must be B x ", T, " tokens");
  LMKIT_CHECK(std::accumulate(s_.chunks.begin(), s_.chunks.end(), int64_t(0)) == T,
              "pipeline stage: the chunk lengths do not add up to the sequence length ", T);
  LMKIT_CHECK(s_.n_targets > 0, "pipeline stage: the step has no targets");
  starts_ = chunk_starts(s_.chunks);
  if (s_.spare) s_.spare->resize(s_.chunks.size());
}

int64_t DecoderStage::boundary_floats(int mb, int chunk) const {
  return s_.micro[size_t(mb)].B * s_.chunks[size_t(chunk)] * s_.model->config().n_embd;
}

void DecoderStage::forward(int mb, int chunk, std::span<const float> in, std::span<float> out) {
  const ModelConfig &c = s_.model->config();
  const MicroBatchView &mv = s_.micro[size_t(mb)];
  const int64_t B = mv.B, T = mv.T, L = s_.chunks[size_t(chunk)], t0 = starts_[size_t(chunk)];
  const int64_t d = c.n_embd;
  // A micro-batch cut into chunks keeps every layer's K/V for its later chunks, and their
  // gradients for its earlier ones, until its first chunk's backward.
  if (s_.chunks.size() > 1 && chunk == 0) {
    Keep &k = keep_[mb];
    const int64_t n_store = (s_.last - s_.first) * B, one = c.n_head_kv * T * c.head_dim;
    k.kv.assign(size_t(n_store * 2 * one), 0.0f);
    k.grad = std::make_unique<ZeroPages>(size_t(n_store * 2 * one));
    k.stores.resize(size_t(n_store));
    for (int64_t i = 0; i < n_store; ++i) {
      ag::KVStore &st = k.stores[size_t(i)];
      st.k = k.kv.data() + 2 * i * one;
      st.v = st.k + one;
      st.dk = k.grad->data + 2 * i * one;
      st.dv = st.dk + one;
      st.n_head_kv = c.n_head_kv;
      st.head_dim = c.head_dim;
      st.n_ctx = T;
    }
  }
  Unit &u = units_[{mb, chunk}];
  if (s_.spare && !(*s_.spare)[size_t(chunk)].empty()) {
    u.arena = std::move((*s_.spare)[size_t(chunk)].back());
    (*s_.spare)[size_t(chunk)].pop_back();
  } else {
    u.arena = std::make_unique<Arena>(size_t(4) << 20);
  }
  u.ctx = std::make_unique<ag::Context>(*s_.pool, *u.arena, /*recording=*/true, s_.grads);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = t0; t < t0 + L; ++t) {
      u.tokens.push_back(mv.tokens[size_t(b * T + t)]);
      u.targets.push_back(mv.targets[size_t(b * T + t)]);
      u.pos.push_back(int32_t(t));
    }
    u.seqs.push_back({b * L, (b + 1) * L, -1});
  }
  Stage st;
  st.first = s_.first;
  st.last = s_.last;
  if (auto it = keep_.find(mb); it != keep_.end()) st.kv = it->second.stores;
  if (!first_stage()) {
    LMKIT_CHECK(int64_t(in.size()) == B * L * d, "pipeline stage: got ", in.size(),
                " activation floats, expected ", B * L * d);
    u.in = u.ctx->new_var(B * L, d);
    for (int64_t r = 0; r < B * L; ++r) std::memcpy(u.in.row(r), in.data() + r * d, size_t(d) * 4);
    st.input = u.in;
  }
  u.out = s_.model->hidden(*u.ctx, Batch{u.tokens, u.pos, u.seqs}, *s_.rope, nullptr, nullptr, &st);
  if (last_stage()) {
    loss_ += ag::cross_entropy(*u.ctx, u.out, s_.model->classifier(), u.targets.data(),
                               float(1.0 / double(s_.n_targets)))
                 .sum;
  } else {
    LMKIT_CHECK(int64_t(out.size()) == B * L * d, "pipeline stage: room for ", out.size(),
                " activation floats, expected ", B * L * d);
    for (int64_t r = 0; r < B * L; ++r)
      std::memcpy(out.data() + r * d, u.out.row(r), size_t(d) * 4);
  }
}

void DecoderStage::backward(int mb, int chunk, std::span<const float> dout, std::span<float> din) {
  auto it = units_.find({mb, chunk});
  LMKIT_CHECK(it != units_.end(), "pipeline stage: backward of micro-batch ", mb, " chunk ", chunk,
              " before its forward");
  Unit &u = it->second;
  ag::Context &ctx = *u.ctx;
  const int64_t d = s_.model->config().n_embd;
  if (!last_stage()) {  // seed with the next stage's gradient of this stage's output
    LMKIT_CHECK(int64_t(dout.size()) == u.out.rows * d, "pipeline stage: got ", dout.size(),
                " gradient floats, expected ", u.out.rows * d);
    float *g = ctx.grad(u.out);
    const int64_t ld = ctx.grad_ld(u.out);
    for (int64_t r = 0; r < u.out.rows; ++r)
      for (int64_t j = 0; j < d; ++j) g[r * ld + j] += dout[size_t(r * d + j)];
  }
  float *gin = first_stage() ? nullptr : ctx.grad(u.in);
  if (auto k = keep_.find(mb); k != keep_.end()) k->second.backward_started = true;
  ctx.backward();
  if (gin) {
    const int64_t ld = ctx.grad_ld(u.in);
    for (int64_t r = 0; r < u.in.rows; ++r)
      std::memcpy(din.data() + r * d, gin + r * ld, size_t(d) * 4);
  }
  if (s_.spare) {
    u.ctx.reset();
    u.arena->reset();
    (*s_.spare)[size_t(chunk)].push_back(std::move(u.arena));
  }
  units_.erase(it);
  if (chunk == 0) keep_.erase(mb);  // backward runs the last chunk first: this one is the end
}

size_t DecoderStage::activation_bytes() const {
  size_t b = 0;
  for (const auto &[key, u] : units_) b += u.arena->used();
  for (const auto &[mb, k] : keep_)
    b += k.kv.size() * sizeof(float) + (k.backward_started ? k.grad->bytes : 0);
  return b;
}

// ---- the StepSync ------------------------------------------------------------------------------

namespace {
DataParallelOptions summing(DataParallelOptions o) {
  o.overlap = false;  // the stages' gradients are summed after the pipeline has drained
  return o;
}
}  // namespace

PipelineParallel::PipelineParallel(mpi::Comm &world, mpi::Grid &grid, PipelineOptions o,
                                   DataParallelOptions dpo)
    : world_(world), grid_(grid), o_(std::move(o)), sum_(world, summing(dpo)) {
  LMKIT_CHECK(grid_.pp_size == o_.pp, "pipeline: the grid has ", grid_.pp_size,
              " stages, expected ", o_.pp);
  LMKIT_CHECK(o_.seq_chunks >= 1, "--seq-chunks must be at least 1, got ", o_.seq_chunks);
  LMKIT_CHECK(o_.schedule != ScheduleKind::OneFOneB || o_.seq_chunks == 1,
              "--pp-schedule 1f1b runs whole micro-batches; use seq1f1b (or gpipe) with "
              "--seq-chunks ",
              o_.seq_chunks);
}

std::pair<int64_t, int64_t> PipelineParallel::share(int64_t n) const {
  const int64_t p = grid_.dp_size, r = grid_.dp_index;
  LMKIT_CHECK(n >= p, "--micro-batches ", n, " cannot feed ", p,
              " data-parallel replicas (each needs at least one micro-batch per step)");
  return {r * n / p, (r + 1) * n / p};
}

double PipelineParallel::forward_backward(const Model &m, ag::GradStore &grads,
                                          std::span<const MicroBatchView> micro, ThreadPool &pool,
                                          Arena &, const RopeTable &rope,
                                          const AccumulateOptions &o) {
  LMKIT_CHECK(!micro.empty(), "pipeline: no micro-batches this step");
  const ModelConfig &c = m.config();
  const int64_t T = micro[0].T;
  LMKIT_CHECK(T >= o_.seq_chunks, "--seq-chunks ", o_.seq_chunks, " is more than the ", T,
              " tokens of a sequence");
  if (chunks_.empty() || std::accumulate(chunks_.begin(), chunks_.end(), int64_t(0)) != T) {
    chunks_ = seq_split(o_.split, model_shape_of(c), T, o_.seq_chunks);
    arenas_.clear();  // sized for other chunks
  }
  if (schedule_.n_micro != int(micro.size()))
    schedule_ = schedule_make(o_.schedule, o_.pp, int(micro.size()), o_.seq_chunks,
                              CommPlacement::JustInTime);  // run_stage's sends do not block
  int64_t n_targets = o.n_targets;
  if (n_targets == 0)
    for (const MicroBatchView &mv : micro)
      for (int32_t t : mv.targets) n_targets += t >= 0;
  DecoderStage::Setup s;
  s.model = &m;
  s.grads = &grads;
  s.pool = &pool;
  s.rope = &rope;
  s.micro = micro;
  s.chunks = chunks_;
  std::tie(s.first, s.last) = stage_layers(c.n_layer, o_.pp, grid_.stage, o_.layers);
  s.n_targets = n_targets;
  s.spare = &arenas_;
  DecoderStage stage(std::move(s));
  const StageReport r = run_stage(schedule_, grid_.pp, stage);
  if (totals_.steps++ == 0) totals_.first_wall_s = r.wall_s;
  totals_.wall_s += r.wall_s;
  totals_.busy_s += r.busy_s;
  totals_.idle_s += r.idle_s;
  totals_.peak_activation_bytes = std::max(totals_.peak_activation_bytes, r.peak_activation_bytes);
  totals_.peak_inflight = std::max(totals_.peak_inflight, r.peak_inflight);
  return stage.loss_sum() / double(n_targets);
}

double PipelineParallel::reduce(std::span<const ParamRef> params, double loss) {
  return sum_.reduce(params, loss);
}

std::vector<StageTotals> PipelineParallel::gather_totals() {
  constexpr int kF = 7;
  std::vector<double> buf(size_t(world_.size() * kF), 0.0);
  double *mine = buf.data() + world_.rank() * kF;
  mine[0] = double(totals_.steps);
  mine[1] = totals_.wall_s;
  mine[2] = totals_.busy_s;
  mine[3] = totals_.idle_s;
  mine[4] = double(totals_.peak_activation_bytes);
  mine[5] = totals_.peak_inflight;
  mine[6] = totals_.first_wall_s;
  world_.all_reduce_sum(buf);
  std::vector<StageTotals> out(size_t(world_.size()));
  for (size_t i = 0; i < out.size(); ++i) {
    const double *v = buf.data() + i * kF;
    out[i] = {int64_t(v[0]), v[1], v[2], v[3], v[6], size_t(v[4]), int(v[5])};
  }
  return out;
}

std::string stage_totals_table(const std::vector<StageTotals> &t, const mpi::Grid &g) {
  std::string s =
      "| rank | replica | stage | steps | busy s | idle s | idle % | peak activations MiB | "
      "peak chunks |\n|---|---|---|---|---|---|---|---|---|\n";
  for (size_t i = 0; i < t.size(); ++i) {
    const StageTotals &x = t[i];
    char line[256];
    std::snprintf(line, sizeof line,
                  "| %zu | %zu | %zu | %lld | %.3f | %.3f | %.1f | %.2f | %d |\n", i,
                  i / size_t(g.pp_size), i % size_t(g.pp_size), (long long)x.steps, x.busy_s,
                  x.idle_s, x.wall_s > 0 ? 100 * x.idle_s / x.wall_s : 0.0,
                  double(x.peak_activation_bytes) / (1 << 20), x.peak_inflight);
    s += line;
  }
  return s;
}

std::string stage_totals_json(const std::vector<StageTotals> &t, const mpi::Grid &g,
                              const PipelineOptions &o, const std::vector<int64_t> &chunks) {
  nlohmann::ordered_json j;
  j["dp"] = g.dp_size;
  j["pp"] = g.pp_size;
  j["schedule"] = schedule_kind_name(o.schedule);
  j["seq_chunks"] = o.seq_chunks;
  j["seq_split"] = seq_split_name(o.split);
  j["chunk_lengths"] = chunks;
  j["stages"] = nlohmann::ordered_json::array();
  for (size_t i = 0; i < t.size(); ++i)
    j["stages"].push_back({{"rank", i},
                           {"replica", i / size_t(g.pp_size)},
                           {"stage", i % size_t(g.pp_size)},
                           {"steps", t[i].steps},
                           {"wall_s", t[i].wall_s},
                           {"first_step_wall_s", t[i].first_wall_s},
                           {"busy_s", t[i].busy_s},
                           {"idle_s", t[i].idle_s},
                           {"peak_activation_bytes", t[i].peak_activation_bytes},
                           {"peak_inflight_chunks", t[i].peak_inflight}});
  return j.dump(2) + "\n";
}

}  // namespace lmkit::parallel
