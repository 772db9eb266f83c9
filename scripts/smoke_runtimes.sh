#!/usr/bin/env bash
# `deno task smoke:runtimes`: runs scripts/node_smoke.ts on Node 20 (through
# tsx) and on Bun, both from the npm registry at pinned versions, against
# the local Swift (started here with scripts/swift.sh, released at the end;
# one that already answers is shared, never stopped from under its owner).
#
# The package's files are copied into a throwaway consumer project, an ES
# module package (as JSR serves it to npm clients) with the `mongodb` npm
# package installed beside them at the version deno.lock resolves, so the
# repository gets no package.json and no node_modules.
#
# Exits non-zero when either runtime fails a check. SMOKE_NODE_VERSION picks
# another Node (e.g. 20.0.0, the oldest 20 it passes on).
set -euo pipefail

NODE_VERSION=${SMOKE_NODE_VERSION:-20.20.2}
TSX_VERSION=4.23.15
BUN_VERSION=1.4.5

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
MONGODB_VERSION=$(sed -nE 's/.*"npm:mongodb@6": "([0-9.]+)".*/\1/p' deno.lock | head -n 1)
MONGODB_VERSION=${MONGODB_VERSION:-6}
HASH_WASM_VERSION=$(sed -nE 's/.*"npm:hash-wasm@([0-9.]+)": "([0-9.]+)".*/\2/p' deno.lock | head -n 1)

work=$(mktemp -d)
swift_started=0
cleanup() {
  if [ "$swift_started" = 1 ]; then bash "$ROOT/scripts/swift.sh" stop || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

t0=$SECONDS
mkdir -p "$work/scripts"
cp -R mod.ts http.ts swift.ts s3.ts mongo.ts src "$work/"
cp scripts/node_smoke.ts "$work/scripts/"
printf '{ "private": true, "type": "module" }\n' >"$work/package.json"
(cd "$work" && npm install --no-save --no-package-lock --no-audit --no-fund \
  --loglevel=error "mongodb@$MONGODB_VERSION" "hash-wasm@$HASH_WASM_VERSION" >/dev/null)
# The runtimes themselves, fetched before the clock of each run starts.
npx -y "node@$NODE_VERSION" --version >/dev/null
npx -y -p "tsx@$TSX_VERSION" -- tsx --version >/dev/null
npx -y "bun@$BUN_VERSION" --version >/dev/null
echo "smoke: consumer project, mongodb@$MONGODB_VERSION, hash-wasm@$HASH_WASM_VERSION, node@$NODE_VERSION, tsx@$TSX_VERSION, bun@$BUN_VERSION ready in $((SECONDS - t0)) s"

bash scripts/swift.sh start
swift_started=1

status=0
echo "--- Node $NODE_VERSION (tsx $TSX_VERSION)"
(cd "$work" && npx -y -p "node@$NODE_VERSION" -p "tsx@$TSX_VERSION" -- tsx scripts/node_smoke.ts) || status=1
echo "--- Bun $BUN_VERSION"
(cd "$work" && npx -y "bun@$BUN_VERSION" scripts/node_smoke.ts) || status=1

if [ "$status" != 0 ]; then
  echo "smoke: FAILED on Node or Bun (see the FAIL lines above)" >&2
fi
echo "smoke: $((SECONDS - t0)) s in all"
exit "$status"
