#!/usr/bin/env bash
# Usage: scripts/loadgen-smoke.sh [EXTRA LOADGEN ARGS...]
#
# Load smoke test: the mixed scenario for 30 s (LOADGEN_SMOKE_DURATION)
# against a server of its own, first on SQLite, then on Postgres (a fresh
# database on HEARTH_TEST_DATABASE_URL, or on a throwaway cluster from
# with-postgres.sh). Fails if any request failed. Loopback only.
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
