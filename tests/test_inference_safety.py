"""Inference never harms its input, and a killed run leaves only complete segs files."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ov_toy_models import toy_models_dir  # noqa: F401 - pytest fixture
from snapshots import tree_snapshot

from daftseg.inference.runner import main

REPO = Path(__file__).resolve().parents[1]
CASE = "2DBox_XRay_0001.npz"


@pytest.mark.parametrize(
    ("output", "why"),
    [
        (lambda inp: inp, "is the input folder"),
        (lambda inp: inp / ".." / inp.name, "is the input folder"),
        (lambda inp: inp.parent / "link_to_imgs", "is the input folder"),
        (lambda inp: inp.parent, "holds the input folder"),
        (lambda inp: inp / "segs", "lies inside the input folder"),
    ],
)
def test_output_folder_overlapping_the_input_is_refused(tmp_path: Path, output, why) -> None:
    inp = tmp_path / "imgs"
    inp.mkdir()
    rng = np.random.default_rng(0)
    np.savez_compressed(
        inp / CASE, imgs=rng.integers(0, 256, (30, 40, 3), np.uint8), boxes=np.array([[1, 2, 9, 9]])
    )
    (tmp_path / "link_to_imgs").symlink_to(inp, target_is_directory=True)
    before = tree_snapshot(tmp_path)
    err = io.StringIO()
    out_dir = output(inp)
    # the models folder does not exist: the check must come before anything is loaded or written
    rc = main(
        ["-i", str(inp), "-o", str(out_dir), "-m", str(tmp_path / "no_models")],
        stdout=io.StringIO(),
        stderr=err,
    )
    assert rc == 1
    assert err.getvalue().startswith(f"error: output folder {out_dir} {why} {inp}")
    assert tree_snapshot(tmp_path) == before  # nothing written, nothing replaced, no folder created


def test_sibling_output_folder_is_accepted(toy_models_dir, tmp_path: Path) -> None:  # noqa: F811
    inp, out = tmp_path / "imgs", tmp_path / "imgs_segs"  # shares a name prefix, not a folder
    inp.mkdir()
    rng = np.random.default_rng(0)
    np.savez_compressed(
        inp / CASE, imgs=rng.integers(0, 256, (30, 40, 3), np.uint8), boxes=np.array([[1, 2, 9, 9]])
    )
    rc = main(
        ["-i", str(inp), "-o", str(out), "-m", str(toy_models_dir), "--cache_dir", ""],
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    assert rc == 0 and [p.name for p in out.iterdir()] == [CASE]


def _write_cases(folder: Path, n: int) -> list[str]:
    """3D cases whose segs take tens of milliseconds to compress: a kill lands inside a write."""
    folder.mkdir()
    rng = np.random.default_rng(1)
    names = []
    for i in range(n):
        name = f"3DBox_CT_{i:04d}.npz"
        imgs = rng.integers(0, 256, (24, 192, 192), np.uint8)
        np.savez(folder / name, imgs=imgs, boxes=np.array([[10, 12, 0, 180, 170, 23]]), spacing=np.ones(3))
        names.append(name)
    return names


def _cli(inp: Path, out: Path, models: Path, timing: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO / "PerfectMetaOpenVINO.py"),
        "-i",
        str(inp),
        "-o",
        str(out),
        "-m",
        str(models),
        "--cache_dir",
        "",
        "--threads",
        "1",
        "--precision",
        "f32",
        "--timing_csv",
        str(timing),
    ]


def _kill_inside_a_write(cmd: list[str], out: Path, cwd: Path) -> bool:
    """Start inference, SIGKILL it as soon as a temporary segs file exists; True if it was caught there."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if out.is_dir() and any(n.endswith(".tmp") for n in os.listdir(out)):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.0005)
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        proc.wait()
    return proc.returncode == -signal.SIGKILL


def test_sigkill_mid_case_leaves_only_complete_segs_and_a_rerun_completes(
    toy_models_dir,  # noqa: F811
    tmp_path: Path,
) -> None:
    inp, out, timing = tmp_path / "imgs", tmp_path / "segs", tmp_path / "timing.csv"
    names = _write_cases(inp, 4)
    cmd = _cli(inp, out, toy_models_dir, timing)
    killed = False
    for _ in range(3):  # a busy machine can let a write finish before the kill lands; try again
        if _kill_inside_a_write(cmd, out, tmp_path):
            killed = True
            leftovers = [n for n in os.listdir(out) if n.endswith(".tmp")]
            if leftovers:
                break
    assert killed, "inference ended before it could be killed"
    assert leftovers, "no kill landed inside a segs write in 3 tries"
    assert all(n.startswith(".") for n in leftovers)  # hidden: no *.npz scan sees them
    visible = sorted(n for n in os.listdir(out) if not n.startswith("."))
    assert set(visible) < set(names)  # killed before the batch ended
    partial = {}
    for name in visible:  # every visible segs file is complete
        with np.load(out / name) as z:
            partial[name] = z["segs"]
    assert not timing.exists()  # the timing CSV appears only when the batch ends

    # the rerun completes, removes the dead run's temporaries, and writes the same segs
    old = time.time() - 5  # the rerun must see them as older than itself even on a coarse clock
    for n in leftovers:
        os.utime(out / n, (old, old))
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == names
    assert timing.read_text().count("\n") == 1 + len(names)
    for name, segs in partial.items():
        with np.load(out / name) as z:
            np.testing.assert_array_equal(z["segs"], segs)
