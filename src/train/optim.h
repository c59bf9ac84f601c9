// Optimisation: learning-rate schedules, global-norm gradient clipping, AdamW (decoupled weight
// decay, PyTorch's update rule) and SGD with momentum, with state that saves and restores
// exactly. Not the training loop (trainer.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/tensor.h"
#include "core/thread_pool.h"

namespace lmkit {

enum class ScheduleKind { Cosine, WSD, Constant };

// lr(step) for 0-based steps:
//  warmup (step < warmup):  max_lr * (step + 1) / warmup
//  cosine:   min_lr + (max_lr - min_lr) * (1 + cos(pi * p)) / 2,  p = (step - warmup)/(total - warmup)
//  wsd:      max_lr until the last decay_frac of the steps, then linear down to min_lr at the end
//  constant: max_lr
struct LrSchedule {
  ScheduleKind kind = ScheduleKind::Cosine;
  double max_lr = 1e-3, min_lr = 1e-4;
  int64_t warmup = 0, total = 1;
  double decay_frac = 0.2;  // wsd only
  double lr(int64_t step) const;
};
ScheduleKind schedule_from_name(const std::string &s);  // "cosine", "wsd", "constant"
const char *schedule_name(ScheduleKind k);

// A trainable parameter, its gradient, and whether weight decay applies to it.
struct ParamRef {
  std::string name;
  Tensor param;  // f32, updated in place
  Tensor grad;   // f32, same shape
  bool decay = true;
};

// sqrt(sum of squared gradients), accumulated in double in parameter order.
double grad_global_norm(std::span<const ParamRef> params);
// Scales every gradient by max_norm / (norm + 1e-6) when that is below 1 (PyTorch's rule);
// returns the norm before clipping. max_norm <= 0: no clipping.
double clip_grad_norm(std::span<const ParamRef> params, double max_norm);

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update of every parameter with learning rate lr.
  virtual void step(std::span<const ParamRef> params, double lr, ThreadPool &pool) = 0;
  virtual int64_t steps_taken() const = 0;
  // State as (name -> tensor) plus scalars, for checkpoints; load() restores it exactly.
  virtual std::vector<std::pair<std::string, Tensor>> state_tensors() const = 0;
  virtual nlohmann::json state_scalars() const = 0;
  virtual void load(const std::map<std::string, Tensor> &tensors, const nlohmann::json &scalars) = 0;
};

struct AdamWParams {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};
std::unique_ptr<Optimizer> make_adamw(const AdamWParams &p, std::span<const ParamRef> params);

struct SGDParams {
  double momentum = 0.9, weight_decay = 0.0;
};
std::unique_ptr<Optimizer> make_sgd(const SGDParams &p, std::span<const ParamRef> params);

}  // namespace lmkit
