// Arena: 64-byte aligned bump allocation in a chain of blocks, released all at once or back to a
// mark (llm.c style activations). Blocks are kept after release, so a loop that allocates the
// same amounts each iteration allocates from the system only on its first pass.
// Not a general allocator: nothing is freed individually.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace lmkit {

class Arena {
 public:
  struct Mark {
    size_t block = 0, offset = 0;
  };

  explicit Arena(size_t block_bytes = size_t(16) << 20);

  // Uninitialised, 64-byte aligned; a request larger than the block size gets a block of its own.
  void *alloc(size_t bytes);
  float *alloc_floats(int64_t n) { return static_cast<float *>(alloc(size_t(n) * 4)); }
  Tensor tensor(DType t, const Shape &s);  // zero-filled view into the arena

  Mark mark() const { return {cur_, off_}; }
  void release(Mark m);  // everything allocated after m becomes free again
  void reset() { release({}); }
  size_t used() const;      // bytes handed out since the last reset
  size_t reserved() const;  // bytes held from the system

  static size_t aligned(size_t bytes) { return (bytes + 63) / 64 * 64; }

 private:
  struct Block {
    std::shared_ptr<void> mem;
    size_t size;
  };
  size_t block_bytes_;
  std::vector<Block> blocks_;
  size_t cur_ = 0, off_ = 0;  // current block and offset in it
};

}  // namespace lmkit
