"""Atomic writes of export artefacts: a crash or an error leaves the old file or none, never half a file."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from daftseg.atomic import atomic_path


def save_npy(array: np.ndarray, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
    return Path(path)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


def save_openvino_model(model: object, xml_path: str | os.PathLike, compress_to_fp16: bool) -> Path:
    """``ov.save_model`` to temporary .xml/.bin, then move both into place.

    Two files cannot be replaced in one step, so the old .xml is removed first: a crash in
    between leaves a .bin without .xml (a clear "not found") rather than an .xml whose weights
    belong to another model.
    """
    import openvino as ov  # optional dependency

    xml_path = Path(xml_path)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{xml_path.stem}.", suffix=".tmp", dir=xml_path.parent))
    try:
        tmp_xml = tmp_dir / xml_path.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=compress_to_fp16)
        xml_path.unlink(missing_ok=True)
        os.replace(tmp_xml.with_suffix(".bin"), xml_path.with_suffix(".bin"))
        os.replace(tmp_xml, xml_path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return xml_path
