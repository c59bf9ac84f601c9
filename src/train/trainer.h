// The training loop: builds (or resumes) a model, feeds it batches from prepared token shards,
// runs forward/backward through the one decoder, clips, steps the optimizer, evaluates, logs
// metrics.jsonl and a loss curve, and checkpoints atomically. Deterministic for a given seed and
// thread count, including across a kill and --resume. Not data preparation (data.h).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "autograd/context.h"
#include "model/config.h"
#include "model/decoder.h"
#include "train/optim.h"

namespace lmkit {

struct TrainConfig {
  // Model (a fresh one; ignored when init_from is set).
  std::string family = "llama";  // llama | mistral | qwen2 | gpt2
  int64_t n_layer = 2, n_embd = 64, n_head = 4, n_head_kv = 2, n_ff = 176;
  int64_t context = 64;  // training sequence length T
  bool tied = true;
  double rope_theta = 10000.0;
  int64_t sliding_window = 0;  // mistral/qwen2 (0: none)
  std::string init_from;       // a model to fine-tune instead (any format lmkit loads)
  // Data.
  std::string data;  // a folder made by `lmkit data prepare`
  // Optimisation.
  int64_t batch_size = 8, grad_accum = 1;
  int64_t steps = 200;              // optimizer steps (a token budget overrides it)
  int64_t tokens = 0;               // token budget: steps = tokens / (batch * accum * context)
  std::string optimizer = "adamw";  // adamw | sgd
  double lr = 3e-3, min_lr = 3e-4;
  int64_t warmup = 20;
  std::string schedule = "cosine";  // cosine | wsd | constant
  double decay_frac = 0.2;          // wsd: fraction of steps spent decaying
  double weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, momentum = 0.9;
  double grad_clip = 1.0;  // global norm; 0 = off
  // Bookkeeping.
  int64_t eval_interval = 50, eval_batches = 8;
  int64_t ckpt_interval = 100;  // 0: only the final checkpoint
  int keep_ckpts = 2;
  int64_t log_interval = 1;
  uint64_t seed = 1;
  int threads = 0;  // 0: every hardware thread

  nlohmann::ordered_json to_json() const;  // every setting, in declaration order
  // Fields present in j override this config's; unknown keys are an error.
  void merge_json(const nlohmann::json &j, const std::string &where);
  void validate() const;  // throws lmkit::Error naming the impossible setting
};

// Built-in presets ("tiny", "demo", "gpt-384", "gpt2-small"); throws for an unknown name.
TrainConfig train_preset(const std::string &name);
const char *train_preset_names();

struct TrainResult {
  int64_t steps = 0;
  double final_loss = 0, final_val_loss = 0;
  double unigram_val_loss = 0;  // the data's unigram baseline, for comparison
  double tok_s = 0, mfu = 0, peak_gflops = 0;
  std::string final_dir;  // RUN/final (HF layout)
};

// One micro-batch: B sequences of T tokens from position 0, and a target per token (< 0: none).
struct MicroBatchView {
  std::span<const int32_t> tokens, targets;  // (B*T) each
  int64_t B = 0, T = 0;
};
struct AccumulateOptions {
  // The loss is a mean over this many targets (a whole step's, when other processes run the
  // rest of its micro-batches); 0: the targets of the micro-batches given.
  int64_t n_targets = 0;
  // Called with the last micro-batch's context before its forward; the hooks it returns (may be
  // null) run in that forward.
  std::function<const Hooks *(ag::Context &)> last_hooks;
};
// Shares each optimizer step with other processes (data and pipeline parallelism). train/ knows
// nothing of how: parallel/ implements it over MPI (parallel/dp.h). Without one, train() runs
// alone.
class StepSync {
 public:
  virtual ~StepSync() = default;
  // True for the one process that writes metrics, the curve, checkpoints and the final model.
  virtual bool writer() const = 0;
  // The micro-batches [first, second) of a step's n that this process runs.
  virtual std::pair<int64_t, int64_t> share(int64_t n) const = 0;
  // Hooks for the forward pass of this process's last micro-batch of a step (null: none). They
  // may record steps onto ctx's tape, to start summing a layer's gradients as soon as backward
  // is done with it.
  virtual const Hooks *watch_backward(ag::Context &ctx, std::span<const ParamRef> params) = 0;
  // Forward and backward of this process's micro-batches of a step, accumulating gradients into
  // grads; returns this process's share of the step's mean loss. The default runs each through
  // the whole model (accumulate_gradients); a pipeline runs its stage of each instead.
  virtual double forward_backward(const Model &m, ag::GradStore &grads,
                                  std::span<const MicroBatchView> micro, ThreadPool &pool,
                                  Arena &arena, const RopeTable &rope, const AccumulateOptions &o);
  // After backward: completes the sum of every gradient in params over the processes and
  // returns the sum of `loss` over them.
  virtual double reduce(std::span<const ParamRef> params, double loss) = 0;
  // True on every process when `flag` is true on any (a stop request).
  virtual bool any(bool flag) = 0;
  // The writer's `s` on every process (which checkpoint to resume from).
  virtual std::string from_writer(const std::string &s) = 0;
};

struct TrainOptions {
  bool resume = false;   // continue RUN from its newest checkpoint
  bool progress = true;  // progress bar on stderr (when it is a terminal)
  bool quiet = false;    // no summary lines on stderr
  // Called after every optimizer step with its metrics line; return false to stop (a checkpoint
  // is written first).
  std::function<bool(const nlohmann::ordered_json &)> on_step;
  StepSync *sync = nullptr;  // other processes sharing each step (null: none)
};

// Trains into run_dir: train_config.json, metrics.jsonl, loss.svg, checkpoints/, final/.
TrainResult train(TrainConfig cfg, const std::string &run_dir, const TrainOptions &opt = {});

// The trainable parameters of a model (its weights, tied ones once), registered in `grads`, with
// weight decay on 2-D matrices except embeddings.
std::vector<ParamRef> trainable_params(const Model &m, ag::GradStore &grads);

// Forward and backward of every micro-batch, accumulating into `grads` the gradient of the mean
// loss over all their targets (so accumulation equals one big batch). Returns that mean loss.
double accumulate_gradients(const Model &m, ag::GradStore &grads,
                            std::span<const MicroBatchView> micro, ThreadPool &pool, Arena &arena,
                            const RopeTable &rope, const AccumulateOptions &o = {});

// The ModelConfig a TrainConfig builds for a vocabulary (bos/eos: the data's separator token).
ModelConfig train_model_config(const TrainConfig &c, int64_t n_vocab, int32_t bos, int32_t eos);

// Training FLOPs per token (forward + backward): 6 * (matmul parameters) + 12 * layers * T * d
// for attention scores and mixing.
double train_flops_per_token(const ModelConfig &c, int64_t context);
// The best f32 GEMM rate of this machine's kernels on cache-resident blocks, all threads.
double measure_peak_gflops(int threads);

}  // namespace lmkit
