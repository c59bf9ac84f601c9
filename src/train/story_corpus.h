// A deterministic procedural story generator: short, simple English stories (in the manner of
// TinyStories) with named characters, places, objects, feelings, dialogue and a beginning, middle
// and end, for training small models from text lmkit itself makes. Not natural text: its grammar
// and vocabulary are small on purpose, so that a model trained for minutes on a CPU learns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace lmkit {

// Stories separated by one blank line ("\n\n"; a story's own lines are separated by "\n"), ending
// with "\n". Stories are added until the text is at least n_bytes long, so it overshoots by less
// than one story (~1 KB). The same seed gives the same bytes on every machine and compiler: only
// lmkit::Rng and integer arithmetic choose. About 100 MB/s.
std::string story_corpus(uint64_t seed, size_t n_bytes);

// One story (no trailing newline), for tests and examples.
std::string story_generate(uint64_t seed);

}  // namespace lmkit
