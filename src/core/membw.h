// membw: a STREAM-like probe of the memory bandwidth a thread pool can read (the sum of a buffer
// several times larger than the last-level cache), the bound that decoding a model approaches.
// Not a general benchmark suite: reads only (no copy/triad), and nothing here decides anything.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/thread_pool.h"

namespace lmkit {

struct MemBandwidth {
  double gbs = 0;       // best pass: bytes / seconds / 1e9
  double mean_gbs = 0;  // mean over the passes
  size_t bytes = 0;     // bytes read per pass (the buffer size)
  int passes = 0;       // timed passes
  int threads = 0;      // pool size
  std::string isa;      // "avx512", "avx2" or "scalar": the loads the read loop used
  double checksum = 0;  // the sum of the buffer (keeps the reads observable)
};

// Bytes of the last-level cache (sysfs cache/index*/size, else sysconf); 0 when unknown.
size_t membw_llc_bytes();
// The default probe size: max(256 MiB, 4 x the last-level cache), at most 2 GiB.
size_t membw_default_bytes();

// Fills a buffer of `bytes` (rounded up to whole 4 KiB pages; 0: membw_default_bytes()) on the
// pool's threads (so each thread's pages are its own, first touch), then times `passes` reads of
// the whole buffer, every thread summing its contiguous share. The best pass is the figure, as in
// STREAM. The buffer is freed before returning.
MemBandwidth membw_measure(ThreadPool &pool, size_t bytes = 0, int passes = 10);

}  // namespace lmkit
