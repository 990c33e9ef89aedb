#!/bin/sh
# Challenge entry point, run by the harness as `sh predict.sh` in /opt/app (one container per case).
# Segments every /workspace/inputs/*.npz into /workspace/outputs/<same name>.
#
# OpenVINO's compiled-model cache goes to /workspace/inputs/openvinocache when that folder can be
# written: the harness keeps ./inputs between the per-case containers, so models are compiled once.
# A read-only inputs mount gets a temporary cache instead (compiled again in every container).
# INPUT_DIR / OUTPUT_DIR override the two folders (tests, or running outside the container).
# DAFTSEG_FAST=1 turns on fast mode (PerfectMetaOpenVINO.py --fast: INT8 image encoders where the
# image has them; outputs are not DAFT's), e.g. `docker container run -e DAFTSEG_FAST=1 ...`.
# DAFTSEG_ROUTING=916bd4e (or a table's path) routes as DAFT 916bd4e; PerfectMetaOpenVINO.py reads it.
set -eu
cd "$(dirname "$0")"
INPUT_DIR="${INPUT_DIR:-/workspace/inputs}"
OUTPUT_DIR="${OUTPUT_DIR:-/workspace/outputs}"
CACHE_DIR="$INPUT_DIR/openvinocache"
if ! { mkdir -p "$CACHE_DIR" 2>/dev/null && [ -w "$CACHE_DIR" ]; }; then
    CACHE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/openvinocache.XXXXXX")"
fi
case "${DAFTSEG_FAST:-0}" in
    1|true|yes) set -- --fast ;;
    0|false|no|"") set -- ;;
    *) echo "predict.sh: DAFTSEG_FAST must be 1/true/yes or 0/false/no, got '$DAFTSEG_FAST'" >&2; exit 2 ;;
esac
exec python3 PerfectMetaOpenVINO.py -i "$INPUT_DIR" -o "$OUTPUT_DIR" --indocker --cache_dir "$CACHE_DIR" "$@"
