// Training checkpoints: a Hugging Face model folder (config.json, model.safetensors, tokenizer
// files) plus trainer_state.json and optimizer.safetensors, written into a temporary folder and
// renamed into place, so a crash at any moment leaves the previous checkpoint intact.
// Not the training loop (trainer.h).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "model/config.h"
#include "model/weights.h"
#include "train/optim.h"

namespace lmkit {

// RUN_DIR/checkpoints/step_<8 digits>: returns its path. Copies tokenizer.json and
// tokenizer_config.json from tokenizer_dir when they exist. Keeps the newest `keep` checkpoints
// (0 = all). On failure (e.g. a full disk) the temporary folder is removed, earlier checkpoints
// are untouched, and the error is rethrown.
std::string checkpoint_save(const std::string &run_dir, int64_t step, const ModelConfig &c,
                            const Weights &w, const Optimizer &opt, const nlohmann::json &state,
                            const std::string &tokenizer_dir, int keep);

// The newest complete checkpoint of a run, or nullopt. Leftover temporary folders of an
// interrupted save are removed.
std::optional<std::string> checkpoint_latest(const std::string &run_dir);

struct CheckpointData {
  nlohmann::json state;                     // trainer_state.json
  std::map<std::string, Tensor> optimizer;  // optimizer.safetensors
};
// Reads trainer_state.json and optimizer.safetensors of a checkpoint (the model itself is loaded
// with load_model). Throws naming the file for anything missing or corrupt.
CheckpointData checkpoint_read(const std::string &dir);

}  // namespace lmkit
