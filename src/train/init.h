// Fresh weights for training from scratch: GPT-2-style initialisation (normal std 0.02, residual
// projections scaled by 1/sqrt(2 n_layer), norms 1, biases 0), deterministic by seed.
// Not loading (model/loader.h) and not optimisation (optim.h).
#pragma once

#include <cstdint>

#include "model/weights.h"

namespace lmkit {

// Owned f32 weights for c, laid out exactly as weights_load would load them.
Weights weights_init(const ModelConfig &c, uint64_t seed);

}  // namespace lmkit
