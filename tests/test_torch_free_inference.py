"""The laptop / Docker path: a venv holding only inference_requirements.txt runs predict.sh.

The venv (``.venv-infer/`` at the repository root, rebuilt when the requirements change) gets
numpy, opencv-python-headless and openvino from the package registry, nothing else. The app
folder holds exactly what the Dockerfile copies.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ov_toy_models import write_toy_models

from daftseg.data.synthetic import main as synthetic_main

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-infer"
APP_FILES = ["PerfectMetaOpenVINO.py", "predict.sh", "daftseg/__init__.py", "daftseg/atomic.py", "daftseg/geometry.py",
             "daftseg/inference", "configs/modalities.toml"]


@pytest.fixture(scope="module")
def infer_python() -> Path:
    reqs = ROOT / "inference_requirements.txt"
    stamp = VENV / ".requirements-sha256"
    want = hashlib.sha256(reqs.read_bytes()).hexdigest()
    python = VENV / "bin" / "python"
    if not (stamp.is_file() and stamp.read_text() == want and python.exists()):
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-r", str(reqs)], check=True)
        stamp.write_text(want)
    return python


def test_predict_sh_in_a_torch_free_venv(tmp_path, infer_python):
    installed = subprocess.run([str(infer_python), "-m", "pip", "list", "--format=freeze"],
                               capture_output=True, text=True, check=True).stdout.lower()
    assert "torch" not in installed

    app = tmp_path / "app"
    for rel in APP_FILES:
        src, dst = ROOT / rel, app / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    write_toy_models(app / "openvinomodels", ["lite_medsam"])
    inputs, outputs = tmp_path / "inputs", tmp_path / "outputs"
    assert synthetic_main(["-o", str(tmp_path / "demo"), "--size", "96",
                           "--prefixes", "2DBox_US,3DBox_MR"]) == 0
    shutil.copytree(tmp_path / "demo" / "imgs", inputs)

    env = dict(os.environ, INPUT_DIR=str(inputs), OUTPUT_DIR=str(outputs),
               PATH=f"{infer_python.parent}:{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    res = subprocess.run(["sh", str(app / "predict.sh")], check=False, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    written = sorted(p.name for p in outputs.glob("*.npz"))
    assert written == sorted(p.name for p in inputs.glob("*.npz"))
    for name in written:
        with np.load(outputs / name) as seg, np.load(inputs / name) as case:
            assert seg.files == ["segs"]
            assert seg["segs"].dtype == np.uint16
            assert seg["segs"].shape == case["imgs"].shape[: 3 if name.startswith("3D") else 2]
            assert seg["segs"].max() >= 1  # toy models segment a box-shaped blob
    # the compiled-model cache went under the (writable) inputs folder, as in the harness
    assert (inputs / "openvinocache").is_dir()
