#!/usr/bin/env bash
# Starts and stops a local FerretDB (a MongoDB-wire-compatible server on
# SQLite) for the MongoDB test suites.
#
#   bash scripts/ferretdb.sh start   # installs FerretDB if missing, starts it
#   bash scripts/ferretdb.sh stop    # stops the process `start` launched
#
# It listens on 127.0.0.1:27117 only; its data, state, log and pid file live
# under .state/ferretdb/ in the repository (git-ignored). Data is wiped on
# every fresh start. `start` is idempotent: if something already answers on
# the port, it says so, exits 0 and takes no ownership. A server this script
# did not start is never stopped by it (only the pid in its pid file is ever
# signalled). A server it started belongs to the processes that use it: the
# caller of that `start` (this script's parent, e.g. `deno task test`), plus
# the caller of any later `start` that found it answering. `stop` releases
# its caller; the server stops when no user is left alive (so one test run
# never pulls it from under another), or at once with FERRETDB_STOP_FORCE=1.
# Start and stop hold a lock file, so concurrent runs do not race.
#
# Why not a plain `go install ...@v1.24.2`: the binary it builds panics at
# start-up ("Invalid build/version/version.txt"), because the module zip
# lacks the generated version file. So we build the same module source with
# that file written in, and `go install` the result into Go's bin directory.
set -euo pipefail

readonly VERSION="v1.24.2"
readonly MODULE="github.com/FerretDB/FerretDB"
readonly HOST="127.0.0.1"
readonly PORT="${FERRETDB_PORT:-27117}"
readonly START_TIMEOUT_SECONDS=60

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly STATE_DIR="$ROOT/.state/ferretdb"
readonly DATA_DIR="$STATE_DIR/data"
readonly PID_FILE="$STATE_DIR/ferretdb.pid"
readonly LOG_FILE="$STATE_DIR/ferretdb.log"
readonly USERS_FILE="$STATE_DIR/users"
readonly LOCK_FILE="$STATE_DIR/lock"

log() { echo "ferretdb.sh: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# Whether something accepts TCP connections on HOST:PORT.
port_answers() {
  (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

go_bin_dir() {
  local gobin
  gobin="$(go env GOBIN)"
  if [[ -n "$gobin" ]]; then echo "$gobin"; else echo "$(go env GOPATH)/bin"; fi
}

# Whether $1 is a FerretDB binary of the wanted version that actually runs.
binary_works() {
  [[ -x "$1" ]] || return 1
  # Capture first: `grep -q` on a pipe would stop reading early, and under
  # pipefail the SIGPIPE of the writer would count as a failure.
  local output
  output="$("$1" --version 2>/dev/null)" || return 1
  [[ "$output" == *"version: $VERSION"* ]]
}

# Builds FerretDB $VERSION from the Go module proxy and installs it into Go's
# bin directory. Prints the binary's path.
install_ferretdb() {
  command -v go >/dev/null || die "Go is needed to install FerretDB (go not found in PATH)"
  local bin_dir source_dir build_dir
  bin_dir="$(go_bin_dir)"
  log "installing FerretDB $VERSION into $bin_dir (a few minutes on first run)"
  source_dir="$(cd "$STATE_DIR" && GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
  [[ -d "$source_dir" ]] || die "go mod download $MODULE@$VERSION gave no source directory"
  build_dir="$(mktemp -d)"
  cp -R "$source_dir/." "$build_dir/"
  chmod -R u+w "$build_dir"
  echo "$VERSION" >"$build_dir/build/version/version.txt"
  local status=0
  (cd "$build_dir" && GOBIN="$bin_dir" GOFLAGS=-buildvcs=false GOTOOLCHAIN=auto \
    go install ./cmd/ferretdb) >&2 || status=$?
  rm -rf "$build_dir"
  ((status == 0)) || die "building FerretDB $VERSION failed (go install exited $status)"
  binary_works "$bin_dir/ferretdb" || die "$bin_dir/ferretdb was built but does not run"
  echo "$bin_dir/ferretdb"
}

find_or_install_ferretdb() {
  command -v go >/dev/null || die "Go is needed to find or install FerretDB (go not found in PATH)"
  local bin
  bin="$(go_bin_dir)/ferretdb"
  if binary_works "$bin"; then echo "$bin"; else install_ferretdb; fi
}

# The pid recorded by `start`, if that process still runs FerretDB.
owned_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "ferretdb" || return 1
  echo "$pid"
}

# Prints the users still alive, other than this script's caller.
other_users() {
  local pid
  [[ -f "$USERS_FILE" ]] || return 0
  while read -r pid; do
    if [[ -n "$pid" && "$pid" != "$PPID" ]] && kill -0 "$pid" 2>/dev/null; then
      echo "$pid"
    fi
  done <"$USERS_FILE"
}

start() {
  if port_answers; then
    if owned_pid >/dev/null; then
      echo "$PPID" >>"$USERS_FILE"
      log "already running (pid $(cat "$PID_FILE")) on $HOST:$PORT; not started here (this caller now shares it)"
    else
      log "something already answers on $HOST:$PORT; using it as is (not started here, will not be stopped here)"
    fi
    return 0
  fi
  rm -f "$PID_FILE" "$USERS_FILE"

  local bin
  bin="$(find_or_install_ferretdb)"
  rm -rf "$DATA_DIR"
  mkdir -p "$DATA_DIR"
  : >"$LOG_FILE"
  "$bin" \
    --handler=sqlite \
    --sqlite-url="file:$DATA_DIR/" \
    --state-dir="$STATE_DIR" \
    --listen-addr="$HOST:$PORT" \
    --debug-addr=- \
    --telemetry=disable \
    --log-level=warn \
    </dev/null >>"$LOG_FILE" 2>&1 9>&- &
  local pid=$!
  echo "$pid" >"$PID_FILE"
  echo "$PPID" >"$USERS_FILE"

  local waited=0
  until port_answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      log "FerretDB exited during start-up; last lines of $LOG_FILE:"
      tail -n 30 "$LOG_FILE" >&2
      exit 1
    fi
    if ((waited >= START_TIMEOUT_SECONDS * 10)); then
      log "FerretDB did not answer on $HOST:$PORT within ${START_TIMEOUT_SECONDS}s; last lines of $LOG_FILE:"
      tail -n 30 "$LOG_FILE" >&2
      stop
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  log "FerretDB $VERSION started (pid $pid) on $HOST:$PORT, data in .state/ferretdb/"
}

stop() {
  local pid
  if ! pid="$(owned_pid)"; then
    rm -f "$PID_FILE" "$USERS_FILE"
    log "no FerretDB started by this script is running; nothing to stop"
    return 0
  fi
  if [[ "${FERRETDB_STOP_FORCE:-0}" != 1 ]]; then
    local others
    others="$(other_users)"
    if [[ -n "$others" ]]; then
      echo "$others" >"$USERS_FILE"
      log "FerretDB (pid $pid) left running for $(echo "$others" | wc -l) other live user(s) (pids $(echo $others)); FERRETDB_STOP_FORCE=1 stops it anyway"
      return 0
    fi
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if ((waited >= 100)); then
      log "FerretDB (pid $pid) ignored SIGTERM for 10s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  rm -f "$PID_FILE" "$USERS_FILE"
  log "FerretDB (pid $pid) stopped"
}

# Serializes concurrent starts and stops (fd 9; FerretDB does not inherit it).
lock() {
  mkdir -p "$STATE_DIR"
  exec 9>"$LOCK_FILE"
  flock 9
}

case "${1:-}" in
  start) lock && start ;;
  stop) lock && stop ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
