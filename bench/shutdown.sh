#!/usr/bin/env bash
# Time from SIGINT to exit of mjpegd with N open streams (default 100).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-100}
cd "$ROOT" && cargo build --release --quiet --bin mjpegd --bin mjpeg-bench
out=$(mktemp)
./target/release/mjpegd --listen 127.0.0.1:0 >"$out" 2>/dev/null &
pid=$!
for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.02; done
url="$(sed -n 's/^listening on //p' "$out")/stream"
./target/release/mjpeg-bench "$url" -c "$N" -d 3 >/dev/null &
bench=$!
sleep 1.5
start=$(date +%s%N)
kill -INT "$pid"
wait "$pid" && rc=0 || rc=$?
end=$(date +%s%N)
wait "$bench" || true
rm -f "$out"
echo "SIGINT with $N open streams: exit code $rc after $(( (end - start) / 1000000 )) ms"
