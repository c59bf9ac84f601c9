// Training throughput: tokens/s and MFU of lmkit's training step (forward, backward, clipping,
// AdamW) on a GPT-style model with random tokens. bench/train_vs_pytorch.sh runs the same model
// in PyTorch in the same script and prints the ratio. Asserts nothing.
//
// Usage: bench_train [--shape gpt-384|gpt2-small] [--steps N] [--threads T] [--json]
#include <cstdio>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "core/timer.h"
#include "train/init.h"
#include "train/optim.h"
#include "train/trainer.h"

using namespace lmkit;

int main(int argc, char **argv) {
  try {
    std::string shape = "gpt-384";
    int64_t steps = 5;
    int threads = 2;
    bool json = false;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto next = [&]() -> std::string {
        LMKIT_CHECK(i + 1 < argc, a, " needs a value");
        return argv[++i];
      };
      if (a == "--shape")
        shape = next();
      else if (a == "--steps")
        steps = std::stoll(next());
      else if (a == "--threads")
        threads = std::stoi(next());
      else if (a == "--json")
        json = true;
      else
        fail("unknown argument '", a, "'");
    }
    TrainConfig tc = train_preset(shape);
    const int64_t vocab = shape == "gpt2-small" ? 50257 : 8192;
    ModelConfig mc = train_model_config(tc, vocab, 0, 0);
    auto model = std::make_shared<Model>(mc, weights_init(mc, 1));
    ag::GradStore grads;
    std::vector<ParamRef> params = trainable_params(*model, grads);
    auto opt = make_adamw({}, params);
    const int64_t B = tc.batch_size, T = tc.context;
    std::vector<int32_t> tokens(size_t(B * T)), targets(size_t(B * T));
    Rng rng(7);
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = int32_t(rng.next_u64() % uint64_t(vocab));
      targets[i] = int32_t(rng.next_u64() % uint64_t(vocab));
    }
    ThreadPool pool(threads);
    Arena arena(size_t(64) << 20);
    RopeTable rope(*model, T);
    MicroBatchView mb{tokens, targets, B, T};
    const double peak = measure_peak_gflops(threads);
    const double flops_tok = train_flops_per_token(mc, T);
    double best = 0;
    for (int64_t s = 0; s < steps + 1; ++s) {  // the first step warms up
      const double t0 = now_seconds();
      grads.zero();
      accumulate_gradients(*model, grads, std::span(&mb, 1), pool, arena, rope);
      clip_grad_norm(params, 1.0);
      opt->step(params, 1e-4, pool);
      const double tok_s = double(B * T) / (now_seconds() - t0);
      if (s > 0) best = std::max(best, tok_s);
    }
    const double mfu = best * flops_tok / (peak * 1e9);
    if (json)
      std::printf(
          "{\"shape\": \"%s\", \"threads\": %d, \"tok_s\": %.1f, \"gflops\": %.1f, "
          "\"peak_gflops\": %.1f, \"mfu\": %.3f, \"flops_per_token\": %.6g, \"params\": %lld}\n",
          shape.c_str(), threads, best, best * flops_tok / 1e9, peak, mfu, flops_tok,
          static_cast<long long>(model->weights().n_params()));
    else
      std::printf(
          "%s: %lld params, %d threads: %.0f tok/s, %.1f GFLOP/s of %.1f peak (MFU %.0f%%)\n",
          shape.c_str(), static_cast<long long>(model->weights().n_params()), threads, best,
          best * flops_tok / 1e9, peak, 100 * mfu);
    return 0;
  } catch (const Error &e) {
    std::fprintf(stderr, "bench_train: error: %s\n", e.what());
    return 1;
  }
}
