#!/usr/bin/env bash
# Training speed: lmkit (bench_train) next to PyTorch (bench/train_torch.py, Debian's
# python3-torch) on the same GPT-style model, in one script. Prints tokens/s, the ratio, and
# lmkit's MFU against the machine's measured f32 GEMM peak.
# The two engines run alternately, ROUNDS times (default 3), and each keeps its best round: on a
# shared, noisy machine that compares the two at their best rather than at different moments.
# Usage: bench/train_vs_pytorch.sh [BUILD_DIR] [SHAPE (gpt-384|gpt2-small)] [THREADS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shape=${2:-gpt-384}
threads=${3:-2}
steps=${4:-5}
rounds=${ROUNDS:-3}
get() { sed -n "s/.*\"$2\": \([0-9.e+-]*\).*/\1/p" <<< "$1"; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }
ours=0 theirs=0 peak=0 torch=""
for ((r = 1; r <= rounds; r++)); do
  o=$("$build/bench/bench_train" --shape "$shape" --threads "$threads" --steps "$steps" --json)
  t=$(/usr/bin/python3 bench/train_torch.py --shape "$shape" --threads "$threads" --steps "$steps")
  ours=$(max "$ours" "$(get "$o" tok_s)")
  peak=$(max "$peak" "$(get "$o" peak_gflops)")
  theirs=$(max "$theirs" "$(get "$t" tok_s)")
  torch=$(sed -n 's/.*"torch": "\([^"]*\)".*/\1/p' <<< "$t")
  echo "round $r: lmkit $(get "$o" tok_s) tok/s, PyTorch $(get "$t" tok_s) tok/s" >&2
done
flops_tok=$(get "$o" flops_per_token)
printf '| engine | shape | threads | tok/s (best of %s) |\n|---|---|---|---|\n' "$rounds"
printf '| lmkit | %s | %s | %.0f |\n' "$shape" "$threads" "$ours"
printf '| PyTorch %s | %s | %s | %.0f |\n' "$torch" "$shape" "$threads" "$theirs"
awk -v a="$ours" -v b="$theirs" -v f="$flops_tok" -v p="$peak" \
  'BEGIN { printf "ratio lmkit / PyTorch: %.2fx; lmkit %.0f GFLOP/s, MFU %.0f%% of %.0f GFLOP/s measured peak\n", a / b, a * f / 1e9, 100 * a * f / 1e9 / p, p }'
