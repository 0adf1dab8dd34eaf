#!/usr/bin/env bash
# Renditions benchmark: what a 640- or 320-wide variant of a 1280x720 `dir:`
# source at 30 fps costs mjpegd per variant frame, against what users run
# today for the same result (one ffmpeg per size:
# `ffmpeg -f mjpeg -i - -vf scale=W:-2 -q:v 5 -f mjpeg -`), and whether
# 300 clients cost the same however they are spread over the variants.
# Pure-Rust build and `--features turbojpeg` side by side in one run.
#
# Server CPU is read from /proc/PID/stat (all threads, the blocking pool's
# encoders included) over each cell's window; frames encoded come from
# /status. Per variant frame: (CPU with one client on the variant - CPU
# with one client on the source itself) / frames encoded. ffmpeg is fed the
# same 720p frames (10 s worth) as fast as it takes them; its CPU
# (user+sys, all threads) / frames out.
#
# Cells, each on a fresh server:
#   base      1 client on the source stream (1280x720, no re-encode)
#   w640      1 client on ?width=640
#   w320      1 client on ?width=320
#   both      1 client on each: the two variants share each source frame's
#             decode, against two ffmpeg (one per size)
#   one-300   300 clients on the source
#   lopsided  all three variants live: 1 on the source, 1 on w320, 298 on w640
#   spread    100 on the source, 100 on w640, 100 on w320
#
# Knobs (environment): DURATION=10 FPS=30 BUILDS="pure turbojpeg"
#   FRAMES=/tmp/frames OUT=/tmp/mjpegd-renditions PORT=19380
# Run it under `flock /tmp/mjpegd-bench.lock bench/renditions.sh` on a
# shared machine so benchmarks do not overlap.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
DURATION=${DURATION:-10}
FPS=${FPS:-30}
BUILDS=${BUILDS:-"pure turbojpeg"}
FRAMES=${FRAMES:-/tmp/frames}
OUT=${OUT:-/tmp/mjpegd-renditions}
PORT=${PORT:-19380}
LOAD=${LOAD:-/tmp/mjpeg-load-target/release/mjpeg-load}
mkdir -p "$OUT/logs"
log() { echo "renditions: $*" >&2; }
TICK=$(getconf CLK_TCK)

for tool in ffmpeg python3 curl; do
  command -v $tool >/dev/null || { log "$tool is needed"; exit 1; }
done
if [ ! -f "$FRAMES/720p/000.jpg" ]; then
  "$SHARED/make-frames.sh" "$FRAMES" 60 >&2 || exit 1
fi
if [ ! -x "$LOAD" ]; then
  CARGO_TARGET_DIR=$(dirname "$(dirname "$LOAD")") cargo build --release --quiet \
    --manifest-path "$SHARED/mjpeg-load/Cargo.toml" || exit 1
fi
declare -A BIN
for build in $BUILDS; do
  case $build in
    pure) (cd "$ROOT" && cargo build --release --quiet --bin mjpegd) || exit 1
          BIN[pure]=$ROOT/target/release/mjpegd ;;
    turbojpeg) (cd "$ROOT" && cargo build --release --quiet --bin mjpegd --features turbojpeg \
                  --target-dir "$ROOT/target/turbojpeg") || exit 1
          BIN[turbojpeg]=$ROOT/target/turbojpeg/release/mjpegd ;;
    *) log "unknown build $build"; exit 2 ;;
  esac
done

cpu_ticks() { # utime+stime of a process, all its threads
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

encoded() { # variant frames encoded and source frames decoded for them so far
  curl -s "http://127.0.0.1:$PORT/status" |
    python3 -c 'import json,sys; s=json.load(sys.stdin)["streams"][0]; print(s["rendition_frames_encoded"], s.get("rendition_source_decodes", 0))'
}

# cell BUILD NAME "PATH:CLIENTS ..." -> one JSON line in $OUT/results.jsonl
cell() {
  local build=$1 name=$2 spec=$3
  PORT=$((PORT + 1))
  "${BIN[$build]}" --listen "127.0.0.1:$PORT" --source "dir:$FRAMES/720p@$FPS" \
    >"$OUT/logs/$build-$name.out" 2>"$OUT/logs/$build-$name.err" &
  local pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/status" && break; sleep 0.05; done
  local loads=() i=0
  for part in $spec; do
    local path=${part%:*} n=${part##*:}
    "$LOAD" -u "http://127.0.0.1:$PORT$path" -c "$n" -d $((DURATION + 2)) \
      >"$OUT/logs/$build-$name-$i.json" 2>/dev/null &
    loads+=($!); i=$((i + 1))
  done
  sleep 2 # connections made, variants started
  local c0 e0 c1 e1
  c0=$(cpu_ticks $pid); read -r e0 d0 <<<"$(encoded)"
  sleep "$DURATION"
  c1=$(cpu_ticks $pid); read -r e1 d1 <<<"$(encoded)"
  wait "${loads[@]}"
  kill -TERM $pid; wait $pid 2>/dev/null
  python3 - "$build" "$name" "$spec" "$c0" "$c1" "$e0" "$e1" "$TICK" "$DURATION" "$OUT/logs/$build-$name" "$d0" "$d1" <<'EOF' >>"$OUT/results.jsonl"
import glob, json, sys
build, name, spec, c0, c1, e0, e1, tick, dur, prefix, d0, d1 = sys.argv[1:]
loads = [json.load(open(f)) for f in sorted(glob.glob(prefix + "-*.json"))]
print(json.dumps({
    "build": build, "cell": name, "clients": spec,
    "server_cpu_s": (float(c1) - float(c0)) / float(tick),
    "encoded": int(e1) - int(e0), "decoded": int(d1) - int(d0), "duration_s": float(dur),
    "clients_connected": sum(l.get("clients_connected", 0) for l in loads),
    "fps_per_client_median": [l.get("fps_per_client_median") for l in loads],
    "load_cpu_s": sum(l.get("client_cpu_s", 0) for l in loads),
}))
EOF
  log "$build $name done"
}

# ffmpeg WIDTH -> one JSON line: its CPU per frame on the same frames
ffmpeg_cell() {
  local width=$1 frames=$((DURATION * FPS)) input=$OUT/input.mjpeg
  : >"$input"
  for i in $(seq 0 $((frames - 1))); do cat "$FRAMES/720p/$(printf %03d $((i % 60))).jpg" >>"$input"; done
  local times
  times=$( { /usr/bin/time -f "%U %S" ffmpeg -nostdin -loglevel error -f mjpeg -i - \
      -vf "scale=$width:-2" -q:v 5 -f mjpeg - <"$input" >"$OUT/ffmpeg-$width.mjpeg"; } 2>&1 | tail -1)
  local out
  out=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames,width,height \
    -of csv=p=0 -f mjpeg "$OUT/ffmpeg-$width.mjpeg")
  python3 - "$width" "$times" "$out" "$frames" <<'EOF' >>"$OUT/results.jsonl"
import json, sys
width, times, out, frames = sys.argv[1:]
u, s = map(float, times.split())
w, h, n = out.split(",")
print(json.dumps({"build": "ffmpeg", "cell": f"w{width}", "server_cpu_s": u + s,
                  "encoded": int(n), "size": f"{w}x{h}", "frames_in": int(frames)}))
EOF
  log "ffmpeg $width done"
}

: >"$OUT/results.jsonl"
log "other load on the machine: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min)"
ffmpeg_cell 640
ffmpeg_cell 320
for build in $BUILDS; do
  cell "$build" base "/stream:1"
  cell "$build" w640 "/stream?width=640:1"
  cell "$build" w320 "/stream?width=320:1"
  cell "$build" both "/stream?width=640:1 /stream?width=320:1"
  cell "$build" one-300 "/stream:300"
  cell "$build" lopsided "/stream:1 /stream?width=320:1 /stream?width=640:298"
  cell "$build" spread "/stream:100 /stream?width=640:100 /stream?width=320:100"
done
log "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$HERE/renditions_table.py" "$OUT/results.jsonl"
