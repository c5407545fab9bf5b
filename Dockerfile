# syntax=docker/dockerfile:1
# One image, one binary. Its entrypoint is `taskagent`: with no argument it
# runs all three services in one process on the SQLite file in /data; with
# a service's name it runs that one alone, as its own binary would
# (`tool-service`, `agent-service`, `gateway`: see docker-compose.yml and
# deploy/k8s); any other argument is a launcher command (`migrate`,
# `certs --out DIR`, `probe URL`, `token --user U`).
#
# Dependencies compile in a layer of their own (cargo-chef): editing the
# code rebuilds only the workspace's crates. Runs as uid 10001 (numeric, so
# that Kubernetes can check runAsNonRoot), with a read-only root file system
# in mind: it writes only to /data (a volume) and /certs.

FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version ~0.1
WORKDIR /src

# What the dependencies are, from the manifests and the lock file only.
FROM chef AS plan
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=plan /src/recipe.json recipe.json
# This layer is cached until Cargo.toml or Cargo.lock change.
RUN cargo chef cook --release --locked --recipe-path recipe.json --package taskagent --bin taskagent
COPY . .
RUN cargo build --release --locked --package taskagent --bin taskagent \
 && install -D target/release/taskagent /out/taskagent

# grpc_health_probe for docker compose's health checks (Kubernetes has its
# own gRPC probes).
FROM golang:1.24-bookworm AS probe
RUN GOBIN=/out go install github.com/grpc-ecosystem/grpc-health-probe@v0.4.38

FROM debian:bookworm-slim
# TLS roots are built into the binary (rustls + webpki-roots): no ca-certificates needed.
RUN groupadd --system --gid 10001 taskagent \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /data taskagent \
 && install -d -o 10001 -g 10001 -m 0700 /data /certs
COPY --from=build /out/taskagent /usr/local/bin/taskagent
COPY --from=probe /out/grpc-health-probe /usr/local/bin/grpc_health_probe
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# The all-in-one process keeps its own services on loopback; only the
# gateway is reached from outside.
ENV DATABASE_URL=sqlite:///data/taskagent.db \
    GATEWAY_ADDR=0.0.0.0:8000 \
    LOG_FORMAT=json
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s CMD ["taskagent", "probe", "http://127.0.0.1:8000/health"]
ENTRYPOINT ["taskagent"]
CMD []
