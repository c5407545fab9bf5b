# syntax=docker/dockerfile:1
# One image with every taskagent binary: `taskagent` (all three services in
# one process, the default), `tool-service`, `agent-service` and `gateway`
# for separate containers (see docker-compose.yml), plus grpc_health_probe for
# the gRPC services' health checks. Runs as a non-root user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --workspace --bins \
 && mkdir /out \
 && cp target/release/taskagent target/release/tool-service target/release/agent-service target/release/gateway /out/

FROM golang:1.24-bookworm AS probe
RUN GOBIN=/out go install github.com/grpc-ecosystem/grpc-health-probe@v0.4.38

FROM debian:bookworm-slim
# TLS roots are built into the binaries (rustls + webpki-roots): no ca-certificates needed.
RUN useradd --system --uid 10001 --create-home --home-dir /data taskagent \
    && install -d -o taskagent -m 0700 /certs
COPY --from=build /out/ /usr/local/bin/
COPY --from=probe /out/grpc-health-probe /usr/local/bin/grpc_health_probe
USER taskagent
WORKDIR /data
# The launcher's own services stay on loopback; only the gateway is reached
# from outside (compose runs the services apart, each on 0.0.0.0 with JWT_SECRET).
ENV DATABASE_URL=sqlite:///data/taskagent.db \
    GATEWAY_ADDR=0.0.0.0:8000 \
    LOG_FORMAT=json
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s CMD ["taskagent", "probe", "http://127.0.0.1:8000/health"]
CMD ["taskagent"]
