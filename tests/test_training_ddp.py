"""Two gloo processes under torchrun: the run completes, only rank 0 writes, and the ranks agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from training_support import make_data

from daftseg.training.state import BEST, LATEST

LAUNCHER = """
import json, os, sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from training_support import TinySam, state_digest
from daftseg.training.cli import parse_config
from daftseg.training.runner import run_stage
from daftseg.training.tasks import SegmentationTask

result = run_stage(parse_config("finetune", sys.argv[1:]), lambda c, r, log: SegmentationTask(TinySam()))
report = {{"digest": state_digest(result.model), "history": result.history, "step": result.progress.global_step,
          "world": int(os.environ["WORLD_SIZE"])}}
with open(os.path.join({out!r}, "rank" + os.environ["RANK"] + ".json"), "w") as f:
    json.dump(report, f)
"""


def test_two_process_gloo_run_agrees(tmp_path):
    data_root, train_csv = make_data(tmp_path, n2d=14, n3d=2)
    _, val_csv = make_data(tmp_path, n2d=3, name="val.csv", prefix="CT_Val")
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER.format(tests=str(Path(__file__).parent), out=str(tmp_path)))
    work = tmp_path / "work"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(launcher),
           "-data_root", str(data_root), "-datacsv", str(train_csv), "-valcsv", str(val_csv), "-work_dir", str(work),
           "-device", "cpu", "-num_workers", "0", "-batch_size", "2", "-num_epochs", "2", "-lr", "1e-3",
           "-resume", ""]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=280, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in reports)
    assert reports[0]["digest"] == reports[1]["digest"]  # parameters and BatchNorm buffers
    assert reports[0]["history"][-1]["train_loss"] == reports[1]["history"][-1]["train_loss"]
    assert reports[0]["history"][-1]["val_loss"] == reports[1]["history"][-1]["val_loss"]
    assert reports[0]["step"] == 2 * 4  # 16 items over 2 ranks at batch 2: 4 steps per epoch
    assert (work / LATEST).is_file() and (work / BEST).is_file()
    assert sorted(p.name for p in work.iterdir() if not p.name.startswith(".")) == sorted(
        [LATEST, BEST, "config.json", "train_log.csv", "train_loss.png"])
    assert proc.stdout.count("Epoch 2: train") == 1  # rank 0 prints, rank 1 does not
    # TinySam has BatchNorm: without -sync_bn the run says once that its statistics are per process
    assert proc.stdout.count("BatchNorm statistics are per process: over 2 images each, not over all 4") == 1
