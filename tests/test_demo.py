"""The demo's steps (no network): synthetic cases -> existing IR -> inference -> metrics -> report."""

from __future__ import annotations

import csv

from ov_toy_models import write_toy_models

from daftseg.demo import main as demo_main


def test_demo_with_existing_models(tmp_path, capsys):
    models = write_toy_models(tmp_path / "openvinomodels", ["lite_medsam"])
    out = tmp_path / "demo"
    assert demo_main(["--out", str(out), "--models_dir", str(models), "--size", "96", "--max_slices", "8",
                      "--no_fetch"]) == 0
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
