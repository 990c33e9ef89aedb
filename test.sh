#!/usr/bin/env bash
# Set up .venv (first run: a few minutes), lint, and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
./scripts/setup.sh
# Lint first: a finding fails the run before the (longer) tests start.
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
