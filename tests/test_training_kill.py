"""Fault test: a training run killed with SIGKILL at random moments always resumes, and no
checkpoint it leaves is ever unreadable.

The run (tiny model, tiny synthetic data, CPU) is killed four times: three times at seeded random
delays into training, once the moment a checkpoint's temporary file appears (in the middle of
writing it). After every kill the work folder is checked; the last run resumes to the end.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from training_support import HeavySam, cpu_args, make_data

from daftseg.checkpoints import load_weights, read_checkpoint
from daftseg.training.state import BEST, LATEST

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

TESTS = Path(__file__).resolve().parent
CHILD = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import torch
from training_support import HeavySam
from daftseg.training.cli import parse_config
from daftseg.training.runner import run_stage
from daftseg.training.tasks import SegmentationTask

torch.set_num_threads(1)


class Announced(SegmentationTask):
    # says on stdout when the first training step runs: from then on a kill is mid-training
    announced = False

    def forward(self, net, batch):
        if not self.announced:
            print("STEP", flush=True)
            self.announced = True
        return super().forward(net, batch)


run_stage(parse_config("finetune", sys.argv[1:]), lambda c, resuming, log: Announced(HeavySam()))
"""
SEED = 20240613
KILLS = 4
MID_WRITE_KILL = 2  # this attempt is killed while the checkpoint's temporary file is being written
MAX_WAIT = 120.0


class Child:
    """A training process whose stdout lines arrive on a queue."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def wait_for_line(self, text: str) -> None:
        deadline = time.monotonic() + MAX_WAIT
        while time.monotonic() < deadline:
            try:
                if self.lines.get(timeout=0.05) == text:
                    return
            except queue.Empty:
                assert self.proc.poll() is None, f"the run ended ({self.proc.returncode}) before {text!r}"
        raise AssertionError(f"no {text!r} within {MAX_WAIT} s")

    def kill(self) -> None:
        assert self.proc.poll() is None, "the run had already ended: the kill would prove nothing"
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + MAX_WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.0005)


def checkpoint_write_started(work: Path):
    """A test for "the next write of the latest checkpoint has begun", whatever way it writes.

    daftseg.atomic writes to a hidden temporary name beside the file, then renames; a writer
    straight to the final name would change that file's size or inode instead.
    """
    def signature():
        st = (work / LATEST).stat()
        return st.st_ino, st.st_size, st.st_mtime_ns

    before = signature()

    def started() -> bool:
        temporary = any(p.name.startswith(".") and LATEST in p.name for p in work.iterdir())
        try:
            return temporary or signature() != before
        except FileNotFoundError:  # between an unlink and a create
            return True

    return started


def check_folder(work: Path) -> int:
    """Everything a killed run leaves is whole; returns the epoch of the latest checkpoint."""
    epochs = {}
    for name in (LATEST, BEST):
        if name == BEST and not (work / BEST).exists():  # linked just after LATEST: a kill may come first
            continue
        ckpt = read_checkpoint(work / name)  # weights-only: raises on a truncated or foreign file
        load_weights(HeavySam(), ckpt, name=name)
        epochs[name] = ckpt["epoch"]
    latest = epochs[LATEST]
    assert 1 <= epochs.get(BEST, 1) <= latest
    json.loads((work / "config.json").read_text())
    with open(work / "train_log.csv", newline="") as f:
        logged = [int(row["epoch"]) for row in csv.DictReader(f)]
    # the log row is written just before the checkpoint: one epoch ahead of it at most, never behind
    assert logged == list(range(1, len(logged) + 1)) and len(logged) in (latest, latest + 1)
    if (work / "train_loss.png").exists():  # drawn after the checkpoint: a kill may come first
        plot = (work / "train_loss.png").read_bytes()
        assert plot.startswith(b"\x89PNG") and plot.endswith(b"IEND\xaeB`\x82")  # a whole PNG file
    return latest


def test_sigkill_at_random_moments_then_resume(tmp_path):
    rng = random.Random(SEED)
    data_root, csv_path = make_data(tmp_path, n2d=6)
    work = tmp_path / "run"
    common = cpu_args(work, data_root, csv_path, "-num_epochs", "1000", "-seed", "3")
    seen_epochs = [0]
    for attempt in range(KILLS):
        child = Child([*common, "-resume", str(work / LATEST) if attempt else ""])
        if attempt == 0:
            wait_until(lambda: (work / LATEST).is_file(), "the first checkpoint")
        else:
            child.wait_for_line("STEP")  # resumed and training
        if attempt == MID_WRITE_KILL:
            wait_until(checkpoint_write_started(work), "a checkpoint write")
        else:
            time.sleep(rng.uniform(0.0, 1.0))
        child.kill()
        epoch = check_folder(work)
        assert epoch >= seen_epochs[-1]  # a kill never loses a saved epoch
        seen_epochs.append(epoch)
    final = epoch + 1
    done = subprocess.run([sys.executable, "-c", CHILD, *common[:-2], "-num_epochs", str(final), "-resume",
                           str(work / LATEST)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"Resumed from {work / LATEST} after epoch {epoch}" in done.stdout
    assert check_folder(work) == final
    with open(work / "train_log.csv", newline="") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == list(range(1, final + 1))
    # the temporary files the kills left behind were cleared by the later runs' writes
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []
