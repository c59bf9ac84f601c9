// Wall-clock timing helpers for reports (tok/s), never for decisions inside the engine.
#pragma once

#include <chrono>

namespace lmkit {

inline double now_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace lmkit
