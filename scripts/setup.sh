#!/usr/bin/env bash
# Create .venv at the repository root and install daftseg with every extra; keep in
# .venv/wheelhouse the wheels of the inference and evaluation dependencies, from which the tests
# build throw-away venvs without the network (tests/offline_venv.py).
# Idempotent: a second run only checks a stamp and returns.
#
# Python: $PYTHON if set (refused if pyproject's requires-python rejects it), else the first one
# accepted of python3.X (the version .venv was made with), python3.11, python3.12, python3.
# A .venv made with another Python version is removed and made again.
#
#   ./scripts/setup.sh --dry-run   # say which Python and what happens to .venv; change nothing
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.daftseg-setup"
WHEELHOUSE="$VENV/wheelhouse"
# The versions this project was last set up and tested with; an unpinned upgrade could break a
# later setup of the same commit.
BUILD_TOOLS=(pip==26.3 setuptools==84.2.1 wheel==0.48.0)
TORCH=(torch==2.14.1 torchvision==0.29.1)

DRY_RUN=0
case "${1:-}" in
    "") ;;
    --dry-run) DRY_RUN=1 ;;
    *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac

SPEC="$(sed -n 's/^requires-python *= *"\(.*\)" *$/\1/p' "$ROOT/pyproject.toml")"
if [[ -z "$SPEC" ]]; then
    echo "[setup] error: no requires-python in $ROOT/pyproject.toml" >&2
    exit 1
fi

# python_version PY: "MAJOR.MINOR" of interpreter PY; fails if PY does not run.
python_version() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null
}

# version_ok VERSION: VERSION satisfies SPEC (clauses such as ">=3.11,<3.13"). Plain bash, so that
# it also judges interpreters too old to run a modern script.
version_ok() {
    local version="$1" clause op want
    local IFS=','
    for clause in $SPEC; do
        clause="${clause// /}"
        op="${clause%%[0-9]*}"
        want="${clause#"$op"}"
        # compare as many components as the clause gives (3.13 vs 3.12: the minor decides)
        local -a have_parts want_parts
        IFS='.' read -r -a have_parts <<< "$version"
        IFS='.' read -r -a want_parts <<< "$want"
        local i cmp=0
        for ((i = 0; i < ${#want_parts[@]}; i++)); do
            local h="${have_parts[i]:-0}" w="${want_parts[i]}"
            if ((h != w)); then
                cmp=$(( h < w ? -1 : 1 ))
                break
            fi
        done
        case "$op" in
            ">=") ((cmp >= 0)) || return 1 ;;
            ">") ((cmp > 0)) || return 1 ;;
            "<=") ((cmp <= 0)) || return 1 ;;
            "<") ((cmp < 0)) || return 1 ;;
            "=="|"===") ((cmp == 0)) || return 1 ;;
            "!=") ((cmp != 0)) || return 1 ;;
            *) echo "[setup] error: cannot read requires-python clause '$clause' in pyproject.toml" >&2; exit 1 ;;
        esac
    done
}

# The Python .venv was made with, from its pyvenv.cfg (no need to run it: it may be broken).
venv_version=""
if [[ -f "$VENV/pyvenv.cfg" ]]; then
    venv_version="$(sed -E -n 's/^version(_info)? *= *([0-9]+\.[0-9]+).*/\2/p' "$VENV/pyvenv.cfg" | head -n 1)"
fi

if [[ -n "${PYTHON:-}" ]]; then
    candidates=("$PYTHON")  # asked for by name: no silent fallback to another interpreter
else
    candidates=()
    [[ -n "$venv_version" ]] && candidates+=("python$venv_version")
    candidates+=(python3.11 python3.12 python3)
fi
PY="" PY_VERSION="" tried=()
for candidate in "${candidates[@]}"; do
    if ! command -v "$candidate" >/dev/null 2>&1; then
        tried+=("$candidate (not found)")
    elif ! version="$(python_version "$candidate")"; then
        tried+=("$candidate (does not run)")
    elif ! version_ok "$version"; then
        tried+=("$candidate (Python $version)")
    else
        PY="$(command -v "$candidate")" PY_VERSION="$version"
        break
    fi
done
if [[ -z "$PY" ]]; then
    echo "[setup] error: daftseg needs Python $SPEC (requires-python in pyproject.toml);" \
         "tried: $(printf '%s; ' "${tried[@]}")install one, or point PYTHON at one:" \
         "PYTHON=/path/to/python3.11 $0" >&2
    exit 1
fi

if [[ ! -e "$VENV" ]]; then
    venv_action="create"
elif [[ "$venv_version" != "$PY_VERSION" ]]; then
    venv_action="recreate (made with Python ${venv_version:-unknown}, not $PY_VERSION)"
elif ! python_version "$VENV/bin/python" >/dev/null; then
    venv_action="recreate (its python does not run)"
else
    venv_action="keep"
fi

if ((DRY_RUN)); then
    echo "[setup] python: $PY (Python $PY_VERSION; requires-python $SPEC)"
    echo "[setup] .venv: $venv_action"
    exit 0
fi

want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" "$ROOT/inference_requirements.txt" | sha256sum | cut -d' ' -f1)"
if [[ "$venv_action" == "keep" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    exit 0
fi

if [[ "$venv_action" == recreate* ]]; then
    echo "[setup] $VENV: $venv_action; removing it" >&2
    rm -rf "$VENV"
fi
echo "[setup] setting up $VENV with $PY (first run installs torch: a few minutes)" >&2
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
rm -f "$STAMP"  # until everything below has succeeded
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install "${BUILD_TOOLS[@]}"
# torch first, exactly as pinned, so that no other requirement pulls a different build.
"${PIP[@]}" install "${TORCH[@]}"
"${PIP[@]}" install -e "${ROOT}[infer,eval,export,train,data,app,quant,dev]"

# The wheelhouse: what a laptop install (inference_requirements.txt) and `pip install daftseg[infer,eval]`
# need, so that the packaging tests can install into fresh venvs with --no-index.
"$VENV/bin/python" - "$ROOT/pyproject.toml" > "$VENV/wheelhouse-requirements.txt" <<'EOF'
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
extras = project["optional-dependencies"]
print("\n".join(project["dependencies"] + extras["infer"] + extras["eval"]))
EOF
rm -rf "$WHEELHOUSE.partial"
"${PIP[@]}" download --only-binary=:all: -d "$WHEELHOUSE.partial" \
    -r "$ROOT/inference_requirements.txt" -r "$VENV/wheelhouse-requirements.txt"
rm -rf "$WHEELHOUSE"
mv "$WHEELHOUSE.partial" "$WHEELHOUSE"

echo "$want" > "$STAMP"
echo "[setup] done" >&2
