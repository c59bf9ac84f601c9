#!/usr/bin/env bash
# Decode speed on stories260K, 1 thread: lmkit next to llama2.c's run.c, measured in one script.
# run.c is not part of lmkit: build it yourself from its public source (github.com/karpathy/
# llama2.c, `make run`, i.e. gcc -O3) and point LLAMA2C_RUN at the binary.
#
# Usage: LLAMA2C_RUN=/path/to/run bench/decode_vs_llama2c.sh [BUILD_DIR] [REPS]
# Both engines generate greedily from "Once upon a time" for 256 positions. run.c reports
# "achieved tok/s" over every position after the first (prompt positions included, one at a time,
# with millisecond timers); lmkit reports decode tok/s (one forward pass per generated token).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
reps=${2:-20}
shared=${LMKIT_SHARED_DIR:-../shared}
model=$shared/models/stories260K/stories260K.bin
tok=$shared/models/stories260K/tok512.bin
: "${LLAMA2C_RUN:?set LLAMA2C_RUN to a llama2.c run binary (see the comment at the top)}"

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

theirs=$(for _ in $(seq "$reps"); do
  "$LLAMA2C_RUN" "$model" -z "$tok" -t 0 -n 256 -i "Once upon a time" 2>&1 |
    sed -n 's/.*achieved tok\/s: \([0-9.]*\).*/\1/p'
done | median)
ours=$("$build/bench/bench_decode" "$model" "$tok" --n 252 --threads 1 --reps "$reps" --json |
  sed -n 's/.*"decode_tok_s": \([0-9.]*\),.*/\1/p')
printf '| engine | decode tok/s (median of %s) |\n|---|---|\n' "$reps"
printf '| llama2.c run.c | %s |\n| lmkit | %s |\n' "$theirs" "$ours"
awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "ratio lmkit / llama2.c: %.2fx (target >= 1.5x)\n", a / b }'
