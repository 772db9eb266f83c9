#!/usr/bin/env bash
# Local OpenStack Swift + Keystone for the SwiftBackend tests, on 127.0.0.1.
#
#   bash scripts/swift.sh start   # install what is missing, start, wait until all answer
#   bash scripts/swift.sh stop    # stop exactly the processes `start` started
#
# One node, one replica, all data under .state/swift/ (git-ignored):
#   memcached               127.0.0.1:11311  (tempauth tokens, authtoken cache)
#   object/container/account 127.0.0.1:6310/6311/6312
#   proxy, tempauth (v1)    http://127.0.0.1:8390/auth/v1.0   user test:tester, key testing
#   Keystone (v3, SQLite)   http://127.0.0.1:8392/v3          user tester, password testing,
#                                                             project test, domain Default
#   proxy, Keystone auth    http://127.0.0.1:8391/v1/AUTH_<project id> (from the catalog)
#   proxy, S3 API + TempURL http://127.0.0.1:8395/BUCKET/KEY  (s3api, path-style; SigV4
#                                                             access key test:tester, secret
#                                                             testing, region us-east-1;
#                                                             tempurl; tempauth's /auth/v1.0)
#
# `start` when all already answer says so and exits 0 without taking
# ownership; when only the S3 proxy is missing from servers it started
# (an older start), it adds that one. The servers `start` launched belong
# to the processes that use them: the caller of that `start` (this script's
# parent, e.g. `deno task test`), plus the caller of any later `start` that
# found them answering.
# `stop` releases its caller; the servers stop when no user is left alive
# (so one test run never pulls Swift from under another), or at once with
# SWIFT_STOP_FORCE=1. Servers this script did not start are never stopped.
# No systemd here: the servers run in the background with their pids in
# .state/swift/pid/ and their logs in .state/swift/log/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF=$ROOT/scripts/swift
STATE=$ROOT/.state/swift
KSTATE=$STATE/keystone
PIDS=$STATE/pid
LOGS=$STATE/log
USERS=$STATE/users

MEMCACHED_PORT=11311
OBJECT_PORT=6310
CONTAINER_PORT=6311
ACCOUNT_PORT=6312
PROXY_PORT=8390
KS_PROXY_PORT=8391
KEYSTONE_PORT=8392
S3_PORT=8395
V1_AUTH_URL=http://127.0.0.1:$PROXY_PORT/auth/v1.0
S3_URL=http://127.0.0.1:$S3_PORT
KEYSTONE_URL=http://127.0.0.1:$KEYSTONE_PORT
# Test-only credentials of a throwaway local service.
ADMIN_PASSWORD=adminpass
START_TIMEOUT_S=120
PY=/usr/bin/python3 # Swift's modules live in the system python only

ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
log() { echo "swift.sh: $*"; }

# --- probes -----------------------------------------------------------------

v1_answers() {
  curl -sf -o /dev/null -m 3 -H 'X-Auth-User: test:tester' \
    -H 'X-Auth-Key: testing' "$V1_AUTH_URL"
}

# Prints "<token> <object-store public URL>" for tester in project test.
keystone_login() {
  local headers body token url
  headers=$(mktemp) body=$(mktemp)
  curl -sf -m 5 -D "$headers" -o "$body" -H 'Content-Type: application/json' \
    -d '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"tester","domain":{"name":"Default"},"password":"testing"}}},"scope":{"project":{"name":"test","domain":{"name":"Default"}}}}}' \
    "$KEYSTONE_URL/v3/auth/tokens" || true
  token=$(tr -d '\r' <"$headers" | awk -F': ' 'tolower($1)=="x-subject-token"{print $2}')
  url=$($PY -c '
import json, sys
for s in json.load(open(sys.argv[1]))["token"].get("catalog", []):
    if s["type"] == "object-store":
        print([e["url"] for e in s["endpoints"] if e["interface"] == "public"][0])
' "$body" 2>/dev/null) || true
  rm -f "$headers" "$body"
  [ -n "$token" ] && [ -n "$url" ] && echo "$token $url"
}

keystone_answers() {
  local login
  login=$(keystone_login 2>/dev/null) || return 1
  curl -sf -o /dev/null -m 3 -H "X-Auth-Token: ${login%% *}" "${login#* }"
}

both_answer() { v1_answers && keystone_answers; }

# The S3/TempURL proxy: its health check answers "OK" (the pipeline, s3api
# included, loaded).
s3_answers() {
  [ "$(curl -sf -m 3 "$S3_URL/healthcheck" 2>/dev/null)" = OK ]
}

# --- processes ----------------------------------------------------------------

# start_bg NAME CMD...: runs CMD in the background, logging to log/NAME.log,
# and records its pid plus a marker of its command line, so that `stop`
# never signals a process that merely reused the pid.
start_bg() {
  local name=$1
  shift
  nohup "$@" >"$LOGS/$name.log" 2>&1 </dev/null 9>&- &
  printf '%s\n%s\n' "$!" "${*:2}" >"$PIDS/$name.pid"
}

# Whether the pid file's process is alive and still the one we started: its
# command line ends with the arguments we gave (the program itself may show
# as its interpreter, e.g. python3 /usr/bin/swift-proxy-server ...).
pid_is_ours() {
  local pid args cmdline
  pid=$(sed -n 1p "$1") args=$(sed -n 2p "$1")
  [ -r "/proc/$pid/cmdline" ] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | sed 's/ $//')
  [[ -n "$cmdline" && "$cmdline" == *" $args" ]]
}

# Whether a process we just started is still running (not yet exec'd
# counts: its command line is not the final one yet; a zombie does not).
alive() {
  [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"
}

# stop_one PIDFILE: stops its process if it is still ours, then drops the file.
stop_one() {
  local f=$1 pid name
  [ -f "$f" ] || return 0
  name=$(basename "$f" .pid) pid=$(sed -n 1p "$f")
  if pid_is_ours "$f"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do pid_is_ours "$f" || break; sleep 0.1; done
    if pid_is_ours "$f"; then kill -9 "$pid" 2>/dev/null || true; fi
    log "stopped $name ($pid)"
  fi
  rm -f "$f"
}

stop_started() {
  local f
  for f in "$PIDS"/*.pid; do stop_one "$f"; done
  rm -f "$USERS"
}

# Whether the servers answering are the ones our pid files name.
ours_running() {
  [ -f "$PIDS/proxy-tempauth.pid" ] && pid_is_ours "$PIDS/proxy-tempauth.pid"
}

# Prints the users still alive, other than this script's caller.
other_users() {
  local pid
  [ -f "$USERS" ] || return 0
  while read -r pid; do
    if [ -n "$pid" ] && [ "$pid" != "$PPID" ] && kill -0 "$pid" 2>/dev/null; then
      echo "$pid"
    fi
  done <"$USERS"
}

tail_logs() {
  local f
  for f in "$LOGS"/*.log; do
    [ -s "$f" ] || continue
    echo "----- ${f#"$ROOT"/} (last 15 lines)" >&2
    tail -n 15 "$f" >&2
  done
}

# --- install ----------------------------------------------------------------

install_missing() {
  if command -v swift-proxy-server >/dev/null && command -v memcached >/dev/null &&
    command -v keystone-manage >/dev/null && command -v uwsgi >/dev/null &&
    command -v curl >/dev/null &&
    $PY -c 'import keystonemiddleware.auth_token' 2>/dev/null &&
    $PY -c 'import swift.common.middleware.s3api, swift.common.middleware.tempurl' 2>/dev/null; then
    return
  fi
  local t
  t=$(date +%s%N)
  log "installing Swift, Keystone and memcached (Debian packages)..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >"$LOGS/apt.log" 2>&1
  # swift brings python3-swift: its s3api and tempurl middlewares too
  if ! apt-get install -y -q --no-install-recommends \
    swift swift-proxy swift-account swift-container swift-object memcached \
    keystone python3-keystonemiddleware curl >>"$LOGS/apt.log" 2>&1; then
    tail -n 30 "$LOGS/apt.log" >&2
    exit 1
  fi
  log "installed in $(ms_since "$t") ms"
}

# --- configuration ------------------------------------------------------------

render() { # template destination
  sed -e "s#@STATE@#$STATE#g" -e "s#@KSTATE@#$KSTATE#g" -e "s#@USER@#$(id -un)#g" \
    -e "s#@MEMCACHED_PORT@#$MEMCACHED_PORT#g" -e "s#@OBJECT_PORT@#$OBJECT_PORT#g" \
    -e "s#@CONTAINER_PORT@#$CONTAINER_PORT#g" -e "s#@ACCOUNT_PORT@#$ACCOUNT_PORT#g" \
    -e "s#@PROXY_PORT@#$PROXY_PORT#g" -e "s#@KS_PROXY_PORT@#$KS_PROXY_PORT#g" \
    -e "s#@KEYSTONE_PORT@#$KEYSTONE_PORT#g" -e "s#@S3_PORT@#$S3_PORT#g" "$1" >"$2"
}

configure_swift() {
  mkdir -p "$STATE/etc" "$STATE/srv/d1"
  local f
  for f in swift.conf account-server.conf container-server.conf \
    object-server.conf proxy-tempauth.conf proxy-keystone.conf proxy-s3api.conf; do
    render "$CONF/$f" "$STATE/etc/$f"
  done
  if [ ! -f "$STATE/etc/object.ring.gz" ]; then
    $PY "$CONF/make_rings.py" "$STATE/etc" "$ACCOUNT_PORT" "$CONTAINER_PORT" "$OBJECT_PORT"
  fi
}

# --- Keystone -------------------------------------------------------------------

keystone_token() { # user project password
  curl -sf -m 10 -D - -o /dev/null -H 'Content-Type: application/json' \
    -d "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"$1\",\"domain\":{\"id\":\"default\"},\"password\":\"$3\"}}},\"scope\":{\"project\":{\"name\":\"$2\",\"domain\":{\"id\":\"default\"}}}}}" \
    "$KEYSTONE_URL/v3/auth/tokens" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-subject-token"{print $2}'
}

json_id() { $PY -c "import json,sys; d=json.load(sys.stdin)['$1']; print((d[0] if isinstance(d, list) else d)['id'])"; }

keystone_post() { # admin-token path json
  curl -sf -m 10 -H "X-Auth-Token: $1" -H 'Content-Type: application/json' -d "$3" "$KEYSTONE_URL/v3/$2"
}

# Creates the database, keys and admin (first start only).
keystone_bootstrap() {
  local km="keystone-manage --config-file $KSTATE/keystone.conf" repo k
  $km db_sync
  # WAL: without it, writes from uwsgi fail with "database is locked"
  $PY -c "import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute('PRAGMA journal_mode=WAL')" "$KSTATE/keystone.db"
  # What fernet_setup and credential_setup write (files 0 = staged and
  # 1 = primary, each a urlsafe-base64 32-byte key), without their ~5 s of
  # python start-up.
  for repo in fernet-keys credential-keys; do
    mkdir -p -m 700 "$KSTATE/$repo"
    for k in 0 1; do
      (umask 077 && $PY -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())' >"$KSTATE/$repo/$k")
    done
  done
  $km bootstrap --bootstrap-password "$ADMIN_PASSWORD" \
    --bootstrap-username admin --bootstrap-project-name admin \
    --bootstrap-role-name admin --bootstrap-region-id RegionOne \
    --bootstrap-admin-url "$KEYSTONE_URL/v3/" --bootstrap-internal-url "$KEYSTONE_URL/v3/" \
    --bootstrap-public-url "$KEYSTONE_URL/v3/"
}

# Users, projects, roles and Swift's endpoint (first start only).
keystone_register() {
  local at admin_role member_role service_project test_project swift_user test_user service iface
  at=$(keystone_token admin admin "$ADMIN_PASSWORD")
  admin_role=$(curl -sf -H "X-Auth-Token: $at" "$KEYSTONE_URL/v3/roles?name=admin" | json_id roles)
  member_role=$(curl -sf -H "X-Auth-Token: $at" "$KEYSTONE_URL/v3/roles?name=member" | json_id roles)
  service_project=$(keystone_post "$at" projects '{"project":{"name":"service","domain_id":"default"}}' | json_id project)
  test_project=$(keystone_post "$at" projects '{"project":{"name":"test","domain_id":"default"}}' | json_id project)
  swift_user=$(keystone_post "$at" users '{"user":{"name":"swift","domain_id":"default","password":"swiftpass"}}' | json_id user)
  test_user=$(keystone_post "$at" users '{"user":{"name":"tester","domain_id":"default","password":"testing"}}' | json_id user)
  curl -sf -X PUT -H "X-Auth-Token: $at" "$KEYSTONE_URL/v3/projects/$service_project/users/$swift_user/roles/$admin_role"
  curl -sf -X PUT -H "X-Auth-Token: $at" "$KEYSTONE_URL/v3/projects/$test_project/users/$test_user/roles/$member_role"
  service=$(keystone_post "$at" services '{"service":{"type":"object-store","name":"swift"}}' | json_id service)
  for iface in public internal admin; do
    keystone_post "$at" endpoints "{\"endpoint\":{\"service_id\":\"$service\",\"interface\":\"$iface\",\"region_id\":\"RegionOne\",\"url\":\"http://127.0.0.1:$KS_PROXY_PORT/v1/AUTH_%(project_id)s\"}}" >/dev/null
  done
  touch "$KSTATE/registered"
}

# Runs in the background while Swift starts: bootstrap, uwsgi, registration.
keystone_up() {
  local t fresh=0
  t=$(date +%s%N)
  mkdir -p "$KSTATE"
  render "$CONF/keystone.conf" "$KSTATE/keystone.conf"
  render "$CONF/keystone-uwsgi.ini" "$KSTATE/keystone-uwsgi.ini"
  if [ ! -f "$KSTATE/registered" ]; then
    # a half-made database from an interrupted first start: begin again
    rm -rf "$KSTATE/keystone.db"* "$KSTATE/fernet-keys" "$KSTATE/credential-keys"
    keystone_bootstrap >>"$LOGS/keystone-manage.log" 2>&1
    fresh=1
  fi
  start_bg keystone uwsgi --ini "$KSTATE/keystone-uwsgi.ini"
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until curl -sf -o /dev/null -m 2 "$KEYSTONE_URL/v3"; do
    if ! alive "$(sed -n 1p "$PIDS/keystone.pid")" || [ $SECONDS -ge $deadline ]; then
      echo "keystone did not answer" >&2
      return 1
    fi
    sleep 0.2
  done
  if [ $fresh = 1 ]; then keystone_register >>"$LOGS/keystone-manage.log" 2>&1; fi
  log "keystone answering $(ms_since "$t") ms after start (first start: $fresh)"
}

# --- the S3 proxy ---------------------------------------------------------------

# Starts the S3/TempURL proxy on the running storage servers and memcached,
# unless something else already answers on its port (then says so: its
# users' probes tell whether it serves).
start_s3_proxy() {
  if s3_answers; then
    log "warning: something this script did not start answers at $S3_URL; the S3 proxy is not started here"
    return 0
  fi
  start_bg proxy-s3api swift-proxy-server "$STATE/etc/proxy-s3api.conf" -v
}

# wait_s3 DEADLINE: waits (until $SECONDS reaches DEADLINE) for the S3 proxy
# start_s3_proxy started, if it started one, to answer; 1 if it exits first.
wait_s3() {
  [ -f "$PIDS/proxy-s3api.pid" ] || return 0
  local pid
  pid=$(sed -n 1p "$PIDS/proxy-s3api.pid")
  until s3_answers; do
    if ! alive "$pid" || [ $SECONDS -ge "$1" ]; then return 1; fi
    sleep 0.2
  done
}

# Adds the S3 proxy to servers of ours that an older start left without it.
# On failure it stops only that proxy: the rest has users.
add_s3_proxy() {
  local t0
  t0=$(date +%s%N)
  install_missing
  stop_one "$PIDS/proxy-s3api.pid" # a leftover that no longer answers
  render "$CONF/proxy-s3api.conf" "$STATE/etc/proxy-s3api.conf"
  start_s3_proxy
  if ! wait_s3 $((SECONDS + START_TIMEOUT_S)); then
    echo "swift.sh: the S3 proxy did not answer at $S3_URL" >&2
    tail -n 15 "$LOGS/proxy-s3api.log" >&2 || true
    stop_one "$PIDS/proxy-s3api.pid"
    return 1
  fi
  log "S3 proxy added, answering $(ms_since "$t0") ms after start ($S3_URL)"
}

# --- commands -------------------------------------------------------------------

start() {
  if both_answer 2>/dev/null; then
    if ours_running; then
      if ! s3_answers; then add_s3_proxy || return 1; fi
      echo "$PPID" >>"$USERS"
      log "Swift ($V1_AUTH_URL, $S3_URL) and Keystone ($KEYSTONE_URL/v3) already answer; not started here (this caller now shares them)"
    else
      log "Swift ($V1_AUTH_URL) and Keystone ($KEYSTONE_URL/v3) already answer; not started here, left to whoever started them"
      s3_answers || log "warning: no S3 proxy answers at $S3_URL"
    fi
    return 0
  fi
  mkdir -p "$PIDS" "$LOGS"
  install_missing
  stop_started # leftovers of an earlier start that no longer answers
  local t0
  t0=$(date +%s%N)
  configure_swift
  echo "$PPID" >"$USERS"
  keystone_up &
  local keystone_job=$!
  start_bg memcached memcached -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 64 -u "$(id -un)"
  local s
  for s in account container object; do
    # -v: log to stderr (there is no syslog here)
    start_bg "$s" "swift-$s-server" "$STATE/etc/$s-server.conf" -v
  done
  start_bg proxy-tempauth swift-proxy-server "$STATE/etc/proxy-tempauth.conf" -v
  start_bg proxy-keystone swift-proxy-server "$STATE/etc/proxy-keystone.conf" -v
  start_s3_proxy
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until v1_answers 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then fail "tempauth proxy did not answer within ${START_TIMEOUT_S} s"; fi
    sleep 0.2
  done
  log "Swift (tempauth) answering $(ms_since "$t0") ms after start"
  if ! wait_s3 "$deadline"; then fail "S3 proxy did not answer at $S3_URL/healthcheck"; fi
  log "Swift (S3 API) answering $(ms_since "$t0") ms after start"
  if ! wait "$keystone_job"; then fail "Keystone did not come up"; fi
  until keystone_answers 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then fail "Keystone-auth proxy did not answer within ${START_TIMEOUT_S} s"; fi
    sleep 0.2
  done
  log "Swift and Keystone answering $(ms_since "$t0") ms after start ($V1_AUTH_URL, $S3_URL, $KEYSTONE_URL/v3)"
}

fail() {
  echo "swift.sh: $*" >&2
  tail_logs
  stop_started
  exit 1
}

stop() {
  if [ "${SWIFT_STOP_FORCE:-0}" != 1 ]; then
    local others
    others=$(other_users)
    if [ -n "$others" ]; then
      echo "$others" >"$USERS"
      log "left running for $(echo "$others" | wc -l) other live user(s) (pids $(echo $others)); SWIFT_STOP_FORCE=1 stops it anyway"
      return 0
    fi
  fi
  stop_started
}

# one start or stop at a time (two test runs may start together)
mkdir -p "$STATE"
exec 9>"$STATE/lock"
flock 9

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
