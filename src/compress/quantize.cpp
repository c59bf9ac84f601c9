// The type policy of quantize.h and the conversion of whole models between dtypes.
#include "compress/quantize.h"

#include <cstring>

#include "core/error.h"
#include "kernels/quant.h"
#include "model/weights.h"

namespace lmkit::compress {

const Tensor *ModelTensors::find(const std::string &name) const {
  for (const auto &[n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

Tensor *ModelTensors::find(const std::string &name) {
  for (auto &[n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

size_t ModelTensors::nbytes() const {
  size_t n = 0;
  for (const auto &[name, t] : tensors) n += t.nbytes();
  return n;
}

ModelTensors model_tensors(const Model &m) {
  ModelTensors out;
  out.config = m.config();
  for (const auto &[name, t] : m.weights().table) {
    if (t.dtype() != DType::Q4_0X8) {
      out.tensors.emplace_back(name, t);
      continue;
    }
    // The kernels' packed layout goes back to the q4_0 blocks it was made from (same bytes/row).
    const int64_t N = t.dim(0), K = t.dim(1);
    Tensor q = Tensor::zeros(DType::Q4_0, t.shape());
    const size_t rb = dtype_row_bytes(DType::Q4_0, K);
    for (int64_t n = 0; n < N; ++n)
      kernels::unpack_row_q4_0x8(t.data_as<const char>() + rb * size_t(n),
                                 q.data_as<char>() + rb * size_t(n), K);
    out.tensors.emplace_back(name, q);
  }
  return out;
}

std::shared_ptr<const Model> model_from_tensors(const ModelTensors &t, const std::string &what) {
  auto src = tensor_source_table(t.tensors, what);
  return std::make_shared<const Model>(t.config, weights_load(t.config, *src));
}

bool quant_target_ok(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 ||
         (t != DType::Q4_0X8 && kernels::quant_has_matmul(t));
}

std::string quant_target_names() {
  return "f32, f16, bf16, q8_0, q6_K, q5_K, q5_1, q5_0, q4_K, q4_1, q4_0";
}

namespace {

int64_t block_of(DType t) {
  return dtype_info(t).block;
}

// llama.cpp's fallback when a K-quant's 256-value super-block does not divide a row.
DType k_fallback(DType t) {
  switch (t) {
    case DType::Q4_K:
      return DType::Q5_0;
    case DType::Q5_K:
      return DType::Q5_1;
    case DType::Q6_K:
      return DType::Q8_0;
    default:
      return t;
  }
}

bool is_float(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

// A contiguous f32 copy (or the tensor itself when it already is one).
Tensor as_f32(const Tensor &t) {
  if (t.dtype() == DType::F32 && t.is_contiguous()) return t;
  return kernels::dequantize(t.contiguous());
}

}  // namespace

DType choose_type(const std::string &name, const Shape &shape, DType target, bool classifier,
                  bool pure, std::string *note) {
  LMKIT_CHECK(quant_target_ok(target), "cannot quantize to ", dtype_name(target),
              " (types: ", quant_target_names(), ")");
  auto say = [&](const std::string &s) {
    if (note) *note = s;
  };
  say("");
  // Vectors and learned positions: small, and lmkit and llama.cpp both want them in f32.
  if (shape.ndim < 2 || name == "position_embd.weight") return DType::F32;
  if (is_float(target)) return target;
  const int64_t cols = shape[shape.ndim - 1];
  DType want = target;
  if (classifier && !pure) {
    want = target != DType::Q8_0 && cols % kernels::kQKK == 0 ? DType::Q6_K : DType::Q8_0;
    if (want != target)
      say(str_cat("classifier gets ", dtype_name(want), " (the most sensitive matrix)"));
  }
  if (cols % block_of(want) != 0) {
    std::string why = str_cat("rows of ", cols, " values are not a multiple of ", block_of(want),
                              " (", dtype_name(want), ")");
    const DType next = k_fallback(want);
    if (next != want && cols % block_of(next) != 0)
      why += str_cat(" nor ", block_of(next), " (", dtype_name(next), ")");
    want = cols % block_of(next) == 0 ? next : DType::F16;
    say(why);
  }
  return want;
}

ModelTensors quantize_model(const ModelTensors &src, const QuantizeOptions &opt, ThreadPool &pool,
                            std::vector<TypeChoice> *report) {
  LMKIT_CHECK(quant_target_ok(opt.type), "cannot quantize to ", dtype_name(opt.type),
              " (types: ", quant_target_names(), ")");
  int64_t total = 0, done = 0;
  for (const auto &[name, t] : src.tensors) total += t.numel();
  ModelTensors out;
  out.config = src.config;
  for (const auto &[name, t] : src.tensors) {
    const bool classifier =
        name == "output.weight" || (name == "token_embd.weight" && src.config.tied_embeddings);
    TypeChoice ch;
    ch.name = name;
    ch.from = t.dtype();
    ch.to = choose_type(name, t.shape(), opt.type, classifier, opt.pure, &ch.note);
    Tensor q;
    if (t.dtype() == ch.to) {
      q = t;  // already what the policy wants: the bytes as they are
    } else {
      if (dtype_is_quantized(t.dtype()))
        ch.note += str_cat(ch.note.empty() ? "" : "; ", "requantized from ", dtype_name(t.dtype()));
      const Tensor x = as_f32(t);
      if (!dtype_is_quantized(ch.to)) {
        q = x.to(ch.to);
      } else {
        const int64_t cols = x.dim(-1), rows = x.numel() / cols;
        const size_t rb = dtype_row_bytes(ch.to, cols);
        q = Tensor::zeros(ch.to, x.shape());
        const DType to = ch.to;
        pool.parallel_for(rows, [&](int64_t r0, int64_t r1, int) {
          for (int64_t r = r0; r < r1; ++r)
            kernels::quantize_row(to, x.f32() + r * cols, q.data_as<char>() + size_t(r) * rb, cols);
        });
      }
    }
    out.tensors.emplace_back(name, q);
    if (report) report->push_back(ch);
    done += t.numel();
    if (opt.progress) opt.progress(done, total);
  }
  out.config.dtype = is_float(opt.type) ? opt.type : src.config.dtype;
  return out;
}

ModelTensors convert_model(const ModelTensors &src, DType matrix_type, bool all_tensors) {
  LMKIT_CHECK(is_float(matrix_type), "convert: ", dtype_name(matrix_type),
              " is not a float type (f32, f16, bf16)");
  ModelTensors out;
  out.config = src.config;
  out.config.dtype = matrix_type;
  for (const auto &[name, t] : src.tensors) {
    const bool matrix = t.ndim() >= 2 && name != "position_embd.weight";
    const DType to = all_tensors || matrix ? matrix_type : DType::F32;
    out.tensors.emplace_back(name, t.dtype() == to ? t : as_f32(t).to(to));
  }
  return out;
}

uint32_t llama_file_type(DType t) {
  switch (t) {
    case DType::F32:
      return 0;
    case DType::F16:
      return 1;
    case DType::BF16:
      return 32;
    case DType::Q4_0:
      return 2;
    case DType::Q4_1:
      return 3;
    case DType::Q8_0:
      return 7;
    case DType::Q5_0:
      return 8;
    case DType::Q5_1:
      return 9;
    case DType::Q4_K:
      return 14;
    case DType::Q5_K:
      return 16;
    case DType::Q6_K:
      return 18;
    default:
      fail("no llama.cpp file type for ", dtype_name(t));
  }
}

}  // namespace lmkit::compress
