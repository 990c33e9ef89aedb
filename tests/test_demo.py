"""The demo's steps (no network): synthetic cases -> existing IR -> inference -> metrics -> report."""

from __future__ import annotations

import csv

import pytest
from ov_toy_models import write_toy_models

from daftseg.demo import MARKER, ROOT, NotDemoFolder, claim_folder
from daftseg.demo import main as demo_main


def test_demo_with_existing_models_and_fast(tmp_path, capsys):
    models = write_toy_models(tmp_path / "openvinomodels", {"lite_medsam": {"alpha": 1.0}})
    out = tmp_path / "demo"
    assert demo_main(["--out", str(out), "--models_dir", str(models), "--size", "96", "--max_slices", "8",
                      "--no_fetch", "--fast"]) == 0
    report = out / "report"
    for name in ("timing.csv", "metrics.csv", "metrics_summary.md", "metrics_summary.csv", "metrics.png"):
        assert (report / name).is_file(), name
    with open(report / "timing.csv") as f:
        timing = list(csv.DictReader(f))
    cases = sorted(p.name for p in (out / "imgs").glob("*.npz"))
    assert sorted(r["case"] for r in timing) == cases and len(cases) == 13
    assert {r["model"] for r in timing} == {"lite_medsam"}
    assert len(list((report / "overlays").glob("*.png"))) >= len(cases)
    printed = capsys.readouterr().out
    assert f"existing OpenVINO models in {models}/ (lite_medsam)" in printed
    assert "RANDOM WEIGHTS" not in printed

    # --fast: the INT8 export, a second run with it, exact vs fast per modality
    assert (models / "lite_medsam_image_encoder_int8.xml").is_file()
    assert "daftseg.quantize" in printed and "--calibration_mr none" in printed and "--fast" in printed
    with open(report / "timing_fast.csv") as f:
        assert sorted(r["case"] for r in csv.DictReader(f)) == cases
    table = [line for line in (report / "exact_vs_fast.md").read_text().splitlines() if line.startswith("| ")]
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table[1:])}
    summaries = {}
    for mode, name in (("exact", "metrics_summary.csv"), ("fast", "metrics_fast_summary.csv")):
        with open(report / name) as f:
            summaries[mode] = {r["target"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(summaries["exact"]) and "Average" in rows and len(rows) > 5
    seconds = {}
    for mode, name in (("exact", "timing.csv"), ("fast", "timing_fast.csv")):
        with open(report / name) as f:
            seconds[mode] = {r["case"]: float(r["seconds"]) for r in csv.DictReader(f)}
    ct = [c for c in cases if "_CT_" in c]  # 2D and 3D
    for col, mode in ((1, "exact"), (2, "fast")):
        assert rows["CT"][col] == f"{sum(seconds[mode][c] for c in ct):.1f}"
        assert rows["Average"][col] == f"{sum(seconds[mode].values()):.1f}"
    for target, (n, _, _, dsc_e, dsc_f, nsd_e, nsd_f) in rows.items():
        assert n == summaries["exact"][target]["cases"]
        assert (dsc_e, nsd_e) == (summaries["exact"][target]["dsc_pct"], summaries["exact"][target]["nsd_pct"])
        assert (dsc_f, nsd_f) == (summaries["fast"][target]["dsc_pct"], summaries["fast"][target]["nsd_pct"])
    assert "fast mode    : INT8 image encoders in" in printed


def test_demo_refuses_a_folder_it_did_not_create(tmp_path, monkeypatch, capsys):
    """A relative --out is taken from the current folder; a folder without the marker is left alone."""
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine"
    (mine / "imgs").mkdir(parents=True)
    (mine / "imgs" / "precious.npz").write_bytes(b"user data")
    (mine / "report").mkdir()
    assert demo_main(["--out", "mine", "--no_fetch"]) == 1
    err = capsys.readouterr().err
    assert f"--out {mine} is not empty and was not created by the demo" in err
    assert (mine / "imgs" / "precious.npz").read_bytes() == b"user data"
    assert sorted(p.name for p in mine.iterdir()) == ["imgs", "report"]  # no marker was planted
    assert not (ROOT / "mine").exists()


def test_demo_folder_rerun_deletes_only_its_own_entries(tmp_path):
    out = tmp_path / "demo"
    claim_folder(out)  # a new folder is claimed
    assert (out / MARKER).is_file()
    (out / "imgs").mkdir()
    (out / "imgs" / "old.npz").write_bytes(b"old case")
    (out / "random_lite_medsam.pth").write_bytes(b"x")
    (out / "notes.txt").write_text("the user's own file")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.npz").write_bytes(b"keep")
    (out / "segs").symlink_to(elsewhere, target_is_directory=True)
    claim_folder(out)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "notes.txt"]
    assert (elsewhere / "keep.npz").read_bytes() == b"keep"  # a link is removed, never followed

    empty = tmp_path / "empty"
    empty.mkdir()
    claim_folder(empty)  # an empty folder is adopted
    assert [p.name for p in empty.iterdir()] == [MARKER]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(NotDemoFolder, match="is a file"):
        claim_folder(a_file)
