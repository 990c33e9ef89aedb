"""Throw-away venvs installed without the network, for the packaging tests.

``scripts/setup.sh`` leaves ``<venv>/wheelhouse``: the wheels of the inference and evaluation
dependencies (``inference_requirements.txt``, ``daftseg[infer,eval]``). A test installs from it
with ``--no-index --find-links`` and with pip's configuration files and ``PIP_*`` variables
switched off, so no index (and no machine-wide wheel folder) is ever asked.
``DAFTSEG_WHEELHOUSE=DIR`` points at another folder of wheels.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


class WheelhouseMissing(RuntimeError):
    pass


def wheelhouse() -> Path:
    """The folder of wheels: $DAFTSEG_WHEELHOUSE, else the running venv's ``wheelhouse``."""
    folder = Path(os.environ.get("DAFTSEG_WHEELHOUSE") or Path(sys.prefix) / "wheelhouse")
    if not folder.is_dir() or not any(folder.glob("*.whl")):
        raise WheelhouseMissing(f"no wheels in {folder}: run ./scripts/setup.sh (it fills {folder}), "
                                "or set DAFTSEG_WHEELHOUSE to a folder of the needed wheels")
    return folder


def offline_env(**extra: str) -> dict[str, str]:
    """This process's environment without pip's settings (no configured index or find-links)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    env.update(extra)
    return env


def create_venv(path: Path, requirements: list[str], find_links: list[Path] = ()) -> Path:
    """A fresh venv at ``path`` holding ``requirements`` from local wheels only; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, capture_output=True)
    python = path / "bin" / "python"
    links = [arg for folder in [wheelhouse(), *find_links] for arg in ("--find-links", str(folder))]
    res = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", *links, *requirements],
                         env=offline_env(), capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"offline install of {requirements} into {path} failed:\n{res.stdout}{res.stderr}")
    return python
