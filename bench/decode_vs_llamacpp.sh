#!/usr/bin/env bash
# Prefill and decode speed of a 110M llama in five weight types, lmkit next to llama.cpp, measured
# in one script on the same GGUF files. Not a quality test: the weights are random.
#
# llama.cpp is not part of lmkit: build it yourself from its public source (CPU, Release:
#   cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
#   cmake --build build -j --target llama-bench llama-quantize)
# and point LLAMA_CPP at that build folder (its bin/ holds llama-bench and llama-quantize). Its
# converter, convert_hf_to_gguf.py, is taken from the source folder (LLAMA_CPP_SRC, default
# $LLAMA_CPP/..) and runs on Debian's python3-torch, python3-numpy, python3-sentencepiece and
# python3-tqdm; bench/pyshim stands in for the `safetensors` package and for torch's float8 names.
#
# Usage: LLAMA_CPP=/path/to/llama.cpp/build bench/decode_vs_llamacpp.sh [BUILD_DIR] [WORK_DIR]
#   BUILD_DIR  lmkit build folder (default build); WORK_DIR  model files (default BUILD_DIR/llama110m)
# Environment: TYPES="F32 F16 Q8_0 Q4_0 Q4_K"  THREADS=1,2  P=128  N=128  REPS=5
#   ENGINES=both|llamacpp|lmkit|none (one engine reruns, the other's last results in WORK_DIR are
#   reused; none only prints the table of the saved results)
#   QUANT_FLAGS (e.g. --pure: one type for every matrix; by default
#   llama-quantize's Q4_K is its Q4_K_M mix and a tied embedding/output becomes Q6_K, as users get)
#
# Every type is converted once (HF folder -> F32/F16 GGUF with llama.cpp's converter, F32 -> the
# block types with llama-quantize) and cached in WORK_DIR. For each type, llama-bench and
# `lmkit bench` then run back to back on the same file: pp = prefill of P tokens, tg = decode of N.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
work=${2:-$build/llama110m}
: "${LLAMA_CPP:?set LLAMA_CPP to a llama.cpp build folder (see the comment at the top)}"
src=${LLAMA_CPP_SRC:-$LLAMA_CPP/..}
types=${TYPES:-F32 F16 Q8_0 Q4_0 Q4_K}
threads=${THREADS:-1,2}
p=${P:-128}
n=${N:-128}
reps=${REPS:-5}
engines=${ENGINES:-both}
case $engines in
  both | llamacpp | lmkit | none) ;;
  *) echo "ENGINES must be both, llamacpp, lmkit or none (got '$engines')" >&2; exit 1 ;;
esac
py=/usr/bin/python3
bin=$LLAMA_CPP/bin
[[ -x $bin/llama-bench ]] || bin=$LLAMA_CPP # a flat folder of binaries works too
for tool in llama-bench llama-quantize; do
  [[ -x $bin/$tool ]] || { echo "no $tool in $LLAMA_CPP/bin" >&2; exit 1; }
done
mkdir -p "$work"
log() { echo "[decode_vs_llamacpp] $*" >&2; }

# ---- the model and its GGUF files ----------------------------------------------------------------
hf=$work/hf
if [[ ! -f $hf/model.safetensors ]]; then
  log "writing the random-weight 110M llama to $hf"
  $py bench/make_llama110m.py --out "$hf" >&2
fi
convert() { # $1 = f32|f16, $2 = output
  log "converting to $1 with llama.cpp's converter"
  PYTHONPATH="$PWD/bench/pyshim:$src/gguf-py${PYTHONPATH:+:$PYTHONPATH}" \
    $py bench/pyshim/convert_compat.py "$src/convert_hf_to_gguf.py" "$hf" --outtype "$1" \
    --outfile "$2" >"$2.log" 2>&1 || { tail -20 "$2.log" >&2; exit 1; }
}
file_for() { echo "$work/llama110m-$1.gguf"; }
for t in $types; do
  f=$(file_for "$t")
  [[ -f $f ]] && continue
  case $t in
    F32 | F16) convert "${t,,}" "$f" ;;
    *)
      [[ -f $(file_for F32) ]] || convert f32 "$(file_for F32)"
      log "quantizing to $t with llama-quantize ${QUANT_FLAGS:-}"
      # shellcheck disable=SC2086 # QUANT_FLAGS is a list of flags
      "$bin/llama-quantize" ${QUANT_FLAGS:-} "$(file_for F32)" "$f.tmp" "$t" >"$f.log" 2>&1 ||
        { tail -20 "$f.log" >&2; exit 1; }
      mv "$f.tmp" "$f"
      ;;
  esac
done

# ---- measurements --------------------------------------------------------------------------------
for t in $types; do
  f=$(file_for "$t")
  if [[ $engines == both || $engines == llamacpp ]]; then
    log "$t: llama-bench -p $p -n $n -t $threads -r $reps"
    "$bin/llama-bench" -m "$f" -p "$p" -n "$n" -t "$threads" -r "$reps" -o json \
      >"$work/llamacpp-$t.json" 2>"$work/llamacpp-$t.err" ||
      { log "$t: llama-bench failed: $(tail -1 "$work/llamacpp-$t.err")"; rm -f "$work/llamacpp-$t.json"; }
  fi
  if [[ $engines == both || $engines == lmkit ]]; then
    log "$t: lmkit bench -p $p -n $n --threads $threads -r $reps"
    "$build/lmkit" bench -m "$f" -p "$p" -n "$n" --threads "$threads" -r "$reps" --json \
      >"$work/lmkit-$t.json" 2>"$work/lmkit-$t.err" ||
      { log "$t: lmkit bench failed: $(tail -1 "$work/lmkit-$t.err")"; rm -f "$work/lmkit-$t.json"; }
  fi
done

# ---- one Markdown table per phase ----------------------------------------------------------------
cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
$py - "$work" "$types" "$p" "$n" "$reps" "$cpu" <<'EOF'
import json, os, sys

work, types, p, n, reps, cpu = sys.argv[1], sys.argv[2].split(), *sys.argv[3:6], sys.argv[6]

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def fmt(x, nd=1):
    return "—" if x is None else f"{x:.{nd}f}"

print(f"110M llama (dim 768, 12 layers, vocab 32000, random weights), prefill {p} tokens, decode {n} "
      f"tokens; mean ± sd of {reps} runs each; CPU: {cpu}; load average at the end: "
      f"{os.getloadavg()[0]:.2f}\n")
for phase, title in (("tg", f"Decode (tg{n})"), ("pp", f"Prefill (pp{p})")):
    print(f"### {title}\n")
    print("| type | threads | lmkit tok/s | llama.cpp tok/s | lmkit / llama.cpp | lmkit % of bound |")
    print("|---|---|---|---|---|---|")
    for t in types:
        theirs = {}
        for r in load(os.path.join(work, f"llamacpp-{t}.json")) or []:
            if (phase == "tg") == (r.get("n_gen", 0) > 0):
                theirs[int(r["n_threads"])] = (r["avg_ts"], r.get("stddev_ts", 0.0))
        ours = {}
        for r in load(os.path.join(work, f"lmkit-{t}.json")) or []:
            ours[int(r["threads"])] = r
        for th in sorted(set(theirs) | set(ours)):
            o = ours.get(th, {})
            if phase == "tg":
                speed, bound = o.get("decode_tok_s"), o.get("decode_pct_of_bound", o.get("pct_of_bound"))
            else:  # lmkit bench has no prefill bound yet; a field of either name is shown if it appears
                speed = o.get("prefill_tok_s")
                bound = o.get("prefill_pct_of_bound", o.get("prefill_pct_of_peak"))
            our_sd = o.get("decode_tok_s_std" if phase == "tg" else "prefill_tok_s_std")
            ts, sd = theirs.get(th, (None, None))
            ratio = f"{speed / ts:.2f}x" if speed and ts else "—"
            us = fmt(speed) + ("" if speed is None or our_sd is None else f" ± {our_sd:.1f}")
            them = "—" if ts is None else f"{ts:.1f} ± {sd:.1f}"
            pct = "—" if bound is None else f"{bound:.0f}%"
            print(f"| {t} | {th} | {us} | {them} | {ratio} | {pct} |")
    print()
EOF
