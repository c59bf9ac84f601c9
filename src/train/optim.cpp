// Schedules, clipping and optimizer updates, elementwise and split across the pool (the result
// of each element does not depend on the split, so any thread count gives the same bits).
#include "train/optim.h"

#include <cmath>
#include <cstring>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace lmkit {

double LrSchedule::lr(int64_t step) const {
  if (warmup > 0 && step < warmup) return max_lr * double(step + 1) / double(warmup);
  switch (kind) {
    case ScheduleKind::Constant:
      return max_lr;
    case ScheduleKind::Cosine: {
      const int64_t span = std::max<int64_t>(1, total - warmup);
      const double p = std::min(1.0, double(step - warmup) / double(span));
      return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + std::cos(M_PI * p));
    }
    case ScheduleKind::WSD: {
      const int64_t decay = std::max<int64_t>(1, int64_t(std::llround(decay_frac * double(total))));
      const int64_t start = total - decay;
      if (step < start) return max_lr;
      const double p = std::min(1.0, double(step - start + 1) / double(decay));
      return max_lr + (min_lr - max_lr) * p;
    }
  }
  return max_lr;
}

ScheduleKind schedule_from_name(const std::string &s) {
  if (s == "cosine") return ScheduleKind::Cosine;
  if (s == "wsd") return ScheduleKind::WSD;
  if (s == "constant") return ScheduleKind::Constant;
  fail("unknown LR schedule '", s, "' (cosine, wsd, constant)");
}

const char *schedule_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::Cosine: return "cosine";
    case ScheduleKind::WSD: return "wsd";
    case ScheduleKind::Constant: return "constant";
  }
  return "?";
}

double grad_global_norm(std::span<const ParamRef> params) {
  double s = 0;
  for (const ParamRef &p : params) {
    const float *g = p.grad.f32();
    double part = 0;
    for (int64_t i = 0; i < p.grad.numel(); ++i) part += double(g[i]) * double(g[i]);
    s += part;
  }
  return std::sqrt(s);
}

double clip_grad_norm(std::span<const ParamRef> params, double max_norm) {
  const double norm = grad_global_norm(params);
  if (max_norm <= 0) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    const float c = float(coef);
    for (const ParamRef &p : params) {
      float *g = p.grad.f32();
      for (int64_t i = 0; i < p.grad.numel(); ++i) g[i] *= c;
    }
  }
  return norm;
}

namespace {

// Runs fn(begin, end) over [0, n) on the pool when n is large enough to be worth it.
template <typename F>
void elementwise(ThreadPool &pool, int64_t n, F &&fn) {
  if (n < (1 << 16)) {
    fn(int64_t(0), n);
    return;
  }
  pool.parallel_for(n, [&](int64_t b, int64_t e, int) { fn(b, e); }, 1024);
}

std::vector<Tensor> zeros_like(std::span<const ParamRef> params) {
  std::vector<Tensor> out;
  for (const ParamRef &p : params) out.push_back(Tensor::zeros(DType::F32, p.param.shape()));
  return out;
}

void load_moments(const std::map<std::string, Tensor> &tensors, const std::string &prefix,
                  const std::vector<std::string> &names, std::vector<Tensor> &dst) {
  for (size_t i = 0; i < names.size(); ++i) {
    auto it = tensors.find(prefix + names[i]);
    LMKIT_CHECK(it != tensors.end(), "optimizer state: missing '", prefix + names[i], "'");
    LMKIT_CHECK(it->second.shape() == dst[i].shape() && it->second.dtype() == DType::F32,
                "optimizer state: '", prefix + names[i], "' has ", it->second.desc(),
                ", expected f32 ", dst[i].shape().str());
    std::memcpy(dst[i].data(), it->second.data(), dst[i].nbytes());
  }
}

class AdamW : public Optimizer {
 public:
  AdamW(const AdamWParams &p, std::span<const ParamRef> params)
      : p_(p), m_(zeros_like(params)), v_(zeros_like(params)) {
    for (const ParamRef &r : params) names_.push_back(r.name);
  }

  void step(std::span<const ParamRef> params, double lr, ThreadPool &pool) override {
    LMKIT_CHECK(params.size() == m_.size(), "optimizer: parameter list changed");
    ++t_;
    const double bc1 = 1.0 - std::pow(p_.beta1, double(t_));
    const double bc2 = 1.0 - std::pow(p_.beta2, double(t_));
    const float b1 = float(p_.beta1), b2 = float(p_.beta2);
    const float step_size = float(lr / bc1), inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2));
    const float eps = float(p_.eps);
    for (size_t k = 0; k < params.size(); ++k) {
      const ParamRef &r = params[k];
      const float decay = r.decay ? float(1.0 - lr * p_.weight_decay) : 1.0f;
      float *w = r.param.f32(), *m = m_[k].f32(), *v = v_[k].f32();
      const float *g = r.grad.f32();
      elementwise(pool, r.param.numel(), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          w[i] *= decay;  // decoupled weight decay first, as torch.optim.AdamW
          m[i] = b1 * m[i] + (1.0f - b1) * g[i];
          v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
          w[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
        }
      });
    }
  }
  int64_t steps_taken() const override { return t_; }
  std::vector<std::pair<std::string, Tensor>> state_tensors() const override {
    std::vector<std::pair<std::string, Tensor>> out;
    for (size_t k = 0; k < names_.size(); ++k) {
      out.emplace_back("exp_avg." + names_[k], m_[k]);
      out.emplace_back("exp_avg_sq." + names_[k], v_[k]);
    }
    return out;
  }
  nlohmann::json state_scalars() const override {
    return {{"kind", "adamw"}, {"t", t_}, {"beta1", p_.beta1}, {"beta2", p_.beta2},
            {"eps", p_.eps}, {"weight_decay", p_.weight_decay}};
  }
  void load(const std::map<std::string, Tensor> &tensors, const nlohmann::json &s) override {
    LMKIT_CHECK(s.value("kind", "") == "adamw", "optimizer state is not AdamW's");
    load_moments(tensors, "exp_avg.", names_, m_);
    load_moments(tensors, "exp_avg_sq.", names_, v_);
    t_ = s.at("t").get<int64_t>();
  }

 private:
  AdamWParams p_;
  std::vector<Tensor> m_, v_;
  std::vector<std::string> names_;
  int64_t t_ = 0;
};

class SGD : public Optimizer {
 public:
  SGD(const SGDParams &p, std::span<const ParamRef> params) : p_(p), buf_(zeros_like(params)) {
    for (const ParamRef &r : params) names_.push_back(r.name);
  }
  void step(std::span<const ParamRef> params, double lr, ThreadPool &pool) override {
    LMKIT_CHECK(params.size() == buf_.size(), "optimizer: parameter list changed");
    ++t_;
    const float mu = float(p_.momentum), l = float(lr);
    for (size_t k = 0; k < params.size(); ++k) {
      const ParamRef &r = params[k];
      const float wd = r.decay ? float(p_.weight_decay) : 0.0f;
      float *w = r.param.f32(), *b = buf_[k].f32();
      const float *g = r.grad.f32();
      const bool first = t_ == 1;
      elementwise(pool, r.param.numel(), [&](int64_t s, int64_t e) {
        for (int64_t i = s; i < e; ++i) {
          const float gi = g[i] + wd * w[i];  // L2-coupled decay, as torch.optim.SGD
          b[i] = first ? gi : mu * b[i] + gi;
          w[i] -= l * (mu > 0 ? b[i] : gi);
        }
      });
    }
  }
  int64_t steps_taken() const override { return t_; }
  std::vector<std::pair<std::string, Tensor>> state_tensors() const override {
    std::vector<std::pair<std::string, Tensor>> out;
    for (size_t k = 0; k < names_.size(); ++k) out.emplace_back("momentum." + names_[k], buf_[k]);
    return out;
  }
  nlohmann::json state_scalars() const override {
    return {{"kind", "sgd"}, {"t", t_}, {"momentum", p_.momentum}, {"weight_decay", p_.weight_decay}};
  }
  void load(const std::map<std::string, Tensor> &tensors, const nlohmann::json &s) override {
    LMKIT_CHECK(s.value("kind", "") == "sgd", "optimizer state is not SGD's");
    load_moments(tensors, "momentum.", names_, buf_);
    t_ = s.at("t").get<int64_t>();
  }

 private:
  SGDParams p_;
  std::vector<Tensor> buf_;
  std::vector<std::string> names_;
  int64_t t_ = 0;
};

}  // namespace

std::unique_ptr<Optimizer> make_adamw(const AdamWParams &p, std::span<const ParamRef> params) {
  return std::make_unique<AdamW>(p, params);
}
std::unique_ptr<Optimizer> make_sgd(const SGDParams &p, std::span<const ParamRef> params) {
  return std::make_unique<SGD>(p, params);
}

}  // namespace lmkit
