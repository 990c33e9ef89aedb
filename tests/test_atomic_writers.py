"""Writers outside inference's segs go through daftseg.atomic: a failure leaves the old file or none."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from daftseg.data import synthetic
from daftseg.data.splits import write_file_list
from daftseg.inference.overlay import write_png


def _visible(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.name.startswith("."))


def _hidden(folder):
    return [p for p in folder.rglob(".*")]


def test_overlay_png_is_checked_and_atomic(tmp_path):
    image = np.zeros((6, 8, 3), np.uint8)
    image[2:4, 3:5] = (10, 200, 30)
    write_png(tmp_path / "ok.png", image)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "ok.png")), image)
    (tmp_path / "old.png").write_bytes(b"previous")
    for bad in (np.zeros((4, 4, 5), np.uint8), np.zeros((0, 4), np.uint8)):  # cv2 cannot encode these
        with pytest.raises(ValueError, match=r"old\.png: PNG encoding failed"):
            write_png(tmp_path / "old.png", bad)
    assert (tmp_path / "old.png").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png", "old.png"]


def test_split_csv_failure_keeps_the_previous_list(tmp_path):
    path = tmp_path / "splits" / "train.csv"
    write_file_list(path, ["a/x.npz", "b/y.npz"], basenames=True)
    assert path.read_bytes() == b"filename\r\nx.npz\r\ny.npz\r\n"
    with pytest.raises(TypeError):
        write_file_list(path, ["a/z.npz", None], basenames=True)  # fails after the first row
    assert path.read_bytes() == b"filename\r\nx.npz\r\ny.npz\r\n"
    assert _hidden(tmp_path) == []


def test_synthetic_case_pair_is_written_together(tmp_path, monkeypatch):
    case = synthetic.make_case("2DBox_US", 0, 1, 48)
    img, gt = synthetic.write_case(case, tmp_path, "2DBox_US_0001.npz")
    with np.load(img) as zi, np.load(gt) as zg:
        assert zi["imgs"].shape[:2] == zg["gts"].shape

    real = np.savez_compressed
    calls = []

    def fails_on_the_gts(path, **arrays):
        calls.append(path)
        if "gts" in arrays:
            raise OSError("disk full")
        real(path, **arrays)

    monkeypatch.setattr(synthetic.np, "savez_compressed", fails_on_the_gts)
    with pytest.raises(OSError, match="disk full"):
        synthetic.write_case(case, tmp_path, "2DBox_US_0002.npz")
    assert len(calls) == 2  # the image was written, yet neither file appeared
    with pytest.raises(OSError, match="disk full"):
        synthetic.write_training_npz(case, tmp_path / "train" / "US_Synthetic_0001.npz")
    assert _visible(tmp_path) == ["gts", "gts/2DBox_US_0001.npz", "imgs", "imgs/2DBox_US_0001.npz", "train"]
    assert _hidden(tmp_path) == []
