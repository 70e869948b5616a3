# syntax=docker/dockerfile:1
#
# visionfleet-agent image: the agent binary on Debian 12 slim with the
# GStreamer runtime, and ONNX Runtime with its OpenVINO execution provider
# and OpenVINO itself, unpacked from the PyPI wheel that
# scripts/assets/assets.lock pins. Runs as uid 65532. Build from the
# repository root (see docker/README.md):
#
#   docker buildx build --platform linux/amd64 \
#     -f docker/agent.Dockerfile -t ghcr.io/visionfleet/visionfleet-agent:0.1.0 .
#
# The builder stages run on the build machine's own platform and
# cross-compile for TARGETARCH.
# NOTE: only linux/amd64 builds. onnxruntime-openvino publishes no aarch64
# wheel, so the runtime stage stops with an error for arm64.

ARG RUST_VERSION=1.92
ARG DEBIAN_RELEASE=bookworm

# ONNX Runtime version inside the pinned wheel; the build checks it against
# the lock file, and ORT_DYLIB_PATH names its library.
ARG ONNXRUNTIME_VERSION=1.24.1

# --- ONNX Runtime and OpenVINO from the pinned wheel -------------------------
FROM --platform=$BUILDPLATFORM python:3.11-slim-${DEBIAN_RELEASE} AS onnxruntime
ARG TARGETARCH
ARG ONNXRUNTIME_VERSION

WORKDIR /wheel
COPY scripts/assets/assets.lock scripts/assets/runtime.py scripts/assets/lockfile.py ./

# Downloads the wheel that assets.lock pins, checks its sha256, and unpacks
# its shared libraries with the same code as scripts/fetch-assets.
RUN set -eu; \
    if [ "$TARGETARCH" != amd64 ]; then \
      echo "onnxruntime-openvino $ONNXRUNTIME_VERSION has no wheel for $TARGETARCH; the agent image builds for amd64 only" >&2; \
      exit 1; \
    fi; \
    pin="$(awk '$1 == "wheel" && $2 == "onnxruntime-openvino" { print $3, $4, $5 }' assets.lock)"; \
    version="${pin%% *}"; rest="${pin#* }"; file="${rest%% *}"; sha256="${rest#* }"; \
    if [ "$version" != "$ONNXRUNTIME_VERSION" ]; then \
      echo "assets.lock pins onnxruntime-openvino $version, but ONNXRUNTIME_VERSION is $ONNXRUNTIME_VERSION: update this Dockerfile" >&2; \
      exit 1; \
    fi; \
    pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64 \
      --dest /wheel "onnxruntime-openvino==$version"; \
    echo "$sha256  /wheel/$file" | sha256sum --check --strict; \
    python3 -c "import sys; from pathlib import Path; from runtime import unpack_runtime; unpack_runtime(Path(sys.argv[1]), Path(sys.argv[2]))" \
      "/wheel/$file" /opt/onnxruntime; \
    test -f "/opt/onnxruntime/libonnxruntime.so.$ONNXRUNTIME_VERSION"

# --- the agent binary ----------------------------------------------------------
FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
ARG BUILDARCH
ARG TARGETARCH

# The agent links GStreamer, so its development files are installed for the
# image's architecture (Debian multiarch), with a C cross compiler when that
# differs from the build machine's.
RUN set -eu; \
    case "$TARGETARCH" in \
      amd64) echo "x86_64-unknown-linux-gnu x86_64-linux-gnu gcc-x86-64-linux-gnu" ;; \
      arm64) echo "aarch64-unknown-linux-gnu aarch64-linux-gnu gcc-aarch64-linux-gnu" ;; \
      *) echo "unsupported TARGETARCH '$TARGETARCH': build for amd64" >&2; exit 1 ;; \
    esac > /target.txt; \
    read -r rust_target gnu_triple cross_gcc < /target.txt; \
    packages="libgstreamer1.0-dev:$TARGETARCH libgstreamer-plugins-base1.0-dev:$TARGETARCH"; \
    if [ "$TARGETARCH" != "$BUILDARCH" ]; then \
      dpkg --add-architecture "$TARGETARCH"; \
      packages="$packages $cross_gcc libc6-dev-$TARGETARCH-cross"; \
    fi; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends $packages; \
    rm -rf /var/lib/apt/lists/*; \
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

# ONNX Runtime and OpenVINO are loaded at run time (ort's load-dynamic and
# openvino's runtime-linking features), so only GStreamer is linked here.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eu; \
    read -r rust_target gnu_triple cross_gcc < /target.txt; \
    if [ "$TARGETARCH" != "$BUILDARCH" ]; then \
      target_env="$(echo "$rust_target" | tr 'a-z-' 'A-Z_')"; \
      export "CARGO_TARGET_${target_env}_LINKER=${gnu_triple}-gcc"; \
      export "CC_$(echo "$rust_target" | tr '-' '_')=${gnu_triple}-gcc"; \
      export PKG_CONFIG_ALLOW_CROSS=1 "PKG_CONFIG_PATH=/usr/lib/$gnu_triple/pkgconfig"; \
    fi; \
    cargo build --release --locked -p visionfleet-agent --target "$rust_target"; \
    mkdir -p /out; \
    cp "target/$rust_target/release/visionfleet-agent" /out/

# --- runtime -------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim
ARG TARGETARCH
ARG ONNXRUNTIME_VERSION

# GStreamer decodes cameras (v4l2src), RTSP and HTTP streams and video files
# through uridecodebin: base and good carry the sources and demuxers, bad
# more demuxers and parsers, libav the H.264 and H.265 decoders.
# libstdc++6, zlib1g and ocl-icd-libopencl1 are what the OpenVINO libraries
# link against. intel-opencl-icd is the OpenCL driver OpenVINO's GPU plugin
# needs for Intel GPUs, and libze1 the Level Zero loader of its NPU plugin.
# fonts-dejavu-core has the font /snapshot.jpg writes its labels in.
# NOTE: Debian 12 packages no Intel NPU user-space driver, so the NPU plugin
# finds no device in this image; the GPU driver from Debian 12 (22.43,
# late 2022) predates Meteor Lake and newer GPUs.
RUN set -eu; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends \
      ca-certificates libstdc++6 zlib1g \
      libgstreamer1.0-0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
      gstreamer1.0-plugins-bad gstreamer1.0-libav \
      ocl-icd-libopencl1 intel-opencl-icd libze1 fonts-dejavu-core; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --gid 65532 nonroot; \
    useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nonroot

COPY --from=onnxruntime /opt/onnxruntime /opt/onnxruntime
COPY --from=builder /out/visionfleet-agent /usr/local/bin/visionfleet-agent

# ONNX Runtime finds its provider libraries, and OpenVINO its plugins,
# beside itself through their $ORIGIN run path, so LD_LIBRARY_PATH is not
# needed. GStreamer's plugin registry cache goes to /tmp, which the
# operator mounts as an emptyDir under the read-only root filesystem.
ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so.${ONNXRUNTIME_VERSION} \
    GST_REGISTRY=/tmp/gstreamer-registry.bin

USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/visionfleet-agent"]
