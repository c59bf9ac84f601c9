// The "ref" kernel table: the scalar oracle, runnable on any CPU and selectable with LMKIT_KERNELS.
// Not a dispatcher: kernels.cpp chooses among this and the SIMD tables.
#include "kernels/ref/ref.h"

namespace lmkit::kernels::ref {

const KernelTable &ref_table() {
  static constexpr KernelTable table = {
      .name = "ref",
      .matmul_f32 = matmul_f32,
      .matmul_f16 = matmul_f16,
      .matmul_bf16 = matmul_bf16,
      .embedding_fwd = embedding_fwd,
      .rmsnorm_fwd = rmsnorm_fwd,
      .layernorm_fwd = layernorm_fwd,
      .rope_fwd = rope_fwd,
      .silu_fwd = silu_fwd,
      .gelu_fwd = gelu_fwd,
      .gelu_tanh_fwd = gelu_tanh_fwd,
      .swiglu_fwd = swiglu_fwd,
      .add_fwd = add_fwd,
      .softmax_fwd = softmax_fwd,
      .attention_fwd = attention_fwd,
      .matmul_bwd_x = matmul_bwd_x,
      .matmul_bwd_w = matmul_bwd_w,
      .embedding_bwd = embedding_bwd,
      .rmsnorm_bwd = rmsnorm_bwd,
      .layernorm_bwd = layernorm_bwd,
      .silu_bwd = silu_bwd,
      .gelu_bwd = gelu_bwd,
      .gelu_tanh_bwd = gelu_tanh_bwd,
      .swiglu_bwd = swiglu_bwd,
      .cross_entropy_fwd_bwd = cross_entropy_fwd_bwd,
      .attention_bwd = attention_bwd,
  };
  return table;
}

}  // namespace lmkit::kernels::ref
