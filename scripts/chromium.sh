#!/usr/bin/env bash
# Headless Chromium for the real-browser tests (tests/browser_test.ts).
#
#   bash scripts/chromium.sh start   # install Debian's chromium if missing
#   bash scripts/chromium.sh stop    # nothing to stop (each test ends its own browser)
#
# `start` is idempotent: when the browser is there (/usr/bin/chromium, or
# the executable CHROMIUM_BIN names) it says which and exits 0 at once.
# Otherwise it installs Debian's `chromium` package with apt-get (root only;
# about half a minute and 0.3 to 0.5 GB), its output in .state/chromium/
# (git-ignored). Installs are serialized by a lock file, and apt-get waits
# for a dpkg lock held by another install (swift.sh's, say) instead of
# failing. Where it cannot install (not root, no apt-get), it says why and
# exits 1: `deno task test` then fails in CI (CI=true) and, on a laptop,
# skips the browser suite with a message.
#
# Nothing is started here: the tests launch one browser per case, on a
# temporary profile, reachable only from 127.0.0.1, and end it by its pid.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly STATE=$ROOT/.state/chromium
readonly BIN=${CHROMIUM_BIN:-/usr/bin/chromium}

log() { echo "chromium.sh: $*" >&2; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

installed() { [[ -x "$BIN" ]]; }

version() { "$BIN" --version 2>/dev/null | head -n 1 || true; }

install() {
  if [[ -n "${CHROMIUM_BIN:-}" ]]; then
    log "CHROMIUM_BIN=$CHROMIUM_BIN is not an executable file"
    return 1
  fi
  if ! command -v apt-get >/dev/null; then
    log "no $BIN, and no apt-get to install it: install Chromium and set CHROMIUM_BIN to its executable"
    return 1
  fi
  if [[ "$(id -u)" != 0 ]]; then
    log "no $BIN; installing it needs root: sudo apt-get install chromium (or set CHROMIUM_BIN)"
    return 1
  fi
  mkdir -p "$STATE"
  exec 9>"$STATE/lock"
  flock 9
  if installed; then return 0; fi # another run installed it meanwhile
  local t0
  t0=$(date +%s%N)
  log "installing Debian's chromium (half a minute or so)..."
  export DEBIAN_FRONTEND=noninteractive
  local apt=(apt-get -q -o DPkg::Lock::Timeout=300)
  if ! "${apt[@]}" update >"$STATE/apt.log" 2>&1 ||
    ! "${apt[@]}" install -y --no-install-recommends chromium >>"$STATE/apt.log" 2>&1; then
    tail -n 30 "$STATE/apt.log" >&2
    log "apt-get failed; its whole output is in ${STATE#"$ROOT"/}/apt.log"
    return 1
  fi
  installed || {
    log "the chromium package installed no $BIN"
    return 1
  }
  log "installed $(version) in $(ms_since "$t0") ms"
}

case "${1:-}" in
start)
  if installed; then
    log "$(version) at $BIN"
  else
    install
  fi
  ;;
stop) ;;
*)
  echo "usage: bash scripts/chromium.sh start|stop" >&2
  exit 2
  ;;
esac
