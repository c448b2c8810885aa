# The tpp-operator image, built with Docker. scripts/image.sh builds the same image without a
# container engine (and is what CI builds and tests); keep the two alike.
#   docker build -t tpp-operator:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" --build-arg SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)" .
# linux/amd64 only: the binary is built for x86_64-unknown-linux-gnu.
#
# The binary links glibc statically (crt-static), so the final stage is `scratch`: the binary, a
# CA bundle, passwd/group for the non-root user 65532, /tmp, and nothing else (no shell).
# Provider host names are resolved by reqwest's hickory-dns resolver (/etc/resolv.conf,
# /etc/hosts), not by glibc's NSS, which a static binary cannot load; the Kubernetes API server is
# reached at the IP in KUBERNETES_SERVICE_HOST, with no lookup.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"

# Dependencies first, in their own layer: the manifests, with stub sources. cargo reads every
# workspace member's manifest, but builds only the operator, so the members need no sources.
COPY Cargo.toml Cargo.lock ./
COPY fake-provider/Cargo.toml fake-provider/
COPY bench/Cargo.toml bench/
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-gnu -p tpp-operator --bin tpp-operator

# Then the operator itself. COPY keeps the files' times, which may be older than the stub build:
# touch them so that cargo rebuilds the crate rather than keep the stub.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-gnu -p tpp-operator --bin tpp-operator \
 && bin=target/x86_64-unknown-linux-gnu/release/tpp-operator \
 && if readelf -lW "$bin" | grep -q 'program interpreter' || readelf -dW "$bin" | grep -q '(NEEDED)'; then \
      echo "$bin is not static" >&2; exit 1; fi \
 && install -d -m 0755 /rootfs/etc/ssl/certs /rootfs/usr/local/bin \
 && install -d -m 1777 /rootfs/tmp \
 && install -m 0755 "$bin" /rootfs/usr/local/bin/tpp-operator \
 && install -m 0644 /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' > /rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group \
 && chmod 0644 /rootfs/etc/passwd /rootfs/etc/group \
 && chroot --userspec=65532:65532 /rootfs /usr/local/bin/tpp-operator --version

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=""
COPY --from=build /rootfs/ /
USER 65532:65532
EXPOSE 8080/tcp 9090/tcp
ENTRYPOINT ["/usr/local/bin/tpp-operator"]
CMD ["run"]
LABEL org.opencontainers.image.source="https://github.com/tpp-operator/tpp-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.title="tpp-operator" \
      org.opencontainers.image.description="Kubernetes operator that keeps Open Banking TPP credentials and tokens fresh in Secrets" \
      org.opencontainers.image.licenses="Apache-2.0"
