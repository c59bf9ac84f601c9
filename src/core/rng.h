// Rng: a small, fast, reproducible generator (xoshiro256**, seeded by splitmix64) whose whole state
// can be saved and restored. Not cryptographic.
#pragma once

#include <array>
#include <cstdint>

namespace lmkit {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0x5eed) { seed_with(seed); }

  void seed_with(uint64_t seed) {
    for (auto &w : s_) {
      seed += 0x9e3779b97f4a7c15ull;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      w = z ^ (z >> 31);
    }
  }

  uint64_t next_u64() {
    uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
  }
  // Uniform in [0, 1) with 24 bits (exactly representable as float).
  float uniform() { return float(next_u64() >> 40) * (1.0f / 16777216.0f); }
  double uniform_double() { return double(next_u64() >> 11) * (1.0 / 9007199254740992.0); }

  const std::array<uint64_t, 4> &state() const { return s_; }
  void set_state(const std::array<uint64_t, 4> &s) { s_ = s; }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::array<uint64_t, 4> s_{};
};

}  // namespace lmkit
