#!/usr/bin/env bash
# Set up .venv (first run: a few minutes) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
./scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
