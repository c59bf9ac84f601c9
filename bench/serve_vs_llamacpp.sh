#!/usr/bin/env bash
# Serving throughput with continuous batching: aggregate decode tok/s and time to first token at
# 1, 4 and 16 concurrent streaming clients, `lmkit serve` next to llama.cpp's `llama-server` on
# the same GGUF file, measured in one script with the same load generator (bench/serve_load).
#
# llama.cpp is not part of lmkit: build llama-server from its public source (see
# bench/decode_vs_llamacpp.sh) and point LLAMA_CPP at its build folder; without LLAMA_CPP only
# lmkit is measured.
#
# Usage: [LLAMA_CPP=/path/to/llama.cpp/build] bench/serve_vs_llamacpp.sh [BUILD_DIR] [MODEL.gguf]
#   MODEL.gguf defaults to BUILD_DIR/llama110m/llama110m-Q8_0.gguf, made when missing from the
#   random-weight 110M llama (bench/make_llama110m.py) with `lmkit quantize --type Q8_0`.
# Environment: CLIENTS="1 4 16"  N=128 (tokens per request)  REQUESTS=4 (per client)
#   THREADS=2  PARALLEL=16 (slots in both servers)  CTX=256 (context per slot)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
model=${2:-$build/llama110m/llama110m-Q8_0.gguf}
clients=${CLIENTS:-1 4 16}
n=${N:-128}
requests=${REQUESTS:-4}
threads=${THREADS:-2}
parallel=${PARALLEL:-16}
ctx=${CTX:-256}
load=$build/bench/serve_load
[[ -x $load && -x $build/lmkit ]] || { echo "build lmkit and serve_load first (cmake --build $build)" >&2; exit 1; }
log() { echo "[serve_vs_llamacpp] $*" >&2; }

if [[ ! -f $model ]]; then
  hf=$build/llama110m/hf
  if [[ ! -f $hf/model.safetensors ]]; then
    log "writing the random-weight 110M llama to $hf"
    /usr/bin/python3 bench/make_llama110m.py --out "$hf" >&2
  fi
  log "quantizing to Q8_0 with lmkit quantize"
  "$build/lmkit" quantize -m "$hf" --type Q8_0 --out "$model" >&2
fi

port=$((20000 + RANDOM % 20000))
pid=
stop_server() { if [[ -n $pid ]]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi; pid=; }
trap stop_server EXIT
wait_ready() { # until /health answers (both servers have it)
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { echo "the server exited" >&2; return 1; }
    sleep 0.1
  done
  return 1
}

declare -A agg ttft50 ttft99
run_engine() { # $1 = name
  for c in $clients; do
    out=$("$load" --port "$port" --clients "$c" --requests "$requests" --max-tokens "$n" --json --pid "$pid")
    agg[$1,$c]=$(sed -E 's/.*"aggregate_tok_s": ([0-9.]+).*/\1/' <<<"$out")
    ttft50[$1,$c]=$(sed -E 's/.*"ttft_p50_ms": ([0-9.]+).*/\1/' <<<"$out")
    ttft99[$1,$c]=$(sed -E 's/.*"ttft_p99_ms": ([0-9.]+).*/\1/' <<<"$out")
    errors=$(sed -E 's/.*"errors": ([0-9]+).*/\1/' <<<"$out")
    log "$1 clients=$c: $out"
    [[ $errors == 0 ]] || { echo "$1: $errors failed requests" >&2; exit 1; }
  done
}

log "lmkit serve on $model"
"$build/lmkit" serve -m "$model" --port "$port" --parallel "$parallel" --ctx "$ctx" \
  --threads "$threads" --queue 1024 >/dev/null 2>"$build/serve_bench_lmkit.log" &
pid=$!
wait_ready
run_engine lmkit
stop_server

engines="lmkit"
if [[ -n ${LLAMA_CPP:-} ]]; then
  bin=$LLAMA_CPP/bin
  [[ -x $bin/llama-server ]] || bin=$LLAMA_CPP
  log "llama-server on $model"
  port=$((port + 1))  # the first server's port may still hold TIME_WAIT connections
  "$bin/llama-server" -m "$model" --port "$port" -np "$parallel" -c $((ctx * parallel)) \
    -t "$threads" --no-webui >"$build/serve_bench_llamacpp.log" 2>&1 &
  pid=$!
  wait_ready
  run_engine llamacpp
  stop_server
  engines="lmkit llamacpp"
fi

echo
echo "model $(basename "$model"), $threads threads, $parallel slots, $n tokens per request, $requests requests per client"
echo
if [[ $engines == lmkit ]]; then
  echo "| clients | lmkit tok/s | vs 1 client | TTFT p50 ms | TTFT p99 ms |"
  echo "|---|---|---|---|---|"
else
  echo "| clients | lmkit tok/s | vs 1 client | TTFT p50 / p99 ms | llama-server tok/s | vs 1 client | TTFT p50 / p99 ms | lmkit / llama-server |"
  echo "|---|---|---|---|---|---|---|---|"
fi
first=${clients%% *}
for c in $clients; do
  l=${agg[lmkit,$c]}
  ls=$(awk -v a="$l" -v b="${agg[lmkit,$first]}" 'BEGIN { printf "%.2fx", a / b }')
  if [[ $engines == lmkit ]]; then
    echo "| $c | $l | $ls | ${ttft50[lmkit,$c]} | ${ttft99[lmkit,$c]} |"
  else
    r=${agg[llamacpp,$c]}
    rs=$(awk -v a="$r" -v b="${agg[llamacpp,$first]}" 'BEGIN { printf "%.2fx", a / b }')
    ratio=$(awk -v a="$l" -v b="$r" 'BEGIN { printf "%.2fx", a / b }')
    echo "| $c | $l | $ls | ${ttft50[lmkit,$c]} / ${ttft99[lmkit,$c]} | $r | $rs | ${ttft50[llamacpp,$c]} / ${ttft99[llamacpp,$c]} | $ratio |"
  fi
done
