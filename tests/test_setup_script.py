"""scripts/setup.sh chooses a Python that pyproject accepts and rebuilds a .venv made with another.

Each test runs the script's ``--dry-run`` (it decides, prints and changes nothing) in a copy of
the repository's skeleton, with its own pyproject requires-python, so the outcome does not depend
on which interpreters this machine has: an impossible range is refused whatever is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HERE = f"{sys.version_info.major}.{sys.version_info.minor}"
MAJOR, MINOR = sys.version_info[:2]


def skeleton(tmp_path: Path, requires: str) -> Path:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "setup.sh", root / "scripts" / "setup.sh")
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    text, n = re.subn(r'(?m)^requires-python = ".*"$', f'requires-python = "{requires}"', text)
    assert n == 1
    (root / "pyproject.toml").write_text(text, encoding="utf-8")
    return root


def dry_run(root: Path, python: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    if python:
        env["PYTHON"] = python
    return subprocess.run(["bash", str(root / "scripts" / "setup.sh"), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def fake_venv(root: Path, version: str, python: Path | str) -> None:
    """A .venv as `python -m venv` leaves it, as far as setup.sh looks: pyvenv.cfg and bin/python."""
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "pyvenv.cfg").write_text(f"home = /x\ninclude-system-site-packages = false\n"
                                               f"version = {version}\n")
    (root / ".venv" / "bin" / "python").symlink_to(python)


def test_no_accepted_python_is_an_error_naming_the_range_and_what_was_tried(tmp_path: Path) -> None:
    root = skeleton(tmp_path, ">=3.99")
    res = dry_run(root)
    assert res.returncode == 1
    assert "needs Python >=3.99" in res.stderr and "PYTHON=" in res.stderr
    for name in ("python3.11", "python3.12", "python3"):  # the fallbacks are listed, none taken
        assert name in res.stderr
    assert not (root / ".venv").exists()


@pytest.mark.parametrize("requires", [f">={MAJOR}.{MINOR + 1}", f"<{MAJOR}.{MINOR}", f">=3.0,!={HERE}"])
def test_python_asked_for_outside_the_range_is_refused_not_replaced(tmp_path: Path, requires: str) -> None:
    res = dry_run(skeleton(tmp_path, requires), python=sys.executable)
    assert res.returncode == 1
    assert f"{sys.executable} (Python {HERE})" in res.stderr and res.stdout == ""


@pytest.mark.parametrize("requires", [f">={HERE},<{MAJOR}.{MINOR + 1}", f">={MAJOR}.{MINOR - 1}", f"=={HERE}"])
def test_python_in_the_range_creates_the_venv(tmp_path: Path, requires: str) -> None:
    res = dry_run(skeleton(tmp_path, requires), python=sys.executable)
    assert res.returncode == 0, res.stderr
    assert f"python: {sys.executable} (Python {HERE};" in res.stdout
    assert ".venv: create" in res.stdout


def test_venv_of_another_python_version_is_recreated(tmp_path: Path) -> None:
    root = skeleton(tmp_path, f">={HERE},<{MAJOR}.{MINOR + 1}")
    fake_venv(root, f"{MAJOR}.{MINOR - 1}.9", sys.executable)
    res = dry_run(root, python=sys.executable)
    assert res.returncode == 0, res.stderr
    assert f".venv: recreate (made with Python {MAJOR}.{MINOR - 1}, not {HERE})" in res.stdout


def test_venv_whose_python_no_longer_runs_is_recreated(tmp_path: Path) -> None:
    root = skeleton(tmp_path, f">={HERE},<{MAJOR}.{MINOR + 1}")
    fake_venv(root, f"{HERE}.0", tmp_path / "uninstalled" / "python")  # e.g. a removed pyenv version
    res = dry_run(root, python=sys.executable)
    assert ".venv: recreate (its python does not run)" in res.stdout


def test_venv_of_the_same_python_version_is_kept(tmp_path: Path) -> None:
    root = skeleton(tmp_path, f">={HERE},<{MAJOR}.{MINOR + 1}")
    fake_venv(root, f"{HERE}.0", sys.executable)
    res = dry_run(root, python=sys.executable)
    assert ".venv: keep" in res.stdout


def test_build_tools_are_pinned_to_what_the_venv_runs() -> None:
    text = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    tools = re.search(r"^BUILD_TOOLS=\((.*)\)$", text, re.MULTILINE)
    assert tools and '"${BUILD_TOOLS[@]}"' in text and "--upgrade" not in text
    pins = dict(t.split("==") for t in tools[1].split())
    assert sorted(pins) == ["pip", "setuptools", "wheel"]
    assert pins == {name: metadata.version(name) for name in pins}  # what setup.sh installed here
