#!/usr/bin/env bash
# Builds the Debian package with cargo-deb (installed when missing; with
# the libjpeg-turbo encoder, so cmake and nasm must be there),
# installs it with dpkg -i as a user would, and checks what it installed:
# the system user, the config, the units (systemd-analyze verify), and that
# the installed binary serves the packaged config's test pattern. Removes
# the package again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "deb: FAIL: $*" >&2; exit 1; }
ok() { echo "deb: ok: $*"; }

if ! cargo deb --version >/dev/null 2>&1; then
  echo "deb: installing cargo-deb"
  cargo install cargo-deb --locked --quiet
fi
cargo deb --quiet >/dev/null
deb=$(ls -t target/debian/mjpegd_*.deb | head -n1)
[ -f "$deb" ] || fail "no package built"
ok "built $deb"

work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  dpkg --purge mjpegd >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# dpkg, retried while another apt or dpkg run holds its lock.
dpkg_wait() {
  for _ in $(seq 150); do
    if dpkg "$@" >"$work/dpkg.log" 2>&1; then return 0; fi
    grep -q 'lock' "$work/dpkg.log" || return 1
    sleep 2
  done
  return 1
}
dpkg_wait -i "$deb" || fail "dpkg -i: $(tail -5 "$work/dpkg.log")"
getent passwd mjpegd >/dev/null || fail "no system user mjpegd"
[ -f /etc/mjpegd/mjpegd.toml ] || fail "no /etc/mjpegd/mjpegd.toml"
[ -f /usr/lib/systemd/system/mjpegd.service ] && [ -f /usr/lib/systemd/system/mjpegd.socket ] \
  || fail "units not installed"
[ -f /usr/share/doc/mjpegd/README.md ] || fail "no docs"
ok "installed: /usr/bin/mjpegd, user mjpegd, /etc/mjpegd/mjpegd.toml, units, docs"

if command -v systemd-analyze >/dev/null 2>&1; then
  systemd-analyze verify /usr/lib/systemd/system/mjpegd.service /usr/lib/systemd/system/mjpegd.socket \
    >"$work/verify.log" 2>&1 || fail "systemd-analyze verify: $(cat "$work/verify.log")"
  # Lines about other units on this machine are not ours to fix.
  if grep -i mjpegd "$work/verify.log"; then fail "systemd-analyze verify complained"; fi
  ok "systemd-analyze verify: units are valid"
else
  echo "deb: SKIPPED systemd-analyze verify: systemd-analyze is missing" >&2
fi

# The installed binary with the packaged config, as the service runs it
# (but as the mjpegd user by hand, on a free port: no systemd here).
setpriv --reuid=mjpegd --regid=mjpegd --init-groups \
  /usr/bin/mjpegd --config /etc/mjpegd/mjpegd.toml --listen 127.0.0.1:0 >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 100); do grep -q '^listening on' "$work/out" 2>/dev/null && break; sleep 0.05; done
base=$(sed -n 's/^listening on //p' "$work/out" | head -n1)
[ -n "$base" ] || fail "installed mjpegd did not start: $(cat "$work/err")"
code=$(curl -s -o "$work/snap.jpg" -w '%{http_code} %{content_type}' "$base/streams/main/snapshot")
[ "$code" = "200 image/jpeg" ] || fail "snapshot from the installed binary: $code"
# The package is built with libjpeg-turbo (cargo feature turbojpeg).
curl -s "$base/status" | grep -q '"encoder": "libjpeg-turbo"' \
  || fail "the packaged binary does not encode with libjpeg-turbo: $(curl -s "$base/status" | head -c 300)"
kill -TERM "$pid"
wait "$pid" && rc=0 || rc=$?
pid=""
[ "$rc" = 0 ] || fail "exit status $rc after SIGTERM"
ok "the installed mjpegd (libjpeg-turbo) serves the packaged config ($code) as user mjpegd, exits 0 on SIGTERM"

dpkg_wait --purge mjpegd || fail "dpkg --purge: $(tail -5 "$work/dpkg.log")"
[ ! -e /usr/bin/mjpegd ] || fail "/usr/bin/mjpegd left after purge"
ok "purged"
