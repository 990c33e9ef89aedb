"""Limits the layer under the app and daftseg-segment keeps (issue 23, section 4): small functions in
the app, a runtime sessions module that stays one job, and the app importing its package modules
at the top (lazy only where a heavy or optional library is behind them)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "daftseg"
LAZY_ALLOWED = ("torch", "openvino", "nncf", "SimpleITK", "starlette", "uvicorn", "daftseg.app.handlers")


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_function_in_the_app_is_over_60_lines():
    long = [f"{p.name}:{f.name} ({f.end_lineno - f.lineno + 1} lines)" for p in sorted((PACKAGE / "app").glob("*.py"))
            for f in _functions(p) if f.end_lineno - f.lineno + 1 > 60]
    assert not long, long


def test_the_runtime_sessions_module_is_under_300_lines():
    lines = len((PACKAGE / "inference" / "sessions.py").read_text(encoding="utf-8").splitlines())
    assert lines < 300, lines


def test_the_app_imports_lazily_only_heavy_or_optional_libraries():
    lazy = []
    for path in sorted((PACKAGE / "app").glob("*.py")):
        for function in _functions(path):
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    continue
                lazy += [f"{path.name}:{function.name} imports {n}" for n in names
                         if not n.startswith(LAZY_ALLOWED) and n.split(".")[0] not in ("threading", "time",
                                                                                         "webbrowser")]
    assert not lazy, lazy
