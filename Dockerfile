# syntax=docker/dockerfile:1
# workload-manager: one fully static binary in an otherwise empty image
# (about 2.5 MiB; the target is under 5 MiB).
#
#   docker build -t registry.example/workload-manager:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t <registry>/workload-manager:<version> --push .
#
# Tag images with the bare version that `workload-manager --version` prints
# (0.1.0, or v0.1.0 if you prefer: self-update keeps the running tag's style).

# The toolchain the project is developed and tested with (`rustc --version`).
# For byte-for-byte reproducible builds also pin the image by digest:
#   FROM rust:1.95.0-alpine@sha256:<digest> AS build
ARG RUST_VERSION=1.95.0

# Build: the official Rust image on Alpine, whose host target is
# <arch>-unknown-linux-musl, so the same file builds for amd64 and arm64.
# Rust links musl targets statically (crt-static is their default); the
# check after the build refuses a binary with an ELF interpreter or shared
# libraries, which could not start in the empty image below.
FROM rust:${RUST_VERSION}-alpine AS build
# musl-dev: C runtime objects and headers for linking and for ring's C and
# assembly; binutils: readelf for the static check.
RUN apk add --no-cache musl-dev binutils
WORKDIR /src
# The whole workspace: the root package, the member tests/kit (needed to load
# the workspace and its Cargo.lock, not built here) and the patched tiny_http
# in src/vendor/tiny_http. .dockerignore keeps target/, .git and the rest out.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package workload-manager --bin workload-manager \
 && bin=target/release/workload-manager \
 && if readelf -lW "$bin" | grep -q 'program interpreter' || readelf -dW "$bin" | grep -q '(NEEDED)'; then \
      echo "$bin is not statically linked" >&2; exit 1; \
    fi \
 && "$bin" --version \
 && install -D -m 0555 "$bin" /out/workload-manager

# Run: nothing but the binary. No CA files are needed: the backend and S3 are
# checked against the TLS roots compiled into the binary (webpki-roots), and
# the Kubernetes API only against the service account's ca.crt that the
# kubelet mounts. /etc/resolv.conf and /etc/hosts are provided by the runtime.
FROM scratch
COPY --from=build /out/workload-manager /workload-manager
# Numeric, as the empty image has no /etc/passwd; the same user and group as
# runAsUser/runAsGroup in manifests/deployment.yaml.
USER 65532:65532
# WM_LISTEN's default port: heartbeats, /v1/status, /metrics, /healthz, /readyz.
EXPOSE 8080
LABEL org.opencontainers.image.title="workload-manager" \
      org.opencontainers.image.description="Keeps a K3S edge node running the workloads its Node System backend wants." \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/workload-manager"]
