#!/usr/bin/env bash
# Usage: scripts/loadgen-smoke.sh [EXTRA LOADGEN ARGS...]
#
# Load smoke test: the mixed scenario for 30 s (LOADGEN_SMOKE_DURATION)
# against a server of its own, first on SQLite, then on Postgres (a fresh
# database on HEARTH_TEST_DATABASE_URL, or on a throwaway cluster from
# with-postgres.sh). Fails if any request failed. Then runs the k6 scripts
# in loadtest/ through the node shim against a spawned server. Loopback only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -z "${HEARTH_TEST_DATABASE_URL:-}" ]; then
  exec scripts/with-postgres.sh scripts/loadgen-smoke.sh "$@"
fi

duration=${LOADGEN_SMOKE_DURATION:-30s}

# Same target selection as the test run, so after the tests this builds
# nothing (`cargo run -p hearth-loadgen` would compile the dependencies a
# second time with another feature set), and it also builds the `hearth`
# binary that --spawn starts from beside the load generator.
cargo build --workspace --all-targets --locked
loadgen=${CARGO_TARGET_DIR:-target}/debug/hearth-loadgen

printf '\n--- mixed scenario, SQLite, %s\n' "$duration"
"$loadgen" --spawn --scenario mixed --duration "$duration" "$@"

printf '\n--- mixed scenario, Postgres, %s\n' "$duration"
"$loadgen" --spawn --scenario mixed --duration "$duration" \
  --database-url "$HEARTH_TEST_DATABASE_URL" "$@"

# The k6 scripts, where k6 is not installed: setup and a few iterations of
# every scenario under node with a k6 shim (loadtest/shim), against a server
# started here on a free loopback port. Checks the requests they make are
# accepted; measures nothing.
if command -v node >/dev/null 2>&1 && command -v curl >/dev/null 2>&1; then
  printf '\n--- k6 scripts under the node shim\n'
  hearth=${CARGO_TARGET_DIR:-target}/debug/hearth
  work=$(mktemp -d "${TMPDIR:-/tmp}/hearth-k6shim.XXXXXX")
  server_pid=
  # shellcheck disable=SC2317  # only called via trap
  stop_server() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
  }
  trap stop_server EXIT
  (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$work/key")
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export HEARTH_DATA_DIR=$work/data HEARTH_KDF_MEMORY_KIB=1024 HEARTH_KDF_ITERATIONS=1 HEARTH_LOG=warn
  "$hearth" init --passphrase-file "$work/key" >/dev/null
  HEARTH_LISTEN=127.0.0.1:$port HEARTH_UNLOCK_KEY_FILE=$work/key "$hearth" serve 2>"$work/log" &
  server_pid=$!
  for _ in $(seq 1 100); do
    if curl -sf --noproxy '*' "http://127.0.0.1:$port/readyz" >/dev/null; then break; fi
    sleep 0.1
  done
  for script in phone-sync dashboard mixed-day spike; do
    HEARTH_URL=http://127.0.0.1:$port HEARTH_PASSPHRASE=$(cat "$work/key") \
      node --import ./loadtest/shim/register.mjs loadtest/shim/run.mjs "loadtest/$script.js" 20
  done
else
  echo "loadgen-smoke: node or curl missing; k6 scripts not exercised" >&2
  if [ -n "${CI:-}" ]; then exit 1; fi
fi
