#!/usr/bin/env bash
# History benchmark: what keeping a stream's last minute costs, and what
# replaying it costs, side by side in one run (loopback only).
#
# 1. Two servers stream the same 720p folder at 30 fps, one with
#    `--history SPAN` (60 s) and one without, and no clients. Once the
#    history is full, both are measured over the same WINDOW seconds:
#    resident memory, history bytes held, and server CPU per captured frame.
# 2. On the server with the history: 100 live clients (`/stream`) for
#    WINDOW seconds, then 100 replaying clients (`/stream?from=-SPAN`, each
#    playing the history at the captured pace from its own task), measured
#    by the load client: frames delivered, server CPU per delivered frame.
#
# It builds first, then takes /tmp/mjpegd-bench.lock (flock) for the
# measurements, so that no two benchmarks on the machine overlap.
# Knobs (environment): SPAN=60 WINDOW=20 CLIENTS=100 FPS=30 PORT=19380
#   FRAMES=/tmp/frames (made by ../shared/bench/make-frames.sh when missing)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
SPAN=${SPAN:-60}
WINDOW=${WINDOW:-20}
CLIENTS=${CLIENTS:-100}
FPS=${FPS:-30}
PORT=${PORT:-19380}
FRAMES=${FRAMES:-/tmp/frames}
LOAD_TARGET=${LOAD_TARGET:-/tmp/mjpegd-history-bench-load}
MB=${MB:-512}
log() { echo "bench: $*" >&2; }

(cd "$ROOT" && CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build --release --quiet --bin mjpegd)
MJPEGD=$ROOT/target/release/mjpegd
LOAD=$LOAD_TARGET/release/mjpeg-load
if [ ! -x "$LOAD" ]; then
  log "building the load client ($SHARED/mjpeg-load)"
  CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build --release --quiet \
    --manifest-path "$SHARED/mjpeg-load/Cargo.toml" --target-dir "$LOAD_TARGET"
fi
[ -f "$FRAMES/720p/000.jpg" ] || "$SHARED/make-frames.sh" "$FRAMES" 60 >&2

exec 9>"${LOCK:-/tmp/mjpegd-bench.lock}"
log "waiting for the benchmark lock"
flock 9

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# Starts a server in the background (not in a subshell, so that the exit
# trap knows and stops it); its pid is left in $STARTED. The server does not
# inherit the lock's descriptor: only this script holds the lock.
start() { # port args...
  local port=$1; shift
  "$MJPEGD" --listen "127.0.0.1:$port" --source "dir:$FRAMES/720p@$FPS" "$@" \
    >/dev/null 2>"/tmp/mjpegd-history-bench-$port.log" 9>&- &
  STARTED=$!
  pids+=("$STARTED")
}
# CPU time of a process in ns: the scheduler's own count per thread
# (/proc/PID/task/*/schedstat), finer than the 10 ms ticks of /proc/PID/stat.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%d", s}'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
captured() { curl -sf "http://127.0.0.1:$1/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["streams"][0]["frames_captured"])'; }
history() { curl -sf "http://127.0.0.1:$1/status" | python3 -c '
import json,sys
h = json.load(sys.stdin)["streams"][0].get("history") or {}
print(h.get("frames", 0), h.get("bytes", 0), h.get("span_s", 0))'; }

log "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
start "$PORT" --history "$SPAN" --history-max-mb "$MB"
A=$STARTED
start $((PORT + 1))
B=$STARTED
log "filling a ${SPAN} s history (720p, ${FPS} fps), then measuring ${WINDOW} s"
sleep $((SPAN + 3))
a0=$(cpu_ns "$A"); b0=$(cpu_ns "$B"); fa0=$(captured "$PORT"); fb0=$(captured $((PORT + 1)))
sleep "$WINDOW"
a1=$(cpu_ns "$A"); b1=$(cpu_ns "$B"); fa1=$(captured "$PORT"); fb1=$(captured $((PORT + 1)))
read -r hframes hbytes hspan <<<"$(history "$PORT")"
rss_a=$(rss_kb "$A"); rss_b=$(rss_kb "$B")
kill "$B"

echo
echo "## Keeping a ${SPAN} s history of 720p at ${FPS} fps (no clients; ${WINDOW} s window)"
echo
python3 - "$a0" "$a1" "$fa0" "$fa1" "$b0" "$b1" "$fb0" "$fb1" "$rss_a" "$rss_b" "$hframes" "$hbytes" "$hspan" <<'EOF'
import sys
a0, a1, fa0, fa1, b0, b1, fb0, fb1, ra, rb, hf, hb, hs = map(float, sys.argv[1:])
ua = (a1 - a0) / 1e3 / max(fa1 - fa0, 1)
ub = (b1 - b0) / 1e3 / max(fb1 - fb0, 1)
print("| server | RSS MiB | history frames / MiB / span s | frames captured | CPU s | CPU µs per frame |")
print("|---|---|---|---|---|---|")
print(f"| --history | {ra/1024:.1f} | {hf:.0f} / {hb/2**20:.1f} / {hs:.1f} | {fa1-fa0:.0f} | {(a1-a0)/1e9:.3f} | {ua:.1f} |")
print(f"| none | {rb/1024:.1f} | - | {fb1-fb0:.0f} | {(b1-b0)/1e9:.3f} | {ub:.1f} |")
print()
print(f"RSS above the server without history: {(ra-rb)/1024:.1f} MiB for {hb/2**20:.1f} MiB of frames "
      f"({(ra-rb)*1024/max(hb,1):.2f}x); CPU per frame with / without: {ua/max(ub,1e-9):.2f}x "
      f"({ua-ub:+.1f} µs a frame for keeping it)")
EOF

run_load() { # label path
  "$LOAD" --url "http://127.0.0.1:$PORT$2" -c "$CLIENTS" -d "$WINDOW" --pid "$A" \
    --threads 1 --label "$1"
}
log "$CLIENTS live clients for ${WINDOW} s"
live=$(run_load live /stream)
log "$CLIENTS replaying clients (from=-$SPAN) for ${WINDOW} s"
replay=$(run_load replay "/stream?from=-$SPAN")
echo
echo "## ${CLIENTS} live vs ${CLIENTS} replaying clients (720p, ${FPS} fps, ${WINDOW} s each)"
echo
python3 - "$live" "$replay" <<'EOF'
import json, sys
rows = [json.loads(a) for a in sys.argv[1:]]
print("| clients | connected / failed | frames delivered | per-client fps median | server CPU s | CPU µs per delivered frame | frames per server CPU-s | server RSS peak MiB | capture-to-receipt p50 ms |")
print("|---|---|---|---|---|---|---|---|---|")
per = {}
for r in rows:
    cpu = r.get("server_cpu_s") or 0
    us = cpu / max(r["frames_total"], 1) * 1e6
    per[r["label"]] = us
    print(f'| {r["clients"]} {r["label"]} | {r["clients_connected"]} / {r["clients_failed"]} | {r["frames_total"]} | '
          f'{r["fps_per_client_median"]} | {cpu:.2f} | {us:.1f} | {r.get("frames_per_server_cpu_s")} | '
          f'{int(r.get("server_rss_peak_kb", 0))/1024:.1f} | {r["latency_ms_p50"]} |')
print()
print(f'CPU per delivered frame, replay / live: {per["replay"]/max(per["live"],1e-9):.2f}x')
EOF
log "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
