# cdc-relay's container image (README "Deploy to EKS"). Two stages: a release build with the C
# libraries librdkafka links (OpenSSL, Cyrus SASL), then a slim Debian runtime with only their
# shared libraries and CA certificates, running as a non-root user. Run it with a read-only root
# filesystem (k8s/base/deployment.yaml does; `docker run --read-only`): it writes nothing outside
# /tmp. Linted by hadolint and checked by tests/deploy.rs in make test.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsasl2-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin cdc-relay \
    && install -m 0755 target/release/cdc-relay /cdc-relay

FROM debian:${DEBIAN_RELEASE}-slim
# The runtime libraries of the build's -dev packages; unpinned on purpose, so that a rebuild
# picks up Debian's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 libsasl2-2 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 relay \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin relay
COPY --from=build /cdc-relay /usr/local/bin/cdc-relay
USER 10001:10001
# The admin port: /health, /ready, /metrics, /status.
EXPOSE 9090
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/cdc-relay", "probe", "http://127.0.0.1:9090/health"]
ENTRYPOINT ["/usr/local/bin/cdc-relay"]
CMD ["run", "--config", "/etc/cdc-relay/config.toml"]
