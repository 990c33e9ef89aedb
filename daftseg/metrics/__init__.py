"""Metrics of the CVPR24 MedSAM-on-Laptop challenge: DSC and NSD (numpy + scipy only).

- ``dice``: Dice of two masks (NaN when both are empty).
- ``surface``: DeepMind's surface distances and the normalised surface Dice (NSD).
- ``case``: one case with the challenge's conventions (labels, 2D as one slice, DSC gate).
- ``evaluate``: the folder evaluator behind ``evaluation/compute_metrics.py``.
- ``summary``: per-target (modality) summary table and plot.
"""

from daftseg.metrics.case import CaseScore, label_ids, score_case
from daftseg.metrics.dice import dice_coefficient, dice_from_counts
from daftseg.metrics.evaluate import CaseResult, evaluate_case_file, evaluate_folder, results_csv
from daftseg.metrics.summary import SummaryRow, summarize, target_of
from daftseg.metrics.surface import (
    DEFAULT_TOLERANCE_MM,
    SurfaceDistances,
    box_surface_dice,
    compute_surface_distances,
    neighbour_codes,
    normalized_surface_dice,
    surface_dice_at_tolerance,
    surfel_area_table,
)

__all__ = [
    "DEFAULT_TOLERANCE_MM",
    "CaseResult",
    "CaseScore",
    "SummaryRow",
    "SurfaceDistances",
    "box_surface_dice",
    "compute_surface_distances",
    "dice_coefficient",
    "dice_from_counts",
    "evaluate_case_file",
    "evaluate_folder",
    "label_ids",
    "neighbour_codes",
    "normalized_surface_dice",
    "results_csv",
    "score_case",
    "summarize",
    "surface_dice_at_tolerance",
    "surfel_area_table",
    "target_of",
]
