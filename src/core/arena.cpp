// Chained bump allocation.
#include "core/arena.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace lmkit {

Arena::Arena(size_t block_bytes) : block_bytes_(aligned(std::max<size_t>(block_bytes, 64))) {}

void *Arena::alloc(size_t bytes) {
  const size_t n = aligned(std::max<size_t>(bytes, 1));
  // Move to the first block from the current one that has room (blocks are kept across resets).
  while (cur_ < blocks_.size() && off_ + n > blocks_[cur_].size) {
    ++cur_;
    off_ = 0;
  }
  if (cur_ == blocks_.size()) {
    size_t size = std::max(block_bytes_, n);
    void *p = std::aligned_alloc(64, size);
    LMKIT_CHECK(p != nullptr, "out of memory allocating a ", size, "-byte activation block");
    blocks_.push_back({std::shared_ptr<void>(p, [](void *q) { std::free(q); }), size});
    off_ = 0;
  }
  void *p = static_cast<char *>(blocks_[cur_].mem.get()) + off_;
  off_ += n;
  return p;
}

Tensor Arena::tensor(DType t, const Shape &s) {
  size_t bytes = dtype_row_bytes(t, s.ndim ? s[s.ndim - 1] : 1);
  for (int i = 0; i + 1 < s.ndim; ++i) bytes *= size_t(s[i]);
  void *p = alloc(bytes);
  std::memset(p, 0, bytes);
  return Tensor::view_of(p, t, s, blocks_[cur_].mem);
}

void Arena::release(Mark m) {
  LMKIT_CHECK(m.block < cur_ || (m.block == cur_ && m.offset <= off_),
              "arena release to a mark that lies ahead of the current position");
  cur_ = m.block;
  off_ = m.offset;
}

size_t Arena::used() const {
  size_t u = off_;
  for (size_t b = 0; b < cur_ && b < blocks_.size(); ++b) u += blocks_[b].size;
  return u;
}

size_t Arena::reserved() const {
  size_t r = 0;
  for (const auto &b : blocks_) r += b.size;
  return r;
}

}  // namespace lmkit
