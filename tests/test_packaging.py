"""The built package works outside a checkout: routing table, licence files, console commands.

The sdist is built from a copy of the files setuptools reads (so the checkout gets no build/ or
egg-info), the wheel from that sdist, as ``pip install daftseg-*.tar.gz`` would. The wheel goes
with ``daftseg[infer,eval]`` into a fresh venv from local wheels only (tests/offline_venv.py: no
network), and its commands run in a folder that is not the checkout, with no PYTHONPATH.
"""

from __future__ import annotations

import configparser
import email
import importlib
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from offline_venv import create_venv, offline_env
from ov_toy_models import write_toy_models

from daftseg import entry_points
from daftseg.data.synthetic import main as synthetic_main

ROOT = Path(__file__).resolve().parents[1]
# what setuptools reads to build daftseg: pyproject names the readme and the licence files, and
# finds the packages under daftseg/
BUILD_SOURCES = ["pyproject.toml", "README.md", "LICENSE", "NOTICE", "daftseg"]
TABLE = "daftseg/configs/modalities.toml"
TABLE_916BD4E = "daftseg/configs/modalities_916bd4e.toml"
SPLIT_FILES = [f"daftseg/configs/split_93f1e55/{n}.csv.gz" for n in ("train", "val", "fulldataset")]
COMMANDS = {
    "daftseg-infer": "daftseg.entry_points:infer",
    "daftseg-eval": "daftseg.entry_points:evaluate",
    "daftseg-export": "daftseg.entry_points:export",
    "daftseg-convert": "daftseg.entry_points:convert",
    "daftseg-segment": "daftseg.segment:main",
    "daftseg-app": "daftseg.app:main",
}


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    work = tmp_path_factory.mktemp("build")
    src = work / "src"
    src.mkdir()
    for name in BUILD_SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    build = ("import sys\nfrom setuptools import build_meta\n"
             "print(build_meta.build_sdist(sys.argv[1]))\n")
    subprocess.run([sys.executable, "-c", build, str(work / "sdist")], cwd=src, check=True, capture_output=True)
    (sdist,) = (work / "sdist").glob("daftseg-*.tar.gz")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "--no-index", "-w", str(work / "wheel"), str(sdist)],
                         env=offline_env(), capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    (wheel,) = (work / "wheel").glob("daftseg-*.whl")
    return Dist(sdist, wheel)


@pytest.fixture(scope="module")
def venv_bin(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh venv holding the wheel with its [infer,eval] dependencies (no torch)."""
    python = create_venv(tmp_path_factory.mktemp("venv") / "daftseg", ["daftseg[infer,eval]"],
                         find_links=[dist.wheel.parent])
    return python.parent


def run(venv_bin: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = venv_bin / args[0]
    return subprocess.run([str(exe), *args[1:]], cwd=cwd, env=offline_env(), capture_output=True, text=True,
                          timeout=300, check=False)


def test_wheel_holds_the_routing_table_the_licences_and_the_commands(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as whl:
        names = set(whl.namelist())
        info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        assert whl.read(TABLE) == (ROOT / TABLE).read_bytes()
        # 916bd4e's routing table and the original's compressed file lists are package data too
        for data in (TABLE_916BD4E, *SPLIT_FILES):
            assert whl.read(data) == (ROOT / data).read_bytes(), data
        for page in ("index.html", "app.js", "app.css"):  # the app's page is package data
            assert whl.read(f"daftseg/app/static/{page}") == (ROOT / "daftseg/app/static" / page).read_bytes()
        for licence in ("LICENSE", "NOTICE"):
            assert whl.read(f"{info}/licenses/{licence}") == (ROOT / licence).read_bytes()
        metadata = email.message_from_bytes(whl.read(f"{info}/METADATA"))
        points = configparser.ConfigParser()
        points.read_string(whl.read(f"{info}/entry_points.txt").decode())
    assert metadata["License-Expression"] == "Apache-2.0"
    assert sorted(metadata.get_all("License-File")) == ["LICENSE", "NOTICE"]
    assert dict(points["console_scripts"]) == COMMANDS
    assert not any("__pycache__" in n or n.startswith(("tests/", "configs/")) for n in names)
    for target in COMMANDS.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function))


def test_sdist_holds_the_routing_table_and_the_licences(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        names = set(tar.getnames())
    assert {f"{top}/{TABLE}", f"{top}/LICENSE", f"{top}/NOTICE", f"{top}/pyproject.toml"} <= names


def test_daftseg_infer_and_eval_run_outside_the_checkout(venv_bin: Path, tmp_path: Path) -> None:
    listed = run(venv_bin, "python", "-m", "pip", "list", "--format=freeze", cwd=tmp_path).stdout.lower()
    assert "daftseg==0.1.0" in listed and "torch" not in listed
    # the package (and its default routing table) comes from the venv, not from this checkout
    where = run(venv_bin, "python", "-c", "import daftseg.inference.routing as r; print(r.__file__); "
                "print(r.DEFAULT_TABLE); print(r.RoutingTable.load().fallback)", cwd=tmp_path)
    module, table, fallback = where.stdout.split("\n")[:3]
    venv = venv_bin.parent.resolve()
    assert Path(module).resolve().is_relative_to(venv) and Path(table).resolve().is_relative_to(venv)
    assert fallback == "lite_medsam"

    write_toy_models(tmp_path / "models", ["XRay", "lite_medsam"])
    assert synthetic_main(["-o", str(tmp_path / "data"), "--size", "64", "--prefixes", "2DBox_X-Ray,2DBox_US"]) == 0
    inputs, segs = tmp_path / "data" / "imgs", tmp_path / "segs"
    work = tmp_path / "elsewhere"
    work.mkdir()
    res = run(venv_bin, "daftseg-infer", "-i", str(inputs), "-o", str(segs), "-m", str(tmp_path / "models"),
              "--cache_dir", "", cwd=work)
    assert res.returncode == 0, res.stdout + res.stderr
    # routed by the table: X-Ray by its "contains" rule to XRay, US by its own rule to lite_medsam
    assert "2DBox_X-Ray_0001.npz  model=XRay " in res.stdout
    assert "2DBox_US_0001.npz  model=lite_medsam " in res.stdout
    assert "no routing rule" not in res.stdout + res.stderr
    assert sorted(p.name for p in segs.glob("*.npz")) == ["2DBox_US_0001.npz", "2DBox_X-Ray_0001.npz"]
    for case in segs.glob("*.npz"):
        with np.load(case) as seg, np.load(inputs / case.name) as img:
            assert seg["segs"].shape == img["imgs"].shape[:2] and seg["segs"].max() >= 1

    res = run(venv_bin, "daftseg-eval", "-s", str(segs), "-g", str(tmp_path / "data" / "gts"),
              "--csv_dir", str(work / "metrics.csv"), "--num_workers", "1", "--no-progress", cwd=work)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = (work / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("case,dsc") and len(rows) == 3
    assert (work / "metrics_summary.md").is_file()
    # no compiled-model cache or default-named folder appeared in the working folder
    assert sorted(p.name for p in work.iterdir()) == ["metrics.csv", "metrics_summary.csv", "metrics_summary.md"]


@pytest.mark.parametrize("command", [["daftseg-infer"], ["daftseg-eval"], ["daftseg-convert"], ["daftseg-segment"],
                                     ["daftseg-app"], ["daftseg-export"], ["daftseg-export", "openvino"]])
def test_installed_commands_answer_help(venv_bin: Path, tmp_path: Path, command: list[str]) -> None:
    res = run(venv_bin, *command, "--help", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("usage:") and not res.stderr


def test_export_without_the_export_extra_names_what_to_install(venv_bin: Path, tmp_path: Path) -> None:
    res = run(venv_bin, "daftseg-export", "onnx", "--models_dir", "models", cwd=tmp_path)
    assert res.returncode == 1
    assert "needs torch" in res.stderr and "pip install 'daftseg[export]'" in res.stderr
    assert "Traceback" not in res.stderr


def test_export_dispatcher(capsys: pytest.CaptureFixture[str]) -> None:
    assert entry_points.export([]) == 2
    assert "usage: daftseg-export {onnx,openvino,lite}" in capsys.readouterr().err
    assert entry_points.export(["--help"]) == 0
    assert "liteov.py" in capsys.readouterr().out
    assert entry_points.export(["onx"]) == 2
    assert "unknown step 'onx'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # the step's own parser answers --help
        entry_points.export(["openvino", "--help"])
    assert stop.value.code == 0 and "usage: onnx2openvino.py" in capsys.readouterr().out


def test_load_main_tells_a_missing_extra_from_a_broken_install() -> None:
    with pytest.raises(entry_points.MissingDependency, match=r"needs no_such_dependency_xyz.*daftseg\[eval\]"):
        entry_points.load_main("no_such_dependency_xyz.module", "daftseg-eval", "eval")
    with pytest.raises(ModuleNotFoundError):
        entry_points.load_main("daftseg.no_such_module", "daftseg-eval", "eval")


def test_infer_command_sets_single_threaded_blas_before_numpy() -> None:
    code = ("import os, sys\nfrom daftseg import entry_points\nassert 'numpy' not in sys.modules\n"
            "sys.argv = ['daftseg-infer', '--help']\n"
            "try:\n    entry_points.infer()\nexcept SystemExit:\n    pass\n"
            "print(os.environ.get('OPENBLAS_NUM_THREADS'))\n")
    for given, expected in ((None, "1"), ("3", "3")):  # the user's own setting wins
        env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
        if given:
            env["OPENBLAS_NUM_THREADS"] = given
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.splitlines()[-1] == expected
