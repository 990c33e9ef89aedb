"""Folder evaluator and ``evaluation/compute_metrics.py`` end to end on a tmp folder."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from daftseg.metrics import CaseResult, evaluate_folder, results_csv, score_case, summarize, target_of
from daftseg.metrics.evaluate import build_parser, main

REPO = Path(__file__).resolve().parents[1]
SPACING = np.array([2.5, 0.75, 0.75])


def make_cases(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """gts/ and segs/ with a 3D CT case, two 2D cases, and four broken ones."""
    gts, segs = root / "gts", root / "segs"
    gts.mkdir()
    segs.mkdir()
    rng = np.random.default_rng(0)
    ct = np.zeros((10, 32, 32), np.uint16)
    ct[2:8, 4:20, 6:22] = 1
    ct[3:9, 18:30, 10:28] = 2
    ct_pred = ct.copy()
    ct_pred[2:4] = 0
    ct_pred[rng.random(ct.shape) < 0.02] = 2
    xr = np.zeros((40, 50), np.uint8)
    xr[5:25, 10:30] = 1
    xr_pred = np.roll(xr, 3, axis=1)
    mic = np.zeros((30, 30), np.uint8)
    mic[3:9, 3:9] = 1
    mic[20:28, 15:25] = 3  # id 2 absent from both: NaN with --labels all
    scored = {"3DBox_CT_0001.npz": (ct, ct_pred), "2DBox_XRay_0001.npz": (xr, xr_pred),
              "2DBox_Microscope_0007.npz": (mic, mic.copy())}
    for name, (gt, pred) in scored.items():
        extra = {"spacing": SPACING} if name.startswith("3D") else {}
        np.savez_compressed(gts / name, gts=gt, imgs=np.zeros(gt.shape, np.uint8), **extra)
        np.savez_compressed(segs / name, segs=pred)
    np.savez_compressed(gts / "2DBox_Endoscope_0002.npz", gts=xr)  # prediction missing
    np.savez_compressed(gts / "2DBox_Dermoscope_0003.npz", gts=xr)
    (segs / "2DBox_Dermoscope_0003.npz").write_bytes(b"not an npz")  # corrupt
    np.savez_compressed(gts / "2DBox_US_0004.npz", gts=xr)
    np.savez_compressed(segs / "2DBox_US_0004.npz", masks=xr)  # wrong key
    np.savez_compressed(gts / "2DBox_Fundus_0005.npz", gts=xr)
    np.savez_compressed(segs / "2DBox_Fundus_0005.npz", segs=xr[:-1])  # wrong shape
    (gts / "notes.txt").write_text("not a case")
    return scored


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def expected_cell(x: float) -> str:
    return "nan" if math.isnan(x) else repr(float(np.round(x, 4)))


@pytest.fixture
def cases(tmp_path):
    return make_cases(tmp_path)


def test_main_writes_csv_and_summary(tmp_path, cases, capsys):
    out = tmp_path / "out" / "metrics.csv"
    rc = main(["-s", str(tmp_path / "segs"), "-g", str(tmp_path / "gts"), "-csv_dir", str(out),
               "-num_workers", "2", "--no-progress"])
    assert rc == 1  # four cases could not be loaded
    rows = read_csv(out)
    names = [r["case"] for r in rows]
    assert names == sorted(names) and len(names) == 7 and "notes.txt" not in names
    assert list(rows[0]) == ["case", "dsc", "nsd"]
    by_name = {r["case"]: r for r in rows}
    for name, (gt, pred) in cases.items():
        spacing = SPACING if gt.ndim == 3 else None
        s = score_case(gt, pred, spacing)
        assert by_name[name]["dsc"] == expected_cell(s.dsc)
        assert by_name[name]["nsd"] == expected_cell(s.nsd)
    assert by_name["2DBox_Microscope_0007.npz"]["dsc"] == "nan"  # label 2 absent from both
    assert by_name["2DBox_Microscope_0007.npz"]["nsd"] == "0.0"  # NaN is not > 0.2
    ct = by_name["3DBox_CT_0001.npz"]
    assert 0.2 < float(ct["dsc"]) < 1 and 0 < float(ct["nsd"]) < 1
    for bad in ("2DBox_Endoscope_0002.npz", "2DBox_Dermoscope_0003.npz", "2DBox_US_0004.npz",
                "2DBox_Fundus_0005.npz"):
        assert by_name[bad]["dsc"] == "nan" and by_name[bad]["nsd"] == "nan"
    err = capsys.readouterr().err
    assert "prediction missing" in err and "cannot read prediction" in err and "shape mismatch" in err

    summary = read_csv(tmp_path / "out" / "metrics_summary.csv")
    targets = [r["target"] for r in summary]
    assert targets == ["CT", "US", "X-Ray", "Dermoscopy", "Endoscopy", "Fundus", "Microscopy", "Average"]
    ct_row = summary[0]
    assert ct_row["cases"] == "1" and ct_row["nan_cases"] == "0" and ct_row["missing"] == "0"
    assert float(ct_row["dsc_pct"]) == pytest.approx(100 * float(ct["dsc"]), abs=0.01)
    md = (tmp_path / "out" / "metrics_summary.md").read_text()
    assert md.startswith("| Target | Cases | Missing | NaN | DSC % | NSD % |") and "| **Average** |" in md
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


def test_present_labels_and_nsd_switches(tmp_path, cases):
    gts, segs = str(tmp_path / "gts"), str(tmp_path / "segs")
    out = tmp_path / "present.csv"
    main(["-s", segs, "-g", gts, "-csv_dir", str(out), "--labels", "present", "-num_workers", "1", "--no-progress"])
    mic = {r["case"]: r for r in read_csv(out)}["2DBox_Microscope_0007.npz"]
    assert (mic["dsc"], mic["nsd"]) == ("1.0", "1.0")
    for flags in (["-nsd", "False"], ["-nsd", "0"], ["-nsd", "no"], ["--no-nsd"]):
        out = tmp_path / "dsc_only.csv"
        main(["-s", segs, "-g", gts, "-csv_dir", str(out), "-num_workers", "1", "--no-progress", *flags])
        assert out.read_text().splitlines()[0] == "case,dsc", flags
    for flags, value in ((["-nsd"], True), (["-nsd", "True"], True), (["-nsd", "yes"], True), ([], True),
                         (["-nsd", "False"], False), (["--no-nsd"], False)):
        assert build_parser().parse_args(flags).nsd is value
    with pytest.raises(SystemExit):
        build_parser().parse_args(["-nsd", "maybe"])


def test_summary_prefix_and_plot(tmp_path, cases):
    png = tmp_path / "plots" / "bars.png"
    rc = main(["-s", str(tmp_path / "segs"), "-g", str(tmp_path / "gts"), "-csv_dir", str(tmp_path / "m.csv"),
               "--summary_prefix", str(tmp_path / "sum" / "table"), "--plot", str(png), "-num_workers", "1",
               "--no-progress"])
    assert rc == 1
    assert (tmp_path / "sum" / "table.csv").is_file() and (tmp_path / "sum" / "table.md").is_file()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_all_good_cases_exit_zero_and_parallel_equals_serial(tmp_path, cases):
    for name in ("2DBox_Endoscope_0002.npz", "2DBox_Dermoscope_0003.npz", "2DBox_US_0004.npz",
                 "2DBox_Fundus_0005.npz"):
        (tmp_path / "gts" / name).unlink()
    gts, segs = tmp_path / "gts", tmp_path / "segs"
    assert main(["-s", str(segs), "-g", str(gts), "-csv_dir", str(tmp_path / "m.csv"), "--no-progress"]) == 0
    serial = evaluate_folder(segs, gts, num_workers=1, progress=False)
    parallel = evaluate_folder(segs, gts, num_workers=3, progress=False)
    assert results_csv(serial) == results_csv(parallel) == (tmp_path / "m.csv").read_text()


def test_spacing_is_used_as_stored(tmp_path, cases):
    """The gt npz spacing goes in unchanged (array axis order); reversing it changes the NSD."""
    gt, pred = cases["3DBox_CT_0001.npz"]
    with pytest.warns(RuntimeWarning) as caught:
        results = evaluate_folder(tmp_path / "segs", tmp_path / "gts", num_workers=1, progress=False)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 4 and all("NaN" in m for m in messages)  # one per broken case
    assert {r.case: r.error for r in results}["2DBox_Dermoscope_0003.npz"] == \
        "cannot read prediction: ValueError: not an npz (zip) file"
    [r] = [r for r in results if r.case == "3DBox_CT_0001.npz"]
    assert r.nsd == score_case(gt, pred, SPACING).nsd
    assert r.nsd != score_case(gt, pred, SPACING[::-1]).nsd


def test_missing_gt_folder_and_empty_folder(tmp_path, capsys):
    assert main(["-g", str(tmp_path / "nope"), "-s", str(tmp_path), "-csv_dir", str(tmp_path / "m.csv")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["-g", str(tmp_path / "empty"), "-s", str(tmp_path), "-csv_dir", str(tmp_path / "m.csv")]) == 2
    assert not (tmp_path / "m.csv").exists()


def test_results_csv_rounding_and_nan():
    rows = [CaseResult("b.npz", 0.123456, 0.99995), CaseResult("a.npz", float("nan"), 0.0, "missing"),
            CaseResult("c.npz", 1.0, 0.5)]
    assert results_csv(rows) == "case,dsc,nsd\na.npz,nan,0.0\nb.npz,0.1235,1.0\nc.npz,1.0,0.5\n"
    assert results_csv(rows, nsd=False) == "case,dsc\na.npz,nan\nb.npz,0.1235\nc.npz,1.0\n"


@pytest.mark.parametrize("name,target", [
    ("3DBox_CT_0001.npz", "CT"), ("3DBox_MR_0002.npz", "MR"), ("3DBox_PET_0003.npz", "PET"),
    ("2DBox_US_0004.npz", "US"), ("2DBox_Ultrasound_0001.npz", "US"), ("2DBox_XRay_0005.npz", "X-Ray"),
    ("2DBox_X-Ray_0005.npz", "X-Ray"), ("2DBox_CXR_0001.npz", "X-Ray"), ("2DBox_Dermoscope_0006.npz", "Dermoscopy"),
    ("2DBox_Endoscope_0007.npz", "Endoscopy"), ("2DBox_Endoscopy_0007.npz", "Endoscopy"),
    ("2DBox_Fundus_0008.npz", "Fundus"), ("2DBox_Microscope_0009.npz", "Microscopy"),
    ("2DBox_OCT_0010.npz", "OCT"), ("2DBox_Mammo_0011.npz", "Mammography"),
    ("2DBox_Mammography_0011.npz", "Mammography"), ("CT_AbdTumor_case1.npz", "CT"),
    ("3DBox_Whatever_0001.npz", "Other"), ("case.npz", "Other"),
])
def test_target_of(name, target):
    assert target_of(name) == target


def test_summarize_means_skip_nan_and_average_is_mean_of_targets():
    rows = summarize(["3DBox_CT_1.npz", "3DBox_CT_2.npz", "2DBox_US_1.npz", "2DBox_US_2.npz"],
                     [0.8, 0.6, 1.0, float("nan")], [0.9, 0.7, 1.0, float("nan")])
    assert [(r.target, r.cases, r.missing, r.nan_cases) for r in rows] == \
        [("CT", 2, 0, 0), ("US", 2, 0, 1), ("Average", 4, 0, 1)]
    assert rows[0].dsc_pct == pytest.approx(70.0) and rows[1].dsc_pct == pytest.approx(100.0)
    assert rows[2].dsc_pct == pytest.approx(85.0) and rows[2].nsd_pct == pytest.approx(90.0)


def test_entry_point_runs_from_repo_root(tmp_path, cases):
    script = "evaluation/compute_metrics.py"
    help_text = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True,
                               check=True).stdout
    for flag in ("--seg_dir", "--gt_dir", "-csv_dir", "-num_workers", "-nsd", "--no-nsd", "--labels",
                 "--summary_prefix", "--plot", "--tolerance"):
        assert flag in help_text
    out = tmp_path / "cli.csv"
    proc = subprocess.run([sys.executable, script, "-s", str(tmp_path / "segs"), "-g", str(tmp_path / "gts"),
                           "-csv_dir", str(out), "-num_workers", "2", "-nsd", "True"],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "CT" in proc.stdout and "Average" in proc.stdout
    assert out.read_text().startswith("case,dsc,nsd\n2DBox_Dermoscope_0003.npz,nan,nan\n")


def test_missing_predictions_count_as_zero_in_the_summary(tmp_path, cases, capsys):
    """Two X-Ray cases, one scored, one without prediction: the mean halves instead of staying put."""
    gts, segs = tmp_path / "gts", tmp_path / "segs"
    for name in ("2DBox_Endoscope_0002.npz", "2DBox_Dermoscope_0003.npz", "2DBox_US_0004.npz",
                 "2DBox_Fundus_0005.npz"):
        (gts / name).unlink()
    [xray] = [n for n in cases if "XRay" in n]
    gt, pred = cases[xray]
    np.savez_compressed(gts / "2DBox_XRay_0099.npz", gts=gt)  # its prediction is never written
    out = tmp_path / "m.csv"
    assert main(["-s", str(segs), "-g", str(gts), "-csv_dir", str(out), "-num_workers", "1", "--no-progress"]) == 1
    scored = score_case(gt, pred, None)
    by_name = {r["case"]: r for r in read_csv(out)}
    assert by_name["2DBox_XRay_0099.npz"]["dsc"] == "nan"  # the per-case CSV says what was computed
    row = {r["target"]: r for r in read_csv(tmp_path / "m_summary.csv")}["X-Ray"]
    assert (row["cases"], row["missing"], row["nan_cases"]) == ("2", "1", "0")
    assert float(row["dsc_pct"]) == pytest.approx(100 * scored.dsc / 2, abs=0.01)
    assert float(row["nsd_pct"]) == pytest.approx(100 * scored.nsd / 2, abs=0.01)
    printed = capsys.readouterr()
    note = "1 of 4 cases had no usable prediction"
    assert note in printed.out, printed.out
    assert note in (tmp_path / "m_summary.md").read_text()
    assert "1 of them for want of a usable prediction" in printed.err


def test_summarize_scores_missing_cases_zero_but_skips_other_nan():
    rows = summarize(["2DBox_US_1.npz", "2DBox_US_2.npz", "2DBox_US_3.npz"], [0.9, float("nan"), float("nan")],
                     [0.8, float("nan"), float("nan")], missing=[False, True, False])
    us = rows[0]
    assert (us.cases, us.missing, us.nan_cases) == (3, 1, 1)
    assert us.dsc_pct == pytest.approx(45.0) and us.nsd_pct == pytest.approx(40.0)
    assert rows[-1].missing == 1
