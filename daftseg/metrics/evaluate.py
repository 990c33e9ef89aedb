"""Folder evaluator: the challenge's ``compute_metrics.py`` (spec §8), NumPy 2 safe and faster.

Every ``*.npz`` in the gt folder is a case; the prediction is the file of the same name in
the segmentation folder (key ``segs``; gt key ``gts``, 3D spacing key ``spacing``). A case
whose files cannot be read (missing, corrupt, wrong key, shape mismatch) gets NaN and a
warning instead of stopping the run; the exit code then is 1. (The challenge's script stops at
the first missing prediction; there is no value of its own to reproduce.)

Output: ``case,dsc,nsd`` CSV (4 decimals, sorted by case, ``nan`` for NaN, as computed: a case
without a usable prediction stays ``nan`` there), and a per-target summary printed and written
as CSV and markdown (optionally a bar chart), in which a case without a usable prediction counts
as DSC 0 / NSD 0 and the number of such cases is given.
"""

from __future__ import annotations

import argparse
import functools
import math
import multiprocessing as mp
import sys
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daftseg.atomic import atomic_write_text
from daftseg.metrics.case import LabelMode, score_case
from daftseg.metrics.summary import plot_summary, summarize, summary_csv, summary_markdown, summary_text
from daftseg.metrics.surface import DEFAULT_TOLERANCE_MM


@dataclass(frozen=True)
class CaseResult:
    """One CSV row; ``error`` says why the case could not be scored (then dsc/nsd are NaN).

    ``missing_prediction``: the failure is the prediction's (absent, unreadable, wrong shape), so the
    summary scores the case 0; a ground-truth problem leaves it out of the means instead.
    """

    case: str
    dsc: float
    nsd: float
    error: str | None = None
    missing_prediction: bool = False


def is_3d_case(case: str, gt: np.ndarray) -> bool:
    """The challenge decides by the file name (``3D...``); a 3D array is 3D whatever its name."""
    return Path(case).name.startswith("3D") or gt.ndim == 3


def _load(path: Path, key: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(array under ``key``, ``spacing`` or None) from an npz file; raises with a clear reason."""
    if not zipfile.is_zipfile(path):  # np.load would try to unpickle it and say so, confusingly
        raise ValueError("not an npz (zip) file")
    with np.load(path, allow_pickle=False) as f:
        if key not in f.files:
            raise KeyError(f"no key {key!r} (keys: {', '.join(f.files) or 'none'})")
        return f[key], (f["spacing"] if "spacing" in f.files else None)


def evaluate_case_file(case: str, seg_dir: str | Path, gt_dir: str | Path, *, nsd: bool = True,
                       labels: LabelMode = "all", tolerance: float = DEFAULT_TOLERANCE_MM) -> CaseResult:
    """Score ``gt_dir/case`` against ``seg_dir/case``; never raises for a bad case."""
    nan = float("nan")
    try:
        gt, spacing = _load(Path(gt_dir) / case, "gts")
    except Exception as exc:  # noqa: BLE001 -- any unreadable gt is reported, not fatal
        return CaseResult(case, nan, nan, f"cannot read ground truth: {type(exc).__name__}: {exc}")
    seg_path = Path(seg_dir) / case
    if not seg_path.is_file():
        return CaseResult(case, nan, nan, f"prediction missing: {seg_path}", missing_prediction=True)
    try:
        seg, _ = _load(seg_path, "segs")
    except Exception as exc:  # noqa: BLE001
        return CaseResult(case, nan, nan, f"cannot read prediction: {type(exc).__name__}: {exc}",
                          missing_prediction=True)
    if seg.shape != gt.shape:
        return CaseResult(case, nan, nan, f"shape mismatch: gt {gt.shape} vs prediction {seg.shape}",
                          missing_prediction=True)
    if is_3d_case(case, gt):
        if gt.ndim != 3:
            return CaseResult(case, nan, nan, f"3D case with a {gt.ndim}D array")
        if spacing is None:
            return CaseResult(case, nan, nan, "3D ground truth without 'spacing'")
    try:
        score = score_case(gt, seg, spacing if gt.ndim == 3 else None, labels=labels, nsd=nsd, tolerance=tolerance)
    except Exception as exc:  # noqa: BLE001
        return CaseResult(case, nan, nan, f"scoring failed: {type(exc).__name__}: {exc}")
    return CaseResult(case, score.dsc, score.nsd)


def list_cases(gt_dir: str | Path) -> list[str]:
    """Sorted names of the ``*.npz`` files in ``gt_dir``."""
    return sorted(p.name for p in Path(gt_dir).iterdir() if p.is_file() and p.name.endswith(".npz"))


def _progress(items: Iterable[CaseResult], total: int, enabled: bool) -> Iterator[CaseResult]:
    """tqdm if importable, else a plain counter on stderr."""
    if not enabled:
        yield from items
        return
    try:
        from tqdm import tqdm
    except ImportError:
        for k, item in enumerate(items, 1):
            print(f"\r{k}/{total} cases", end="" if k < total else "\n", file=sys.stderr, flush=True)
            yield item
        return
    with tqdm(total=total, unit="case", file=sys.stderr) as bar:
        for item in items:
            yield item
            bar.update()


def evaluate_folder(seg_dir: str | Path, gt_dir: str | Path, *, num_workers: int = 5, nsd: bool = True,
                    labels: LabelMode = "all", tolerance: float = DEFAULT_TOLERANCE_MM,
                    progress: bool = True) -> list[CaseResult]:
    """Score every gt case, in parallel over cases; results sorted by case name.

    Bad cases come back with NaN and an ``error`` (and a ``RuntimeWarning``).
    """
    cases = list_cases(gt_dir)
    work = functools.partial(evaluate_case_file, seg_dir=seg_dir, gt_dir=gt_dir, nsd=nsd, labels=labels,
                             tolerance=tolerance)
    workers = max(1, min(int(num_workers), len(cases)))
    if workers == 1:
        results = list(_progress(map(work, cases), len(cases), progress))
    else:
        with mp.Pool(workers) as pool:
            results = list(_progress(pool.imap_unordered(work, cases), len(cases), progress))
    results.sort(key=lambda r: r.case)
    for r in results:
        if r.error:
            how = "NaN in the CSV, 0 in the summary" if r.missing_prediction else "NaN, left out of the summary"
            warnings.warn(f"{r.case}: {r.error} ({how})", RuntimeWarning, stacklevel=2)
    return results


def _cell(x: float) -> str:
    # np.round as the challenge's script; float() prints like pandas (0.9, 1.0, 0.8765).
    return "nan" if math.isnan(x) else repr(float(np.round(x, 4)))


def results_csv(results: Sequence[CaseResult], nsd: bool = True) -> str:
    """CSV text ``case,dsc,nsd`` (``case,dsc`` without NSD), sorted by case."""
    lines = ["case,dsc,nsd" if nsd else "case,dsc"]
    for r in sorted(results, key=lambda r: r.case):
        lines.append(",".join([r.case, _cell(r.dsc)] + ([_cell(r.nsd)] if nsd else [])))
    return "\n".join(lines) + "\n"


def _on_off(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "t", "yes", "y", "on"):
        return True
    if value in ("0", "false", "f", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True/False (or 1/0, yes/no), got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """The original flags (single-dash spellings kept) plus the summary and plot options."""
    p = argparse.ArgumentParser(
        prog="compute_metrics.py",
        description="Score segmentations (segs/*.npz, key 'segs') against ground truth (gts/*.npz, key 'gts') "
                    "with the CVPR24 MedSAM-on-Laptop DSC and NSD, and summarise them per imaging target.",
        epilog="Per case: labels 1..max(gt), mean over labels; NSD (at --tolerance mm) only when the case DSC > 0.2, "
               "else 0. 3D cases (name starting with '3D') use the gt file's 'spacing' as stored, in array axis "
               "order; 2D cases are scored as (H, W, 1) volumes with spacing (1, 1, 1). NaN is written as 'nan'. "
               "Per target summary: a case whose prediction is missing, unreadable or of the wrong shape counts as "
               "DSC 0 / NSD 0 (their number is shown); other NaN cases are left out of the means. "
               "Exit code 1 if a case could not be read (missing or broken file, wrong key or shape: NaN in the "
               "CSV), 2 if the gt folder is missing or empty.")
    p.add_argument("-s", "--seg_dir", default="test_demo/segs", help="folder of predicted npz files (default: %(default)s)")
    p.add_argument("-g", "--gt_dir", default="test_demo/gts", help="folder of ground-truth npz files; every *.npz here is a "
                   "case (default: %(default)s)")
    p.add_argument("-csv_dir", "--csv_dir", dest="csv", default="test_demo/metrics.csv", metavar="FILE",
                   help="output CSV file (a file, despite the name): case,dsc,nsd (default: %(default)s)")
    p.add_argument("-num_workers", "--num_workers", type=int, default=5,
                   help="worker processes, one case each at a time (default: %(default)s)")
    p.add_argument("-nsd", "--nsd", dest="nsd", nargs="?", const=True, default=True, type=_on_off, metavar="BOOL",
                   help="compute NSD: on by default; '-nsd False' (or 0/no) turns it off, as does --no-nsd")
    p.add_argument("--no-nsd", dest="nsd", action="store_false", help="skip NSD (CSV has case,dsc only)")
    p.add_argument("--labels", choices=("all", "present"), default="all",
                   help="'all': labels 1..max(gt), as the challenge (a label absent from both gt and prediction makes "
                        "the case NaN); 'present': only labels present in gt (default: %(default)s)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_MM,
                   help="NSD tolerance in mm (default: %(default)s, the challenge's)")
    p.add_argument("--summary_prefix", default=None,
                   help="where the per-target summary goes: PREFIX.csv and PREFIX.md "
                        "(default: next to the CSV, <csv stem>_summary)")
    p.add_argument("--plot", metavar="FILE.png", default=None, help="also save a DSC/NSD bar chart per target")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code (1 if any case failed to load)."""
    args = build_parser().parse_args(argv)
    gt_dir = Path(args.gt_dir)
    if not gt_dir.is_dir():
        print(f"error: ground-truth folder not found: {gt_dir}", file=sys.stderr)
        return 2
    if not list_cases(gt_dir):
        print(f"error: no *.npz files in {gt_dir}", file=sys.stderr)
        return 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        results = evaluate_folder(args.seg_dir, gt_dir, num_workers=args.num_workers, nsd=args.nsd,
                                  labels=args.labels, tolerance=args.tolerance, progress=args.progress)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)

    csv_path = Path(args.csv)
    atomic_write_text(csv_path, results_csv(results, nsd=args.nsd))
    prefix = Path(args.summary_prefix) if args.summary_prefix else csv_path.with_name(csv_path.stem + "_summary")
    rows = summarize([r.case for r in results], [r.dsc for r in results], [r.nsd for r in results] if args.nsd else None,
                     [r.missing_prediction for r in results])
    atomic_write_text(prefix.with_name(prefix.name + ".csv"), summary_csv(rows))
    atomic_write_text(prefix.with_name(prefix.name + ".md"), summary_markdown(rows))
    print(summary_text(rows), end="")
    print(f"wrote {csv_path}, {prefix}.csv, {prefix}.md", file=sys.stderr)
    if args.plot:
        plot_summary(rows, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    failed = [r for r in results if r.error]
    if failed:
        missing = sum(r.missing_prediction for r in failed)
        print(f"{len(failed)} of {len(results)} cases could not be scored (NaN in the CSV); {missing} of them "
              "for want of a usable prediction (DSC 0 / NSD 0 in the summary)", file=sys.stderr)
        return 1
    return 0
