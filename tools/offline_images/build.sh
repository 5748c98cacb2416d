#!/usr/bin/env bash
# Build stand-in base images from Debian packages, for machines that reach no image registry.
#
#   tools/offline_images/build.sh [--force] [python-base] [rabbitmq]
#
# Images (default: both):
#   jobstack/python-base:bookworm  Debian's python3 laid out like the official python image
#   jobstack/rabbitmq:bookworm     Debian's rabbitmq-server started like the official rabbitmq image
# Both sit on jobstack/debian:bookworm, imported from a debootstrap (minbase) root filesystem.
#
# Every image carries the label jobstack.inputs-hash: a hash of everything it is built from
# (this script, its Dockerfile directory, the CA bundle, the suite and mirror). An image whose
# label matches is not rebuilt, and the debootstrap tarball is kept in the cache directory, so a
# second run takes a second and a rebuild after an edit of one Dockerfile takes seconds.
#
# Environment (defaults in brackets):
#   JOBSTACK_CACHE_DIR  cache root [${XDG_CACHE_HOME:-$HOME/.cache}/jobstack]
#   DEBIAN_SUITE        [bookworm]          DEBIAN_MIRROR [http://deb.debian.org/debian]
#   CA_BUNDLE           CA bundle copied into the python base [/etc/ssl/certs/ca-certificates.crt]
#   BUILD_NETWORK       network for `docker build` [host]: the only one with egress when dockerd
#                       runs with --iptables=false
# Needs root (debootstrap) on the first run, docker and debootstrap.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
build_network=${BUILD_NETWORK:-host}
cache_dir=${JOBSTACK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/jobstack}/offline_images
base_image="jobstack/debian:$suite"
label=jobstack.inputs-hash

force=false
targets=()
for arg in "$@"; do
  case "$arg" in
    --force) force=true ;;
    python-base | rabbitmq) targets+=("$arg") ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument '$arg' (expected --force, python-base, rabbitmq)" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(python-base rabbitmq)

log() { echo "offline_images: $*"; }
die() { echo "offline_images: $*" >&2; exit 1; }

command -v docker >/dev/null || die "docker is not installed (scripts/bootstrap.sh test installs docker.io)"
docker info >/dev/null 2>&1 || die "no Docker daemon answers (start one with scripts/ensure_dockerd.sh)"
[ -r "$ca_bundle" ] || die "CA bundle $ca_bundle is not readable (set CA_BUNDLE)"

# Print the label of an image, or nothing when the image does not exist.
image_hash() {
  docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$1" 2>/dev/null || true
}

# Hash of a list of strings and files (file contents and names, sorted, so the order is stable).
inputs_hash() {
  {
    for item in "$@"; do
      if [ -d "$item" ]; then
        (cd "$item" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
      elif [ -f "$item" ]; then
        sha256sum <"$item"
      else
        printf '%s\n' "$item"
      fi
    done
  } | sha256sum | cut -c1-16
}

# 1. Root filesystem: debootstrap once, keep the tarball.
# Bump rootfs_recipe when the preparation below changes: that alone forces a new debootstrap.
rootfs_recipe=1
rootfs_hash=$(inputs_hash "$suite" "$mirror" minbase "$rootfs_recipe")
rootfs_tar="$cache_dir/debian-$suite-minbase-$rootfs_hash.tar"
if [ ! -s "$rootfs_tar" ]; then
  command -v debootstrap >/dev/null || die "debootstrap is not installed (scripts/bootstrap.sh test installs it)"
  [ "$(id -u)" -eq 0 ] || die "debootstrap needs root; run as root once (the tarball is cached in $cache_dir)"
  mkdir -p "$cache_dir"
  work=$(mktemp -d "$cache_dir/rootfs.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  log "debootstrap $suite from $mirror (about a minute)"
  start=$SECONDS
  debootstrap --variant=minbase "$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
  # Container conventions of the official Debian images: no service starts during package
  # installs, no apt caches left in layers.
  printf '#!/bin/sh\nexit 101\n' >"$work/root/usr/sbin/policy-rc.d"
  chmod 0755 "$work/root/usr/sbin/policy-rc.d"
  cat >"$work/root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
APT
  cat >"$work/root/etc/apt/sources.list" <<APT
deb $mirror $suite main
deb $mirror $suite-updates main
APT
  rm -rf "$work/root/var/lib/apt/lists/"* "$work/root/var/cache/apt/"*.bin "$work/root/var/log/"*.log
  tar --numeric-owner -C "$work/root" -cf "$rootfs_tar.partial" .
  mv "$rootfs_tar.partial" "$rootfs_tar"
  rm -rf "$work"
  trap - EXIT
  log "root filesystem cached in $rootfs_tar ($((SECONDS - start)) s)"
  # Older tarballs of other inputs are of no further use.
  find "$cache_dir" -maxdepth 1 -name "debian-$suite-minbase-*.tar" ! -name "$(basename "$rootfs_tar")" -delete
fi

# 2. Base image from the tarball.
if [ "$force" = true ] || [ "$(image_hash "$base_image")" != "$rootfs_hash" ]; then
  log "importing $base_image"
  docker import \
    --change "LABEL $label=$rootfs_hash" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    "$rootfs_tar" "$base_image" >/dev/null
else
  log "$base_image is up to date"
fi

# 3. The stand-in images on top.
for target in "${targets[@]}"; do
  image="jobstack/$target:$suite"
  hash=$(inputs_hash "$rootfs_hash" "$here/$target" "$ca_bundle")
  if [ "$force" != true ] && [ "$(image_hash "$image")" = "$hash" ]; then
    log "$image is up to date"
    continue
  fi
  context=$(mktemp -d)
  cp -a "$here/$target/." "$context/"
  cp "$ca_bundle" "$context/ca-certificates.crt"
  log "building $image"
  start=$SECONDS
  build_log="$cache_dir/build-$target.log"
  mkdir -p "$cache_dir"
  if ! docker build --network "$build_network" \
    --build-arg "BASE_IMAGE=$base_image" \
    --label "$label=$hash" \
    --tag "$image" "$context" >"$build_log" 2>&1; then
    rm -rf "$context"
    tail -30 "$build_log" >&2
    die "building $image failed (full log: $build_log)"
  fi
  rm -rf "$context"
  log "built $image ($((SECONDS - start)) s)"
done
