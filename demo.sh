#!/usr/bin/env bash
# Set up .venv (first run: a few minutes) and run the demo on bundled synthetic data.
# Runs from the caller's folder, so a relative --out lands there (default ./test_demo).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/scripts/setup.sh"
exec "$here/.venv/bin/python" -m daftseg.demo "$@"
