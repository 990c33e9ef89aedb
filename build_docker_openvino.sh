#!/usr/bin/env bash
# Build the challenge image (OpenVINO inference, no torch) with docker or podman, squash it, save it
# as <name>.tar.gz for submission, then load that file back to check it holds the image just built.
#
# Usage: ./build_docker_openvino.sh [NAME]     (default NAME: automlfreiburg, as DAFT's image)
# Env:   TAG (default latest), OUT (default NAME.tar.gz)
#        DOCKER               the engine: docker or podman (default: docker if on PATH, else podman)
#        DAFTSEG_PODMAN_OPTS  podman's global options, e.g. on a machine that refuses overlay mounts,
#                             crun or systemd cgroups:
#                             "--storage-driver vfs --runtime runc --cgroup-manager cgroupfs"
#        DAFTSEG_BUILD_OPTS   extra options of `build`, e.g. "--pull=never --network host" to build
#                             on the stand-in base of scripts/podman_base.sh
# Needs openvinomodels/ (DAFT's released models, or onnx2openvino.py + liteov.py output).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
NAME="${1:-automlfreiburg}"
TAG="${TAG:-latest}"
OUT="${OUT:-$NAME.tar.gz}"
IMAGE="$NAME:$TAG"

for f in openvinomodels/positional_encoding.npy openvinomodels/lite_medsam_prompt_encoder.xml; do
    if [[ ! -f "$f" ]]; then
        echo "error: $f is missing; export the models first (onnx2openvino.py and liteov.py)" >&2
        exit 1
    fi
done
if [[ -z "${DOCKER:-}" ]]; then
    DOCKER="$(command -v docker || command -v podman || true)"
fi
if [[ -z "$DOCKER" ]] || ! command -v "$DOCKER" >/dev/null 2>&1; then
    echo "error: neither docker nor podman is installed or on PATH (or DOCKER=${DOCKER:-} is not found)" >&2
    exit 1
fi
read -r -a ENGINE <<< "$DOCKER"
read -r -a BUILD_OPTS <<< "${DAFTSEG_BUILD_OPTS:-}"
if [[ "$(basename "${ENGINE[0]}")" == podman ]]; then
    read -r -a PODMAN_OPTS <<< "${DAFTSEG_PODMAN_OPTS:-}"
    ENGINE+=("${PODMAN_OPTS[@]}")
    # podman squashes in the build (docker-squash talks to the docker daemon only): the layers of
    # this Dockerfile become one, on top of the base image's.
    "${ENGINE[@]}" build --squash "${BUILD_OPTS[@]}" -f Dockerfile -t "$IMAGE" .
else
    "${ENGINE[@]}" build "${BUILD_OPTS[@]}" -f Dockerfile -t "$IMAGE" .
    if command -v docker-squash >/dev/null 2>&1; then
        docker-squash -t "$IMAGE" "$IMAGE"
    else
        echo "note: docker-squash not found, the image is not squashed (pip install docker-squash)" >&2
    fi
fi
"${ENGINE[@]}" save "$IMAGE" | gzip > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "saved $IMAGE to $OUT"

# The check: what the harness does first (`docker image load`), then the same image id.
built="$("${ENGINE[@]}" image inspect --format '{{.Id}}' "$IMAGE")"
# Decompressed first: podman 4.3's `load -i x.tar.gz` fails with "invalid tar header".
gzip -dc "$OUT" | "${ENGINE[@]}" load
loaded="$("${ENGINE[@]}" image inspect --format '{{.Id}}' "$IMAGE")"
if [[ "$loaded" != "$built" ]]; then
    echo "error: $OUT loads as image $loaded, not the image built ($built)" >&2
    exit 1
fi
echo "checked: $OUT loads back as $IMAGE ($built)"
echo "try it: ${ENGINE[*]} container run -m 8G --name $NAME --rm -v \$PWD/inputs/:/workspace/inputs/" \
     "-v \$PWD/outputs/:/workspace/outputs/ $IMAGE /bin/bash -c \"sh predict.sh\""
