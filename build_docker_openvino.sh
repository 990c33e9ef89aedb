#!/usr/bin/env bash
# Build the challenge image (OpenVINO inference, no torch), squash it when docker-squash is
# installed, and save it as <name>.tar.gz for submission.
#
# Usage: ./build_docker_openvino.sh [NAME]     (default NAME: automlfreiburg, as DAFT's image)
# Env:   TAG (default latest), OUT (default NAME.tar.gz)
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
if ! command -v docker >/dev/null 2>&1; then
    echo "error: docker is not installed or not on PATH" >&2
    exit 1
fi

docker build -f Dockerfile -t "$IMAGE" .
if command -v docker-squash >/dev/null 2>&1; then
    docker-squash -t "$IMAGE" "$IMAGE"
else
    echo "note: docker-squash not found, the image is not squashed (pip install docker-squash)" >&2
fi
docker save "$IMAGE" | gzip > "$OUT"
echo "saved $IMAGE to $OUT"
echo "try it: docker container run -m 8G --name $NAME --rm -v \$PWD/inputs/:/workspace/inputs/" \
     "-v \$PWD/outputs/:/workspace/outputs/ $IMAGE /bin/bash -c \"sh predict.sh\""
