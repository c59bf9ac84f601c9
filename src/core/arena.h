// Arena: one aligned block handed out by a bump pointer and released all at once (llm.c style).
// Used for activation buffers sized once per model; never grows behind the caller's back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/tensor.h"

namespace lmkit {

class Arena {
 public:
  Arena() = default;
  explicit Arena(size_t capacity);

  // 64-byte aligned; throws lmkit::Error when the arena is full (a sizing bug, not a user error).
  void *alloc(size_t bytes);
  Tensor tensor(DType t, const Shape &s);  // zero-filled view into the arena
  void reset() { used_ = 0; }
  size_t used() const { return used_; }
  size_t capacity() const { return capacity_; }

  static size_t aligned(size_t bytes) { return (bytes + 63) / 64 * 64; }

 private:
  std::shared_ptr<void> block_;
  size_t capacity_ = 0;
  size_t used_ = 0;
};

}  // namespace lmkit
