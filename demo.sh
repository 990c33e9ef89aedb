#!/usr/bin/env bash
# Set up .venv (first run: a few minutes) and run the demo on bundled synthetic data.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
./scripts/setup.sh
exec .venv/bin/python -m daftseg.demo "$@"
