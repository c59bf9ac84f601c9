// Training parity with the independent PyTorch oracle (tests/reference/train_ref.py, float64):
// the loss and every parameter gradient for each family, ten AdamW steps with warmup + cosine and
// clipping, and gradient accumulation equal to one big batch.
#include <cmath>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "model/loader.h"
#include "model/tensor_names.h"
#include "test_util.h"
#include "train/optim.h"
#include "train/trainer.h"

namespace lmkit {
namespace {

using json = nlohmann::json;

std::string models_dir() {
  return std::string(LMKIT_BUILD_DIR) + "/reference";
}
std::string train_dir() {
  return std::string(LMKIT_BUILD_DIR) + "/reference-train";
}

json read_json(const std::string &p) {
  std::ifstream f(p);
  EXPECT_TRUE(f.good()) << p;
  return json::parse(f);
}

// A trainable f32 copy of a reference model.
std::shared_ptr<Model> trainable(const std::string &name) {
  LoadedModel lm = load_model(models_dir() + "/" + name);
  return std::make_shared<Model>(lm.model->config(), weights_to_f32(lm.model->weights()));
}

std::vector<int32_t> flat_ids(const json &rows) {
  std::vector<int32_t> v;
  for (const auto &r : rows)
    for (const auto &x : r) v.push_back(x.get<int32_t>());
  return v;
}

// Our gradient of a canonical tensor in the file's layout (GPT-2 Conv1D: transposed).
std::vector<float> in_hf_layout(const Tensor &g, bool conv1d) {
  std::vector<float> out(size_t(g.numel()));
  if (!conv1d) {
    std::copy(g.f32(), g.f32() + g.numel(), out.begin());
    return out;
  }
  const int64_t r = g.dim(0), c = g.dim(1);
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j) out[size_t(j * r + i)] = g.f32()[i * c + j];
  return out;
}

// Every gradient against the oracle's, relative to the largest entry of each tensor.
void expect_grads_match(const Model &m, const std::vector<ParamRef> &params,
                        const std::string &file, double tol) {
  SafetensorsFile ref = SafetensorsFile::open(file);
  size_t checked = 0;
  for (const ParamRef &p : params) {
    auto hf = hf_tensor_name(m.config().arch, p.name);
    ASSERT_TRUE(hf.has_value()) << p.name;
    const SafetensorsInfo *info = ref.find(hf->name);
    ASSERT_NE(info, nullptr) << hf->name;
    Tensor want = ref.tensor(*info);
    std::vector<float> got = in_hf_layout(p.grad, hf->conv1d);
    ASSERT_EQ(int64_t(got.size()), want.numel()) << hf->name;
    double diff = 0, scale = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      diff = std::max(diff, std::abs(double(got[i]) - double(want.f32()[i])));
      scale = std::max(scale, std::abs(double(want.f32()[i])));
    }
    EXPECT_LE(diff, tol * std::max(scale, 1e-6)) << hf->name << " scale " << scale;
    ++checked;
  }
  EXPECT_EQ(checked, ref.tensors().size());
}

TEST(TrainParity, LossAndEveryGradientMatchPyTorch) {
  const json man = read_json(train_dir() + "/manifest.json");
  ASSERT_GE(man["models"].size(), 5u);
  for (const kernels::KernelTable *table : kernels::available()) {
    kernels::set_active(*table);
    for (const auto &entry : man["models"]) {
      const std::string name = entry["name"];
      SCOPED_TRACE(name + " kernels=" + table->name);
      const json batch = read_json(train_dir() + "/" + name + "/batch.json");
      auto model = trainable(name);
      ag::GradStore grads;
      std::vector<ParamRef> params = trainable_params(*model, grads);
      std::vector<int32_t> tokens = flat_ids(batch["inputs"]), targets = flat_ids(batch["targets"]);
      const int64_t B = int64_t(batch["inputs"].size()), T = int64_t(batch["inputs"][0].size());
      for (int threads : {1, 2}) {
        ThreadPool pool(threads);
        Arena arena;
        RopeTable rope(*model, T);
        grads.zero();
        MicroBatchView mb{tokens, targets, B, T};
        double loss = accumulate_gradients(*model, grads, std::span(&mb, 1), pool, arena, rope);
        EXPECT_NEAR(loss, batch["loss"].get<double>(), 1e-5 * std::max(1.0, std::abs(loss)));
        expect_grads_match(*model, params, train_dir() + "/" + name + "/grads.safetensors", 1e-4);
      }
    }
  }
  kernels::set_active(*kernels::available().back());
}

TEST(TrainParity, TenAdamWStepsMatchPyTorch) {
  const json man = read_json(train_dir() + "/manifest.json");
  for (const auto &entry : man["models"]) {
    const std::string name = entry["name"];
    SCOPED_TRACE(name);
    const json batch = read_json(train_dir() + "/" + name + "/batch.json");
    const json adam = read_json(train_dir() + "/" + name + "/adamw.json");
    const json &h = adam["hyper"];
    auto model = trainable(name);
    ag::GradStore grads;
    std::vector<ParamRef> params = trainable_params(*model, grads);
    // The oracle's decay list names the same tensors as our rule picks.
    std::set<std::string> decay;
    for (const auto &n : h["decay"]) decay.insert(n.get<std::string>());
    for (const ParamRef &p : params)
      EXPECT_EQ(p.decay, decay.count(hf_tensor_name(model->config().arch, p.name)->name) == 1)
          << p.name;
    auto opt = make_adamw({h["beta1"], h["beta2"], h["eps"], h["weight_decay"]}, params);
    LrSchedule sched{ScheduleKind::Cosine, h["max_lr"],      h["min_lr"],
                     h["warmup_steps"],    h["total_steps"], 0.2};
    std::vector<int32_t> tokens = flat_ids(batch["inputs"]), targets = flat_ids(batch["targets"]);
    const int64_t B = int64_t(batch["inputs"].size()), T = int64_t(batch["inputs"][0].size());
    ThreadPool pool(2);
    Arena arena;
    RopeTable rope(*model, T);
    MicroBatchView mb{tokens, targets, B, T};
    // Later steps amplify float32 rounding (Adam divides by sqrt(v)): the oracle measured how far
    // PyTorch's own float32 run drifts from float64, and a float32 engine can do no better.
    const double norm_tol =
        std::max(1e-4, 3 * adam["f32_yardstick"]["grad_norms_max_rel_diff"].get<double>());
    for (int64_t s = 0; s < h["total_steps"].get<int64_t>(); ++s) {
      grads.zero();
      const double loss = accumulate_gradients(*model, grads, std::span(&mb, 1), pool, arena, rope);
      const double want = adam["losses"][size_t(s)].get<double>();
      EXPECT_NEAR(loss, want, 1e-4 * std::max(1.0, std::abs(want))) << "step " << s;
      const double norm = clip_grad_norm(params, h["max_grad_norm"].get<double>());
      EXPECT_NEAR(norm, adam["grad_norms"][size_t(s)].get<double>(), norm_tol * norm)
          << "step " << s;
      EXPECT_DOUBLE_EQ(sched.lr(s), adam["lrs"][size_t(s)].get<double>()) << "step " << s;
      opt->step(params, sched.lr(s), pool);
    }
    grads.zero();
    const double final_loss =
        accumulate_gradients(*model, grads, std::span(&mb, 1), pool, arena, rope);
    EXPECT_NEAR(final_loss, adam["final_loss"].get<double>(),
                1e-4 * std::max(1.0, adam["final_loss"].get<double>()));
  }
}

TEST(TrainParity, AccumulationEqualsOneBigBatch) {
  const json acc = read_json(train_dir() + "/llama_gqa_tied/accum.json");
  auto model = trainable("llama_gqa_tied");
  ag::GradStore grads;
  std::vector<ParamRef> params = trainable_params(*model, grads);
  std::vector<int32_t> tokens = flat_ids(acc["inputs"]), targets = flat_ids(acc["targets"]);
  const int64_t T = int64_t(acc["inputs"][0].size());
  ThreadPool pool(2);
  Arena arena;
  RopeTable rope(*model, T);
  std::vector<MicroBatchView> micro;
  for (const auto &mbi : acc["micro_batches"]) {
    const int64_t first = mbi[0].get<int64_t>(), rows = int64_t(mbi.size());
    micro.push_back({std::span<const int32_t>(tokens).subspan(size_t(first * T), size_t(rows * T)),
                     std::span<const int32_t>(targets).subspan(size_t(first * T), size_t(rows * T)),
                     rows, T});
  }
  ASSERT_EQ(micro.size(), 2u);
  double loss = accumulate_gradients(*model, grads, micro, pool, arena, rope);
  EXPECT_NEAR(loss, acc["loss"].get<double>(), 1e-5 * std::max(1.0, loss));
  expect_grads_match(*model, params, train_dir() + "/llama_gqa_tied/accum_grads.safetensors", 1e-4);
}

}  // namespace
}  // namespace lmkit
