"""Before any stage starts: do the inputs of the stages still to run exist?

The stages name what they read that no stage writes (weights, file lists) and the file lists of
their npz files (``Stage.reads``, ``Stage.data``). Every missing input is an error, named with the
flag that sets it. For the npz files, every row of every list a training stage reads (after its
``-data_subset`` prefixes or its regex) is looked for under ``--data_root`` and the missing rows are
counted per modality prefix: a list with no file left is an error, one with some missing is a
warning, and the stages reading it get ``--skip_missing_files`` so that they train on the rest
instead of stopping at start-up.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from daftseg.data.file_lists import describe_missing, missing_by_prefix, read_file_list, select_subset
from daftseg.recipe.plan import DataList, Inputs, Stage, is_done

SKIP_MISSING = "--skip_missing_files"


@dataclass
class CheckReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skip_missing: set[str] = field(default_factory=set)  # ids of stages whose lists have missing rows


def selected_rows(data: DataList, data_root: Path) -> list[str]:
    """The paths a training stage takes from ``data.csv``, as the training scripts select them."""
    paths = read_file_list(data.csv, data_root)
    if data.regex:
        pattern = re.compile(data.regex)
        paths = [p for p in paths if pattern.match(p.rsplit("/", 1)[-1])]
    return select_subset(paths, data.subset) if data.subset else paths


def check_inputs(stages: list[Stage], inputs: Inputs) -> CheckReport:
    """Errors, warnings and the stages to run with ``--skip_missing_files``, for the stages not done."""
    report = CheckReport()
    pending = [s for s in stages if not is_done(inputs, s)]
    reads = dict.fromkeys((what, path) for s in pending for what, path in s.reads)
    for what, path in reads:
        if not path.is_file():
            report.errors.append(f"{what}: {path}")
    lists: dict[DataList, list[str]] = {}
    for stage in pending:
        for data in stage.data:
            lists.setdefault(data, []).append(stage.id)
    if not lists:
        return report
    root = inputs.data_root
    if not root.is_dir():
        report.errors.append(f"npz folder (--data_root): {root} does not exist")
    exists: dict[str, bool] = {}

    def present(path: str) -> bool:
        if path not in exists:
            exists[path] = os.path.isfile(path)
        return exists[path]

    for data, ids in lists.items():
        if not data.csv.is_file():
            continue  # reported with the stage's reads
        try:
            rows = selected_rows(data, root)
        except (OSError, ValueError) as e:
            report.errors.append(f"file list {data.csv}: {e}")
            continue
        if not rows:
            report.errors.append(f"{data.describe()}: no listed file is selected (stages {', '.join(ids)})")
            continue
        counts = missing_by_prefix(rows, present)
        lost = sum(m for m, _ in counts.values())
        # basenames are joined to --data_root; 916bd4e's lists hold absolute paths
        where = f" in {root}" if rows[0].startswith(f"{root}{os.sep}") else ""
        if lost == len(rows):
            report.errors.append(f"{data.describe()}: none of its {len(rows):,} listed files exists{where} "
                                 f"(missing of listed, per modality: {describe_missing(counts)})")
        elif lost:
            report.warnings.append(f"{data.describe()}: {lost:,} of {len(rows):,} listed files are missing{where} "
                                   f"(missing of listed, per modality: {describe_missing(counts)}); "
                                   f"{', '.join(ids)} train without them ({SKIP_MISSING})")
            report.skip_missing.update(ids)
    return report


def apply_skip_missing(stages: list[Stage], report: CheckReport) -> None:
    """Add ``--skip_missing_files`` to the training stages the report names."""
    for stage in stages:
        if stage.id in report.skip_missing and SKIP_MISSING not in stage.argv:
            stage.argv.append(SKIP_MISSING)
            stage.notes.append("some listed files are missing under --data_root: they are left out")
