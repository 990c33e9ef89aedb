#!/usr/bin/env bash
# A local stand-in for the python:3.11-slim base image, for building the challenge image with podman
# where no image registry can be reached (these machines, the container test, CI): Debian bookworm's
# python3.11 and pip, installed by debootstrap from Debian's package mirror, imported into podman's
# storage as docker.io/library/python:3.11-slim so that the Dockerfile builds unchanged.
#
# Usage: sudo scripts/podman_base.sh          (debootstrap needs root)
# Env:   DAFTSEG_PODMAN_OPTS       podman's global options, as for build_docker_openvino.sh
#                                  (here: "--storage-driver vfs --runtime runc --cgroup-manager cgroupfs")
#        DAFTSEG_CONTAINER_CACHE   where the root filesystem tarball is kept between runs
#                                  (default ~/.cache/daftseg-container)
#        DEBIAN_MIRROR             default http://deb.debian.org/debian
#
# The tarball and the image are keyed by this file's hash: editing the recipe builds them again,
# an unchanged recipe reuses them (debootstrap takes 1-3 minutes). A real python:3.11-slim already in
# the storage is never replaced. Not the real image (Debian's Python 3.11 in /usr/bin, Debian's
# pip): use it to test the container, never to build a submission.
set -euo pipefail
IMAGE="docker.io/library/python:3.11-slim"
CACHE="${DAFTSEG_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/daftseg-container}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
read -r -a PODMAN <<< "podman ${DAFTSEG_PODMAN_OPTS:-}"
KEY="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"
TARBALL="$CACHE/python3.11-slim-standin-$KEY.tar"
CERTS=/etc/ssl/certs/ca-certificates.crt

if "${PODMAN[@]}" image exists "$IMAGE"; then
    label="$("${PODMAN[@]}" image inspect --format '{{index .Labels "daftseg.base-recipe"}}' "$IMAGE")"
    if [[ "$label" == "$KEY" ]]; then
        echo "stand-in base $IMAGE is up to date (recipe $KEY)"
        exit 0
    elif [[ -z "$label" || "$label" == "<no value>" ]]; then
        echo "$IMAGE is already in podman's storage and is not a stand-in; it is kept" >&2
        exit 0
    fi
fi

if [[ ! -f "$TARBALL" ]]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
        echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2
        exit 1
    fi
    mkdir -p "$CACHE"
    ROOTFS="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
    trap 'rm -rf "$ROOTFS" "$TARBALL.tmp"' EXIT
    echo "building the stand-in base with debootstrap from $MIRROR (1-3 minutes)"
    debootstrap --variant=minbase --include=python3.11,python3-pip bookworm "$ROOTFS" "$MIRROR" >&2
    # The official image lets pip install anywhere and names the interpreter python / python3.
    rm -f "$ROOTFS/usr/lib/python3.11/EXTERNALLY-MANAGED"
    ln -sf /usr/bin/python3.11 "$ROOTFS/usr/local/bin/python"
    ln -sf /usr/bin/python3.11 "$ROOTFS/usr/local/bin/python3"
    # The host's bundle, so that pip inside a build trusts the same (proxy) certificates as the host.
    if [[ -f "$CERTS" ]]; then
        cp "$CERTS" "$ROOTFS$CERTS"
    fi
    # What the slim image does not carry either: downloaded packages, package lists, documentation.
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* \
        "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/locale/*
    tar -C "$ROOTFS" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
fi

"${PODMAN[@]}" import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' \
    --change "ENV PIP_CERT=$CERTS" --change "ENV SSL_CERT_FILE=$CERTS" \
    --change "LABEL daftseg.base-recipe=$KEY" \
    "$TARBALL" "$IMAGE" >/dev/null
echo "imported the stand-in base $IMAGE (recipe $KEY, from $TARBALL)"
