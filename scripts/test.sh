#!/usr/bin/env bash
# Runs the whole test suite against a throwaway Postgres (see with-postgres.sh).
# Extra arguments are passed to the test runner, e.g. `scripts/test.sh consent`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -n "${CI:-}" ]; then
  export CARGO_TERM_COLOR=never
fi

# Re-run under with-postgres.sh so one cluster serves all the runs below.
if [ -z "${HEARTH_TEST_DATABASE_URL:-}" ]; then
  exec scripts/with-postgres.sh scripts/test.sh "$@"
fi

# The load generator's tests spawn the server binary that this build makes
# (the server's own integration tests need it too). Naming it here keeps them
# from running cargo themselves: a cargo started from inside a test process
# sees a different environment and rebuilds the whole workspace.
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
export HEARTH_BIN="${HEARTH_BIN:-$target_dir/debug/hearth}"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --no-fail-fast "$@"
else
  cargo test --workspace --all-targets --no-fail-fast "$@"
fi

# Neither runner above includes doc tests; run them only if any exist.
if grep -rqE --include='*.rs' '^\s*(///|//!).*```' services; then
  cargo test --workspace --doc
fi
