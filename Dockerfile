# syntax=docker/dockerfile:1
# kiln in a container: `docker build -t kiln .`, then e.g.
#   docker run --rm -p 8080:8080 -v "$PWD/.kiln:/var/lib/kiln/.kiln" kiln \
#       serve models:/churn@champion --host 0.0.0.0
# Kubernetes manifests that run this image: `kiln deploy k8s <model>` (docs/deploy.md).

# Build stage: the Rust toolchain of `rust-version` in Cargo.toml. The slim image brings the C
# compiler that bundled SQLite, zstd and ring need, and the CA bundle copied below.
FROM rust:1.89.0-slim-bookworm AS build
WORKDIR /src
COPY . .
# The README's install step, verbatim (tests/python/test_deploy.py keeps the two equal).
RUN cargo build --release --locked -p kiln

# Runtime stage: the same Debian release as the build stage (glibc), no package manager runs.
FROM debian:bookworm-slim
# TLS roots for S3 and HTTPS tracking URIs, without installing ca-certificates.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /src/target/release/kiln /usr/local/bin/kiln
# A fixed non-root uid/gid; `kiln deploy k8s` runs the pod as the same ids.
RUN groupadd --system --gid 10001 kiln \
    && useradd --system --no-log-init --uid 10001 --gid kiln --home-dir /var/lib/kiln \
        --shell /usr/sbin/nologin kiln \
    && mkdir -p /var/lib/kiln \
    && chown kiln:kiln /var/lib/kiln
# The default store (`.kiln/` under the working directory) lands on a volume mounted here.
WORKDIR /var/lib/kiln
USER 10001:10001
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# `kiln serve` listens on 8080 (pass --host 0.0.0.0); `kiln server` on 5000.
EXPOSE 8080 5000
# No HEALTHCHECK: the image has no HTTP client, and Kubernetes probes /v2/health/* instead.
ENTRYPOINT ["kiln"]
CMD ["--help"]
