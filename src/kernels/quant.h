// GGUF block-quantized weights: quantize/dequantize rows (bit-exact GGUF layouts, quant_blocks.h),
// the quantized matmul kernels (ref, AVX2, AVX-512 VNNI, chosen at run time), weight packing and
// embedding lookups of quantized tables. Not a model-level quantizer (compress/ will choose types).
//
// The matmuls quantize each row of x on the fly to 8 bits (ActQ8: per 32 values for the 32-value
// formats, per 256 for the K-quants, as llama.cpp's q8_0/q8_K) and take integer dot products
// (vpdpbusd with AVX-512 VNNI, pmaddubsw with AVX2, plain ints in ref). So y differs from the float
// product of dequantized W and x by the activation rounding (relative ~1e-3); every table does
// the same activation quantization bit for bit and the same integer block dots, and differs from
// ref only in the order of the final float scale-and-accumulate (tests: NMSE <= 1e-10, exact when
// all float terms are exact).
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "kernels/kernels.h"
#include "kernels/quant_blocks.h"

namespace lmkit::kernels {

// ---- formats (scalar; load and conversion time, not per token) -----------------------------

// The block types with a matmul kernel: q4_0, q4_1, q5_0, q5_1, q8_0, q4_K, q5_K, q6_K, q4_0x8.
bool quant_has_matmul(DType t);

// x (n) -> n / block blocks of type t (any block type of core/dtype.h, q8_1 and q8_K included),
// with the reference quantizers of the format (llama.cpp's *_ref algorithms: absmax for the
// 32-value types, the weighted scale/min search for the K-quants). n must be a multiple of the
// block size.
void quantize_row(DType t, const float *x, void *blocks, int64_t n);
// blocks -> y (n): exactly the GGUF dequantization formula of the type (ggml's float op order);
// q4_0x8 dequantizes as the q4_0 blocks it holds.
void dequantize_row(DType t, const void *blocks, float *y, int64_t n);

// A contiguous copy of src (f32/f16/bf16, last dim a multiple of the block) quantized to t.
Tensor quantize(const Tensor &src, DType t);
// src (any loadable dtype, contiguous) -> dst (src.numel() floats).
void dequantize(const Tensor &src, float *dst);
// The same, as a new f32 tensor of src's shape.
Tensor dequantize(const Tensor &src);

// The matrix a Linear layer should keep for KernelTable::matmul_for(w.dtype()): W (N, K) in the
// layout the kernels read fastest. f32/f16/bf16 and the block types come back as the same view
// (free: memory-mapped weights stay mapped), except q4_0 with K a multiple of 256, which becomes
// a new Q4_0X8 tensor (same bytes per row: row offsets and N splits work as before). Throws for a
// type with no matmul (q8_1, q8_K) or a non-contiguous W.
Tensor pack_weight(const Tensor &w);
// One row of K values: q4_0 blocks <-> q4_0x8 super-blocks (K a multiple of 256).
void pack_row_q4_0x8(const void *q4_0, void *q4_0x8, int64_t K);
void unpack_row_q4_0x8(const void *q4_0x8, void *q4_0, int64_t K);

// y(n, dim) = rows ids[i] of table (vocab, dim) of dtype t as f32, for every dtype: f32/f16/bf16
// through active().embedding_fwd, block types by dequantize_row (dim a multiple of the block).
void embedding_lookup(float *y, const int32_t *ids, int64_t n, const void *table, DType t,
                      int64_t dim);

// ---- matmul kernels --------------------------------------------------------------------------

// QuantKernels (quant_blocks.h) holds one instruction set's kernels.

// The quant table that goes with a KernelTable (by name: ref -> ref, avx2 -> avx2, avx512 ->
// avx512 when the CPU has AVX-512 VNNI, else avx2). KernelTable::matmul_for uses it, so
// LMKIT_KERNELS=ref|avx2|avx512 selects quantized kernels too.
const QuantKernels &quant_kernels_for(const KernelTable &t);
// quant_kernels_for(active()).
const QuantKernels &quant_active();
// Every quant table this CPU runs, "ref" first.
std::vector<const QuantKernels *> quant_available();

namespace ref {
const QuantKernels &quant_table();
}

}  // namespace lmkit::kernels
