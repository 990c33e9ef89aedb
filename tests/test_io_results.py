"""daftseg.io.results: a result's three files, named after the whole output name, written together."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scan_writers import ROTATED, write_volume

from daftseg.io import (
    Geometry,
    OutputExists,
    ResultBox,
    ResultInfo,
    ScanError,
    read_scan,
    result_paths,
    write_result,
)
from daftseg.io.prompts import read_box_file

SHAPE = (5, 12, 16)  # (z, y, x)


def _labels() -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint8)
    lab[1:3, 2:6, 3:8] = 4  # 2 * 4 * 5 = 40 voxels
    lab[2:5, 7:10, 9:15] = 9  # 3 * 3 * 6 = 54 voxels
    return lab


BOXES = [ResultBox((3, 2, 1, 7, 5, 3), 4, "liver"), ResultBox((9, 7, 2, 14, 9, 5), 9, None, (1.5, 2.0, 3.0, 9.5, 8, 12))]


def _files(folder) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_result_paths_use_the_whole_output_name(tmp_path):
    assert [p.name for p in result_paths(tmp_path / "seg.nii.gz")] == [
        "seg.nii.gz", "seg.nii.gz.json", "seg.nii.gz.boxes.json"]
    paths = result_paths("out/seg.png")
    assert (paths.labels.as_posix(), paths.sidecar.as_posix(), paths.boxes.as_posix()) == (
        "out/seg.png", "out/seg.png.json", "out/seg.png.boxes.json")


def test_a_3d_and_a_2d_result_in_one_folder_share_no_file(tmp_path):
    """The bug this naming fixes: saving seg.png after seg.nii.gz offered to replace seg.json."""
    g3 = Geometry.identity(SHAPE[::-1], "nifti")
    g2 = Geometry.identity((16, 12), "image")
    three = write_result(_labels(), g3, tmp_path / "seg.nii.gz", BOXES, ResultInfo("ct.nii.gz", "CT", "CT"))
    labels2 = _labels()[2]
    two = write_result(labels2, g2, tmp_path / "seg.png", [ResultBox((3, 2, 7, 5), 4)],
                       ResultInfo("photo.png", "Dermoscopy", "Dermoscopy"))
    assert not set(three) & set(two) and len(set(three) | set(two)) == 6
    assert _files(tmp_path) == {p.name for p in (*three, *two)}  # no temporaries left
    assert json.loads(three.sidecar.read_text())["labels_file"] == "seg.nii.gz"
    assert json.loads(two.sidecar.read_text())["labels_file"] == "seg.png"


def test_sidecar_and_boxes_file_of_one_result(tmp_path):
    ct = write_volume(tmp_path / "ct.nii.gz", np.zeros(SHAPE, np.int16), direction=ROTATED)
    g = read_scan(ct, modality="CT").geometry
    info = ResultInfo("ct.nii.gz", "CT", "CT", box_space="world", box_source="boxes", zmax_inclusive=True)
    paths = write_result(_labels(), g, tmp_path / "seg.nii.gz", BOXES, info, inputs=[ct])
    out = sitk.ReadImage(str(paths.labels))
    assert np.array_equal(sitk.GetArrayFromImage(out), _labels())
    assert np.allclose(out.GetDirection(), ROTATED, atol=1e-5)
    side = json.loads(paths.sidecar.read_text())
    assert list(side) == ["labels_file", "image", "modality", "model", "box_space", "box_source", "boxes",
                          "geometry", "zmax_inclusive", "daftseg_version", "boxes_file"]
    assert side["boxes_file"] == "seg.nii.gz.boxes.json" and side["zmax_inclusive"] is True
    assert side["box_space"] == "world" and side["geometry"]["size"] == [16, 12, 5]
    # voxels by label value when not given: 40 and 54 counted by hand from _labels()
    assert side["boxes"] == [
        {"label": 4, "name": "liver", "box_voxel": [3, 2, 1, 7, 5, 3], "voxels": 40},
        {"label": 9, "name": None, "box_voxel": [9, 7, 2, 14, 9, 5], "voxels": 54,
         "box_world_mm": [1.5, 2.0, 3.0, 9.5, 8.0, 12.0]}]
    assert json.loads(paths.boxes.read_text()) == {"boxes": [
        {"box": [3, 2, 1, 7, 5, 3], "label": 4, "name": "liver"}, {"box": [9, 7, 2, 14, 9, 5], "label": 9, "name": None}]}
    again = read_box_file(paths.boxes)  # what daftseg-segment --boxes reads
    assert [(b.coords, b.label, b.name) for b in again] == [
        ((3, 2, 1, 7, 5, 3), 4, "liver"), ((9, 7, 2, 14, 9, 5), 9, None)]
    # counts given by the caller (boxes sharing a label value keep their own) are written as given
    paths = write_result(_labels(), g, tmp_path / "two.nii.gz", BOXES, info, voxels=[7, 8])
    assert [b["voxels"] for b in json.loads(paths.sidecar.read_text())["boxes"]] == [7, 8]


def test_existing_files_are_kept_unless_asked_and_an_input_never_written(tmp_path):
    g = Geometry.identity(SHAPE[::-1], "nifti")
    info = ResultInfo("ct.nii.gz", "CT", "CT")
    paths = result_paths(tmp_path / "seg.nii.gz")
    paths.boxes.write_text("an earlier boxes file")
    with pytest.raises(OutputExists, match=r"seg\.nii\.gz\.boxes\.json already exists \(pass --overwrite") as err:
        write_result(_labels(), g, paths.labels, BOXES, info)
    assert err.value.paths == [paths.boxes]
    assert _files(tmp_path) == {"seg.nii.gz.boxes.json"} and paths.boxes.read_text() == "an earlier boxes file"
    write_result(_labels(), g, paths.labels, BOXES, info, overwrite=True)
    assert _files(tmp_path) == {p.name for p in paths} and json.loads(paths.boxes.read_text())["boxes"]
    # the boxes file of a run read back as input: repeating the run into the same output is refused
    with pytest.raises(ScanError, match="is the input"):
        write_result(_labels(), g, paths.labels, BOXES, info, overwrite=True, inputs=[paths.boxes])
    (tmp_path / "series").mkdir()
    with pytest.raises(ScanError, match="lies inside the input folder"):
        write_result(_labels(), g, tmp_path / "series" / "seg.nii.gz", BOXES, info, inputs=[tmp_path / "series"])
    assert not any((tmp_path / "series").iterdir())


def test_a_failed_write_leaves_none_of_the_three(tmp_path, monkeypatch):
    g = Geometry.identity(SHAPE[::-1], "nifti")

    def full_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("daftseg.io.results.write_label_image", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_result(_labels(), g, tmp_path / "seg.nii.gz", BOXES, ResultInfo("ct.nii.gz", "CT", "CT"))
    assert _files(tmp_path) == set()
