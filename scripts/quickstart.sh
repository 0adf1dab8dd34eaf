#!/usr/bin/env bash
# Runs README.md's first command exactly as written (the first line of its
# first sh block, `cargo run --release`), as a new user would: waits for
# `listening on`, fetches /snapshot with curl and checks it is a JPEG, then
# stops the server with SIGINT and expects a clean exit (status 0).
#
# That command listens on the default 127.0.0.1:8080; if another program
# holds the port, this waits for it a while and then fails.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "quickstart: FAIL: $*" >&2; exit 1; }
command -v curl >/dev/null 2>&1 || fail "curl is missing"

# The first line inside the first ```sh block, comment and all.
cmd=$(awk '/^```sh$/ {inside=1; next} inside {print; exit}' README.md)
[ -n "$cmd" ] || fail "no sh block in README.md"
case "$cmd" in cargo\ run*) ;; *) fail "README's first command is not cargo run: $cmd" ;; esac
echo "quickstart: running README's first command: $cmd"

port_busy() { curl -s -o /dev/null --max-time 1 http://127.0.0.1:8080/ 2>/dev/null; }
for _ in $(seq 120); do port_busy || break; sleep 1; done
port_busy && fail "127.0.0.1:8080 is taken by another program"

work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Its own process group, so that SIGINT reaches the server whether cargo
# replaced itself with it or not (as a terminal's Ctrl-C would).
setsid bash -c "$cmd" >"$work/out" 2>"$work/err" &
pid=$!
# The first build of a fresh clone takes minutes.
for _ in $(seq 1200); do
  grep -q '^listening on' "$work/out" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || fail "exited before listening: $(tail -5 "$work/err")"
  sleep 0.5
done
base=$(sed -n 's/^listening on //p' "$work/out" | head -n1)
[ "$base" = "http://127.0.0.1:8080" ] || fail "listening on '$base', README says 127.0.0.1:8080"

code=$(curl -s -o "$work/snap.jpg" -w '%{http_code} %{content_type}' "$base/snapshot")
[ "$code" = "200 image/jpeg" ] || fail "GET /snapshot: $code"
# A JPEG starts with FF D8 (start of image) and ends with FF D9.
[ "$(head -c 2 "$work/snap.jpg" | od -An -tx1 | tr -d ' ')" = "ffd8" ] || fail "snapshot is not a JPEG"
[ "$(tail -c 2 "$work/snap.jpg" | od -An -tx1 | tr -d ' ')" = "ffd9" ] || fail "snapshot is truncated"
echo "quickstart: ok: $base/snapshot is a $(stat -c %s "$work/snap.jpg")-byte JPEG"

kill -INT -- "-$pid"
for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$pid" 2>/dev/null && fail "still running 3 s after SIGINT"
wait "$pid" && rc=0 || rc=$?
pid=""
[ "$rc" = 0 ] || fail "exit status $rc after SIGINT: $(tail -5 "$work/err")"
echo "quickstart: ok: SIGINT, exit 0"
