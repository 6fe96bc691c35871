# wisp container image: a static-enough release binary on distroless.
#
#   docker build -t wisp .
#
# Build stage: the official Rust image (Debian 12) plus cmake, which pingora's
# zlib-ng build needs. jemalloc is compiled from C with the image's gcc/make.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what `cargo build --bin wisp` reads. benches/ is needed because
# Cargo.toml declares [[bench]] targets and cargo refuses a manifest whose
# declared targets are missing, even when building only the binary.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY src ./src
# The cache mounts (BuildKit, the default builder since Docker 23) keep the
# crate registry and compiled dependencies between builds; the binary is
# copied out of the cached target directory because a cache mount is not
# part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin wisp \
 && cp target/release/wisp /wisp

# Runtime: distroless "cc" has glibc and libgcc_s (all the binary links:
# libc, libm, libgcc_s; rustls, not OpenSSL), CA certificates, no shell and
# no package manager. The :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /wisp /usr/local/bin/wisp
# The shipped configs and policies keep the repository's layout
# (config/ next to policies/), so each shipped config's relative
# `policies: { dir: ../policies }` resolves inside the image exactly as it
# does in a checkout: /etc/wisp/config/*.yaml → /etc/wisp/policies.
COPY config /etc/wisp/config
COPY policies /etc/wisp/policies
USER 65532:65532
# 8080: the proxy listener; 9901: the admin listener (/metrics, /healthz, /readyz).
EXPOSE 8080 9901
ENTRYPOINT ["wisp"]
# The default is the in-cluster sidecar config (Kubernetes projected
# service-account tokens), the image's main use. It is only a default:
# docker-compose.yml and deploy/kubernetes pass `serve --config <their own>`,
# and config/demo.yaml or config/wisp.yaml would be wrong here (both listen
# on loopback only, and the reference config names a fictional issuer).
# wisp writes nothing to disk, so the root filesystem may be read-only.
CMD ["serve", "--config", "/etc/wisp/config/kubernetes.yaml"]
