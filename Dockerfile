# syntax=docker/dockerfile:1.7
# portcullis container image.
#
#   docker build -t portcullis:dev \
#     --build-arg GIT_COMMIT="$(git rev-parse HEAD)" \
#     --build-arg SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)" .
#   docker run --rm -p 8080:8080 -v $PWD/portcullis.toml:/etc/portcullis/portcullis.toml:ro portcullis:dev
#
# (The build context has no .git (.dockerignore), so `portcullis version` takes the commit and
# date from those two build arguments; without them it says "commit unknown" and the build date.)
#
# Base images are pinned to exact tags: the MSRV toolchain (Cargo.toml rust-version) on Debian
# 12, and the same Debian release at runtime (same glibc). To pin by digest as well, append
# `@sha256:…` from `docker buildx imagetools inspect IMAGE:TAG`; .github/dependabot.yml proposes
# updates of both.
ARG RUST_IMAGE=rust:1.88.0-slim-bookworm
ARG RUNTIME_IMAGE=debian:12.11-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /build
# The registry and target/ live in BuildKit cache mounts: a rebuild after editing src/
# recompiles only portcullis, not its ~200 dependencies, and the image layer holds no cache.
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
ARG GIT_COMMIT=""
ARG SOURCE_DATE_EPOCH=""
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/build/target,sharing=locked \
    PORTCULLIS_GIT_COMMIT="$GIT_COMMIT" SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" \
      cargo build --release --locked --bin portcullis \
 && strip target/release/portcullis \
 && cp target/release/portcullis /portcullis \
 && /portcullis version

# Runtime: glibc + CA certificates for the providers' HTTPS endpoints; nothing else (no shell
# tools are needed: the HEALTHCHECK is the binary itself).
FROM ${RUNTIME_IMAGE}
ARG GIT_COMMIT=""
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="portcullis" \
      org.opencontainers.image.description="Authenticating reverse proxy: OpenID Connect login, bearer tokens and role rules in front of unmodified apps" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.source="https://github.com/portcullis/portcullis"
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
# Ready = /readyz answers 200 (providers' discovery and keys loaded, Redis reachable). A config
# whose admin_listen is not 0.0.0.0:9090/127.0.0.1:9090 sets PORTCULLIS_HEALTH_URL.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/portcullis", "health", "--timeout", "3s"]
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["run", "--config", "/etc/portcullis/portcullis.toml"]
