// Quantized-type plumbing: picks the quant kernel table that goes with the active KernelTable,
// converts whole tensors, packs weights and looks up embeddings. Not a kernel: those live in
// ref/quant_*.cpp (scalar oracle and formats) and cpu/quant_*.cpp (SIMD).
//
// Weight layout (pack_weight): the SIMD kernels read most GGUF blocks as they are (the K-quants
// and q8_0 keep their scales where a 256-value super-block or a 34-byte block puts them cheaply).
// q4_0 is the exception: an f16 scale per 18 bytes costs more than the 4-bit dot product itself,
// so it is re-packed to Q4_0X8 (eight blocks' scales converted at once, nibbles paired per 32
// bytes), which measured about twice as fast per byte (bench/bench_quant.cpp).
#include "kernels/quant.h"

#include <string_view>

#include "core/cpu.h"
#include "core/error.h"
#include "kernels/cpu/quant_tables.h"

namespace lmkit::kernels {

matmul_fn QuantKernels::matmul_for(DType t) const {
  switch (t) {
    case DType::Q4_0:
      return matmul_q4_0;
    case DType::Q4_1:
      return matmul_q4_1;
    case DType::Q5_0:
      return matmul_q5_0;
    case DType::Q5_1:
      return matmul_q5_1;
    case DType::Q8_0:
      return matmul_q8_0;
    case DType::Q4_K:
      return matmul_q4_K;
    case DType::Q5_K:
      return matmul_q5_K;
    case DType::Q6_K:
      return matmul_q6_K;
    case DType::Q4_0X8:
      return matmul_q4_0x8;
    default:
      return nullptr;
  }
}

bool quant_has_matmul(DType t) {
  return ref::quant_table().matmul_for(t) != nullptr;
}

namespace {
#if defined(LMKIT_KERNELS_X86)
bool avx2_runs() {
  const CpuFeatures &f = cpu_features();
  return f.avx2 && f.fma && f.f16c;
}
bool avx512_vnni_runs() {
  const CpuFeatures &f = cpu_features();
  return avx2_runs() && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512_vnni;
}
#endif
}  // namespace

const QuantKernels &quant_kernels_for(const KernelTable &t) {
#if defined(LMKIT_KERNELS_X86)
  const std::string_view name = t.name;
  // A KernelTable is only handed out when its CPU check passed, so avx2 runs whenever either SIMD
  // table is in use; AVX-512 without VNNI (Skylake-X) keeps the AVX2 integer kernels.
  if (name == "avx512" && avx512_vnni_runs()) return avx512::quant_table;
  if ((name == "avx512" || name == "avx2") && avx2_runs()) return avx2::quant_table;
#else
  (void)t;
#endif
  return ref::quant_table();
}

const QuantKernels &quant_active() {
  return quant_kernels_for(active());
}

std::vector<const QuantKernels *> quant_available() {
  std::vector<const QuantKernels *> v{&ref::quant_table()};
#if defined(LMKIT_KERNELS_X86)
  if (avx2_runs()) v.push_back(&avx2::quant_table);
  if (avx512_vnni_runs()) v.push_back(&avx512::quant_table);
#endif
  return v;
}

// ---- tensors ---------------------------------------------------------------------------------

Tensor quantize(const Tensor &src, DType t) {
  LMKIT_CHECK(dtype_is_quantized(t), "quantize: ", dtype_name(t), " is not a block type");
  LMKIT_CHECK(src.ndim() >= 1, "quantize: a 0-dim tensor has no rows");
  const int64_t cols = src.dim(-1);
  const int64_t block = dtype_info(t).block;
  LMKIT_CHECK(cols % block == 0, "quantize: rows of ", src.desc(), " are not a whole number of ",
              dtype_name(t), " blocks (", block, " values)");
  const Tensor x = src.dtype() == DType::F32 && src.is_contiguous() ? src : src.to(DType::F32);
  Tensor q = Tensor::zeros(t, src.shape());
  const int64_t rows = cols ? x.numel() / cols : 0;
  const size_t row_bytes = dtype_row_bytes(t, cols);
  for (int64_t r = 0; r < rows; ++r)
    quantize_row(t, x.f32() + r * cols, q.data_as<char>() + size_t(r) * row_bytes, cols);
  return q;
}

void dequantize(const Tensor &src, float *dst) {
  LMKIT_CHECK(src.is_contiguous(), "dequantize: ", src.desc(), " is not contiguous");
  if (!dtype_is_quantized(src.dtype())) {
    convert_elements(dst, DType::F32, src.data(), src.dtype(), src.numel());
    return;
  }
  const int64_t cols = src.ndim() ? src.dim(-1) : 1;
  const int64_t rows = cols ? src.numel() / cols : 0;
  const size_t row_bytes = dtype_row_bytes(src.dtype(), cols);
  for (int64_t r = 0; r < rows; ++r)
    dequantize_row(src.dtype(), src.data_as<const char>() + size_t(r) * row_bytes, dst + r * cols,
                   cols);
}

Tensor dequantize(const Tensor &src) {
  Tensor y = Tensor::zeros(DType::F32, src.shape());
  dequantize(src, y.f32());
  return y;
}

Tensor pack_weight(const Tensor &w) {
  const DType t = w.dtype();
  LMKIT_CHECK(w.ndim() == 2, "pack_weight: a Linear weight is 2-D (out, in), got ", w.desc());
  LMKIT_CHECK(t == DType::F32 || t == DType::F16 || t == DType::BF16 || quant_has_matmul(t),
              "pack_weight: no matmul kernel for ", dtype_name(t),
              " weights (f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_K, q5_K, q6_K)");
  LMKIT_CHECK(w.is_contiguous(), "pack_weight: ", w.desc(), " is not contiguous");
  if (t != DType::Q4_0 || w.dim(1) % kQKK != 0) return w;
  // q4_0 -> q4_0x8: the same bytes per row, so row offsets and N splits are unchanged.
  const int64_t N = w.dim(0), K = w.dim(1);
  Tensor p = Tensor::zeros(DType::Q4_0X8, w.shape());
  const size_t rb = dtype_row_bytes(t, K);
  for (int64_t n = 0; n < N; ++n)
    pack_row_q4_0x8(w.data_as<const char>() + rb * size_t(n), p.data_as<char>() + rb * size_t(n),
                    K);
  return p;
}

void embedding_lookup(float *y, const int32_t *ids, int64_t n, const void *table, DType t,
                      int64_t dim) {
  if (!dtype_is_quantized(t)) return active().embedding_fwd(y, ids, n, table, t, dim);
  const size_t row_bytes = dtype_row_bytes(t, dim);
  for (int64_t i = 0; i < n; ++i)
    dequantize_row(t, static_cast<const char *>(table) + size_t(ids[i]) * row_bytes, y + i * dim,
                   dim);
}

}  // namespace lmkit::kernels
