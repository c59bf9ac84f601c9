// Bump allocation in one aligned block.
#include "core/arena.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace lmkit {

Arena::Arena(size_t capacity) : capacity_(aligned(capacity)) {
  void *p = std::aligned_alloc(64, std::max<size_t>(capacity_, 64));
  LMKIT_CHECK(p != nullptr, "out of memory reserving a ", capacity_, "-byte arena");
  block_.reset(p, [](void *q) { std::free(q); });
}

void *Arena::alloc(size_t bytes) {
  size_t n = aligned(bytes);
  LMKIT_CHECK(used_ + n <= capacity_, "arena full: ", used_, " + ", n, " > ", capacity_, " bytes");
  void *p = static_cast<char *>(block_.get()) + used_;
  used_ += n;
  return p;
}

Tensor Arena::tensor(DType t, const Shape &s) {
  size_t bytes = dtype_row_bytes(t, s.ndim ? s[s.ndim - 1] : 1);
  for (int i = 0; i + 1 < s.ndim; ++i) bytes *= size_t(s[i]);
  void *p = alloc(bytes);
  std::memset(p, 0, bytes);
  return Tensor::view_of(p, t, s, block_);
}

}  // namespace lmkit
