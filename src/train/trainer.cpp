// The training loop and its bookkeeping (config, metrics, curve, checkpoints, resume).
#include "train/trainer.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "autograd/ops.h"
#include "core/error.h"
#include "core/mmap.h"
#include "core/timer.h"
#include "io/atomic_file.h"
#include "model/decoder.h"
#include "model/loader.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/init.h"
#include "train/loss_curve.h"
#include "train/optim.h"
#include "train/progress.h"

namespace lmkit {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- config ----------------------------------------------------------------------------------

namespace {

// Every field of TrainConfig with its JSON name, for to_json/merge_json (and the CLI's flags).
template <typename C, typename F>
void for_each_field(C &c, F &&f) {
  f("family", c.family);
  f("n_layer", c.n_layer);
  f("n_embd", c.n_embd);
  f("n_head", c.n_head);
  f("n_head_kv", c.n_head_kv);
  f("n_ff", c.n_ff);
  f("context", c.context);
  f("tied", c.tied);
  f("rope_theta", c.rope_theta);
  f("sliding_window", c.sliding_window);
  f("init_from", c.init_from);
  f("data", c.data);
  f("batch_size", c.batch_size);
  f("grad_accum", c.grad_accum);
  f("steps", c.steps);
  f("tokens", c.tokens);
  f("optimizer", c.optimizer);
  f("lr", c.lr);
  f("min_lr", c.min_lr);
  f("warmup", c.warmup);
  f("schedule", c.schedule);
  f("decay_frac", c.decay_frac);
  f("weight_decay", c.weight_decay);
  f("beta1", c.beta1);
  f("beta2", c.beta2);
  f("eps", c.eps);
  f("momentum", c.momentum);
  f("grad_clip", c.grad_clip);
  f("eval_interval", c.eval_interval);
  f("eval_batches", c.eval_batches);
  f("ckpt_interval", c.ckpt_interval);
  f("keep_ckpts", c.keep_ckpts);
  f("log_interval", c.log_interval);
  f("seed", c.seed);
  f("threads", c.threads);
}

}  // namespace

nlohmann::ordered_json TrainConfig::to_json() const {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for_each_field(*this, [&](const char *name, const auto &v) { j[name] = v; });
  return j;
}

void TrainConfig::merge_json(const json &j, const std::string &where) {
  LMKIT_CHECK(j.is_object(), where, ": a training config must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool known = false;
    for_each_field(*this, [&](const char *name, auto &v) {
      if (it.key() != name) return;
      known = true;
      using T = std::decay_t<decltype(v)>;
      const json &x = it.value();
      bool ok = std::is_same_v<T, std::string> ? x.is_string()
                : std::is_same_v<T, bool>      ? x.is_boolean()
                : std::is_floating_point_v<T>  ? x.is_number()
                : std::is_unsigned_v<T>        ? x.is_number_unsigned()
                                               : x.is_number_integer();
      LMKIT_CHECK(ok, where, ": '", name, "' has the wrong type (", x.dump(), ")");
      v = x.get<T>();
    });
    LMKIT_CHECK(known, where, ": unknown training setting '", it.key(), "'");
  }
}

void TrainConfig::validate() const {
  LMKIT_CHECK(family == "llama" || family == "mistral" || family == "qwen2" || family == "gpt2",
              "family '", family, "' cannot be trained (llama, mistral, qwen2, gpt2)");
  auto positive = [](int64_t v, const char *n) {
    LMKIT_CHECK(v > 0, n, " must be positive, got ", v);
  };
  if (init_from.empty()) {
    positive(n_layer, "n_layer");
    positive(n_embd, "n_embd");
    positive(n_head, "n_head");
    positive(n_head_kv, "n_head_kv");
    positive(n_ff, "n_ff");
    LMKIT_CHECK(n_embd % n_head == 0, "n_head ", n_head, " does not divide n_embd ", n_embd);
    LMKIT_CHECK(n_head % n_head_kv == 0, "n_head_kv ", n_head_kv, " does not divide n_head ",
                n_head);
    LMKIT_CHECK((n_embd / n_head) % 2 == 0 || family == "gpt2", "head size ", n_embd / n_head,
                " must be even for RoPE");
    LMKIT_CHECK(family != "gpt2" || n_head_kv == n_head,
                "gpt2 has no grouped KV heads: set "
                "n_head_kv = n_head");
  }
  LMKIT_CHECK(context >= 2, "context must be at least 2 tokens, got ", context);
  positive(batch_size, "batch_size");
  positive(grad_accum, "grad_accum");
  LMKIT_CHECK(steps > 0 || tokens > 0, "steps (or a token budget) must be positive");
  LMKIT_CHECK(tokens >= 0, "tokens must not be negative");
  LMKIT_CHECK(lr > 0 && std::isfinite(lr), "lr must be positive");
  LMKIT_CHECK(min_lr >= 0 && min_lr <= lr, "min_lr must be in [0, lr]");
  LMKIT_CHECK(warmup >= 0, "warmup must not be negative");
  schedule_from_name(schedule);
  LMKIT_CHECK(decay_frac > 0 && decay_frac <= 1, "decay_frac must be in (0, 1]");
  LMKIT_CHECK(optimizer == "adamw" || optimizer == "sgd", "optimizer '", optimizer,
              "' is unknown (adamw, sgd)");
  LMKIT_CHECK(weight_decay >= 0 && beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 && eps > 0,
              "AdamW needs weight_decay >= 0, 0 <= beta < 1 and eps > 0");
  LMKIT_CHECK(momentum >= 0 && momentum < 1, "momentum must be in [0, 1)");
  LMKIT_CHECK(grad_clip >= 0, "grad_clip must not be negative");
  positive(eval_interval, "eval_interval");
  LMKIT_CHECK(eval_batches >= 0 && ckpt_interval >= 0 && keep_ckpts >= 0,
              "eval_batches, ckpt_interval and keep_ckpts must not be negative");
  positive(log_interval, "log_interval");
  LMKIT_CHECK(threads >= 0 && threads <= 1024, "threads must be in [0, 1024]");
  LMKIT_CHECK(sliding_window >= 0, "sliding_window must not be negative");
  LMKIT_CHECK(!data.empty(), "no training data: pass --data DIR (made by `lmkit data prepare`)");
}

const char *train_preset_names() {
  return "tiny, demo, gpt-384, gpt2-small";
}

TrainConfig train_preset(const std::string &name) {
  TrainConfig c;
  if (name == "tiny") return c;  // the defaults: seconds on 2 cores
  if (name == "demo") {
    c.n_layer = 4;
    c.n_embd = 128;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.n_ff = 352;
    c.context = 128;
    c.batch_size = 16;
    c.steps = 1000;  // about two minutes on 2 cores
    c.lr = 3e-3;
    c.min_lr = 3e-4;
    c.warmup = 40;
    c.eval_interval = 100;
    c.eval_batches = 16;
    c.ckpt_interval = 200;
    return c;
  }
  if (name == "gpt-384") {
    c.family = "gpt2";
    c.n_layer = 6;
    c.n_embd = 384;
    c.n_head = c.n_head_kv = 6;
    c.n_ff = 1536;
    c.context = 256;
    c.batch_size = 8;
    c.lr = 1e-3;
    c.min_lr = 1e-4;
    c.steps = 1000;
    c.eval_interval = 200;
    c.ckpt_interval = 500;
    return c;
  }
  if (name == "gpt2-small") {
    c.family = "gpt2";
    c.n_layer = 12;
    c.n_embd = 768;
    c.n_head = c.n_head_kv = 12;
    c.n_ff = 3072;
    c.context = 512;
    c.batch_size = 4;
    c.lr = 6e-4;
    c.min_lr = 6e-5;
    c.steps = 1000;
    c.eval_interval = 200;
    c.ckpt_interval = 500;
    return c;
  }
  fail("unknown preset '", name, "' (", train_preset_names(), ")");
}

ModelConfig train_model_config(const TrainConfig &t, int64_t n_vocab, int32_t bos, int32_t eos) {
  ModelConfig c;
  c.arch = t.family;
  c.n_vocab = n_vocab;
  c.n_embd = t.n_embd;
  c.n_layer = t.n_layer;
  c.n_head = t.n_head;
  c.n_head_kv = t.family == "gpt2" ? t.n_head : t.n_head_kv;
  c.head_dim = t.n_embd / t.n_head;
  c.n_ff = t.n_ff;
  c.n_ctx_train = t.context;
  c.tied_embeddings = t.tied;
  if (t.family == "gpt2") {
    c.norm = NormType::LayerNorm;
    c.pos = PosEncoding::Learned;
    c.mlp = MlpType::GELUTanh;
    c.qkv_bias = c.attn_out_bias = c.mlp_bias = c.norm_bias = true;
  } else {
    c.norm = NormType::RMSNorm;
    c.pos = PosEncoding::RoPE;
    c.rope_theta = float(t.rope_theta);
    c.rope_style = kernels::RopeStyle::Half;
    c.rope_dim = c.head_dim;
    c.mlp = MlpType::SwiGLU;
    c.qkv_bias = t.family == "qwen2";
    if (t.sliding_window > 0 && t.family != "llama")
      c.sliding_window.assign(size_t(c.n_layer), t.sliding_window);
  }
  c.norm_eps = 1e-5f;
  c.bos_id = bos;
  c.eos_id = eos;
  c.validate();
  return c;
}

double train_flops_per_token(const ModelConfig &c, int64_t context) {
  const double d = double(c.n_embd);
  const double per_layer = d * double(c.q_dim() + 2 * c.kv_dim()) + double(c.q_dim()) * d +
                           double(c.mlp == MlpType::SwiGLU ? 3 : 2) * double(c.n_ff) * d;
  const double matmul_params = double(c.n_layer) * per_layer + double(c.n_vocab) * d;
  return 6.0 * matmul_params + 12.0 * double(c.n_layer) * double(context) * double(c.q_dim());
}

double measure_peak_gflops(int threads) {
  ThreadPool pool(threads);
  constexpr int64_t M = 64, N = 256, K = 512;  // operands stay in L2: compute-bound
  const kernels::KernelTable &k = kernels::active();
  std::vector<std::vector<float>> buf(size_t(pool.size()));
  for (auto &b : buf) b.assign(size_t(M * K + N * K + M * N), 0.5f);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {  // the best of three bursts: the machine may be busy
    std::atomic<int64_t> calls{0};
    const double t0 = now_seconds();
    pool.run([&](int ti, int) {
      float *x = buf[size_t(ti)].data(), *w = x + M * K, *y = w + N * K;
      int64_t n = 0;
      while (now_seconds() - t0 < 0.1) {
        for (int r = 0; r < 8; ++r) k.matmul_f32(y, N, x, K, w, nullptr, M, N, K);
        n += 8;
      }
      calls += n;
    });
    const double dt = now_seconds() - t0;
    best = std::max(best, double(calls.load()) * 2.0 * double(M * N * K) / dt / 1e9);
  }
  return best;
}

// ---- the loop --------------------------------------------------------------------------------

namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) {
  g_stop.store(true);
}

// Rows, positions and sequences of a batch of B sequences of T tokens from position 0.
struct BatchLayout {
  std::vector<int32_t> pos;
  std::vector<SeqRows> seqs;
  BatchLayout(int64_t B, int64_t T) : pos(size_t(B * T)), seqs(size_t(B)) {
    for (int64_t b = 0; b < B; ++b) {
      seqs[size_t(b)] = {b * T, (b + 1) * T, -1};
      for (int64_t t = 0; t < T; ++t) pos[size_t(b * T + t)] = int32_t(t);
    }
  }
  Batch view(std::span<const int32_t> tokens, int64_t B, int64_t T) const {
    return {tokens.subspan(0, size_t(B * T)), std::span<const int32_t>(pos.data(), size_t(B * T)),
            std::span<const SeqRows>(seqs.data(), size_t(B))};
  }
};

// Splits windows of T + 1 tokens into inputs and next-token targets.
void split_windows(const int32_t *windows, int64_t rows, int64_t T, int32_t *tokens,
                   int32_t *targets) {
  for (int64_t b = 0; b < rows; ++b)
    for (int64_t t = 0; t < T; ++t) {
      tokens[b * T + t] = windows[b * (T + 1) + t];
      targets[b * T + t] = windows[b * (T + 1) + t + 1];
    }
}

// Mean validation loss over the first n fixed evaluation batches.
double evaluate(const Model &m, const DataLoader &val, int64_t n, ThreadPool &pool, Arena &arena,
                const RopeTable &rope) {
  const int64_t B = val.batch_size(), T = val.context();
  std::vector<int32_t> windows(size_t(B * (T + 1))), tokens(size_t(B * T)), targets(size_t(B * T));
  BatchLayout layout(B, T);
  double sum = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < std::min(n, val.n_eval_batches()); ++i) {
    const int64_t rows = val.eval_batch(i, windows.data());
    if (rows == 0) break;
    split_windows(windows.data(), rows, T, tokens.data(), targets.data());
    arena.reset();
    ag::Context ctx(pool, arena);
    ag::Var h = m.hidden(ctx, layout.view(tokens, rows, T), rope, nullptr);
    ag::LossSum ls = ag::cross_entropy(ctx, h, m.classifier(), targets.data(), 1.0f);
    sum += ls.sum;
    count += ls.count;
  }
  return count ? sum / double(count) : std::nan("");
}

std::string tokenizer_dir_of(const DataMeta &meta) {
  fs::path t(meta.tokenizer);
  return fs::is_directory(t) ? t.string() : t.parent_path().string();
}

// Keeps the metrics lines of steps <= step (a resumed run rewrites what followed).
void truncate_metrics(const std::string &path, int64_t step) {
  if (!fs::exists(path)) return;
  std::istringstream in(read_file(path));
  std::string out, line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_object() && j.value("step", int64_t(0)) <= step) out += line + "\n";
  }
  write_file_atomic(path, out);
}

void write_curve(const std::string &run_dir, const LossCurve &curve) {
  write_file_atomic(run_dir + "/loss.svg", loss_curve_svg(curve));
}

}  // namespace

std::vector<ParamRef> trainable_params(const Model &m, ag::GradStore &grads) {
  std::vector<ParamRef> params;
  for (const auto &[name, t] : m.weights().table) {
    if (grads.find(t.data())) continue;  // tied: once
    grads.add(t);
    const bool embedding = name == "token_embd.weight" || name == "position_embd.weight";
    params.push_back({name, t, Tensor::view_of(grads.find(t.data()), DType::F32, t.shape()),
                      t.ndim() == 2 && !embedding});
  }
  return params;
}

double accumulate_gradients(const Model &m, ag::GradStore &grads,
                            std::span<const MicroBatchView> micro, ThreadPool &pool, Arena &arena,
                            const RopeTable &rope, const AccumulateOptions &o) {
  int64_t n_targets = 0;
  for (const MicroBatchView &mb : micro)
    for (int32_t t : mb.targets) n_targets += t >= 0;
  LMKIT_CHECK(o.n_targets > 0 || n_targets > 0, "a training step needs at least one target");
  LMKIT_CHECK(o.n_targets == 0 || o.n_targets >= n_targets, "the step's target count ", o.n_targets,
              " is below these micro-batches' ", n_targets);
  if (o.n_targets > 0) n_targets = o.n_targets;
  double loss_sum = 0;
  for (const MicroBatchView &mb : micro) {
    LMKIT_CHECK(int64_t(mb.tokens.size()) == mb.B * mb.T && mb.targets.size() == mb.tokens.size(),
                "micro-batch of ", mb.tokens.size(), " tokens is not B x T = ", mb.B, " x ", mb.T);
    BatchLayout layout(mb.B, mb.T);
    arena.reset();
    ag::Context ctx(pool, arena, /*recording=*/true, &grads);
    const Hooks *hooks = o.last_hooks && &mb == &micro.back() ? o.last_hooks(ctx) : nullptr;
    ag::Var h = m.hidden(ctx, layout.view(mb.tokens, mb.B, mb.T), rope, nullptr, hooks);
    ag::LossSum ls = ag::cross_entropy(ctx, h, m.classifier(), mb.targets.data(),
                                       float(1.0 / double(n_targets)));
    ctx.backward();
    loss_sum += ls.sum;
  }
  return loss_sum / double(n_targets);
}

double StepSync::forward_backward(const Model &m, ag::GradStore &grads,
                                  std::span<const MicroBatchView> micro, ThreadPool &pool,
                                  Arena &arena, const RopeTable &rope, const AccumulateOptions &o) {
  return accumulate_gradients(m, grads, micro, pool, arena, rope, o);
}

TrainResult train(TrainConfig cfg, const std::string &run_dir, const TrainOptions &opt) {
  cfg.validate();
  StepSync *sync = opt.sync;
  const bool writer = !sync || sync->writer();  // only it writes files
  fs::create_directories(run_dir);
  LMKIT_CHECK(::access(run_dir.c_str(), W_OK) == 0, run_dir, ": cannot write here");
  const DataMeta meta = data_meta_load(cfg.data);
  const std::string tok_dir = tokenizer_dir_of(meta);
  const int threads =
      cfg.threads > 0 ? cfg.threads : std::max(1, int(std::thread::hardware_concurrency()));
  const int64_t B = cfg.batch_size, T = cfg.context, A = cfg.grad_accum;
  const int64_t total = cfg.tokens > 0 ? std::max<int64_t>(1, cfg.tokens / (B * A * T)) : cfg.steps;

  // --- model (fresh, fine-tuned or resumed) ---
  std::optional<std::string> ckpt;
  if (opt.resume) {
    ckpt = checkpoint_latest(run_dir);
    if (sync) {  // every process resumes from the checkpoint the writer chose
      const std::string chosen = sync->from_writer(ckpt.value_or(""));
      ckpt = chosen.empty() ? std::nullopt : std::optional<std::string>(chosen);
    }
    LMKIT_CHECK(ckpt.has_value(), run_dir, ": no complete checkpoint to resume from");
  }
  ModelConfig mc;
  Weights weights;
  const std::string source = ckpt ? *ckpt : cfg.init_from;
  if (!source.empty()) {
    LoadedModel lm = load_model(source);
    mc = lm.model->config();
    weights = weights_to_f32(lm.model->weights());
    LMKIT_CHECK(mc.n_vocab >= meta.vocab_size, source, ": the model's vocabulary (", mc.n_vocab,
                ") is smaller than the data's (", meta.vocab_size, ")");
  } else {
    mc = train_model_config(cfg, meta.vocab_size, meta.separator_id, meta.separator_id);
    weights = weights_init(mc, cfg.seed);
  }
  LMKIT_CHECK(mc.pos != PosEncoding::Learned || T <= mc.n_ctx_train, "context ", T,
              " exceeds the model's ", mc.n_ctx_train, " learned positions");
  auto model = std::make_shared<Model>(mc, std::move(weights));

  ThreadPool pool(threads);
  ag::GradStore grads;
  std::vector<ParamRef> params = trainable_params(*model, grads);
  std::unique_ptr<Optimizer> optim =
      cfg.optimizer == "sgd"
          ? make_sgd({cfg.momentum, cfg.weight_decay}, params)
          : make_adamw({cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay}, params);
  LrSchedule sched{
      schedule_from_name(cfg.schedule), cfg.lr, cfg.min_lr, cfg.warmup, total, cfg.decay_frac};

  DataLoader loader(cfg.data, Split::Train, {B, T, cfg.seed, 0, 1});
  std::unique_ptr<DataLoader> val;
  if (meta.val_tokens > T && cfg.eval_batches > 0)
    val =
        std::make_unique<DataLoader>(cfg.data, Split::Val, DataLoaderOptions{B, T, cfg.seed, 0, 1});

  const std::string metrics_path = run_dir + "/metrics.jsonl";
  int64_t step = 0, tokens_seen = 0;
  LossCurve curve;
  curve.baseline = meta.val_unigram_loss;
  curve.title =
      "lmkit train: " + mc.arch + " " + std::to_string(model->weights().n_params()) + " parameters";
  if (ckpt) {
    CheckpointData cd = checkpoint_read(*ckpt);
    optim->load(cd.optimizer, cd.state.at("optimizer"));
    loader.set_state(DataLoaderState::from_json(cd.state.at("data").get<std::string>()));
    step = cd.state.at("step").get<int64_t>();
    tokens_seen = cd.state.value("tokens", int64_t(0));
    if (writer) truncate_metrics(metrics_path, step);
    std::istringstream in(writer ? read_file(metrics_path) : std::string());
    for (std::string line; std::getline(in, line);) {
      json j = json::parse(line, nullptr, false);
      if (!j.is_object()) continue;
      curve.train.emplace_back(j["step"].get<double>(), j["loss"].get<double>());
      if (j.contains("val_loss"))
        curve.val.emplace_back(j["step"].get<double>(), j["val_loss"].get<double>());
    }
  } else if (writer) {
    nlohmann::ordered_json saved = cfg.to_json();
    saved["threads"] = threads;
    write_file_atomic(run_dir + "/train_config.json", saved.dump(2) + "\n");
    write_file_atomic(metrics_path, "");
  }

  const double peak = measure_peak_gflops(threads);
  const double flops_tok = train_flops_per_token(mc, T);
  RopeTable rope(*model, T);
  Arena arena(size_t(64) << 20);
  std::vector<int32_t> windows(size_t(A * B * (T + 1))), tokens(size_t(A * B * T)),
      targets(size_t(A * B * T));
  // This process's micro-batches of each step: all of them, or its share of the step.
  const auto [a_first, a_last] = sync ? sync->share(A) : std::pair<int64_t, int64_t>(0, A);
  LMKIT_CHECK(0 <= a_first && a_first < a_last && a_last <= A, "micro-batches [", a_first, ", ",
              a_last, ") of ", A, " is not a share of a step");
  AccumulateOptions acc;
  if (sync) {
    acc.n_targets = A * B * T;
    acc.last_hooks = [&](ag::Context &ctx) { return sync->watch_backward(ctx, params); };
  }
  std::vector<MicroBatchView> micro;
  for (int64_t a = a_first; a < a_last; ++a)
    micro.push_back({std::span<const int32_t>(tokens).subspan(size_t(a * B * T), size_t(B * T)),
                     std::span<const int32_t>(targets).subspan(size_t(a * B * T), size_t(B * T)), B,
                     T});
  ProgressBar bar(total, "train", ProgressBar::Unit::Count, "step");
  if (!opt.progress || !writer) bar.set_enabled(false);
  g_stop.store(false);
  auto old_int = std::signal(SIGINT, on_signal);
  auto old_term = std::signal(SIGTERM, on_signal);

  TrainResult res;
  res.peak_gflops = peak;
  res.unigram_val_loss = meta.val_unigram_loss;
  double last_loss = 0, last_val = std::nan("");
  auto save = [&] {
    json st;
    st["data"] = loader.state().to_json();
    st["tokens"] = tokens_seen;
    st["seed"] = cfg.seed;
    st["threads"] = threads;
    checkpoint_save(run_dir, step, mc, model->weights(), *optim, st, tok_dir, cfg.keep_ckpts);
  };
  bool stop = false;
  try {
    while (step < total && !stop) {
      const double t0 = now_seconds();
      grads.zero();
      for (int64_t a = 0; a < A; ++a) loader.next_batch(windows.data() + a * B * (T + 1));
      split_windows(windows.data(), A * B, T, tokens.data(), targets.data());
      const int64_t n_targets = A * B * T;
      if (sync) {
        last_loss = sync->forward_backward(*model, grads, micro, pool, arena, rope, acc);
        last_loss = sync->reduce(params, last_loss);
      } else {
        last_loss = accumulate_gradients(*model, grads, micro, pool, arena, rope, acc);
      }
      const double norm = clip_grad_norm(params, cfg.grad_clip);
      const double lr = sched.lr(step);
      optim->step(params, lr, pool);
      ++step;
      tokens_seen += n_targets;
      const double dt = now_seconds() - t0;
      LMKIT_CHECK(std::isfinite(last_loss), "training diverged at step ", step,
                  " (loss is not finite); lower the learning rate");
      const double tok_s = double(n_targets) / dt;
      const double mfu = tok_s * flops_tok / (peak * 1e9);
      nlohmann::ordered_json line = {{"step", step},         {"loss", last_loss}, {"lr", lr},
                                     {"tok_s", tok_s},       {"grad_norm", norm}, {"mfu", mfu},
                                     {"tokens", tokens_seen}};
      curve.train.emplace_back(double(step), last_loss);
      const bool last = step == total;
      if (val && writer && (step % cfg.eval_interval == 0 || last)) {
        last_val = evaluate(*model, *val, cfg.eval_batches, pool, arena, rope);
        line["val_loss"] = last_val;
        curve.val.emplace_back(double(step), last_val);
        write_curve(run_dir, curve);
      }
      if (writer && (step % cfg.log_interval == 0 || line.contains("val_loss") || last)) {
        std::ofstream(metrics_path, std::ios::app) << line.dump() << "\n";
      }
      char extra[160];
      std::snprintf(extra, sizeof extra, "loss %.4f | %s tok/s | MFU %.0f%% | lr %.2e", last_loss,
                    ProgressBar::format_count(tok_s).c_str(), 100 * mfu, lr);
      bar.update(step, extra);
      res.tok_s = tok_s;
      res.mfu = mfu;
      stop = g_stop.load() || (opt.on_step && !opt.on_step(line));
      if (sync) stop = sync->any(stop);
      if (writer && ((cfg.ckpt_interval > 0 && step % cfg.ckpt_interval == 0) || last || stop))
        save();
    }
  } catch (...) {
    std::signal(SIGINT, old_int);
    std::signal(SIGTERM, old_term);
    throw;
  }
  std::signal(SIGINT, old_int);
  std::signal(SIGTERM, old_term);
  bar.finish();
  if (writer) write_curve(run_dir, curve);

  // RUN/final: the finished model in HF layout (replaced atomically).
  if (step == total && writer) {
    const fs::path tmp = fs::path(run_dir) / ".tmp-final", fin = fs::path(run_dir) / "final";
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    weights_save_hf(mc, model->weights(), tmp.string());
    for (const char *f : {"tokenizer.json", "tokenizer_config.json"})
      if (fs::exists(fs::path(tok_dir) / f))
        write_file_atomic((tmp / f).string(), read_file((fs::path(tok_dir) / f).string()));
    fs::remove_all(fin);
    fs::rename(tmp, fin);
    res.final_dir = fin.string();
  }
  res.steps = step;
  res.final_loss = last_loss;
  res.final_val_loss = last_val;
  return res;
}

}  // namespace lmkit
