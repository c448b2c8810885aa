# Multi-stage build of the tpp-operator binary onto a distroless, non-root base.
# The binary is built as CI builds the one its end-to-end tests run (release profile, default
# features); CI builds it in one invocation with the benchmark (`-p tpp-operator -p tpp-bench`),
# which only unifies a few extra tokio features into it.
# It links glibc dynamically (aws-lc-rs, the single crypto backend), so the runtime image is
# distroless/cc (glibc, libgcc, CA certificates, tzdata) rather than distroless/static.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
# cmake and clang are what aws-lc-sys may need; the rust image carries gcc and make.
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY fake-provider ./fake-provider
# A workspace member: cargo reads its manifest even when building only the operator.
COPY bench ./bench
COPY crds ./crds
RUN cargo build --release --locked --bin tpp-operator \
 && install -D -m 0755 target/release/tpp-operator /out/tpp-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/tpp-operator /usr/local/bin/tpp-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tpp-operator"]
CMD ["run"]
