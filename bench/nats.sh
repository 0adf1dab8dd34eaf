#!/usr/bin/env bash
# Scale-out over NATS, measured side by side in one run (loopback only):
#
#   local   one mjpegd serving a dir: source (720p, 30 fps) to CLIENTS clients
#   nats    a capture node (--listen none, the same dir: source, --publish)
#           → nats-server → one edge serving CLIENTS clients
#   nats-4  the same capture node → 4 edges, CLIENTS/4 clients each
#   late    a capture node at one frame every 2 s; a new edge's first viewer
#           (time to first frame: the newest frame is asked for at once)
#
# Prints, per case: the edge's CPU per delivered frame (and its ratio to the
# local case), capture → viewer latency p50/p99 (X-Timestamp is the capture
# time on the edges too), the NATS server's and the capture node's CPU per
# published frame. The load client is ../shared/bench/mjpeg-load.
#
# Run it alone: flock /tmp/mjpegd-bench.lock bench/nats.sh
# Knobs: CLIENTS=500 DURATION=15 FPS=30 RES=720p FRAMES=/tmp/frames
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
CLIENTS=${CLIENTS:-500}
DURATION=${DURATION:-15}
FPS=${FPS:-30}
RES=${RES:-720p}
FRAMES=${FRAMES:-/tmp/frames}
OUT=${OUT:-/tmp/mjpegd-nats-bench}
mkdir -p "$OUT"
log() { echo "bench: $*" >&2; }

NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
[ -x "$NATS_SERVER" ] || { log "nats-server missing: apt-get install nats-server"; exit 1; }
(cd "$ROOT" && cargo build --release --quiet --bin mjpegd) || exit 1
MJPEGD=$ROOT/target/release/mjpegd
LOAD=${LOAD:-/tmp/mjpeg-load-target/release/mjpeg-load}
if [ ! -x "$LOAD" ]; then
  CARGO_TARGET_DIR=/tmp/mjpeg-load-target cargo build --release --quiet \
    --manifest-path "$SHARED/mjpeg-load/Cargo.toml" || exit 1
fi
[ -f "$FRAMES/$RES/000.jpg" ] || "$SHARED/make-frames.sh" "$FRAMES" 60 >&2
DIR=$FRAMES/$RES
TICK=$(getconf CLK_TCK)

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

cpu_s() { # pid -> utime+stime in seconds
  awk -v t="$TICK" '{ print ($14 + $15) / t }' "/proc/$1/stat"
}
json() { # file key
  python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]))" "$1" "$2"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

NATS_RUNS=0
start_nats() { # -> sets NATS_PID NATS_PORT
  NATS_RUNS=$((NATS_RUNS + 1))
  local logf=$OUT/nats-server-$NATS_RUNS.log
  rm -f "$logf"
  "$NATS_SERVER" -a 127.0.0.1 -p -1 >"$logf" 2>&1 &
  NATS_PID=$!; PIDS+=("$NATS_PID")
  for _ in $(seq 100); do
    NATS_PORT=$(sed -n 's/.*Listening for client connections on 127.0.0.1:\([0-9]*\).*/\1/p' "$logf")
    [ -n "$NATS_PORT" ] && return 0
    sleep 0.1
  done
  log "nats-server did not start: $(cat "$logf")"; exit 1
}

# start_mjpegd NAME ARGS... -> sets SPID and SPORT (empty with --listen none)
start_mjpegd() {
  local name=$1; shift
  rm -f "$OUT/$name.out"
  "$MJPEGD" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" &
  local pid=$!; PIDS+=("$pid")
  local port=""
  if [[ " $* " != *" --listen none "* ]]; then
    for _ in $(seq 100); do
      port=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$OUT/$name.out" 2>/dev/null)
      [ -n "$port" ] && break
      sleep 0.1
    done
  fi
  SPID=$pid; SPORT=$port
}

wait_online() { # port
  for _ in $(seq 150); do
    curl -fs "http://127.0.0.1:$1/status" 2>/dev/null \
      | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["streams"][0]["online"] else 1)' 2>/dev/null \
      && return 0
    sleep 0.1
  done
  log "stream on :$1 not online"; exit 1
}

captured() { # port -> frames_captured of the first stream
  curl -fs "http://127.0.0.1:$1/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["streams"][0]["frames_captured"])'
}

load() { # out port clients [pid]
  local pid_args=()
  [ -n "${4:-}" ] && pid_args=(--pid "$4")
  "$LOAD" -u "http://127.0.0.1:$2/stream" -c "$3" -d "$DURATION" --ramp 2 "${pid_args[@]}" >"$1"
}

stop_all() { cleanup; PIDS=(); sleep 1; }

# --- local -----------------------------------------------------------------
log "local: dir:$DIR@$FPS, $CLIENTS clients, ${DURATION}s"
start_mjpegd local --listen 127.0.0.1:0 --source "cam=dir:$DIR@$FPS"; LPID=$SPID; LPORT=$SPORT
wait_online "$LPORT"; sleep 1
load "$OUT/local.json" "$LPORT" "$CLIENTS" "$LPID"
stop_all

# --- nats: one edge ---------------------------------------------------------
log "nats: capture → nats-server → 1 edge, $CLIENTS clients"
start_nats
BUS="nats://127.0.0.1:$NATS_PORT/bench.cam"
start_mjpegd capture --listen none --source "cam=dir:$DIR@$FPS" --publish "$BUS"; CPID=$SPID
start_mjpegd edge --listen 127.0.0.1:0 --source "cam=$BUS"; EPID=$SPID; EPORT=$SPORT
wait_online "$EPORT"; sleep 1
N0=$(cpu_s "$NATS_PID"); C0=$(cpu_s "$CPID"); F0=$(captured "$EPORT")
load "$OUT/nats.json" "$EPORT" "$CLIENTS" "$EPID"
N1=$(cpu_s "$NATS_PID"); C1=$(cpu_s "$CPID"); F1=$(captured "$EPORT")
NATS1=$(python3 -c "print(f'{($N1-$N0)/max(1,$F1-$F0)*1e3:.3f} {($C1-$C0)/max(1,$F1-$F0)*1e3:.3f} {$F1-$F0} {$N1-$N0:.2f}')")
stop_all

# --- nats: four edges -------------------------------------------------------
log "nats-4: capture → nats-server → 4 edges, $((CLIENTS / 4)) clients each"
start_nats
BUS="nats://127.0.0.1:$NATS_PORT/bench.cam"
start_mjpegd capture4 --listen none --source "cam=dir:$DIR@$FPS" --publish "$BUS"; CPID=$SPID
EDGE_PIDS=(); EDGE_PORTS=()
for i in 1 2 3 4; do
  start_mjpegd "edge4-$i" --listen 127.0.0.1:0 --source "cam=$BUS"; p=$SPID; port=$SPORT
  EDGE_PIDS+=("$p"); EDGE_PORTS+=("$port")
done
for port in "${EDGE_PORTS[@]}"; do wait_online "$port"; done
sleep 1
N0=$(cpu_s "$NATS_PID"); C0=$(cpu_s "$CPID"); F0=$(captured "${EDGE_PORTS[0]}")
LOADS=()
for i in 0 1 2 3; do
  load "$OUT/nats4-$i.json" "${EDGE_PORTS[$i]}" $((CLIENTS / 4)) "${EDGE_PIDS[$i]}" &
  LOADS+=($!)
done
wait "${LOADS[@]}"
N1=$(cpu_s "$NATS_PID"); C1=$(cpu_s "$CPID"); F1=$(captured "${EDGE_PORTS[0]}")
NATS4=$(python3 -c "print(f'{($N1-$N0)/max(1,$F1-$F0)*1e3:.3f} {($C1-$C0)/max(1,$F1-$F0)*1e3:.3f} {$F1-$F0} {$N1-$N0:.2f}')")
stop_all

# --- late joiner ----------------------------------------------------------
log "late: capture at 0.5 fps, a new edge's first viewer"
start_nats
BUS="nats://127.0.0.1:$NATS_PORT/bench.slow"
start_mjpegd slowcap --listen none --source "cam=dir:$DIR@0.5" --publish "$BUS"; CPID=$SPID
sleep 3
LATE=()
for i in 1 2 3 4 5; do
  T0=$(date +%s.%N)
  start_mjpegd "late-$i" --listen 127.0.0.1:0 --source "cam=$BUS"; EPID=$SPID; EPORT=$SPORT
  # The time from starting the edge process to its first viewer's first
  # frame: until the viewer connects, plus its time to first frame.
  T1=$(date +%s.%N)
  "$LOAD" -u "http://127.0.0.1:$EPORT/stream" -c 1 -d 1 >"$OUT/late-$i.json"
  LATE+=("$(python3 -c "print(round(($T1-$T0)*1e3 + $(json "$OUT/late-$i.json" ttff_ms_median), 1))")")
  kill "$EPID"; wait "$EPID" 2>/dev/null || true
  sleep 0.7
done
stop_all

# --- report -----------------------------------------------------------------
python3 - "$OUT" "$CLIENTS" "$NATS1" "$NATS4" "${LATE[*]}" <<'PY'
import json, sys
out, clients, nats1, nats4, late = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), sys.argv[5].split()
ld = lambda n: json.load(open(f"{out}/{n}.json"))
local, one = ld("local"), ld("nats")
four = [ld(f"nats4-{i}") for i in range(4)]
def per_frame(r): return r["server_cpu_s"] / max(1, r["frames_total"]) * 1e6
l_us = per_frame(local)
rows = [("local dir: (1 server)", local, l_us), ("nats, 1 edge", one, per_frame(one))]
f4 = sum(r["frames_total"] for r in four); c4 = sum(r["server_cpu_s"] for r in four)
print(f"| case | clients | frames delivered | edge CPU s | edge CPU µs/frame | vs local | fps/client median | latency p50 ms | latency p99 ms |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for name, r, us in rows:
    print(f"| {name} | {r['clients_with_frames']}/{clients} | {r['frames_total']} | {r['server_cpu_s']:.2f} | {us:.1f} | {us / l_us:.2f}× | {r['fps_per_client_median']:.1f} | {r['latency_ms_p50']:.1f} | {r['latency_ms_p99']:.1f} |")
p50 = max(r["latency_ms_p50"] for r in four); p99 = max(r["latency_ms_p99"] for r in four)
fps = min(r["fps_per_client_median"] for r in four)
us4 = c4 / max(1, f4) * 1e6
print(f"| nats, 4 edges (sum) | {sum(r['clients_with_frames'] for r in four)}/{clients} | {f4} | {c4:.2f} | {us4:.1f} | {us4 / l_us:.2f}× | {fps:.1f} (worst edge) | {p50:.1f} (worst edge) | {p99:.1f} (worst edge) |")
print()
print("| case | frames published | nats-server CPU s | nats-server CPU µs/published frame | capture node CPU µs/frame |")
print("| --- | --- | --- | --- | --- |")
for name, n in (("1 edge", nats1), ("4 edges", nats4)):
    print(f"| {name} | {n[2]} | {n[3]} | {float(n[0])*1e3:.1f} | {float(n[1])*1e3:.1f} |")
print()
print(f"late edge, capture at 0.5 fps (a frame every 2000 ms): edge start → first frame at its first viewer, ms: {', '.join(late)}")
PY
