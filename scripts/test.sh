#!/usr/bin/env bash
# Builds and runs the whole test suite through ctest, twice: a Release build with
# -Wall -Wextra -Werror, and an AddressSanitizer + UndefinedBehaviorSanitizer build.
# Usage: ./scripts/test.sh [--fast]   (--fast: only the Werror build)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

run_suite() {  # NAME BUILD_DIR CMAKE_ARGS...
  local name=$1 dir=$2
  shift 2
  echo "=== $name: configure and build ($dir) ==="
  cmake -S . -B "$dir" -G Ninja -DLMKIT_BUILD_BENCH=ON "$@" > "$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j "$jobs"
  echo "=== $name: ctest ==="
  (cd "$dir" && ctest --output-on-failure -j "$jobs" --timeout 900)
}

mkdir -p build
run_suite "werror" build -DCMAKE_BUILD_TYPE=Release -DLMKIT_WERROR=ON
if [ "${1:-}" != "--fast" ]; then
  mkdir -p build-asan
  export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite "asan+ubsan" build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLMKIT_SANITIZE=ON \
    -DLMKIT_WERROR=ON
fi
echo "test.sh: all suites passed"
