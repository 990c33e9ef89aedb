"""``./demo.sh --fast``: the INT8 export, a second run in fast mode, and exact vs fast per modality.

After the exact run the demo writes the INT8 image encoders (``python -m daftseg.quantize``, the same
gate as ``liteov.py --int8``: models whose INT8 encoder is current are skipped), segments the same
cases again with ``PerfectMetaOpenVINO.py --fast`` into ``segs_fast/``, scores them, and writes
``report/exact_vs_fast.md``: per modality, the seconds of each run and the mean DSC and NSD of each,
so the trade-off is seen before choosing fast mode. A model whose INT8 encoder the gate refuses
runs its standard encoder in fast mode (said in the output and the report).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from daftseg.atomic import atomic_write_text

COLUMNS = ("modality", "cases", "exact s", "fast s", "exact DSC %", "fast DSC %", "exact NSD %", "fast NSD %")


def shown(cmd: list) -> str:
    return " ".join(str(c) for c in cmd).replace(sys.executable, "python")


def int8_export(models_dir: Path, cwd: Path, fetch: bool = True) -> str:
    """Quantise the folder's image encoders; one line saying what came of it (a refusal is not fatal).

    fetch: False calibrates without the MNI152 volume unless the demo already has it (``--no_fetch``).
    """
    cmd = [sys.executable, "-m", "daftseg.quantize", str(models_dir)]
    if not fetch:
        cmd += ["--calibration_mr", "none"]
    print(f"\n$ {shown(cmd)}", flush=True)
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, check=False)
    if done.returncode == 0:
        return f"INT8 image encoders in {models_dir} (python -m daftseg.quantize; the gate passed)"
    return (f"INT8 export refused or failed (exit {done.returncode}, the reason is printed above): fast mode "
            "runs the standard encoder of those models")


def fast_run(out: Path, models_dir: Path, report: Path, cwd: Path) -> None:
    """The same cases in fast mode, then scored as the exact run was."""
    py = sys.executable
    for cmd in ([py, "PerfectMetaOpenVINO.py", "-i", out / "imgs", "-o", out / "segs_fast", "-m", models_dir,
                 "--cache_dir", out / "openvinocache", "--fast", "--timing_csv", report / "timing_fast.csv"],
                [py, "evaluation/compute_metrics.py", "-s", out / "segs_fast", "-g", out / "gts",
                 "-csv_dir", report / "metrics_fast.csv", "-num_workers", "2"]):
        print(f"\n$ {shown(cmd)}", flush=True)
        subprocess.run([str(c) for c in cmd], check=True, cwd=cwd)


def seconds_by_modality(timing_csv: Path) -> dict[str, float]:
    from daftseg.metrics.summary import target_of

    total: dict[str, float] = defaultdict(float)
    with open(timing_csv, newline="") as f:
        for row in csv.DictReader(f):
            total[target_of(row["case"])] += float(row["seconds"])
    return dict(total)


def summary_rows(summary_csv: Path) -> dict[str, dict[str, str]]:
    with open(summary_csv, newline="") as f:
        return {row["target"]: row for row in csv.DictReader(f)}


def comparison(report: Path) -> list[str]:
    """``report/exact_vs_fast.md`` from the two runs' timing and summary files; returns its table lines."""
    times = {mode: seconds_by_modality(report / f"timing{suffix}.csv") for mode, suffix in (("exact", ""), ("fast", "_fast"))}
    scores = {mode: summary_rows(report / f"metrics{suffix}_summary.csv") for mode, suffix in (("exact", ""), ("fast", "_fast"))}
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    for target, exact in scores["exact"].items():
        fast = scores["fast"].get(target, {})
        if target == "Average":
            te, tf = (f"{sum(times[m].values()):.1f}" for m in ("exact", "fast"))
        else:
            te, tf = (f"{times[m][target]:.1f}" if target in times[m] else "-" for m in ("exact", "fast"))
        lines.append(f"| {target} | {exact['cases']} | {te} | {tf} | {exact['dsc_pct']} | {fast.get('dsc_pct', '-')} "
                     f"| {exact['nsd_pct']} | {fast.get('nsd_pct', '-')} |")
    text = ("# Exact vs fast mode\n\nSeconds: the sum over a modality's cases of `PerfectMetaOpenVINO.py`'s per-case "
            "times (timing.csv, timing_fast.csv; each includes loading its model once). DSC and NSD: "
            "`evaluation/compute_metrics.py` (metrics.csv, metrics_fast.csv). Fast mode: INT8 image encoders "
            "where the export's gate wrote them, the other graphs at OpenVINO's best precision for this CPU; its "
            "outputs are not DAFT's.\n\n" + "\n".join(lines) + "\n")
    atomic_write_text(report / "exact_vs_fast.md", text)
    return lines
