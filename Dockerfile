# The operator's image for those who build with Docker (or Podman, BuildKit). Not built or tested
# in this project's CI, which has no container engine: CI builds the same image daemonless and
# reproducibly with hack/image.sh and proves it with hack/image/test.sh (docs/image.md).
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t webhook-ca-operator .

FROM docker.io/library/rust:1.95-bookworm AS build
# aws-lc-sys (rustls' crypto) compiles C: musl-gcc for the static musl target.
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --target x86_64-unknown-linux-musl --bin webhook-ca-operator

# distroless/static: CA roots (for an API whose resource names no CA), /etc/passwd with user
# 65532 "nonroot", no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="webhook-ca-operator" \
      org.opencontainers.image.source="https://github.com/webhook-ca-operator/webhook-ca-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/webhook-ca-operator /usr/local/bin/webhook-ca-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/webhook-ca-operator"]
CMD ["run"]
