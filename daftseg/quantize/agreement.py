"""The INT8 gate: label maps of the INT8 candidate against the standard IR's, case by case.

Both run the exact runtime algorithm (``segment_2d`` / ``segment_3d`` with the default
``InferenceOptions()``), the same prompt encoder, decoder and positional encoding, at f32; only the
image encoder differs. A case's agreement is the mean, over the labels present in either map, of
the Dice of the two maps for that label (1.0 when both are empty).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from daftseg.metrics.dice import dice_coefficient
from daftseg.quantize.calibration import CalibrationCase

Log = Callable[[str], None]


def label_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Dice over the labels (> 0) present in ``a`` or ``b``; 1.0 when neither has any."""
    labels = sorted((set(np.unique(a).tolist()) | set(np.unique(b).tolist())) - {0})
    if not labels:
        return 1.0
    return float(np.mean([dice_coefficient(a == label, b == label) for label in labels]))


def segment(model, c: CalibrationCase) -> np.ndarray:
    """The runtime's label map of ``c`` with ``model`` (a ``ModelSessions``), default options."""
    from daftseg.inference.case2d import segment_2d
    from daftseg.inference.case3d import segment_3d
    from daftseg.inference.options import InferenceOptions

    if c.case.is_3d:
        return segment_3d(model, c.case.imgs, c.case.boxes, InferenceOptions()).segs
    return segment_2d(model, c.case.imgs, c.case.boxes, InferenceOptions())


@dataclass
class Agreement:
    """Per-case agreement of two label maps (``per_case`` in case order), cases that failed, and
    for cases with ground truth the Dice of each map against it (``dsc``: case -> (f32, INT8)),
    which tells a changed mask from a worse one."""

    per_case: dict[str, float]
    failed: dict[str, str] = field(default_factory=dict)
    dsc: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.per_case.values()))) if self.per_case else float("nan")

    @property
    def worst_case(self) -> str:
        return min(self.per_case, key=self.per_case.__getitem__) if self.per_case else ""

    @property
    def worst(self) -> float:
        return self.per_case[self.worst_case] if self.per_case else float("nan")

    def table(self) -> list[str]:
        """The per-case table and the summary lines, as printed."""
        width = max([len("case"), *map(len, self.per_case), *map(len, self.failed)])
        head = f"    {'case':{width}s}  Dice INT8 vs f32"
        lines = [head + ("  DSC vs gts: f32    INT8" if self.dsc else "")]
        for name, value in self.per_case.items():
            dsc = self.dsc.get(name)
            lines.append(f"    {name:{width}s}  {value:16.4f}" + (f"  {dsc[0]:15.4f}  {dsc[1]:.4f}" if dsc else ""))
        lines += [f"    {name:{width}s}  not segmented: {why}" for name, why in self.failed.items()]
        lines.append(f"    {'mean':{width}s}  {self.mean:16.4f}")
        lines.append(f"    {'worst':{width}s}  {self.worst:16.4f} ({self.worst_case})")
        return lines

    def record(self) -> dict:
        """The JSON form (the numbers as printed, rounded to 4 decimals)."""
        return {"per_case": {k: round(v, 4) for k, v in self.per_case.items()}, "mean": round(self.mean, 4),
                "worst": round(self.worst, 4), "worst_case": self.worst_case, "not_segmented": dict(self.failed),
                "dsc_vs_gts": {k: {"f32": round(a, 4), "int8": round(b, 4)} for k, (a, b) in self.dsc.items()}}


def reference_maps(model, cases: Sequence[CalibrationCase]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The standard model's label map of every case; cases the runtime refuses go to the second dict."""
    from daftseg.inference.npz_io import CaseError

    maps, failed = {}, {}
    for c in cases:
        try:
            maps[c.name] = segment(model, c)
        except CaseError as e:
            failed[c.name] = str(e)
    return maps, failed


def compare(candidate, cases: Sequence[CalibrationCase], reference: dict[str, np.ndarray],
            failed: dict[str, str] | None = None) -> Agreement:
    """Agreement of ``candidate`` (a ``ModelSessions``) with the ``reference`` maps, case by case."""
    per_case, dsc = {}, {}
    for c in cases:
        if c.name not in reference:
            continue
        labels = segment(candidate, c)
        per_case[c.name] = label_agreement(reference[c.name], labels)
        if c.gts is not None:
            dsc[c.name] = (label_agreement(c.gts, reference[c.name]), label_agreement(c.gts, labels))
    return Agreement(per_case, dict(failed or {}), dsc)


def ground_truth_score(model, cases: Sequence[CalibrationCase]) -> list[float]:
    """Per case: mean Dice over labels of ``model``'s label map against the case's ``gts``."""
    return [label_agreement(c.gts, segment(model, c)) for c in cases]
