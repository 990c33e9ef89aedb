"""The run folder (``-work_dir``): a new run never overwrites another one by accident.

A folder "holds a run" when it has a checkpoint, ``train_log.csv`` or ``config.json``. Starting
there is allowed only to continue that run (``-resume`` with one of its own checkpoints) or with
``--overwrite``, which deletes the old run's files first. A ``-resume`` path that does not exist
starts a new run only in an empty folder: in any other folder it is most likely a typo, and
going on would replace the checkpoints it was meant to continue.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from daftseg.training.config import TrainConfig
from daftseg.training.history import CONFIG_NAME, LOG_NAME, PLOT_NAME, SANITY_NAME
from daftseg.training.state import BEST, LATEST

RUN_MARKERS = (LATEST, BEST, LOG_NAME, CONFIG_NAME)
# everything a run writes into its folder: what --overwrite deletes
RUN_FILES = (*RUN_MARKERS, PLOT_NAME, SANITY_NAME)


class WorkDirError(RuntimeError):
    """Starting the run as asked would overwrite or mix with another run; the message says what to do."""


@dataclass
class WorkDirPlan:
    """What ``check_work_dir`` decided: whether the run resumes, and which old files to delete first."""

    resuming: bool
    stale: list[Path] = field(default_factory=list)


def run_markers(work_dir: Path) -> list[str]:
    """Names of the files that show ``work_dir`` holds a run."""
    return [n for n in RUN_MARKERS if (work_dir / n).exists()]


def _visible_entries(work_dir: Path) -> list[str]:
    # hidden names are temporaries a killed writer left behind (daftseg.atomic), not content
    if not work_dir.is_dir():
        return []
    return sorted(p.name for p in work_dir.iterdir() if not p.name.startswith("."))


def _inside(path: Path, folder: Path) -> bool:
    return os.path.realpath(path.parent) == os.path.realpath(folder)


def check_work_dir(config: TrainConfig) -> WorkDirPlan:
    """Raise ``WorkDirError`` if the run would overwrite another one; otherwise say how to start.

    Reads the file system only, so every process of a distributed run may call it before any writes.
    """
    work_dir = Path(config.work_dir)
    if work_dir.exists() and not work_dir.is_dir():
        raise WorkDirError(f"-work_dir {work_dir} is a file, not a folder")
    markers = run_markers(work_dir)
    held = ", ".join(markers)
    if config.resume:
        resume = Path(config.resume)
        if resume.is_file():
            if markers and not _inside(resume, work_dir) and not config.overwrite:
                raise WorkDirError(
                    f"-work_dir {work_dir} already holds another run ({held}), and -resume {resume} is not "
                    f"one of its checkpoints: continuing {resume} there would overwrite that run. Choose an "
                    f"empty -work_dir, or pass --overwrite to replace the run in {work_dir}")
            continuing = _inside(resume, work_dir)
            return WorkDirPlan(resuming=True, stale=[] if continuing else _existing(work_dir))
        if resume.exists():
            raise WorkDirError(f"-resume {resume} is not a file")
        entries = _visible_entries(work_dir)
        if entries:
            shown = ", ".join(entries[:8]) + (f", ... ({len(entries)} entries)" if len(entries) > 8 else "")
            raise WorkDirError(
                f"-resume {resume}: no such file, and -work_dir {work_dir} is not empty ({shown}). Check the "
                f"path; to start a new run in {work_dir} instead, pass -resume ''"
                + (" --overwrite (it holds a run)" if markers else ""))
    if markers and not config.overwrite:
        raise WorkDirError(
            f"-work_dir {work_dir} already holds a run ({held}). Continue it with -resume "
            f"{work_dir / LATEST}, choose another -work_dir, or pass --overwrite to delete it and start anew")
    return WorkDirPlan(resuming=False, stale=_existing(work_dir))


def _existing(work_dir: Path) -> list[Path]:
    return [work_dir / n for n in RUN_FILES if (work_dir / n).is_file()]


def remove_stale(plan: WorkDirPlan) -> list[Path]:
    """Delete the replaced run's files (``--overwrite``), so the folder never mixes two runs."""
    for path in plan.stale:
        path.unlink(missing_ok=True)
    return plan.stale
