// Model-level quantization: which GGUF block type each tensor of a model gets (a simplified form
// of llama.cpp's policy) and the conversion of a model's tensors to those types, plus plain
// float conversion (f32/f16/bf16). Not the block formats or the kernels (kernels/quant.h) and
// not file writing (gguf_export.h, hf_export.h).
//
// Type policy for `--type T` (T a block type):
//   - 1-D tensors (norms, biases, rope_freqs) and learned position tables stay f32;
//   - every other matrix gets T when its rows are a whole number of T's blocks; otherwise the
//     K-quants fall back as llama.cpp does (q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0) and any
//     type whose block still does not divide the row falls back to f16;
//   - the classifier (output.weight, or token_embd.weight when the embeddings are tied) gets
//     q6_K, or q8_0 when T is q8_0 or the row is not a multiple of 256 (llama.cpp's rule:
//     the output matrix is the most sensitive one); `pure` turns this off;
//   - a tensor already of its chosen type is copied as it is; a quantized source tensor of
//     another type is dequantized and quantized again (and reported as requantized).
// For T = f32/f16/bf16 every matrix becomes T and vectors stay f32.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "core/thread_pool.h"
#include "model/config.h"
#include "model/decoder.h"

namespace lmkit::compress {

// A model as data: its config and every tensor under its canonical (GGUF) name, in lmkit's
// (out, in) layout and a file dtype (f32, f16, bf16 or a GGUF block type; never a packed
// in-memory layout such as q4_0x8).
struct ModelTensors {
  ModelConfig config;
  std::vector<std::pair<std::string, Tensor>> tensors;

  const Tensor *find(const std::string &name) const;
  Tensor *find(const std::string &name);
  size_t nbytes() const;
};

// The tensors of a loaded model (packed q4_0x8 matrices come back as q4_0).
ModelTensors model_tensors(const Model &m);
// A runnable model over these tensors: exactly what loading a file holding them gives
// (weights_load packs and checks them the same way). `what` names the tensors in messages.
std::shared_ptr<const Model> model_from_tensors(const ModelTensors &t,
                                                const std::string &what = "converted model");

// Whether T can be asked for: f32, f16, bf16 or a block type with a matmul kernel.
bool quant_target_ok(DType t);
// The dtype names accepted by `--type`, for messages: "f32, f16, bf16, q8_0, ...".
std::string quant_target_names();

struct TypeChoice {
  std::string name;
  DType from = DType::F32, to = DType::F32;
  std::string note;  // why `to` differs from the target ("" when it is the target)
};

// The dtype `name` (of this shape) gets for target T under the policy above; `classifier` marks
// the matrix that computes the logits. note (if not null) says why when the choice is not T.
DType choose_type(const std::string &name, const Shape &shape, DType target, bool classifier,
                  bool pure, std::string *note = nullptr);

struct QuantizeOptions {
  DType type = DType::Q8_0;
  bool pure = false;  // every matrix gets `type` (no classifier override)
  // Called after each tensor with (values done, values in all), from the calling thread.
  std::function<void(int64_t, int64_t)> progress;
};

// The model's tensors in the types the policy chooses; the report (if not null) lists the
// choice for every tensor. Rows are quantized in parallel over `pool`; the result does not
// depend on the thread count.
ModelTensors quantize_model(const ModelTensors &src, const QuantizeOptions &opt, ThreadPool &pool,
                            std::vector<TypeChoice> *report = nullptr);

// Every tensor as a float type: matrices as `matrix_type` (f32, f16 or bf16), block types
// dequantized first; vectors f32 unless all_tensors (Hugging Face checkpoints keep one dtype).
ModelTensors convert_model(const ModelTensors &src, DType matrix_type, bool all_tensors = false);

// llama.cpp's general.file_type for a target type (LLAMA_FTYPE_*): 0 f32, 1 f16, 32 bf16,
// 7 q8_0, 2 q4_0, 3 q4_1, 8 q5_0, 9 q5_1, 14 q4_K, 16 q5_K (its _S, the closest: lmkit does not
// bump single layers as _M does), 18 q6_K. Informational: readers go by the tensor types.
uint32_t llama_file_type(DType t);

}  // namespace lmkit::compress
