#!/usr/bin/env bash
# Usage: scripts/with-postgres.sh CMD [ARGS...]
#
# Runs CMD with HEARTH_TEST_DATABASE_URL pointing at a Postgres server. If the
# variable is already set, that server is used as is; otherwise a throwaway
# Postgres 15 cluster is started in a temp dir and torn down when CMD exits.
set -euo pipefail

if [ $# -eq 0 ]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

if [ -n "${HEARTH_TEST_DATABASE_URL:-}" ]; then
  exec "$@"
fi

# Locate the server binaries.
bindir=${HEARTH_PG_BINDIR:-}
if [ -z "$bindir" ]; then
  if [ -x /usr/lib/postgresql/15/bin/initdb ]; then
    bindir=/usr/lib/postgresql/15/bin
  elif command -v pg_config >/dev/null 2>&1; then
    bindir=$(pg_config --bindir)
  fi
fi
if [ ! -x "$bindir/initdb" ]; then
  echo "with-postgres: initdb not found (looked in '${bindir:-<none>}')." >&2
  echo "  Install the server: apt-get install postgresql-15 (or postgresql)," >&2
  echo "  or set HEARTH_PG_BINDIR to the directory containing initdb." >&2
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hearth-pg.XXXXXX")
data=$tmp/data

# initdb and postgres refuse to run as root, so as root the cluster is owned
# by and run as the `postgres` system user.
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$tmp"
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

# shellcheck disable=SC2317  # only called via trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -f "$data/postmaster.pid" ]; then
    as_pg "$bindir/pg_ctl" -D "$data" stop -m immediate >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Pick a free port: ask the kernel via python3, else probe random ports that
# nothing answers on. (Something could grab it before postgres binds; unlikely
# enough for a test helper.)
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    return
  fi
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  echo "with-postgres: no free port found" >&2
  return 1
}
port=$(free_port)

# --locale=C: don't depend on which locales the machine has generated.
as_pg "$bindir/initdb" -D "$data" -A trust -U postgres --no-sync -E UTF8 \
  --locale=C >"$tmp/initdb.log" 2>&1 || {
  cat "$tmp/initdb.log" >&2
  exit 1
}

# fsync stays on: durability tests depend on it.
cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$tmp'
max_connections = 300
shared_buffers = 128MB
fsync = on
synchronous_commit = on
CONF

# -W: don't let pg_ctl wait; readiness is checked with pg_isready below.
as_pg "$bindir/pg_ctl" -D "$data" -l "$tmp/postgres.log" -W start >/dev/null

for _ in $(seq 1 60); do
  if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; then
    break
  fi
  sleep 0.5
done
if ! "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; then
  echo "with-postgres: server did not become ready within 30s; log:" >&2
  cat "$tmp/postgres.log" >&2 || true
  exit 1
fi

export HEARTH_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
export HEARTH_PG_BINDIR=$bindir

# Not exec: the EXIT trap has to stop the cluster afterwards.
rc=0
"$@" || rc=$?
exit "$rc"
