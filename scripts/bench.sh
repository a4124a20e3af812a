#!/usr/bin/env bash
# Runs the benchmark (release build) against a throwaway Postgres cluster,
# or the server in HEARTH_BENCH_DATABASE_URL. Arguments go to hearth-bench,
# e.g. `scripts/bench.sh --only query --runs 3`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --locked -p hearth-bench
bench=${CARGO_TARGET_DIR:-target}/release/hearth-bench
# The import figure's baseline, pinned, in a virtualenv of its own.
if [[ " $* " == *import* ]] && [ -z "${HEARTH_BENCH_HEALTHKIT_TO_SQLITE:-}" ]; then
  venv=${CARGO_TARGET_DIR:-target}/import-bench-venv
  [ -x "$venv/bin/healthkit-to-sqlite" ] || {
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet -r scripts/import-bench-requirements.txt
  }
  export HEARTH_BENCH_HEALTHKIT_TO_SQLITE="$venv/bin/healthkit-to-sqlite"
fi
if [ -n "${HEARTH_BENCH_DATABASE_URL:-}" ]; then
  exec "$bench" "$@"
fi
exec scripts/with-postgres.sh "$bench" "$@"
