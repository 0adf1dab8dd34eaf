#!/usr/bin/env bash
# Side-by-side MJPEG fan-out benchmark on this machine (loopback only).
#
# Builds mjpegd and mjpeg-bench (release), makes 480p/720p frame folders, and
# for every server × resolution × client count: starts the server fresh,
# waits until it listens, runs mjpeg-bench against it for DURATION seconds
# (measuring the server's CPU and RSS from /proc), stops it. Prints a table
# and keeps every cell's JSON in OUT/results.jsonl.
#
# Servers: mjpegd (the default: one send loop per stream, sendfile),
# mjpegd-perclient (--send-method sendfile-per-client), mjpegd-write
# (--send-method write), mjpegd-1worker (--workers 1), mjpegd-1loop
# (--send-loops 1: one send loop per stream instead of one per core); "limit", the single-threaded C epoll+writev
# ceiling, when ../shared/bench/limit/limit.c is beside the repository;
# mjpg-streamer when built at $MJPG_BIN (see bench/README.md).
#
# Knobs (environment): SERVERS="mjpegd limit mjpg-streamer" RES="480p 720p"
#   CLIENTS="1 10 100 500 2000" DURATION=10 FPS=30 OUT=/tmp/mjpegd-bench
#   ROUNDS=1: each cell this many times, the servers alternated within each
#   round; the table gives each figure's median over the rounds and the
#   ratios to limit's cell of the same round (figures drift between runs
#   on a shared machine, ratios taken minutes apart less so).
#   EXTRA="fps1-10k" adds the 10,000-client ?fps=1 cell for mjpegd.
#   WARMUP=3: seconds between the server listening and the measurement. limit
#   loads every frame before it listens; mjpegd's `dir:` source reads each
#   file when it first plays it (60 frames: 2 s at 30 fps), so a shorter
#   wait measures mjpegd's file reading along with its sending.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
OUT=${OUT:-/tmp/mjpegd-bench}
SERVERS=${SERVERS:-"mjpegd limit mjpg-streamer"}
RES=${RES:-"480p 720p"}
CLIENTS=${CLIENTS:-"1 10 100 500 2000"}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-1}
WARMUP=${WARMUP:-3}
FPS=${FPS:-30}
EXTRA=${EXTRA:-}
PORT=${PORT:-19080}
MJPG_DIR=${MJPG_DIR:-/tmp/mjpg-streamer/mjpg-streamer-experimental/_build}
FRAMES=${FRAMES:-/tmp/frames}
mkdir -p "$OUT/logs"
log() { echo "bench: $*" >&2; }

(cd "$ROOT" && cargo build --release --quiet --bin mjpegd --bin mjpeg-bench) || exit 1
BENCH=$ROOT/target/release/mjpeg-bench
MJPEGD=$ROOT/target/release/mjpegd

# Frames: the shared harness's set when present (comparable with its
# published figures), else the same kind of set made with ffmpeg here.
make_frames() {
  [ -f "$FRAMES/480p/000.jpg" ] && [ -f "$FRAMES/720p/000.jpg" ] && return 0
  if [ -x "$SHARED/make-frames.sh" ]; then "$SHARED/make-frames.sh" "$FRAMES" 60 >&2 && return 0; fi
  command -v ffmpeg >/dev/null || { log "ffmpeg is needed to make frames"; return 1; }
  for spec in 480p:640x480 720p:1280x720; do
    mkdir -p "$FRAMES/${spec%%:*}"
    ffmpeg -v error -y -f lavfi -i "testsrc2=size=${spec#*:}:rate=30" -vf "noise=alls=12:allf=t" \
      -frames:v 60 -q:v 4 -start_number 0 "$FRAMES/${spec%%:*}/%03d.jpg" || return 1
  done
}
make_frames || exit 1

LIMIT=$OUT/limit
if [[ " $SERVERS " == *" limit "* ]] && [ ! -x "$LIMIT" ]; then
  if [ -f "$SHARED/limit/limit.c" ]; then cc -O2 -o "$LIMIT" "$SHARED/limit/limit.c" || log "limit.c did not build"
  else log "no limit.c beside the repository: skipping limit"; fi
fi

server_cmd() { # name res_dir -> command line
  case "$1" in
    mjpegd) echo "exec $MJPEGD --listen 127.0.0.1:$PORT --source dir:$2@$FPS" ;;
    mjpegd-write) echo "exec $MJPEGD --listen 127.0.0.1:$PORT --source dir:$2@$FPS --send-method write" ;;
    mjpegd-perclient) echo "exec $MJPEGD --listen 127.0.0.1:$PORT --source dir:$2@$FPS --send-method sendfile-per-client" ;;
    mjpegd-1worker) echo "exec $MJPEGD --listen 127.0.0.1:$PORT --source dir:$2@$FPS --workers 1" ;;
    mjpegd-1loop) echo "exec $MJPEGD --listen 127.0.0.1:$PORT --source dir:$2@$FPS --send-loops 1" ;;
    limit) echo "exec $LIMIT $2 $FPS $PORT" ;;
    mjpg-streamer) echo "exec $MJPG_DIR/mjpg_streamer -i '$MJPG_DIR/plugins/input_file/input_file.so -f $2/ -e -d $(python3 -c "print(1/$FPS)")' -o '$MJPG_DIR/plugins/output_http/output_http.so -p $PORT -l 127.0.0.1'" ;;
  esac
}
server_url() {
  case "$1" in
    mjpg-streamer) echo "http://127.0.0.1:$PORT/?action=stream" ;;
    *) echo "http://127.0.0.1:$PORT/stream" ;;
  esac
}
available() {
  case "$1" in
    mjpegd|mjpegd-write|mjpegd-perclient|mjpegd-1worker|mjpegd-1loop) return 0 ;;
    limit) [ -x "$LIMIT" ] ;;
    mjpg-streamer) [ -x "$MJPG_DIR/mjpg_streamer" ] ;;
    *) return 1 ;;
  esac
}

run_cell() { # server res clients [url-suffix] [label] [round]
  local server=$1 res=$2 clients=$3 suffix=${4:-} label=${5:-$1} round=${6:-1}
  local cmd; cmd=$(server_cmd "$server" "$FRAMES/$res")
  setsid bash -c "$cmd" >"$OUT/logs/$label-$res-$clients-$round.log" 2>&1 &
  local pid=$!
  for _ in $(seq 200); do ss -ltn "sport = :$PORT" | grep -q LISTEN && break; sleep 0.05; done
  sleep "$WARMUP"
  # bash -c exec'd the server, so $pid is the server itself.
  local json
  json=$("$BENCH" "$(server_url "$server")$suffix" -c "$clients" -d "$DURATION" --pid "$pid" --json)
  kill -TERM -- "-$pid" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL -- "-$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  echo "{\"server\":\"$label\",\"res\":\"$res\",\"cell_clients\":$clients,\"round\":$round,\"result\":$json}" >>"$OUT/results.jsonl"
  log "$label $res $clients: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("fps min {}, frames/CPU-s {}, failed {}".format(r["fps_per_client_min"], r["frames_per_server_cpu_s"], r["clients_failed"]))' "$json")"
  PORT=$((PORT + 1))
}

: >"$OUT/results.jsonl"
log "$(date -u '+%F %T') UTC, $(nproc) cores, servers: $SERVERS"
for res in $RES; do
  for clients in $CLIENTS; do
    for round in $(seq "$ROUNDS"); do
      for server in $SERVERS; do
        available "$server" || continue
        run_cell "$server" "$res" "$clients" "" "$server" "$round"
      done
    done
  done
done
if [[ " $EXTRA " == *" fps1-10k "* ]]; then
  run_cell mjpegd 480p 10000 "?fps=1" mjpegd-fps1
fi
python3 "$HERE/table.py" "$OUT/results.jsonl"
