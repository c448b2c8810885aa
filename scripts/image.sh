#!/usr/bin/env bash
# Builds the tpp-operator container image without a container engine or registry: a static
# release binary, a minimal root filesystem (the binary, a CA bundle, passwd/group for uid/gid
# 65532, /tmp; no shell), written as an OCI image with umoci, then unpacked again so that tests run
# the operator from the image itself. The Dockerfile builds the same image with Docker.
#
#   scripts/image.sh [--with-bench] [--binary PATH] [--out DIR] [--push REF]
#
#   --with-bench   also build the benchmark (-p tpp-bench) in the same cargo invocation, so the
#                  release dependencies are compiled once for both
#   --binary PATH  put this binary into the image instead of building one (it must be static)
#   --out DIR      output directory (default $TPP_IMAGE_DIR, else $TPP_CACHE/image)
#   --push REF     then copy the image to a registry: skopeo copy oci-archive:... docker://REF
#                  (log in first with `skopeo login REGISTRY`; extra skopeo copy flags, e.g.
#                  --dest-creds USER:TOKEN, in $SKOPEO_COPY_FLAGS)
#
# Writes into the output directory:
#   oci/                   the OCI image layout (tag: the crate version)
#   tpp-operator.oci.tar   the same layout as an oci-archive tarball (reproducible for one commit)
#   rootfs/                the image's root filesystem, unpacked from the layout
#   config.json            the image configuration, as skopeo reads it back from the archive
#   image.env              the KEY=VALUE lines below, for `source`
# and prints on stdout (progress goes to stderr):
#   IMAGE_ARCHIVE, IMAGE_LAYOUT, IMAGE_REF, ROOTFS, TPP_OPERATOR_BIN (the binary inside ROOTFS),
#   TPP_BENCH_BIN (with --with-bench), IMAGE_ARCHIVE_BYTES, ROOTFS_BYTES
#
# Load it into Docker or Podman: `skopeo copy oci-archive:OUT/tpp-operator.oci.tar
# docker-daemon:tpp-operator:VERSION`, or `podman load -i OUT/tpp-operator.oci.tar`.
# Installs umoci, skopeo and ca-certificates with apt-get when missing (sudo unless root).
# Environment: TPP_CACHE (default ~/.cache/tpp-operator), CARGO_TARGET_DIR (default
# $TPP_CACHE/target, as scripts/test.sh), TPP_IMAGE_DIR, SOURCE_DATE_EPOCH (default: the commit's
# time), TPP_IMAGE_SOURCE (the org.opencontainers.image.source label).
set -euo pipefail

export TPP_CACHE="${TPP_CACHE:-$HOME/.cache/tpp-operator}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TPP_CACHE/target}"
TARGET=x86_64-unknown-linux-gnu
UID_GID=65532
# The repository the image's labels point at (GitHub links a ghcr.io package to it).
SOURCE_URL="${TPP_IMAGE_SOURCE:-https://github.com/tpp-operator/tpp-operator}"

with_bench=0
binary=""
out="${TPP_IMAGE_DIR:-$TPP_CACHE/image}"
push=""
usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case $1 in
    --with-bench) with_bench=1 ;;
    --binary) binary=${2:?--binary needs a path}; shift ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    --push) push=${2:?--push needs an image reference}; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
  shift
done
if [ -n "$binary" ] && [ "$with_bench" = 1 ]; then
  echo "--binary and --with-bench exclude each other: --binary skips the build" >&2
  exit 2
fi
# Paths as given from the caller's directory; then work from the repository's root.
[ -z "$binary" ] || binary=$(realpath -m -- "$binary")
out=$(realpath -m -- "$out")
CARGO_TARGET_DIR=$(realpath -m -- "$CARGO_TARGET_DIR")
cd "$(dirname "$0")/.."

log() { echo "image.sh: $*" >&2; }
start=$SECONDS
phase_start=$SECONDS
phase() { log "$1: $((SECONDS - phase_start)) s"; phase_start=$SECONDS; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Tools: Debian's umoci (writes and unpacks the image) and skopeo (reads it back, pushes it).
missing=()
command -v umoci >/dev/null || missing+=(umoci)
command -v skopeo >/dev/null || missing+=(skopeo)
[ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
command -v readelf >/dev/null || missing+=(binutils)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
fi

version=$(awk -F'"' '/^\[/{p = ($0 == "[package]")} p && /^version *=/{print $2; exit}' Cargo.toml)
revision=""
# Every timestamp in the image (file times, created, history) is $SOURCE_DATE_EPOCH, else the
# commit's time. Not exported: the cc crate reruns C builds (aws-lc) when it changes.
epoch=${SOURCE_DATE_EPOCH:-}
if git rev-parse --verify -q HEAD >/dev/null 2>&1; then
  revision=$(git rev-parse HEAD)
  git diff --quiet HEAD -- 2>/dev/null || revision="$revision-dirty"
  [ -n "$epoch" ] || epoch=$(git log -1 --format=%ct HEAD)
fi
[ -n "$epoch" ] || epoch=$(date +%s)
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
# The Dockerfile labels its image with the same version; keep it from drifting.
if [ -f Dockerfile ] && ! grep -qx "ARG VERSION=$version" Dockerfile; then
  echo "Dockerfile: 'ARG VERSION=$version' (the version in Cargo.toml) is missing" >&2
  exit 1
fi
phase "tools"

# 1. The binary: glibc, statically linked (the image has no libc). crt-static is set for the
#    target only, so build scripts and proc macros (host artifacts) are built as usual.
release_dir="$CARGO_TARGET_DIR/$TARGET/release"
if [ -z "$binary" ]; then
  packages=(-p tpp-operator --bin tpp-operator)
  [ "$with_bench" = 1 ] && packages+=(-p tpp-bench --bin tpp-bench)
  log "cargo build --release --locked --target $TARGET ${packages[*]}"
  CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target "$TARGET" "${packages[@]}" >&2
  binary="$release_dir/tpp-operator"
  phase "build"
fi
[ -x "$binary" ] || { echo "not an executable: $binary" >&2; exit 1; }
# Static: no program interpreter and no shared library needed.
if readelf -lW "$binary" | grep -q 'Requesting program interpreter' \
  || readelf -dW "$binary" | grep -q '(NEEDED)'; then
  echo "$binary is dynamically linked; the image has no libc:" >&2
  readelf -dW "$binary" | grep '(NEEDED)' >&2 || true
  exit 1
fi
command -v file >/dev/null && log "$(file -b "$binary")"

# 2. The root filesystem, laid out in the bundle of an empty image with fixed owners, modes and
#    times, then packed as the image's one layer (umoci 0.4.7's `insert` writes a truncated layer,
#    so unpack + repack).
mkdir -p "$out"
bundle="$out/bundle"
layout="$out/oci"
archive="$out/tpp-operator.oci.tar"
rootfs="$out/rootfs"
rm -rf "$bundle" "$layout" "$rootfs" "$archive" "$out/image.env" "$out/config.json"
rootless=()
[ "$(id -u)" = 0 ] || rootless=(--rootless)
image="$layout:$version"
umoci init --layout "$layout"
umoci new --image "$image"
umoci unpack "${rootless[@]}" --image "$image" "$bundle"
root="$bundle/rootfs"
chmod 0755 "$root"
install -d -m 0755 "$root"/{etc/ssl/certs,usr/local/bin}
install -d -m 1777 "$root/tmp"
install -m 0755 "$binary" "$root/usr/local/bin/tpp-operator"
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/nonexistent:/sbin/nologin\n' \
  "$UID_GID" "$UID_GID" > "$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:%s:\n' "$UID_GID" > "$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"
find "$root" -exec touch -h -d "@$epoch" {} +

# 3. The OCI image: that layer, then the configuration.
umoci repack --image "$image" --history.created "$created" \
  --history.created_by "scripts/image.sh" --history.comment "tpp-operator $version" "$bundle"
rm -rf "$bundle"
labels=(
  "org.opencontainers.image.source=$SOURCE_URL"
  "org.opencontainers.image.version=$version"
  "org.opencontainers.image.revision=$revision"
  "org.opencontainers.image.title=tpp-operator"
  "org.opencontainers.image.description=Kubernetes operator that keeps Open Banking TPP credentials and tokens fresh in Secrets"
  "org.opencontainers.image.licenses=Apache-2.0"
)
config_args=()
for label in "${labels[@]}"; do
  config_args+=(--config.label "$label" --manifest.annotation "$label")
done
umoci config --image "$image" --no-history --created "$created" --os linux --architecture amd64 \
  --config.user "$UID_GID:$UID_GID" \
  --config.entrypoint /usr/local/bin/tpp-operator --config.cmd run \
  --config.exposedports 8080/tcp --config.exposedports 9090/tcp \
  "${config_args[@]}"
umoci gc --layout "$layout"
# The layout as an oci-archive, byte for byte the same for the same commit and binary.
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --mode=a+rX --format=gnu \
  -C "$layout" -cf "$archive" oci-layout index.json blobs
# Read back by a second implementation: a malformed archive fails here.
skopeo inspect --config "oci-archive:$archive:$version" > "$out/config.json"
phase "image"

# 4. Unpack the image again: what tests run is what the image holds.
umoci raw unpack "${rootless[@]}" --image "$image" "$rootfs"
operator="$rootfs/usr/local/bin/tpp-operator"
if [ "$(id -u)" = 0 ] && command -v chroot >/dev/null; then
  # As in a container: nothing from the host, as the image's user.
  in_image=(chroot --userspec="$UID_GID:$UID_GID" "$rootfs" /usr/local/bin/tpp-operator)
else
  in_image=("$operator")
fi
log "$("${in_image[@]}" --version)"
"${in_image[@]}" crds > "$out/crds.yaml"
if [ -f crds/tpp-operator.crds.yaml ] && ! cmp -s "$out/crds.yaml" crds/tpp-operator.crds.yaml; then
  echo "the image's binary prints other CRDs than crds/tpp-operator.crds.yaml" >&2
  exit 1
fi
rm -f "$out/crds.yaml"
archive_bytes=$(stat -c %s "$archive")
rootfs_bytes=$(du -sb "$rootfs" | cut -f1)
phase "unpack and check"

log "image $image (revision ${revision:-unknown}, created $created)"
log "archive $archive: $archive_bytes bytes; rootfs $rootfs: $rootfs_bytes bytes"
log "total: $((SECONDS - start)) s"

{
  printf 'IMAGE_ARCHIVE=%q\n' "$archive"
  printf 'IMAGE_LAYOUT=%q\n' "$layout"
  printf 'IMAGE_REF=%q\n' "$version"
  printf 'ROOTFS=%q\n' "$rootfs"
  printf 'TPP_OPERATOR_BIN=%q\n' "$operator"
  [ "$with_bench" = 1 ] && printf 'TPP_BENCH_BIN=%q\n' "$release_dir/tpp-bench"
  printf 'IMAGE_ARCHIVE_BYTES=%s\n' "$archive_bytes"
  printf 'ROOTFS_BYTES=%s\n' "$rootfs_bytes"
} > "$out/image.env"
cat "$out/image.env"

if [ -n "$push" ]; then
  log "pushing to docker://$push"
  # shellcheck disable=SC2086 # SKOPEO_COPY_FLAGS is a list of flags
  skopeo copy ${SKOPEO_COPY_FLAGS:-} "oci-archive:$archive:$version" "docker://$push" >&2
  phase "push"
fi
