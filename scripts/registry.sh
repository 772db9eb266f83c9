#!/usr/bin/env bash
# Builds, configures, starts and stops the Docker/OCI registry (CNCF
# Distribution) v3.1.2, the peer the registry bench suite measures our HTTP
# service against (bench/registry.ts).
#
#   bash scripts/registry.sh build              # prints the binary's path
#   bash scripts/registry.sh config DIR PORT    # prints a config YAML
#   bash scripts/registry.sh start              # serves on 127.0.0.1:5099
#   bash scripts/registry.sh stop               # stops what `start` started
#
# `build` runs `go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2`
# into .state/bin/ (git-ignored), once: a binary there that reports v3.1.2
# is reused (the first build takes a few minutes and downloads the
# module's dependencies through Go's module proxy). Go is taken from PATH,
# else /usr/local/go/bin; without it `build` fails with exit code 3 and says
# so. `config` prints the configuration both `start` and the bench use:
# file-system storage under DIR, 127.0.0.1:PORT, no auth, log level error,
# no access log, deletes enabled. `start` serves with file-system storage in
# a fresh temporary directory (REGISTRY_PORT picks the port, default 5099;
# the pid, config and log live under .state/registry/); it is a no-op when
# the registry it started still runs. `stop` stops only the pid `start`
# recorded, and removes that temporary directory.
set -euo pipefail

readonly VERSION="v3.1.2"
readonly PACKAGE="github.com/distribution/distribution/v3/cmd/registry"
readonly HOST="127.0.0.1"
readonly PORT="${REGISTRY_PORT:-5099}"
readonly START_TIMEOUT_SECONDS=30

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly BIN_DIR="$ROOT/.state/bin"
readonly BIN="$BIN_DIR/registry"
readonly STATE_DIR="$ROOT/.state/registry"
readonly PID_FILE="$STATE_DIR/registry.pid"
readonly DATA_FILE="$STATE_DIR/data-dir"
readonly CONFIG_FILE="$STATE_DIR/config.yml"
readonly LOG_FILE="$STATE_DIR/registry.log"

log() { echo "registry.sh: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

find_go() {
  if command -v go >/dev/null; then
    command -v go
  elif [[ -x /usr/local/go/bin/go ]]; then
    echo /usr/local/go/bin/go
  else
    return 1
  fi
}

# Whether the binary in .state/bin is the wanted version and runs.
binary_works() {
  [[ -x "$BIN" ]] || return 1
  local output
  output="$("$BIN" --version 2>/dev/null)" || return 1
  [[ "$output" == *" $VERSION"* ]]
}

build() {
  if binary_works; then
    echo "$BIN"
    return 0
  fi
  local go
  if ! go="$(find_go)"; then
    log "Go is needed to build the registry (no go in PATH nor /usr/local/go/bin)"
    exit 3
  fi
  mkdir -p "$BIN_DIR"
  log "building registry $VERSION with $("$go" version) into .state/bin/ (a few minutes the first time)"
  local status=0
  GOBIN="$BIN_DIR" "$go" install "$PACKAGE@$VERSION" >&2 || status=$?
  if ((status != 0)); then
    log "go install exited $status; trying again with GOFLAGS=-mod=mod"
    status=0
    GOBIN="$BIN_DIR" GOFLAGS=-mod=mod "$go" install "$PACKAGE@$VERSION" >&2 ||
      status=$?
  fi
  ((status == 0)) || die "go install $PACKAGE@$VERSION failed (exit $status)"
  binary_works || die "$BIN was built but does not report $VERSION"
  echo "$BIN"
}

# The configuration: file-system storage under $1, listening on
# 127.0.0.1:$2, no auth, errors only, deletes allowed.
config() {
  local dir="$1" port="$2"
  [[ "$port" =~ ^[0-9]+$ ]] || die "invalid port ${port@Q}"
  [[ "$dir" != *$'\n'* && "$dir" != *'"'* ]] || die "unusable storage directory ${dir@Q}"
  cat <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: "$dir"
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $HOST:$port
EOF
}

port_answers() {
  (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

# The pid recorded by `start`, if that process still runs the registry.
owned_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "registry" || return 1
  echo "$pid"
}

start() {
  local pid
  if pid="$(owned_pid)"; then
    log "already running (pid $pid) on $HOST:$PORT"
    return 0
  fi
  port_answers && die "something else already answers on $HOST:$PORT (set REGISTRY_PORT)"
  local bin data
  bin="$(build)"
  mkdir -p "$STATE_DIR"
  data="$(mktemp -d "${TMPDIR:-/tmp}/blobstore-registry-XXXXXX")"
  echo "$data" >"$DATA_FILE"
  config "$data" "$PORT" >"$CONFIG_FILE"
  : >"$LOG_FILE"
  OTEL_TRACES_EXPORTER=none "$bin" serve "$CONFIG_FILE" \
    </dev/null >>"$LOG_FILE" 2>&1 &
  pid=$!
  echo "$pid" >"$PID_FILE"
  local waited=0
  until port_answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      log "the registry exited during start-up; last lines of its log:"
      tail -n 30 "$LOG_FILE" >&2
      exit 1
    fi
    if ((waited >= START_TIMEOUT_SECONDS * 10)); then
      log "the registry did not answer on $HOST:$PORT within ${START_TIMEOUT_SECONDS}s"
      stop
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  log "registry $VERSION started (pid $pid) on http://$HOST:$PORT/, storage in $data"
}

stop() {
  local pid
  if pid="$(owned_pid)"; then
    kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    while kill -0 "$pid" 2>/dev/null; do
      if ((waited >= 100)); then
        log "the registry (pid $pid) ignored SIGTERM for 10s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
      waited=$((waited + 1))
    done
    log "registry (pid $pid) stopped"
  else
    log "no registry started by this script is running; nothing to stop"
  fi
  if [[ -f "$DATA_FILE" ]]; then
    local data
    data="$(cat "$DATA_FILE")"
    [[ "$data" == */blobstore-registry-* ]] && rm -rf "$data"
  fi
  rm -f "$PID_FILE" "$DATA_FILE"
}

case "${1:-}" in
  build) build ;;
  config)
    (($# == 3)) || die "usage: $0 config DIR PORT"
    config "$2" "$3"
    ;;
  start) start ;;
  stop) stop ;;
  *)
    echo "usage: $0 build|config DIR PORT|start|stop" >&2
    exit 2
    ;;
esac
