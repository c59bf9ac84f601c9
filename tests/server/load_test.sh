#!/usr/bin/env bash
# Load test of `lmkit serve`: 64 concurrent streaming clients for DURATION seconds against the
# real server on a loopback port; passes when every request succeeded, the server's resident
# memory stayed flat after warm-up (growth under 8 MB from the sample at 20% of the run to the
# end) and SIGTERM still drains and exits 0. Bounded: the clients stop at DURATION.
# Usage: load_test.sh LMKIT SERVE_LOAD SHARED_DIR [DURATION=20] [CLIENTS=64]
set -euo pipefail
lmkit=$1 load=$2 shared=$3 duration=${4:-20} clients=${5:-64}
model=$shared/models/stories260K
[[ -d $model ]] || { echo "load_test: $model not found (../shared missing): skipped"; exit 77; }
out=$(mktemp)
trap 'rm -f "$out"; [[ -n ${pid:-} ]] && kill "$pid" 2>/dev/null || true' EXIT
"$lmkit" serve -m "$model/stories260K.bin" --tokenizer "$model/tok512.bin" --port 0 \
  --parallel 16 --queue 256 --threads 2 >"$out" 2>&1 &
pid=$!
port=
for _ in $(seq 300); do
  port=$(sed -nE 's|^lmkit serve: listening on http://127.0.0.1:([0-9]+)$|\1|p' "$out")
  [[ -n $port ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$out"; echo "load_test: the server exited"; exit 1; }
  sleep 0.1
done
[[ -n $port ]] || { echo "load_test: the server did not start"; exit 1; }
res=$("$load" --port "$port" --clients "$clients" --duration "$duration" --max-tokens 64 --pid "$pid" --json)
echo "load_test: $res"
errors=$(sed -E 's/.*"errors": ([0-9]+).*/\1/' <<<"$res")
requests=$(sed -E 's/.*"requests": ([0-9]+).*/\1/' <<<"$res")
warm=$(sed -E 's/.*"rss_warm_mb": ([0-9.]+).*/\1/' <<<"$res")
end=$(sed -E 's/.*"rss_end_mb": ([0-9.]+).*/\1/' <<<"$res")
[[ $errors == 0 ]] || { echo "load_test: $errors of $requests requests failed"; exit 1; }
((requests >= clients)) || { echo "load_test: only $requests requests completed"; exit 1; }
awk -v w="$warm" -v e="$end" 'BEGIN { exit !(w > 0 && e - w < 8) }' ||
  { echo "load_test: resident memory grew from $warm MB to $end MB after warm-up"; exit 1; }
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
[[ $rc == 0 ]] || { cat "$out"; echo "load_test: the server exited with $rc after SIGTERM"; exit 1; }
echo "load_test: $requests requests, 0 errors, RSS $warm -> $end MB, clean exit"
