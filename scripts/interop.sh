#!/usr/bin/env bash
# Interop check with clients nobody here wrote: ffprobe and ffmpeg read the
# live stream, curl fetches snapshots. Builds and runs the real binary on a
# free loopback port. Installs ffmpeg when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need ffmpeg || ! need ffprobe || ! need curl; then
  echo "interop: installing ffmpeg and curl"
  apt-get update -qq && apt-get install -y -qq ffmpeg curl >/dev/null
fi

cargo build --release --quiet
work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "interop: FAIL: $*" >&2; exit 1; }
pass=0
ok() { echo "interop: ok: $*"; pass=$((pass + 1)); }

./target/release/mjpegd --listen 127.0.0.1:0 --source pattern:640x480@30 \
  --source cam2=pattern:320x240@15 >"$work/out" 2>"$work/err" &
server_pid=$!
for _ in $(seq 100); do grep -q '^listening on' "$work/out" 2>/dev/null && break; sleep 0.05; done
base=$(sed -n 's/^listening on //p' "$work/out" | head -n1)
[ -n "$base" ] || fail "server did not start: $(cat "$work/err")"

# ffprobe identifies the stream as MJPEG 640x480.
probe=$(timeout 20 ffprobe -v error -f mpjpeg -select_streams v:0 \
  -show_entries stream=codec_name,width,height -of csv=p=0 "$base/stream")
[ "$probe" = "mjpeg,640,480" ] || fail "ffprobe saw '$probe'"
ok "ffprobe: $probe"

# ffmpeg decodes 60 frames without a single decode error.
timeout 30 ffmpeg -v error -f mpjpeg -i "$base/stream" -frames:v 60 -f null - 2>"$work/ffmpeg.err" \
  || fail "ffmpeg exited non-zero: $(cat "$work/ffmpeg.err")"
[ ! -s "$work/ffmpeg.err" ] || fail "ffmpeg reported: $(head -5 "$work/ffmpeg.err")"
ok "ffmpeg decoded 60 frames from /stream"

# ffmpeg's generic probing (no -f) also recognises the named stream.
frames=$(timeout 30 ffprobe -v error -count_frames -read_intervals '%+#10' -select_streams v:0 \
  -show_entries stream=nb_read_frames,width -of csv=p=0 "$base/streams/cam2/stream")
[ "$frames" = "320,10" ] || fail "ffprobe on cam2 saw '$frames'"
ok "ffprobe read 10 frames of /streams/cam2/stream"

# curl: snapshot through mjpg-streamer's URL with a cache buster, a valid JPEG.
code=$(curl -s -o "$work/snap.jpg" -w '%{http_code} %{content_type}' "$base/?action=snapshot&$(date +%s%3N)")
[ "$code" = "200 image/jpeg" ] || fail "curl snapshot: $code"
size=$(ffprobe -v error -show_entries stream=width,height -of csv=p=0 "$work/snap.jpg")
[ "$size" = "640,480" ] || fail "snapshot decodes as '$size'"
ok "curl snapshot: $code, $size"

# curl: the stream's first bytes over HTTP/1.0 and HTTP/1.1 are multipart.
for v in --http1.0 --http1.1; do
  head=$(curl -s $v -D - -o /dev/null --max-time 1 "$base/stream" || true)
  grep -qi '^content-type: multipart/x-mixed-replace;boundary=' <<<"$head" || fail "curl $v head: $head"
done
ok "curl HTTP/1.0 and 1.1 stream heads"

# MJPEG from ffmpeg on stdin is served again: ffprobe reads it back.
ffmpeg -v error -nostdin -re -f lavfi -i testsrc=size=320x240:rate=15 -t 20 -f mjpeg - 2>/dev/null \
  | ./target/release/mjpegd --listen 127.0.0.1:0 --source stdin >"$work/pipe.out" 2>"$work/pipe.err" &
pipe_pid=$!
for _ in $(seq 100); do grep -q '^listening on' "$work/pipe.out" 2>/dev/null && break; sleep 0.05; done
pipe_base=$(sed -n 's/^listening on //p' "$work/pipe.out" | head -n1)
[ -n "$pipe_base" ] || fail "stdin server did not start: $(cat "$work/pipe.err")"
frames=$(timeout 20 ffprobe -v error -f mpjpeg -count_frames -read_intervals '%+#5' -select_streams v:0 \
  -show_entries stream=nb_read_frames,width,height -of csv=p=0 "$pipe_base/stream" || true)
kill -INT "$pipe_pid" 2>/dev/null || true
wait "$pipe_pid" 2>/dev/null || true
[ "$frames" = "320,240,5" ] || fail "ffprobe on the stdin stream saw '$frames'"
ok "ffmpeg | mjpegd --source stdin: ffprobe read 5 frames"

# Ctrl-C ends the server cleanly while ffmpeg is still reading.
timeout 30 ffmpeg -v quiet -f mpjpeg -i "$base/stream" -f null - &
reader=$!
sleep 1
kill -INT "$server_pid"
for _ in $(seq 40); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$server_pid" 2>/dev/null; then fail "server still running 2 s after SIGINT"; fi
wait "$server_pid" && rc=0 || rc=$?
server_pid=""
[ "$rc" = 0 ] || fail "server exit code $rc after SIGINT"
wait "$reader" 2>/dev/null || true
ok "SIGINT with ffmpeg attached: exit 0"

echo "interop: $pass passed, 0 failed"
