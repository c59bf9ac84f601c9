// KVCache: keys and values of past positions for one or more sequences ("slots"), head-major per
// layer and slot: (n_layer, n_slots, n_head_kv, n_ctx, head_dim). RopeTable: cos/sin of every
// position up to a length. Not a scheduler: which sequence owns which slot is the caller's.
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "model/config.h"

namespace lmkit {

class Model;

class KVCache {
 public:
  KVCache(const ModelConfig &c, int64_t n_slots, int64_t n_ctx);
  int64_t n_slots() const { return n_slots_; }
  int64_t n_ctx() const { return n_ctx_; }
  int64_t ld_head() const { return n_ctx_ * head_dim_; }  // elements between KV heads
  float *k(int64_t layer, int64_t slot) const { return base(k_, layer, slot); }
  float *v(int64_t layer, int64_t slot) const { return base(v_, layer, slot); }
  size_t bytes() const { return k_.nbytes() + v_.nbytes(); }

 private:
  float *base(const Tensor &t, int64_t layer, int64_t slot) const {
    return t.f32() + (layer * n_slots_ + slot) * n_head_kv_ * ld_head();
  }
  int64_t n_slots_, n_ctx_, n_head_kv_, head_dim_;
  Tensor k_, v_;
};

class RopeTable {
 public:
  RopeTable() = default;
  RopeTable(const Model &m, int64_t n_pos);  // empty for models without RoPE
  int64_t n_pos() const { return n_pos_; }
  int64_t half() const { return half_; }
  const float *cos(int64_t pos) const { return cos_.f32() + pos * half_; }
  const float *sin(int64_t pos) const { return sin_.f32() + pos * half_; }

 private:
  int64_t n_pos_ = 0, half_ = 0;
  Tensor cos_, sin_;  // (n_pos, half)
};

}  // namespace lmkit
