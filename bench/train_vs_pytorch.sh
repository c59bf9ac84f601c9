#!/usr/bin/env bash
# Training speed: lmkit (bench_train) next to PyTorch (bench/train_torch.py, Debian's
# python3-torch) on the same GPT-style model, in one script. Prints tokens/s, the ratio, and
# lmkit's MFU against the machine's measured f32 GEMM peak.
# Usage: bench/train_vs_pytorch.sh [BUILD_DIR] [SHAPE (gpt-384|gpt2-small)] [THREADS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shape=${2:-gpt-384}
threads=${3:-2}
steps=${4:-5}
ours=$("$build/bench/bench_train" --shape "$shape" --threads "$threads" --steps "$steps" --json)
theirs=$(/usr/bin/python3 bench/train_torch.py --shape "$shape" --threads "$threads" --steps "$steps")
get() { sed -n "s/.*\"$2\": \([0-9.e+-]*\).*/\1/p" <<< "$1"; }
printf '| engine | shape | threads | tok/s |\n|---|---|---|---|\n'
printf '| lmkit | %s | %s | %.0f |\n' "$shape" "$threads" "$(get "$ours" tok_s)"
printf '| PyTorch %s | %s | %s | %.0f |\n' "$(sed -n 's/.*"torch": "\([^"]*\)".*/\1/p' <<< "$theirs")" \
  "$shape" "$threads" "$(get "$theirs" tok_s)"
awk -v a="$(get "$ours" tok_s)" -v b="$(get "$theirs" tok_s)" -v m="$(get "$ours" mfu)" \
  -v p="$(get "$ours" peak_gflops)" \
  'BEGIN { printf "ratio lmkit / PyTorch: %.2fx; lmkit MFU %.0f%% of %.0f GFLOP/s measured peak\n", a / b, 100 * m, p }'
