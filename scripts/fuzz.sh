#!/usr/bin/env bash
# Builds lmkit's libFuzzer targets with clang (ASan + UBSan) into build-fuzz and fuzzes one of
# them: the GGUF reader (gguf, the default) or the HTTP request parser (http). Not part of the test
# suite: the inputs it ever found are tests in tests/io and tests/server.
#
# Usage: scripts/fuzz.sh [RUNS] [libFuzzer flags...]     RUNS: executions (default 1000000; -1 = forever)
# Environment: FUZZ_TARGET (gguf or http; default gguf), FUZZ_BUILD (default build-fuzz),
# JOBS (default 2)
# New interesting inputs go to FUZZ_BUILD/fuzz-corpus/TARGET (kept between runs), crashes to
# FUZZ_BUILD/fuzz-artifacts/. Replay one with: FUZZ_BUILD/fuzz/fuzz_TARGET FILE
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1000000}
shift || true
build=${FUZZ_BUILD:-build-fuzz}

cmake -S . -B "$build" -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLMKIT_BUILD_FUZZ=ON -DLMKIT_BUILD_TESTS=OFF \
  -DLMKIT_BUILD_BENCH=OFF >"$build.configure.log" 2>&1 || { tail -20 "$build.configure.log"; exit 1; }
target=${FUZZ_TARGET:-gguf}
case "$target" in
  gguf) max_len=16384 ;;
  http) max_len=4096 ;;  # HTTP heads and small bodies; the parser's limits are exercised too
  *) echo "fuzz.sh: FUZZ_TARGET must be gguf or http, not '$target'" >&2; exit 2 ;;
esac
cmake --build "$build" --target "fuzz_$target" -j "${JOBS:-2}"

fuzzer=$build/fuzz/fuzz_$target
seeds=$build/fuzz-seeds/$target
corpus=$build/fuzz-corpus/$target
mkdir -p "$corpus" "$build/fuzz-artifacts"
"$fuzzer" --make-corpus "$seeds"
# -malloc_limit_mb: inputs are at most 16 KiB, so any allocation near 64 MiB is a parser that
# believed a size field instead of the file. -timeout is generous because one input takes
# milliseconds, but a fuzzer run under `nice -n 19` on a busy machine can starve for a minute
# (libFuzzer times units by the wall clock).
"$fuzzer" "$corpus" "$seeds" -runs="$runs" -dict="fuzz/$target.dict" -max_len="$max_len" \
  -malloc_limit_mb=64 -rss_limit_mb=2048 -timeout=300 -print_final_stats=1 \
  -artifact_prefix="$build/fuzz-artifacts/" "$@"
