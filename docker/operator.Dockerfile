# syntax=docker/dockerfile:1
#
# visionfleet-operator image: the operator binary on distroless, running as
# uid 65532. Build from the repository root (see docker/README.md):
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     -f docker/operator.Dockerfile -t ghcr.io/visionfleet/visionfleet-operator:0.1.0 .
#
# The builder runs on the build machine's own platform and cross-compiles
# for TARGETARCH, so a multi-platform build needs no emulation.

ARG RUST_VERSION=1.92

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS builder
ARG BUILDARCH
ARG TARGETARCH

# Rust target and GNU triple of the image's architecture; a C cross
# compiler only when it differs from the build machine's (ring compiles C).
RUN set -eu; \
    case "$TARGETARCH" in \
      amd64) echo "x86_64-unknown-linux-gnu x86_64-linux-gnu gcc-x86-64-linux-gnu" ;; \
      arm64) echo "aarch64-unknown-linux-gnu aarch64-linux-gnu gcc-aarch64-linux-gnu" ;; \
      *) echo "unsupported TARGETARCH '$TARGETARCH': build for amd64 or arm64" >&2; exit 1 ;; \
    esac > /target.txt; \
    read -r rust_target gnu_triple cross_gcc < /target.txt; \
    if [ "$TARGETARCH" != "$BUILDARCH" ]; then \
      apt-get update -qq; \
      apt-get install -y -qq --no-install-recommends "$cross_gcc" "libc6-dev-$TARGETARCH-cross"; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    rustup target add "$rust_target"

WORKDIR /src
# Every workspace member's manifest must be present for cargo to resolve
# the workspace, so the other crates are copied too.
COPY Cargo.toml Cargo.lock ./
COPY crds crds
COPY model-store model-store
COPY operator operator
COPY inference-agent inference-agent
COPY tests tests

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eu; \
    read -r rust_target gnu_triple cross_gcc < /target.txt; \
    if [ "$TARGETARCH" != "$BUILDARCH" ]; then \
      target_env="$(echo "$rust_target" | tr 'a-z-' 'A-Z_')"; \
      export "CARGO_TARGET_${target_env}_LINKER=${gnu_triple}-gcc"; \
      export "CC_$(echo "$rust_target" | tr '-' '_')=${gnu_triple}-gcc"; \
    fi; \
    cargo build --release --locked -p visionfleet-operator --target "$rust_target"; \
    mkdir -p /out; \
    cp "target/$rust_target/release/visionfleet-operator" /out/

# distroless/cc carries glibc, libgcc and the CA certificates the model
# downloads need; the nonroot tag runs as uid and gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/visionfleet-operator /usr/local/bin/visionfleet-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/visionfleet-operator"]
CMD ["run"]
