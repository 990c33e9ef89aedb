"""Command lines (original flags and defaults), the config they produce, and the samplers."""

from __future__ import annotations

import pytest
from training_support import make_data

from daftseg.training.cli import TEACHER_DEFAULT, parse_config
from daftseg.training.runner import build_datasets
from daftseg.training.sampling import EpochSampler, ShardSampler


def test_original_defaults():
    d = parse_config("distill", [])
    f = parse_config("finetune", [])
    for c in (d, f):
        assert (c.data_root, c.datacsv, c.data_subset, c.num_epochs, c.batch_size, c.num_workers, c.device,
                c.bbox_shift, c.lr, c.weight_decay) == ("train_npz", "fulldataset.csv", "", 10, 4, 16, "cuda:0",
                                                        5, 5e-5, 0.01)
        assert (c.iou_loss_weight, c.seg_loss_weight, c.ce_loss_weight, c.sanity_check) == (1.0, 1.0, 1.0, False)
        assert (c.amp, c.grad_accum, c.seed, c.norm_before_pad, c.valcsv) == ("none", 1, 2024, False, "")
    assert (d.work_dir, d.resume, d.teacher_checkpoint, d.nopretrain) == ("./workdir", "", TEACHER_DEFAULT, False)
    assert (f.work_dir, f.resume, f.pretrained_checkpoint) == (
        "work_dir_evit/base", "work_dir_evit/base/medsam_lite_latest.pth", "lite_medsam.pth")
    assert not f.every_slice and parse_config("finetune3d", []).every_slice


def test_stage_specific_flags():
    assert parse_config("distill", ["--nopretrain"]).nopretrain
    assert parse_config("finetune", ["--from_scratch"]).from_scratch
    with pytest.raises(SystemExit):
        parse_config("finetune", ["--nopretrain"])
    with pytest.raises(SystemExit):
        parse_config("distill", ["--amp", "fp16"])
    with pytest.raises(ValueError, match="grad_accum"):
        parse_config("distill", ["-grad_accum", "0"])


def test_bbox_shift_and_normalisation_reach_the_datasets(tmp_path):
    data, csv_path = make_data(tmp_path, n2d=2, n3d=1)
    config = parse_config("finetune3d", ["-data_root", str(data), "-datacsv", str(csv_path), "-valcsv",
                                         str(csv_path), "-bbox_shift", "17", "--norm_before_pad", "-seed", "3"])
    train, val = build_datasets(config)
    assert (train.bbox_shift, train.norm_before_pad, train.every_slice, train.seed) == (17, True, True, 3)
    assert val is not None and val.bbox_shift == 17 and len(train) == 2 + 4


def test_epoch_sampler_partitions_each_epoch():
    a, b = EpochSampler(11, 2, 0, seed=5), EpochSampler(11, 2, 1, seed=5)
    for epoch in (1, 2):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        ia, ib = a.indices(), b.indices()
        assert len(ia) == len(ib) == len(a) == 6  # padded to equal length
        assert set(ia) | set(ib) == set(range(11))
        assert list(a) == [(epoch, i) for i in ia]
    a.set_epoch(1)
    first = a.indices()
    a.set_epoch(2)
    assert a.indices() != first
    a.set_epoch(1)
    assert a.indices() == first


def test_shard_sampler_counts_every_item_once():
    shards = [list(ShardSampler(7, 3, r)) for r in range(3)]
    assert sorted(i for s in shards for _, i in s) == list(range(7))
    assert {e for s in shards for e, _ in s} == {0}
