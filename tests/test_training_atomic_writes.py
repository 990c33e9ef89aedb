"""Every file a training run writes is replaced atomically: an I/O error half-way through a write
leaves the earlier version intact and no partial file.

The error is real: a child process lowers its file-size limit (RLIMIT_FSIZE), so every write past
64 bytes fails with EFBIG in the middle of the file, as a full disk would. A write straight to
the final name would leave a truncated file there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from snapshots import tree_snapshot

from daftseg.training import history
from daftseg.training.state import LATEST

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")

CHILD = r"""
import json, resource, signal, sys
from pathlib import Path
import torch
from daftseg.training import history
from daftseg.training.state import save_checkpoint

work, limit = Path(sys.argv[1]), int(sys.argv[2])
rows = [{"epoch": str(e), "train_loss": str(1.0 / e), "val_loss": ""} for e in (1, 2, 3)]
batch = {"image": torch.rand(2, 3, 32, 32), "gt2D": torch.ones(2, 1, 32, 32), "image_name": ["a", "b"],
         "bboxes": torch.tensor([[[2.0, 3.0, 20.0, 25.0]], [[5.0, 5.0, 30.0, 31.0]]])}
writes = {
    "config.json": lambda: history.write_config(work, {"stage": "finetune", "note": "new " * 100}),
    "train_log.csv": lambda: history.append_log(work, {"epoch": 3, "train_loss": 0.25, "lr": 1e-4}),
    "train_loss.png": lambda: history.plot_losses(work, rows, "finetune"),
    "sanity_check.png": lambda: history.save_sanity_check(work, batch),
    "medsam_lite_latest.pth": lambda: save_checkpoint({"model": {"w": torch.arange(4096.0)}}, work, False),
}
# draw once elsewhere first: matplotlib's font cache must not be written under the limit
history.plot_losses(work.parent, rows, "finetune")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
failed = []
for name, write in writes.items():
    try:
        write()
    except Exception:  # OSError(EFBIG); torch.save reports it as a RuntimeError
        failed.append(name)
print(json.dumps(failed))
"""
NAMES = ["config.json", "medsam_lite_latest.pth", "sanity_check.png", "train_log.csv", "train_loss.png"]


def earlier_run(work: Path) -> dict[str, bytes]:
    """A work folder with every file a run writes, as an earlier epoch left them."""
    work.mkdir()
    history.write_config(work, {"stage": "finetune", "note": "old"})
    history.append_log(work, {"epoch": 1, "train_loss": 0.5})
    rows = history.append_log(work, {"epoch": 2, "train_loss": 0.4})
    history.plot_losses(work, rows, "finetune")
    (work / "sanity_check.png").write_bytes((work / "train_loss.png").read_bytes()[:-1] + b"!")
    torch.save({"model": {"w": torch.zeros(3)}}, work / LATEST)
    return tree_snapshot(work)


def run_child(work: Path, limit: int) -> list[str]:
    res = subprocess.run([sys.executable, "-c", CHILD, str(work), str(limit)], capture_output=True, text=True,
                         timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_failed_writes_keep_the_earlier_files(tmp_path):
    work = tmp_path / "run"
    before = earlier_run(work)
    assert sorted(before) == NAMES
    assert sorted(run_child(work, limit=64)) == NAMES  # every write failed half-way ...
    assert tree_snapshot(work) == before  # ... and every earlier file is as it was, nothing added
    # the same writes without the limit replace every file: the comparison above can tell
    assert run_child(work, limit=0) == []
    after = tree_snapshot(work)
    assert sorted(after) == NAMES and all(after[n] != before[n] for n in NAMES)
    assert json.loads(after["config.json"])["note"].startswith("new")
