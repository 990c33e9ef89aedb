"""The learning-rate schedule follows the training loss, as 93f1e55 and 916bd4e (spec §5.1, §11.2):
validation picks the best checkpoint and stops early, but ReduceLROnPlateau steps on the mean
training loss unless ``-plateau_on val``."""

from __future__ import annotations

import pytest
from training_support import TinySam, cpu_args, few_threads, make_data  # noqa: F401 - autouse fixture

from daftseg.training.cli import parse_config
from daftseg.training.config import InvalidSetting
from daftseg.training.loop import Trainer
from daftseg.training.runner import run_stage
from daftseg.training.tasks import SegmentationTask

EPOCHS = 8
# scripted epoch losses: training falls every epoch, validation rises every epoch
TRAIN_LOSS = [1.0 / e for e in range(1, EPOCHS + 1)]
VAL_LOSS = [1.0 + e for e in range(1, EPOCHS + 1)]
# ReduceLROnPlateau(factor 0.9, patience 5, cooldown 0) on the validation loss: epoch 1 is the best,
# epochs 2..7 are six bad epochs (> 5), so the rate drops once, after epoch 7
LR_ON_VAL = [5e-5] * 6 + [4.5e-5] * 2
LR_ON_TRAIN = [5e-5] * EPOCHS


@pytest.fixture()
def scripted(monkeypatch):
    """Replace the epoch's work by the scripted losses (the schedule is all this test looks at)."""
    def train_epoch(self, epoch):
        return TRAIN_LOSS[epoch - 1], 0.01, 2

    def validate(self):
        return VAL_LOSS[self.progress.epoch]  # progress.epoch is the last completed epoch

    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)
    monkeypatch.setattr(Trainer, "validate", validate)


@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    root = tmp_path_factory.mktemp("schedule")
    data_root, train_csv = make_data(root, n2d=2)
    _, val_csv = make_data(root, n2d=2, name="val.csv", prefix="CT_Val")
    return data_root, train_csv, val_csv


def _run(work_dir, lists, *extra):
    data_root, train_csv, val_csv = lists
    config = parse_config("finetune", cpu_args(work_dir, data_root, train_csv, "-resume", "", "-valcsv",
                                               str(val_csv), "-num_epochs", str(EPOCHS), "-patience", "100",
                                               *extra))
    return run_stage(config, lambda c, r, log: SegmentationTask(TinySam()))


@pytest.mark.parametrize(("extra", "expected"), [((), LR_ON_TRAIN), (("-plateau_on", "val"), LR_ON_VAL),
                                                 (("-plateau_on", "train"), LR_ON_TRAIN)])
def test_rate_follows_training_loss_unless_plateau_on_val(tmp_path, lists, scripted, extra, expected):
    result = _run(tmp_path, lists, *extra)
    assert [row["lr"] for row in result.history] == pytest.approx(expected, rel=1e-12)
    # validation still chooses the best checkpoint (epoch 1) whatever the scheduler follows
    assert result.progress.best_loss == VAL_LOSS[0]
    assert result.progress.epochs_since_improvement == EPOCHS - 1


def test_plateau_on_val_needs_a_validation_list(tmp_path, lists):
    data_root, train_csv, _ = lists
    with pytest.raises(InvalidSetting, match="-plateau_on val needs"):
        parse_config("finetune", cpu_args(tmp_path, data_root, train_csv, "-plateau_on", "val"))
