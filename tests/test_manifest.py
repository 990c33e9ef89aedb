"""daftseg-segment --manifest (issue 27, item 4): every row as the single-scan command makes it, the
checks before anything runs, resume, --workers and the Slurm array. The reference for each row is
the single-scan command run on that row alone."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk
from ov_toy_models import toy_models_dir  # noqa: F401 - pytest fixture
from scan_writers import ROTATED, write_volume
from slurm_support import install_fake_sbatch, shellcheck

from daftseg import segment

REPO = Path(__file__).resolve().parents[1]
COMMON = ["--precision", "f32", "--cache_dir", ""]


def _ct(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ct = np.full((6, 30, 36), -1000, np.int16)
    yy, xx = np.mgrid[:30, :36]
    for z in range(6):
        ct[z][(yy - 12) ** 2 + (xx - 14) ** 2 < 40 + 8 * z] = 60 + int(rng.integers(0, 40))
    return ct


def _labels() -> np.ndarray:
    lab = np.zeros((6, 30, 36), np.uint8)
    lab[1:5, 6:19, 7:22] = 3
    lab[2:6, 18:27, 24:33] = 7
    return lab


@pytest.fixture()
def cohort(tmp_path):
    """A manifest of four rows (NIfTI + label map, NIfTI + JSON boxes, PNG + CSV boxes, npz + JSON),
    relative paths, a modality column with one empty cell (--modality fills it)."""
    scans = tmp_path / "scans"
    scans.mkdir()
    write_volume(scans / "ct1.nii.gz", _ct(1), direction=ROTATED)
    write_volume(scans / "ct1_lab.nii.gz", _labels(), direction=ROTATED)
    write_volume(scans / "ct2.nii.gz", _ct(2))
    (scans / "ct2.json").write_text(json.dumps([{"box": [5, 4, 1, 25, 20, 5], "label": 2, "name": "organ"}]))
    rgb = np.random.default_rng(3).integers(0, 255, (40, 50, 3)).astype(np.uint8)
    cv2.imwrite(str(scans / "photo.png"), rgb)
    (scans / "photo.csv").write_text("x_min,y_min,x_max,y_max,label\n4,5,30,28,1\n20,10,45,35,5\n")
    np.savez_compressed(scans / "2DBox_US_0001.npz", imgs=rgb, boxes=np.array([[4, 5, 30, 28]]))
    (scans / "us.json").write_text(json.dumps([[4, 5, 30, 28]]))
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("image,boxes,output,modality\n"
                        "scans/ct1.nii.gz,scans/ct1_lab.nii.gz,out/ct1_seg.nii.gz,CT\n"
                        "scans/ct2.nii.gz,scans/ct2.json,out/ct2_seg.nii.gz,\n"
                        "scans/photo.png,scans/photo.csv,out/photo_seg.png,Dermoscopy\n"
                        "scans/2DBox_US_0001.npz,scans/us.json,out/us_seg.npz,\n")
    rows = [("ct1.nii.gz", ["--boxes_from", "ct1_lab.nii.gz", "--modality", "CT"], "ct1_seg.nii.gz"),
            ("ct2.nii.gz", ["--boxes", "ct2.json", "--modality", "CT"], "ct2_seg.nii.gz"),
            ("photo.png", ["--boxes", "photo.csv", "--modality", "Dermoscopy"], "photo_seg.png"),
            ("2DBox_US_0001.npz", ["--boxes", "us.json", "--modality", "CT"], "us_seg.npz")]
    return tmp_path, manifest, rows


def _labels_of(path: Path) -> np.ndarray:
    if path.suffix == ".png":
        return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if path.suffix == ".npz":
        with np.load(path) as z:
            return z["segs"]
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _reference(tmp_path: Path, rows, models: Path) -> dict[str, tuple[np.ndarray, dict]]:
    """Each row through the single-scan command alone: name -> (labels, sidecar without the output names)."""
    ref = {}
    for image, box_args, out in rows:
        scans = tmp_path / "scans"
        args = [a if a.startswith("--") or a == "CT" or a == "Dermoscopy" else str(scans / a) for a in box_args]
        target = tmp_path / "ref" / out
        assert segment.main(["--image", str(scans / image), *args, "-m", str(models), "-o", str(target),
                             *COMMON]) == 0
        ref[out] = (_labels_of(target), json.loads(Path(f"{target}.json").read_text()))
    return ref


def _same_as_reference(out_dir: Path, ref) -> None:
    for name, (labels, sidecar) in ref.items():
        np.testing.assert_array_equal(_labels_of(out_dir / name), labels, err_msg=name)
        assert json.loads((out_dir / f"{name}.json").read_text()) == sidecar, name
        assert labels.max() > 0


def _summary(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_row_as_the_single_scan_command(cohort, toy_models_dir, capsys):  # noqa: F811
    tmp_path, manifest, rows = cohort
    ref = _reference(tmp_path, rows, toy_models_dir)
    assert segment.main(["--manifest", str(manifest), "-m", str(toy_models_dir), "--modality", "CT", *COMMON]) == 0
    _same_as_reference(tmp_path / "out", ref)
    summary = _summary(tmp_path / "cohort.summary.csv")
    assert [(r["row"], r["status"], r["labels"], r["error"]) for r in summary] == [
        ("1", "ok", "3 7", ""), ("2", "ok", "2", ""), ("3", "ok", "1 5", ""), ("4", "ok", "1", "")]
    assert all(float(r["seconds"]) > 0 for r in summary)
    assert "4 of 4 rows written" in capsys.readouterr().out

    # a rerun skips every complete result; a row whose files were deleted runs again
    for p in (tmp_path / "out").glob("ct2_seg.nii.gz*"):
        p.unlink()
    capsys.readouterr()
    assert segment.main(["--manifest", str(manifest), "-m", str(toy_models_dir), "--modality", "CT", *COMMON]) == 0
    out = capsys.readouterr().out
    assert "skipped 3 of 4 rows" in out and "1 of 1 rows written" in out and "row 2: " in out
    _same_as_reference(tmp_path / "out", ref)
    assert [r["status"] for r in _summary(tmp_path / "cohort.summary.csv")] == ["skipped", "ok", "skipped", "skipped"]


def test_two_workers_write_what_one_process_writes(cohort, toy_models_dir, capsys):  # noqa: F811
    tmp_path, manifest, rows = cohort
    ref = _reference(tmp_path, rows, toy_models_dir)
    capsys.readouterr()
    assert segment.main(["--manifest", str(manifest), "-m", str(toy_models_dir), "--modality", "CT", "--workers",
                         "2", "--summary", str(tmp_path / "s.csv"), *COMMON]) == 0
    out = capsys.readouterr().out
    assert "worker 0: 2 rows, 1 OpenVINO thread" in out and "worker 1: 2 rows" in out
    _same_as_reference(tmp_path / "out", ref)
    assert [r["status"] for r in _summary(tmp_path / "s.csv")] == ["ok"] * 4


def test_problems_are_found_before_anything_runs(cohort, toy_models_dir, capsys):  # noqa: F811
    tmp_path, manifest, _ = cohort
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "photo_seg.png").write_bytes(b"someone else's file")
    lines = manifest.read_text().splitlines()
    lines += ["scans/missing.nii.gz,scans/ct2.json,out/x.nii.gz,CT",  # no such scan
              "scans/ct2.nii.gz,scans/ct2.json,out/ct1_seg.nii.gz,CT",  # row 1's output
              "scans/ct2.nii.gz,scans/ct2.json,out/x.dcm,CT"]  # not a label format
    manifest.write_text("\n".join(lines) + "\n")
    rc = segment.main(["--manifest", str(manifest), "-m", str(tmp_path / "no_models"), *COMMON])
    err = capsys.readouterr().err
    assert rc == 1 and f"models folder {tmp_path / 'no_models'} not found" in err
    assert "row 3 (photo.png): " in err and "is not a complete result of this row (pass --overwrite" in err
    assert "row 5 (missing.nii.gz): " in err and "missing.nii.gz not found" in err
    assert "row 6 (ct2.nii.gz): writes " in err and "as row 1 does" in err
    assert "row 7 (ct2.nii.gz): " in err and "DICOM SEG output references the instances of a DICOM series" in err
    assert "5 problems in" in err and "nothing was run" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["photo_seg.png"]
    assert not (tmp_path / "cohort.summary.csv").exists()


def test_a_bad_row_fails_alone(cohort, toy_models_dir, capsys):  # noqa: F811
    tmp_path, manifest, _ = cohort
    (tmp_path / "scans" / "ct2.json").write_text(json.dumps([[5, 4, 1, 25, 20]]))  # 5 numbers for a 3D scan
    assert segment.main(["--manifest", str(manifest), "-m", str(toy_models_dir), "--modality", "CT", *COMMON]) == 1
    captured = capsys.readouterr()
    assert "error: row 2 (" in captured.err and "3 of 4 rows written, 1 failed" in captured.out
    summary = _summary(tmp_path / "cohort.summary.csv")
    assert [r["status"] for r in summary] == ["ok", "failed", "ok", "ok"] and "5 numbers" in summary[1]["error"]
    assert not list((tmp_path / "out").glob("ct2_seg*"))


def test_manifest_and_single_scan_options_do_not_mix(cohort, toy_models_dir, capsys):  # noqa: F811
    _, manifest, _ = cohort
    with pytest.raises(SystemExit):
        segment.main(["--manifest", str(manifest), "--image", "x.png", "-m", str(toy_models_dir)])
    assert "--image: a manifest row gives these" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        segment.main(["--image", "x.png", "-m", str(toy_models_dir)])
    assert "one of --boxes, --box, --boxes_from are required (or --manifest)" in capsys.readouterr().err


def test_fake_sbatch_array_over_a_manifest(cohort, toy_models_dir, monkeypatch, capsys):  # noqa: F811
    tmp_path, manifest, rows = cohort
    ref = _reference(tmp_path, rows, toy_models_dir)
    install_fake_sbatch(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SBATCH_STATE", str(tmp_path / "jobs.json"))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    assert segment.main(["--manifest", str(manifest), "-m", str(toy_models_dir), "--modality", "CT", "--slurm",
                         "2", "--submit", "--partition", "cpu", *COMMON]) == 0
    folder = tmp_path / "cohort_slurm"
    jobs = json.loads((tmp_path / "jobs.json").read_text())
    logs = {p.name: p.read_text()[-3000:] for p in folder.glob("*.log")}
    assert [j["script"] for j in jobs] == ["segment.sbatch", "check.sbatch"] and jobs[0]["tasks"] == [0, 0], logs
    assert jobs[1]["rc"] == 0, logs
    _same_as_reference(tmp_path / "out", ref)
    merged = _summary(folder / "summary.csv")
    assert [(r["row"], r["status"]) for r in merged] == [(str(i), "ok") for i in range(1, 5)]
    assert "4 of 4 rows of" in logs["check.sbatch.log"]
    text = (folder / "segment.sbatch").read_text()
    assert "#SBATCH --array=0-1\n" in text and "#SBATCH --partition=cpu\n" in text
    assert '--shard "${SLURM_ARRAY_TASK_ID}/2" --balance size' in text and "--modality CT" in text
    proc = subprocess.run([shellcheck(), "--shell=bash", *map(str, sorted(folder.glob("*.sbatch"))),
                           str(folder / "submit.sh")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout
