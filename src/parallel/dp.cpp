// Data-parallel step sharing: micro-batch shares, bucketed gradient all-reduce overlapped with
// backward, agreement on stop requests and on the checkpoint to resume from.
#include "parallel/dp.h"

#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/timer.h"

namespace lmkit {

namespace {

// The block a parameter belongs to ("blk.7.attn_q.weight" -> 7), or -1 outside the blocks.
int64_t layer_of(const std::string &name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  char *end = nullptr;
  const long l = std::strtol(name.c_str() + 4, &end, 10);
  return end && *end == '.' ? int64_t(l) : -1;
}

// "R:S" -> (R, S); throws naming the variable otherwise.
std::pair<int, int64_t> parse_fault(const char *var, const char *v) {
  int r = -1;
  long long s = 0;
  char tail = 0;
  LMKIT_CHECK(std::sscanf(v, "%d:%lld%c", &r, &s, &tail) == 2 && r >= 0 && s >= 1, var, "=", v,
              ": expects RANK:STEP (a rank and a 1-based step)");
  return {r, int64_t(s)};
}

}  // namespace

DataParallelOptions DataParallelOptions::from_env() {
  DataParallelOptions o;
  const char *die = std::getenv("LMKIT_FAULT_RANK_DIE");
  const char *hang = std::getenv("LMKIT_FAULT_RANK_HANG");
  if (die && *die) std::tie(o.fault_rank, o.fault_step) = parse_fault("LMKIT_FAULT_RANK_DIE", die);
  if (hang && *hang) {
    std::tie(o.fault_rank, o.fault_step) = parse_fault("LMKIT_FAULT_RANK_HANG", hang);
    o.fault_hang = true;
  }
  return o;
}

DataParallel::DataParallel(mpi::Comm &comm, DataParallelOptions o) : comm_(comm), o_(o) {
  LMKIT_CHECK(o_.bucket_bytes > 0, "data parallel: the bucket size must be positive");
}

std::pair<int64_t, int64_t> DataParallel::share(int64_t n) const {
  const int64_t p = comm_.size(), r = comm_.rank();
  LMKIT_CHECK(n >= p, "--micro-batches ", n, " cannot feed ", p,
              " data-parallel ranks (each needs at least one micro-batch per step)");
  return {r * n / p, (r + 1) * n / p};
}

// Buckets in the order backward finishes them: the highest layers first, a bucket closing once
// it holds bucket_bytes or at layer 0; then everything outside the blocks.
void DataParallel::plan(std::span<const ParamRef> params) {
  buckets_.clear();
  n_params_ = params.size();
  int64_t n_layer = 0;
  for (const ParamRef &p : params) n_layer = std::max(n_layer, layer_of(p.name) + 1);
  auto by_layer = std::vector<std::vector<size_t>>(size_t(n_layer));
  Bucket tail;
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t l = layer_of(params[i].name);
    if (l >= 0)
      by_layer[size_t(l)].push_back(i);
    else
      tail.params.push_back(i);
  }
  Bucket cur;
  size_t bytes = 0;
  for (int64_t l = n_layer - 1; l >= 0; --l) {
    for (size_t i : by_layer[size_t(l)]) {
      cur.params.push_back(i);
      bytes += params[i].grad.nbytes();
    }
    if (cur.params.empty()) continue;
    if (bytes >= o_.bucket_bytes || l == 0) {
      cur.ready_layer = o_.overlap ? l : -1;
      buckets_.push_back(std::move(cur));
      cur = Bucket();
      bytes = 0;
    }
  }
  if (!tail.params.empty()) buckets_.push_back(std::move(tail));
  for (Bucket &b : buckets_) {
    size_t n = 0;
    for (size_t i : b.params) n += size_t(params[i].grad.numel());
    b.buf.resize(n);
  }
}

void DataParallel::start(Bucket &b, std::span<const ParamRef> params) {
  float *dst = b.buf.data();
  for (size_t i : b.params) {
    const Tensor &g = params[i].grad;
    std::memcpy(dst, g.data(), g.nbytes());
    dst += g.numel();
  }
  b.req = comm_.iall_reduce_sum(b.buf);
  b.started = true;
}

void DataParallel::layer_done(int64_t layer) {
  for (Bucket &b : buckets_) {
    if (!b.started && b.ready_layer == layer) {
      start(b, params_);
      ++stats_.buckets_in_backward;
    }
    if (b.started) b.req.test();  // MPI progresses only inside MPI calls: nudge every bucket
  }
}

const Hooks *DataParallel::watch_backward(ag::Context &ctx, std::span<const ParamRef> params) {
  if (buckets_.empty() || params.size() != n_params_) plan(params);
  params_ = params;
  ctx_ = &ctx;
  stats_ = Stats();
  hooks_.clear();
  if (comm_.size() == 1 || !o_.overlap) return nullptr;
  // At each block's input, record a tape step: backward runs it once that block (and every block
  // above) is done, so the block's parameter gradients are final for this step.
  hooks_.add("blocks.*.hook_resid_pre", [this](const HookEvent &ev) {
    const int64_t l = ev.layer;
    ctx_->record([this, l] { layer_done(l); });
  });
  return &hooks_;
}

double DataParallel::reduce(std::span<const ParamRef> params, double loss) {
  ++steps_;
  if (o_.fault_rank == comm_.rank() && steps_ == o_.fault_step) {
    if (!o_.fault_hang) std::raise(SIGKILL);
    for (;;) ::pause();  // stuck: answers nothing, ever
  }
  if (buckets_.empty() || params.size() != n_params_) plan(params);
  params_ = params;
  const double t0 = now_seconds();
  for (Bucket &b : buckets_)
    if (!b.started) {
      start(b, params);
      ++stats_.buckets_after;
    }
  for (Bucket &b : buckets_) {
    comm_.wait(b.req, "gradient all-reduce");
    const float *src = b.buf.data();
    for (size_t i : b.params) {
      const Tensor &g = params[i].grad;
      std::memcpy(g.data(), src, g.nbytes());
      src += g.numel();
    }
    b.started = false;
  }
  double sum = loss;
  comm_.all_reduce_sum(std::span<double>(&sum, 1));
  stats_.wait_s = now_seconds() - t0;
  ctx_ = nullptr;
  return sum;
}

bool DataParallel::any(bool flag) {
  double v = flag ? 1 : 0;
  comm_.all_reduce_sum(std::span<double>(&v, 1));
  return v > 0;
}

std::string DataParallel::from_writer(const std::string &s) {
  return comm_.broadcast(s, 0);
}

}  // namespace lmkit
