# One multi-stage build of all binaries. (Images are not built on the development machines, which
# have no Docker engine; this file is kept in step with the workspace.)
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev clang && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY common common
COPY node node
COPY proxy proxy
COPY operator operator
COPY e2e e2e
RUN cargo build --release --locked -p pika-node -p pika-proxy -p pika-operator

FROM debian:bookworm-slim AS pika-node
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /data pika && mkdir -p /data && chown pika /data
COPY --from=build /src/target/release/pika-node /usr/local/bin/pika-node
COPY node/pika.conf.example /etc/pika/pika.conf
USER 10001
WORKDIR /data
EXPOSE 9221 9231
ENTRYPOINT ["/usr/local/bin/pika-node"]
CMD ["-c", "/etc/pika/pika.conf", "--bind", "0.0.0.0", "--db-path", "/data/db"]

FROM debian:bookworm-slim AS pika-proxy
RUN useradd --system --uid 10001 pika
COPY --from=build /src/target/release/pika-proxy /usr/local/bin/pika-proxy
USER 10001
EXPOSE 9221 9220
ENTRYPOINT ["/usr/local/bin/pika-proxy"]
CMD ["--listen", "0.0.0.0:9221", "--http-listen", "0.0.0.0:9220"]

FROM debian:bookworm-slim AS pika-operator
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 pika
COPY --from=build /src/target/release/pika-operator /usr/local/bin/pika-operator
USER 10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/pika-operator"]
CMD ["run", "--http-listen", "0.0.0.0:8080"]
