"""The laptop / Docker path: a venv holding only inference_requirements.txt runs predict.sh.

The venv is made fresh for the test run and gets numpy, opencv-python-headless and openvino from
the wheels ``scripts/setup.sh`` keeps (tests/offline_venv.py: no network), nothing else. The app
folder holds exactly what the Dockerfile copies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from container_support import copy_tree_items
from offline_venv import create_venv
from ov_toy_models import write_toy_models

from daftseg.data.synthetic import main as synthetic_main

ROOT = Path(__file__).resolve().parents[1]
APP_FILES = ["PerfectMetaOpenVINO.py", "predict.sh", "daftseg/__init__.py", "daftseg/atomic.py", "daftseg/geometry.py",
             "daftseg/inference", "daftseg/configs/modalities.toml"]


@pytest.fixture(scope="module")
def infer_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_venv(tmp_path_factory.mktemp("venv") / "infer", ["-r", str(ROOT / "inference_requirements.txt")])


def test_predict_sh_in_a_torch_free_venv(tmp_path, infer_python):
    installed = subprocess.run([str(infer_python), "-m", "pip", "list", "--format=freeze"],
                               capture_output=True, text=True, check=True).stdout.lower()
    assert "torch" not in installed

    app = tmp_path / "app"
    copy_tree_items(APP_FILES, app)
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
