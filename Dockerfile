# Multi-stage build of the HTTP service.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p marketking-http --bin marketking-http

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/marketking-http /usr/local/bin/marketking-http
USER nobody
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/marketking-http"]
