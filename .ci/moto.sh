#!/usr/bin/env bash
# moto's S3 emulator for tests/kit/tests/s3_moto.rs (which keeps the fake S3
# in tests/kit/src/s3 honest against a real implementation).
#
#   eval "$(bash .ci/moto.sh start)"   # prints: export WM_TEST_S3_ENDPOINT=http://127.0.0.1:PORT
#   bash .ci/moto.sh stop
#   bash .ci/moto.sh install           # only the venv; prints moto_server's path
#
# `start` installs moto[server] into a venv (MOTO_VENV, default
# ~/.cache/wm-moto-venv) unless it is already there, starts moto_server on a
# free loopback port in the background, waits (at most 60 s) until it answers,
# and writes its pid to $MOTO_STATE_DIR/moto.pid (default /tmp/wm-moto).
# Only the export line goes to stdout; progress and errors go to stderr.
# `install` is what the tests use (tests/kit/src/provision.rs) when
# WM_TEST_S3_ENDPOINT is unset: they start their own moto_server from the venv.
set -euo pipefail

VENV="${MOTO_VENV:-$HOME/.cache/wm-moto-venv}"
STATE="${MOTO_STATE_DIR:-${TMPDIR:-/tmp}/wm-moto}"
PIDFILE="$STATE/moto.pid"
LOG="$STATE/moto.log"

say() { echo "moto.sh: $*" >&2; }

installed() {
  [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/python" -c 'import moto.server' 2>/dev/null
}

install() {
  installed && return 0
  say "installing moto[server] into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]' >&2
  installed || { say "moto[server] did not install"; exit 1; }
}

# A free port on 127.0.0.1, as the kernel hands one out.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Whether the server answers an HTTP request (any status), ignoring proxy settings.
answers() {
  "$VENV/bin/python" - "$1" <<'EOF' 2>/dev/null
import sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    opener.open(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
EOF
}

# Whether the pid in the pid file is a moto_server we started.
running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q moto_server || return 1
  echo "$pid"
}

stop() {
  local pid
  if pid=$(running_pid); then
    kill "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    say "stopped moto_server (pid $pid)"
  fi
  rm -f "$PIDFILE"
}

start() {
  stop
  install
  mkdir -p "$STATE"
  local port url pid
  port=$(free_port)
  url="http://127.0.0.1:$port"
  # Detached from our stdout, so that $(...) around this script returns.
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" </dev/null >"$LOG" 2>&1 &
  pid=$!
  echo "$pid" >"$PIDFILE"
  local deadline=$((SECONDS + 60))
  until answers "$url/"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "moto_server exited; its log:"; cat "$LOG" >&2; rm -f "$PIDFILE"; exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "moto_server did not answer on $url within 60 s; its log:"; cat "$LOG" >&2; stop; exit 1
    fi
    sleep 0.2
  done
  say "moto_server (pid $pid) answers on $url"
  echo "export WM_TEST_S3_ENDPOINT=$url"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  install) install; echo "$VENV/bin/moto_server" ;;
  *) echo "usage: $0 start|stop|install" >&2; exit 2 ;;
esac
