// Tests for core/: dtype conversions, tensor views, arena, thread pool, rng.
#include <atomic>
#include <cmath>
#include <cstring>
#include <set>

#include "core/arena.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "test_util.h"

namespace lmkit {
namespace {

// f16 -> f32 -> f16 is the identity for every non-NaN half; known values decode exactly.
TEST(DType, F16RoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    EXPECT_EQ(f32_to_f16(f), h) << std::hex << h;
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_TRUE(std::isinf(f16_to_f32(0x7c00)));
}

TEST(DType, F16RoundsToNearestEven) {
  // 1 + 2^-11 is halfway between 1 and the next half (1 + 2^-10): ties to even (1).
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  // 1 + 3*2^-11 is halfway between 1+2^-10 (odd) and 1+2^-9 (even): rounds up.
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);                   // overflow to inf
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -26)), 0x0000);  // below half the smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
}

TEST(DType, BF16RoundTripAndRounding) {
  for (uint32_t h = 0; h < 0x10000; h += 7) {
    float f = bf16_to_f32(uint16_t(h));
    if (!std::isnan(f)) {
      EXPECT_EQ(f32_to_bf16(f), h);
    }
  }
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7 in bf16: ties to even.
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(dtype_from_name("BF16"), DType::BF16);
  EXPECT_THROW(dtype_from_name("q9_9"), Error);
}

TEST(Tensor, ViewsShareMemoryAndCheckBounds) {
  Tensor t = Tensor::zeros(DType::F32, {3, 4});
  for (int i = 0; i < 12; ++i) t.f32()[i] = float(i);
  Tensor row = t.select(1);
  EXPECT_EQ(row.ndim(), 1);
  EXPECT_EQ(row.dim(0), 4);
  EXPECT_EQ(row.f32()[0], 4.0f);
  Tensor cols = t.slice(1, 1, 2);  // (3, 2), strided
  EXPECT_FALSE(cols.is_contiguous());
  Tensor c = cols.contiguous();
  EXPECT_EQ(c.shape(), Shape({3, 2}));
  EXPECT_EQ(c.f32()[0], 1.0f);
  EXPECT_EQ(c.f32()[5], 10.0f);
  EXPECT_THROW(t.slice(0, 2, 2), Error);
  EXPECT_THROW(t.reshape({5, 2}), Error);
  EXPECT_THROW(cols.reshape({6}), Error);
  EXPECT_EQ(t.reshape({2, 6}).f32()[7], 7.0f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
  EXPECT_EQ(t.desc(), "f32 [3, 4]");
}

TEST(Tensor, ConvertsBetweenFloatTypes) {
  Tensor t = Tensor::zeros(DType::F32, {5});
  float vals[5] = {0.0f, 1.0f, -2.5f, 65504.0f, 1.0f / 3.0f};
  std::memcpy(t.data(), vals, sizeof vals);
  Tensor h = t.to(DType::F16), b = t.to(DType::BF16);
  Tensor back_h = h.to(DType::F32), back_b = b.to(DType::F32);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(back_h.f32()[i], vals[i]);
    EXPECT_EQ(back_b.f32()[i], i == 3 ? 65536.0f : vals[i]);  // bf16 has 8 mantissa bits
  }
  EXPECT_NEAR(back_h.f32()[4], 1.0f / 3.0f, 1e-3);
  EXPECT_THROW(h.f32(), Error);
}

TEST(Arena, AlignsGrowsAndReusesBlocks) {
  Arena a(1024);
  void *p = a.alloc(3);
  void *q = a.alloc(100);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(q) % 64, 0u);
  EXPECT_EQ(a.used(), 64u + 128u);
  void *big = a.alloc(5000);  // larger than a block: a block of its own
  EXPECT_NE(big, nullptr);
  EXPECT_EQ(a.reserved(), 1024u + 5056u);
  Arena::Mark m = a.mark();
  void *r1 = a.alloc(10);  // the big block is full: a third block
  a.release(m);
  void *r2 = a.alloc(10);
  EXPECT_EQ(r1, r2);  // released memory is handed out again
  const size_t reserved = a.reserved();
  EXPECT_EQ(reserved, 1024u + 5056u + 1024u);
  a.reset();
  EXPECT_EQ(a.used(), 0u);
  EXPECT_EQ(a.alloc(3), p);  // same blocks after a reset: no new system allocation
  a.alloc(100);
  EXPECT_EQ(a.alloc(5000), big);
  EXPECT_EQ(a.reserved(), reserved);
  Tensor t = a.tensor(DType::F32, {4, 4});
  EXPECT_EQ(t.f32()[15], 0.0f);
  EXPECT_THROW(a.release({99, 0}), Error);
}

TEST(ThreadPool, CoversRangeExactlyOnceForManySizes) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 7, 64, 1000, 4099}) {
      for (int64_t grain : {1, 16}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        pool.parallel_for(
            n,
            [&](int64_t b, int64_t e, int t) {
              EXPECT_LT(t, threads);
              for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
            },
            grain);
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << n << " " << i;
      }
    }
  }
}

TEST(ThreadPool, RunsEveryThreadAndPropagatesErrors) {
  ThreadPool pool(4);
  std::set<int> seen;
  std::mutex mu;
  for (int rep = 0; rep < 200; ++rep) {
    pool.run([&](int ti, int nt) {
      EXPECT_EQ(nt, 4);
      std::lock_guard<std::mutex> lk(mu);
      seen.insert(ti);
    });
  }
  EXPECT_EQ(seen.size(), 4u);
  EXPECT_THROW(pool.run([](int ti, int) {
    if (ti == 2) fail("boom");
  }),
               Error);
  // The pool still works after an error.
  std::atomic<int> count{0};
  pool.run([&](int, int) { count++; });
  EXPECT_EQ(count.load(), 4);
}

TEST(ThreadPool, SplitIsDeterministicAndBalanced) {
  int64_t b, e, total = 0;
  for (int t = 0; t < 3; ++t) {
    ThreadPool::split_range(100, 8, t, 3, b, e);
    EXPECT_EQ(b % 8, 0);
    total += e - b;
  }
  EXPECT_EQ(total, 100);
  ThreadPool::split_range(100, 8, 0, 3, b, e);
  EXPECT_EQ(b, 0);
  EXPECT_EQ(e, 40);  // 13 blocks of 8: 5, 4, 4
}

TEST(Rng, ReproducibleAndUniform) {
  Rng a(7), b(7), c(8);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.next_u64(), b.next_u64());
  EXPECT_NE(a.next_u64(), c.next_u64());
  Rng r(1);
  double sum = 0;
  for (int i = 0; i < 100000; ++i) {
    float u = r.uniform();
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.01);
  auto st = r.state();
  uint64_t x = r.next_u64();
  r.set_state(st);
  EXPECT_EQ(r.next_u64(), x);
}

TEST(Error, CheckFormatsMessage) {
  try {
    LMKIT_CHECK(1 + 1 == 3, "tensor '", "w", "' has ", 3, " dims");
    FAIL() << "no throw";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "tensor 'w' has 3 dims");
  }
}

}  // namespace
}  // namespace lmkit
