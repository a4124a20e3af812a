# Hearth server image.
#
#   docker build -t hearth .                     # compiles Hearth in a Rust image
#   cargo build --release -p hearth --locked
#   docker build --target prebuilt -t hearth .   # takes target/release/hearth
#
# Both targets are the `runtime` stage plus the binary; they differ only in
# where the binary comes from. `prebuilt` suits a Debian bookworm (or older
# glibc) host that already builds Hearth, or has no Rust image to pull.
# BuildKit (Docker's default builder with the buildx plugin) builds only the
# stages a target needs. Docker's classic builder builds every stage up to
# the target: the order below lets it build `prebuilt` without the Rust
# image, but for `server` it then needs target/release/hearth as well.
ARG RUST_VERSION=1.95

# Everything but the binary.
FROM debian:bookworm-slim AS runtime

# A fixed uid/gid, so files on volumes and secrets can be owned ahead of time.
ARG HEARTH_UID=10001
RUN groupadd --system --gid "${HEARTH_UID}" hearth \
    && useradd --system --uid "${HEARTH_UID}" --gid hearth --home-dir /data \
        --no-create-home --shell /usr/sbin/nologin hearth \
    && mkdir -p /data \
    && chown hearth:hearth /data \
    && chmod 0700 /data

# Inside the container Hearth listens on every interface; publish the port on
# loopback only (docker-compose.yml does) and put TLS in front to expose it.
ENV HEARTH_LISTEN=0.0.0.0:7380 \
    HEARTH_DATA_DIR=/data \
    HEARTH_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 7380
USER ${HEARTH_UID}:${HEARTH_UID}

# No curl in the image: bash's /dev/tcp speaks just enough HTTP for /healthz.
# Probed every 5 s, so `docker compose up --wait` returns soon after start.
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/7380 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && grep -q '\"status\":\"ok\"' <&3"]

ENTRYPOINT ["hearth"]
CMD ["serve"]

# The runtime with a binary built on the host (.dockerignore lets in only
# target/release/hearth from target/).
FROM runtime AS prebuilt
COPY target/release/hearth /usr/local/bin/hearth

# The workspace's manifests and lock file with empty sources: the input of
# the dependency layer below. It changes only when a manifest or the lock
# file does, so Docker's cache keeps the dependency build across code edits.
FROM rust:${RUST_VERSION}-bookworm AS skeleton
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY services services
RUN mkdir /skeleton \
    && cp Cargo.toml Cargo.lock /skeleton/ \
    && for manifest in services/*/Cargo.toml; do \
        dir=$(dirname "$manifest"); \
        mkdir -p "/skeleton/$dir/src"; \
        cp "$manifest" "/skeleton/$dir/"; \
        echo 'fn main() {}' > "/skeleton/$dir/src/main.rs"; \
        touch "/skeleton/$dir/src/lib.rs"; \
    done

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src

# Dependencies first, in their own layer.
COPY --from=skeleton /skeleton ./
RUN cargo build --release --locked -p hearth

# Then the server itself (migrations are compiled into the binary).
COPY migrations migrations
COPY services services
RUN touch services/hearth/src/main.rs services/hearth/src/lib.rs \
    && cargo build --release --locked -p hearth \
    && install -m 0755 target/release/hearth /usr/local/bin/hearth

# The default target: the runtime with the binary compiled above.
FROM runtime AS server
COPY --from=builder /usr/local/bin/hearth /usr/local/bin/hearth
