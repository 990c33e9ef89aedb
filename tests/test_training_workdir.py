"""A training run never overwrites another by accident: a work folder holding a run is only continued
or, with --overwrite, replaced; a -resume path that does not exist is an error unless the folder is empty."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from snapshots import tree_snapshot
from training_support import (
    TinySam,
    cpu_args,
    few_threads,  # noqa: F401 - autouse fixture
    make_data,
)

from daftseg.training import finetune
from daftseg.training.cli import parse_config
from daftseg.training.runner import run_stage
from daftseg.training.state import BEST, LATEST
from daftseg.training.tasks import SegmentationTask
from daftseg.training.workdir import WorkDirError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"), n2d=4)


def run(work: Path, data, *args: str):
    config = parse_config("finetune", cpu_args(work, *data, *args))
    return run_stage(config, lambda c, resuming, log: SegmentationTask(TinySam()))


def log_epochs(work: Path) -> list[str]:
    with open(work / "train_log.csv", newline="") as f:
        return [row["epoch"] for row in csv.DictReader(f)]


@pytest.fixture
def earlier_run(tmp_path, data) -> Path:
    """A finished two-epoch run."""
    work = tmp_path / "run"
    run(work, data, "-num_epochs", "2", "-resume", "")
    assert {LATEST, BEST, "train_log.csv", "config.json", "train_loss.png"} <= set(tree_snapshot(work))
    return work


def test_new_run_refused_where_a_run_is(earlier_run, data):
    before = tree_snapshot(earlier_run)
    with pytest.raises(WorkDirError) as err:
        run(earlier_run, data, "-resume", "")
    msg = str(err.value)
    assert f"-work_dir {earlier_run} already holds a run" in msg and LATEST in msg and "--overwrite" in msg
    assert tree_snapshot(earlier_run) == before


def test_overwrite_replaces_the_whole_earlier_run(earlier_run, data):
    before = tree_snapshot(earlier_run)
    run(earlier_run, data, "-resume", "", "--overwrite", "-seed", "5")
    after = tree_snapshot(earlier_run)
    assert after.keys() == before.keys()
    assert all(after[name] != before[name] for name in (LATEST, BEST, "config.json", "train_log.csv"))
    assert log_epochs(earlier_run) == ["1"]  # no rows left from the earlier run
    assert torch.load(earlier_run / BEST, weights_only=True)["config"]["seed"] == 5


def test_mistyped_resume_is_an_error_in_a_used_folder(earlier_run, data):
    before = tree_snapshot(earlier_run)
    typo = earlier_run / "medsam_lite_lastest.pth"
    with pytest.raises(WorkDirError) as err:
        run(earlier_run, data, "-num_epochs", "3", "-resume", str(typo))
    msg = str(err.value)
    assert msg.startswith(f"-resume {typo}: no such file, and -work_dir {earlier_run} is not empty")
    assert "-resume ''" in msg and "--overwrite" in msg
    assert tree_snapshot(earlier_run) == before
    # the same typo in the command line of the script: one line, exit status 1
    assert finetune.main(cpu_args(earlier_run, *data, "-resume", str(typo))) == 1
    assert tree_snapshot(earlier_run) == before


def test_missing_resume_starts_fresh_only_in_an_empty_folder(tmp_path, data, capsys):
    work = tmp_path / "fresh"
    result = run(work, data, "-resume", str(work / LATEST))
    assert result.progress.epoch == 1 and (work / LATEST).is_file()
    assert f"No checkpoint at {work / LATEST}; starting a new run" in capsys.readouterr().out
    # any other file makes the folder not empty: a missing -resume then is an error too
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(WorkDirError, match=r"is not empty \(notes\.txt\)"):
        run(other, data, "-resume", str(other / LATEST))
    assert tree_snapshot(other) == {"notes.txt": b"mine"}


def test_continuing_a_run_in_its_folder(earlier_run, data):
    result = run(earlier_run, data, "-num_epochs", "3", "-resume", str(earlier_run / LATEST), "--overwrite")
    assert [row["epoch"] for row in result.history] == [3]
    assert log_epochs(earlier_run) == ["1", "2", "3"]  # a continuation deletes nothing, --overwrite or not


def test_a_checkpoint_from_elsewhere_does_not_continue_over_another_run(earlier_run, tmp_path, data):
    other = tmp_path / "other_run"
    run(other, data, "-num_epochs", "1", "-resume", "")
    before = tree_snapshot(earlier_run)
    with pytest.raises(WorkDirError, match="not one of its checkpoints"):
        run(earlier_run, data, "-num_epochs", "2", "-resume", str(other / LATEST))
    assert tree_snapshot(earlier_run) == before
    # into an empty folder it continues, as the original's -resume did
    result = run(tmp_path / "copy", data, "-num_epochs", "2", "-resume", str(other / LATEST))
    assert [row["epoch"] for row in result.history] == [2]


def test_a_run_killed_before_its_first_checkpoint_still_counts(tmp_path, data):
    work = tmp_path / "killed"
    work.mkdir()
    (work / "config.json").write_text("{}")  # written at the start of every run
    with pytest.raises(WorkDirError, match=r"-resume '' --overwrite \(it holds a run\)"):
        run(work, data, "-resume", str(work / LATEST))
    with pytest.raises(WorkDirError, match="already holds a run"):
        run(work, data, "-resume", "")
    assert run(work, data, "-resume", "", "--overwrite").progress.epoch == 1
