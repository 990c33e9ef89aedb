"""The INT8 gate: the INT8 candidate's label maps judged against the ground truth, and against f32's.

Both run the exact runtime algorithm (``segment_2d`` / ``segment_3d`` with the default
``InferenceOptions()``), the same prompt encoder, decoder and positional encoding, at f32; only the
image encoder differs. Per held-out case:

- DSC f32, DSC INT8: mean over the ground truth's labels (and those either map adds) of the Dice of
  each map against the case's ``gts``, where the case has ground truth;
- change: DSC INT8 - DSC f32 (negative: INT8 is worse);
- agreement: mean over the labels present in either map of the Dice of the INT8 map against the f32
  map (1.0 when both are empty).

``judge`` decides with ``GateRules``: where a case has ground truth, accuracy decides (the mean DSC
may drop by at most ``max_dsc_drop``, any one case by at most ``max_case_drop``), so an INT8 map that
differs from f32 by finding what f32 missed is not held against it; cases without ground truth fall
back to the agreement with f32. Every number is rounded to 4 decimals before it is compared, so the
printed table is exactly what decided.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from daftseg.metrics.dice import dice_coefficient
from daftseg.quantize.calibration import CalibrationCase

Log = Callable[[str], None]

DEFAULT_MAX_DSC_DROP = 0.01
DEFAULT_MAX_CASE_DROP = 0.10
# cases without ground truth can only be judged by agreement; without --int8_min_agreement, this
FALLBACK_MIN_AGREEMENT = 0.95
DSC_RULE = "DSC against the ground truth"
AGREEMENT_RULE = "agreement with f32"
DIGITS = 4


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


def r4(value: float) -> float:
    return round(float(value), DIGITS)


def mean4(values: Sequence[float]) -> float:
    return r4(np.mean(values)) if len(values) else float("nan")


@dataclass
class Agreement:
    """Per held-out case (in case order): the agreement with f32 (``per_case``), and for cases with
    ground truth the DSC of the f32 and INT8 maps against it (``dsc``: case -> (f32, INT8)); cases
    the runtime refused (``failed``). Values are kept as measured; the properties round them."""

    per_case: dict[str, float]
    failed: dict[str, str] = field(default_factory=dict)
    dsc: dict[str, tuple[float, float]] = field(default_factory=dict)

    # -- agreement with f32 ---------------------------------------------------------------------
    @property
    def mean(self) -> float:
        return mean4([r4(v) for v in self.per_case.values()])

    @property
    def worst_case(self) -> str:
        return min(self.per_case, key=lambda k: (r4(self.per_case[k]), k)) if self.per_case else ""

    @property
    def worst(self) -> float:
        return r4(self.per_case[self.worst_case]) if self.per_case else float("nan")

    # -- accuracy against the ground truth ------------------------------------------------------
    def dsc_f32(self, name: str) -> float:
        return r4(self.dsc[name][0])

    def dsc_int8(self, name: str) -> float:
        return r4(self.dsc[name][1])

    def change(self, name: str) -> float:
        """DSC INT8 - DSC f32 of the rounded values (what the table prints)."""
        return r4(self.dsc_int8(name) - self.dsc_f32(name))

    @property
    def with_gts(self) -> list[str]:
        return [k for k in self.per_case if k in self.dsc]

    @property
    def without_gts(self) -> list[str]:
        return [k for k in self.per_case if k not in self.dsc]

    def mean_dsc(self) -> tuple[float, float, float]:
        """(mean DSC f32, mean DSC INT8, mean change) over the cases with ground truth."""
        names = self.with_gts
        f32, int8 = mean4([self.dsc_f32(k) for k in names]), mean4([self.dsc_int8(k) for k in names])
        return f32, int8, r4(int8 - f32)

    def table(self) -> list[str]:
        """The per-case table and its mean row, as printed."""
        width = max([len("case"), *map(len, self.per_case), *map(len, self.failed)])
        lines = [f"    {'case':{width}s}  {'DSC f32':>8s}  {'DSC INT8':>8s}  {'change':>8s}  {'agreement':>9s}"]
        for name, value in self.per_case.items():
            if name in self.dsc:
                cells = f"{self.dsc_f32(name):8.4f}  {self.dsc_int8(name):8.4f}  {self.change(name):+8.4f}"
            else:
                cells = f"{'-':>8s}  {'-':>8s}  {'-':>8s}"
            lines.append(f"    {name:{width}s}  {cells}  {r4(value):9.4f}")
        lines += [f"    {name:{width}s}  not segmented: {why}" for name, why in self.failed.items()]
        if self.with_gts:
            f32, int8, change = self.mean_dsc()
            cells = f"{f32:8.4f}  {int8:8.4f}  {change:+8.4f}"
        else:
            cells = f"{'-':>8s}  {'-':>8s}  {'-':>8s}"
        lines.append(f"    {'mean':{width}s}  {cells}  {self.mean:9.4f}")
        return lines

    def record(self) -> dict:
        """The JSON form (the numbers as printed)."""
        cases = {}
        for name, value in self.per_case.items():
            row = ({"dsc_f32": self.dsc_f32(name), "dsc_int8": self.dsc_int8(name), "change": self.change(name)}
                   if name in self.dsc else {"dsc_f32": None, "dsc_int8": None, "change": None})
            cases[name] = {**row, "agreement": r4(value)}
        f32, int8, change = self.mean_dsc() if self.with_gts else (None, None, None)
        return {"cases": cases, "mean": self.mean, "worst": self.worst, "worst_case": self.worst_case,
                "mean_dsc_f32": f32, "mean_dsc_int8": int8, "mean_change": change,
                "not_segmented": dict(self.failed)}


@dataclass(frozen=True)
class GateRules:
    """The flags that decide (``--int8_max_dsc_drop``, ``--int8_max_case_drop``, ``--int8_min_agreement``)."""

    max_dsc_drop: float = DEFAULT_MAX_DSC_DROP
    max_case_drop: float = DEFAULT_MAX_CASE_DROP
    min_agreement: float | None = None  # opt-in: also required of every case set when given


@dataclass
class Verdict:
    """What the gate decided: the rule(s) that applied, each check as a printed line, the failures."""

    rule: str
    checks: list[str]
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def record(self, rules: GateRules) -> dict:
        return {"rule": self.rule, "passed": self.passed, "checks": list(self.checks),
                "max_dsc_drop": rules.max_dsc_drop, "max_case_drop": rules.max_case_drop,
                "min_agreement": rules.min_agreement, "fallback_min_agreement": FALLBACK_MIN_AGREEMENT}


def cases(n: int) -> str:
    return f"{n} case" if n == 1 else f"{n} cases"


def _check(checks: list[str], failures: list[str], ok: bool, text: str, failure: str) -> None:
    checks.append(f"{'ok  ' if ok else 'FAIL'} {text}")
    if not ok:
        failures.append(failure)


def judge(a: Agreement, rules: GateRules = GateRules()) -> Verdict:
    """The gate's decision on ``a`` (see the module's docstring); no held-out case fails it."""
    checks: list[str] = []
    failures: list[str] = []
    gts, no_gts = a.with_gts, a.without_gts
    if not a.per_case:
        return Verdict("none", ["FAIL no held-out case was segmented"], ["no held-out case was segmented"])
    if gts:
        f32, int8, change = a.mean_dsc()
        _check(checks, failures, -change <= rules.max_dsc_drop,
               f"mean DSC {f32:.4f} -> {int8:.4f} ({change:+.4f}) on {len(gts)} cases with ground truth; "
               f"drop allowed {rules.max_dsc_drop} (--int8_max_dsc_drop)",
               f"mean DSC against the ground truth drops from {f32:.4f} to {int8:.4f} ({change:+.4f}) on "
               f"{len(gts)} held-out cases, more than --int8_max_dsc_drop {rules.max_dsc_drop}")
        worse = sorted((k for k in gts if -a.change(k) > rules.max_case_drop), key=lambda k: (a.change(k), k))
        worst = min(gts, key=lambda k: (a.change(k), k))
        _check(checks, failures, not worse,
               f"worst case {worst}: {a.dsc_f32(worst):.4f} -> {a.dsc_int8(worst):.4f} ({a.change(worst):+.4f}); "
               f"drop allowed {rules.max_case_drop} per case (--int8_max_case_drop)",
               "DSC against the ground truth drops by more than --int8_max_case_drop "
               f"{rules.max_case_drop} on " + ", ".join(
                   f"{k} ({a.dsc_f32(k):.4f} -> {a.dsc_int8(k):.4f}, {a.change(k):+.4f})" for k in worse))
    if no_gts:
        limit = FALLBACK_MIN_AGREEMENT if rules.min_agreement is None else rules.min_agreement
        source = ("--int8_min_agreement" if rules.min_agreement is not None
                  else "the default for cases without ground truth; --int8_min_agreement sets it")
        sub = Agreement({k: a.per_case[k] for k in no_gts})
        _check(checks, failures, sub.mean >= limit,
               f"agreement with f32 {sub.mean:.4f} (worst {sub.worst:.4f}, {sub.worst_case}) on {len(no_gts)} "
               f"cases without ground truth; at least {limit} ({source})",
               f"INT8 agrees with f32 at mean Dice {sub.mean:.4f} (worst {sub.worst:.4f}, {sub.worst_case}) on "
               f"{len(no_gts)} held-out cases without ground truth, below {limit} ({source})")
    if rules.min_agreement is not None and gts:
        _check(checks, failures, a.mean >= rules.min_agreement,
               f"agreement with f32 {a.mean:.4f} (worst {a.worst:.4f}, {a.worst_case}) on all {len(a.per_case)} "
               f"cases; at least {rules.min_agreement} (--int8_min_agreement)",
               f"INT8 agrees with f32 at mean Dice {a.mean:.4f} (worst {a.worst:.4f}, {a.worst_case}) on "
               f"{len(a.per_case)} held-out cases, below --int8_min_agreement {rules.min_agreement}")
    if gts and not no_gts:
        rule = f"{DSC_RULE} (every held-out case has it)"
    elif gts:
        rule = f"{DSC_RULE} on {cases(len(gts))}, {AGREEMENT_RULE} on {cases(len(no_gts))} without it"
    else:
        rule = f"{AGREEMENT_RULE} (no held-out case has ground truth)"
    if rules.min_agreement is not None and gts:
        rule += f", and {AGREEMENT_RULE} >= {rules.min_agreement} on all cases (--int8_min_agreement)"
    return Verdict(rule, checks, failures)


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
