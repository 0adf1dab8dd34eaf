#!/usr/bin/env bash
# Interop check with clients nobody here wrote: ffprobe and ffmpeg read the
# live stream, curl fetches snapshots. Builds and runs the real binary on a
# free loopback port; nginx serves it over HTTPS from a unix socket. Installs
# what is missing.
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

"${CARGO_TARGET_DIR:-target}/release/mjpegd" --listen 127.0.0.1:0 --source pattern:640x480@30 \
  --source cam2=pattern:320x240@15 --source door=http://127.0.0.1:1/video.mjpg \
  >"$work/out" 2>"$work/err" &
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

# /metrics: promtool (Prometheus' own checker) accepts the exposition.
# Skipped when promtool cannot be installed.
if ! need promtool; then
  echo "interop: installing promtool (package prometheus)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || true
fi
if need promtool; then
  curl -sf "$base/metrics" >"$work/metrics.txt" || fail "GET /metrics"
  promtool check metrics <"$work/metrics.txt" >"$work/promtool.out" 2>&1 \
    || fail "promtool: $(head -5 "$work/promtool.out")"
  grep -q '^mjpegd_frames_delivered_total{stream="pattern"} [1-9]' "$work/metrics.txt" \
    || fail "no delivered frames in /metrics"
  ok "promtool check metrics: /metrics is valid"
else
  echo "interop: skip: promtool not installable"
fi

# The index page in a real browser: headless Chromium loads it, the live
# images move (two screenshots a second apart differ inside the first
# image), and the script filled in each stream's state from /status,
# including the reason the `door` stream (nothing listens on port 1) is offline.
if ! need chromium; then
  echo "interop: installing chromium"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
browser() {
  timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --disable-quic \
    --user-data-dir="$(mktemp -d -p "$work")" --window-size=1800,680 --timeout=2500 "$@" 2>/dev/null
}
browser --screenshot="$work/index1.png" "$base/" >/dev/null || fail "chromium screenshot"
sleep 1
browser --screenshot="$work/index2.png" "$base/" >/dev/null || fail "chromium screenshot"
# The first stream's 640x480 image starts at about (22, 77); look well inside it.
read -r changed colors < <(python3 scripts/pngdiff.py "$work/index1.png" "$work/index2.png" 60 120 600 520)
python3 -c "import sys; sys.exit(0 if $changed > 0.01 and $colors > 50 else 1)" \
  || fail "screenshots: $changed of the image area changed, $colors colors"
browser --dump-dom "$base/" >"$work/index.html" || fail "chromium --dump-dom"
for name in pattern cam2; do
  grep -q "id=\"state-$name\">online<" "$work/index.html" || fail "no live state for $name in the page"
  grep -q "id=\"stats-$name\">[0-9]*x[0-9]* " "$work/index.html" || fail "no stats for $name in the page"
  grep -q "src=\"streams/$name/stream\"" "$work/index.html" || fail "no image of $name"
done
grep -q 'id="state-door">OFFLINE<' "$work/index.html" || fail "door not shown offline"
grep -q '<div class="message" id="message-door">Stream offline: cannot connect' "$work/index.html" \
  || fail "no offline message for door: $(grep message-door "$work/index.html")"
grep -q '<div class="message" id="message-pattern" hidden' "$work/index.html" \
  || fail "offline message shown for a live stream"
[ -z "${SAVE_SCREENSHOT:-}" ] || cp "$work/index1.png" "$SAVE_SCREENSHOT"
ok "chromium: index page live ($changed of the image changed), names, states and offline reason shown"

# Behind nginx with contrib/nginx.conf, as README describes it: HTTPS (a
# self-signed certificate made here), plain HTTP redirected to it, the
# streams under /camera/, mjpegd on a unix socket that nginx's workers
# (user www-data) may use through --unix-mode 660 --unix-group www-data.
if ! need nginx && [ ! -x /usr/sbin/nginx ]; then
  echo "interop: installing nginx"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null 2>&1 \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null 2>&1 || true
fi
if ! need openssl; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null 2>&1 || true
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx_bin" ] || fail "nginx is missing and could not be installed"
need openssl || fail "openssl is missing and could not be installed"
getent group www-data >/dev/null || fail "no group www-data (nginx's user)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
tls_port=$(free_port)
# A directory nginx's workers may enter; the socket's mode decides the rest.
sockdir=$(mktemp -d -p "$work")
chmod 755 "$work" "$sockdir"
"${CARGO_TARGET_DIR:-target}/release/mjpegd" --listen "unix:$sockdir/mjpegd.sock" \
  --unix-mode 660 --unix-group www-data \
  --source pattern:640x480@30 --source cam2=pattern:320x240@15 >"$work/unix.out" 2>"$work/unix.err" &
unix_pid=$!
for _ in $(seq 100); do grep -q '^listening on' "$work/unix.out" 2>/dev/null && break; sleep 0.05; done
grep -q "^listening on unix:$sockdir/mjpegd.sock" "$work/unix.out" || fail "unix listener: $(cat "$work/unix.err")"
[ "$(stat -c '%a %G' "$sockdir/mjpegd.sock")" = "660 www-data" ] \
  || fail "socket is $(stat -c '%a %G' "$sockdir/mjpegd.sock"), not 660 www-data"
curl -s --max-time 1 -D - -o /dev/null --unix-socket "$sockdir/mjpegd.sock" http://localhost/stream >"$work/head" || true
grep -qi '^x-accel-buffering: no' "$work/head" || fail "no X-Accel-Buffering on /stream: $(cat "$work/head")"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=camera.example.com \
  -addext subjectAltName=DNS:camera.example.com \
  -keyout "$work/proxy.key" -out "$work/proxy.crt" 2>/dev/null || fail "openssl req"
sed -e "s|server unix:/run/mjpegd.sock;|server unix:$sockdir/mjpegd.sock;|" \
  -e "s|listen 80;|listen 127.0.0.1:$port;|" -e "s|listen 443 ssl;|listen 127.0.0.1:$tls_port ssl;|" \
  -e "s|ssl_certificate .*;|ssl_certificate $work/proxy.crt;|" \
  -e "s|ssl_certificate_key .*;|ssl_certificate_key $work/proxy.key;|" \
  contrib/nginx.conf >"$work/site.conf"
grep -q "$work/proxy.key" "$work/site.conf" || fail "could not adapt contrib/nginx.conf"
mkdir -p "$work/nginx"
cat >"$work/nginx.conf" <<NGINX
daemon off;
user www-data;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  include $work/site.conf;
}
NGINX
"$nginx_bin" -c "$work/nginx.conf" -e "$work/nginx/error.log" &
nginx_pid=$!
trap 'kill $nginx_pid $unix_pid 2>/dev/null || true; cleanup' EXIT
site="https://camera.example.com:$tls_port"
tls=(--cacert "$work/proxy.crt" --resolve "camera.example.com:$tls_port:127.0.0.1")
for _ in $(seq 100); do curl -sf "${tls[@]}" -o /dev/null "$site/camera/status" && break; sleep 0.05; done
code=$(curl -s "${tls[@]}" -o "$work/proxy-snap.jpg" -w '%{http_code} %{content_type}' "$site/camera/snapshot")
[ "$code" = "200 image/jpeg" ] || fail "snapshot through nginx: $code $(tail -3 "$work/nginx/error.log")"
# What nginx and mjpegd said, for a failure's message.
proxy_logs() { echo "nginx: $(tail -3 "$work/nginx/error.log"); mjpegd: $(tail -3 "$work/unix.err")"; }
through_nginx() {
  local start
  start=$(date +%s%N)
  timeout 30 ffmpeg -v error -f mpjpeg -i "https://127.0.0.1:$tls_port/camera/stream" -frames:v 30 -f null - \
    2>"$work/nginx-ffmpeg.err" || fail "ffmpeg through nginx: $(cat "$work/nginx-ffmpeg.err"); $(proxy_logs)"
  [ ! -s "$work/nginx-ffmpeg.err" ] || fail "ffmpeg through nginx reported: $(head -5 "$work/nginx-ffmpeg.err")"
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
}
# 30 frames at 30 fps: about a second when nginx passes each frame on at once
# (a buffering proxy holds them for many seconds, every time). The first
# connection also pays ffmpeg's start and the TLS handshakes, which a
# machine busy with other work can stretch: a slow first one is tried again.
through_nginx
[ "$ms" -lt 5000 ] || { echo "interop: 30 frames through nginx took $ms ms, again"; through_nginx; }
[ "$ms" -lt 5000 ] || fail "30 frames through nginx took $ms ms; $(proxy_logs)"
index=$(curl -s "${tls[@]}" -w '\n%{http_code}' "$site/camera/")
grep -q 'src="streams/cam2/stream"' <<<"$index" \
  || fail "index through nginx: HTTP $(tail -n1 <<<"$index"); $(proxy_logs)"
code=$(curl -s "${tls[@]}" -o /dev/null -w '%{http_code} %{redirect_url}' "$site/camera")
[ "$code" = "301 $site/camera/" ] || fail "/camera without slash: $code"
code=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:$port/camera/")
[ "$code" = "301 https://127.0.0.1/camera/" ] || fail "plain HTTP not redirected: $code"
kill "$nginx_pid" "$unix_pid" 2>/dev/null || true
wait "$nginx_pid" "$unix_pid" 2>/dev/null || true
ok "nginx (contrib/nginx.conf): HTTPS, 30 frames in $ms ms, snapshot and index under /camera/, unix socket 660 www-data, X-Accel-Buffering"

# MJPEG from ffmpeg on stdin is served again: ffprobe reads it back.
ffmpeg -v error -nostdin -re -f lavfi -i testsrc=size=320x240:rate=15 -t 20 -f mjpeg - 2>/dev/null \
  | "${CARGO_TARGET_DIR:-target}/release/mjpegd" --listen 127.0.0.1:0 --source stdin >"$work/pipe.out" 2>"$work/pipe.err" &
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
