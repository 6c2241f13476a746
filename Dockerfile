# syntax=docker/dockerfile:1
# portcullis container image.
#
#   docker build -t portcullis .
#   docker run --rm -p 8080:8080 -v $PWD/portcullis.toml:/etc/portcullis/portcullis.toml:ro portcullis
#
# Build stage: the dependency graph is compiled against a dummy crate first, so editing src/
# does not rebuild the dependencies (that layer is reused while Cargo.toml/Cargo.lock stay the same).
FROM rust:1-slim-bookworm AS build
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src
COPY src ./src
# make sure cargo sees the real sources as newer than the dummy build
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked \
 && strip target/release/portcullis \
 && cp target/release/portcullis /portcullis

# Runtime: glibc (same Debian release as the build stage) + CA certificates for the
# provider's HTTPS endpoints; nothing else.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 portcullis \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin portcullis \
 && mkdir -p /etc/portcullis
COPY --from=build /portcullis /usr/local/bin/portcullis
USER 65532:65532
# 8080 HTTP, 8443 HTTPS ([server.tls]), 9090 admin (/healthz, /readyz, /metrics)
EXPOSE 8080 8443 9090
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["run", "--config", "/etc/portcullis/portcullis.toml"]
