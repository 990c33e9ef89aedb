"""Per-modality ("target") summary of case scores, like the leaderboard table (spec §8).

The target is read from the case file name (``3DBox_CT_0001.npz`` -> CT,
``2DBox_Microscope_0003.npz`` -> Microscopy). A case whose prediction is missing or unusable
counts as DSC 0 and NSD 0, as a failed case does on the leaderboard (leaving it out would raise the
mean); the tables say how many there were. Other NaN cases (a label absent from both gt and
prediction, an unreadable ground truth) are skipped, their count shown. The Average row is the
mean of the per-target means, as the leaderboard's Average is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Canonical names in leaderboard order; anything else sorts after them.
TARGETS = ("CT", "MR", "PET", "US", "X-Ray", "Dermoscopy", "Endoscopy", "Fundus", "Microscopy", "OCT",
           "Mammography")
_EXACT = {"ct": "CT", "mr": "MR", "mri": "MR", "pet": "PET", "us": "US", "oct": "OCT", "xray": "X-Ray",
          "cxr": "X-Ray", "fundus": "Fundus"}
_PREFIX = (("ultra", "US"), ("xray", "X-Ray"), ("dermo", "Dermoscopy"), ("endo", "Endoscopy"),
           ("fundus", "Fundus"), ("micro", "Microscopy"), ("mamm", "Mammography"))
OTHER = "Other"


def target_of(case_name: str) -> str:
    """Imaging target from a case file name; ``Other`` when no token names one.

    The name is split at ``_``; the first token that names a modality wins, compared in
    lower case without punctuation, so ``XRay``, ``X-Ray``, ``Microscope``, ``Mammo``,
    ``Dermoscope``, ``Endoscope`` and ``Ultrasound`` are all recognised.
    """
    stem = Path(case_name).name
    stem = stem[:-4] if stem.lower().endswith(".npz") else stem
    for token in stem.split("_"):
        key = re.sub(r"[^a-z0-9]", "", token.lower())
        if key in _EXACT:
            return _EXACT[key]
        for prefix, target in _PREFIX:
            if key.startswith(prefix):
                return target
    return OTHER


@dataclass(frozen=True)
class SummaryRow:
    """One line of the summary: means in percent (NaN when no case has a value)."""

    target: str
    cases: int
    missing: int  # cases without a usable prediction, counted as DSC 0 / NSD 0
    nan_cases: int  # other cases whose DSC is NaN (left out of the means)
    dsc_pct: float
    nsd_pct: float


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def _order(target: str) -> tuple[int, str]:
    return (TARGETS.index(target), "") if target in TARGETS else (len(TARGETS), target)


def summarize(cases: Sequence[str], dsc: Sequence[float], nsd: Sequence[float] | None,
              missing: Sequence[bool] | None = None) -> list[SummaryRow]:
    """Per-target rows (leaderboard order) plus a final ``Average`` row (mean of target means).

    ``missing[i]`` marks a case without a usable prediction: it enters the means as 0, whatever
    ``dsc[i]`` / ``nsd[i]`` hold.
    """
    lost = [bool(m) for m in missing] if missing is not None else [False] * len(cases)
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(cases):
        groups.setdefault(target_of(name), []).append(i)
    rows = []
    for target in sorted(groups, key=_order):
        idx = groups[target]
        d = [0.0 if lost[i] else float(dsc[i]) for i in idx]
        n = [0.0 if lost[i] else float(nsd[i]) for i in idx] if nsd is not None else [float("nan")]
        rows.append(SummaryRow(target, len(idx), sum(lost[i] for i in idx), sum(math.isnan(v) for v in d),
                               100 * _nanmean(d), 100 * _nanmean(n)))
    if rows:
        rows.append(SummaryRow("Average", len(cases), sum(r.missing for r in rows), sum(r.nan_cases for r in rows),
                               _nanmean([r.dsc_pct for r in rows]), _nanmean([r.nsd_pct for r in rows])))
    return rows


def missing_note(rows: Sequence[SummaryRow]) -> str:
    """One sentence on the cases scored 0 for want of a prediction; empty when there were none."""
    total = rows[-1] if rows else None
    if total is None or total.missing == 0:
        return ""
    return (f"{total.missing} of {total.cases} cases had no usable prediction (missing, unreadable or of the "
            "wrong shape): counted as DSC 0 and NSD 0 in the means.\n")


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.2f}"


HEADER = ("Target", "Cases", "Missing", "NaN", "DSC %", "NSD %")


def _cells(row: SummaryRow) -> tuple[str, ...]:
    return (row.target, str(row.cases), str(row.missing), str(row.nan_cases), _fmt(row.dsc_pct), _fmt(row.nsd_pct))


def summary_csv(rows: Sequence[SummaryRow]) -> str:
    """CSV text: ``target,cases,missing,nan_cases,dsc_pct,nsd_pct``."""
    lines = ["target,cases,missing,nan_cases,dsc_pct,nsd_pct"]
    lines += [",".join(_cells(r)) for r in rows]
    return "\n".join(lines) + "\n"


def summary_markdown(rows: Sequence[SummaryRow]) -> str:
    """Markdown table like the leaderboard's, the Average row in bold."""
    lines = ["| " + " | ".join(HEADER) + " |", "|---|" + "---:|" * (len(HEADER) - 1)]
    for r in rows:
        cells = _cells(r)
        if r.target == "Average":
            cells = tuple(f"**{c}**" for c in cells)
        lines.append("| " + " | ".join(cells) + " |")
    note = missing_note(rows)
    return "\n".join(lines) + "\n" + (f"\n{note}" if note else "")


def summary_text(rows: Sequence[SummaryRow]) -> str:
    """Fixed-width table for the terminal."""
    table = [HEADER] + [_cells(r) for r in rows]
    widths = [max(len(line[c]) for line in table) for c in range(len(HEADER))]
    out = []
    for k, line in enumerate(table):
        out.append("  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(line, widths))))
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out) + "\n" + missing_note(rows)


def plot_summary(rows: Sequence[SummaryRow], path: str | Path) -> None:
    """Bar chart of DSC and NSD (%) per target, saved to ``path`` (format from its suffix).

    matplotlib is imported here, so that scoring never needs it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from daftseg.atomic import atomic_open

    names = [r.target for r in rows]
    x = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.0))
    ax.bar([i - 0.2 for i in x], [0 if math.isnan(r.dsc_pct) else r.dsc_pct for r in rows], 0.4, label="DSC")
    ax.bar([i + 0.2 for i in x], [0 if math.isnan(r.nsd_pct) else r.nsd_pct for r in rows], 0.4, label="NSD")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("%")
    ax.set_ylim(0, 112)  # headroom for the legend above 100 %
    ax.legend(loc="upper right", ncol=2)
    ax.set_title("DSC and NSD per target")
    fig.tight_layout()
    fmt = Path(path).suffix.lstrip(".") or "png"
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format=fmt)
    plt.close(fig)
