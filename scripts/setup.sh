#!/usr/bin/env bash
# Create .venv at the repository root and install daftseg with every extra.
# Idempotent: a second run only checks a stamp and returns.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
STAMP="$VENV/.daftseg-setup"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha256sum | cut -d' ' -f1)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    exit 0
fi

echo "[setup] creating $VENV (first run installs torch: a few minutes)" >&2
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip setuptools wheel
# torch first, exactly as pinned, so that no other requirement pulls a different build.
"${PIP[@]}" install torch==2.14.1 torchvision==0.29.1
"${PIP[@]}" install -e "$ROOT[infer,eval,export,train,data,dev]"
echo "$want" > "$STAMP"
echo "[setup] done" >&2
