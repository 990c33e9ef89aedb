"""Atomic writes of export artefacts: a crash, an error or a failed check leaves the old files or none.

Graphs are written under temporary names (``daftseg.atomic.atomic_paths``: a hidden folder beside
the destination, each file under its final name), checked there, and only then renamed into place,
all files of one model together.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from daftseg.atomic import atomic_path, atomic_paths


def save_npy(array: np.ndarray, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
    return Path(path)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


def ir_group(xml_paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The files of several IRs in the order to rename them: every ``.bin``, then every ``.xml``.

    Two files cannot be replaced in one step; with the ``.xml`` files last, a model is found
    under its old name until its ``.xml`` is renamed, and the window in between is a few
    renames long (only a crash can stop there).
    """
    xmls = [Path(p) for p in xml_paths]
    return [p.with_suffix(".bin") for p in xmls] + xmls


def write_ir(model: object, xml_path: str | os.PathLike, compress_to_fp16: bool) -> Path:
    """``ov.save_model`` to ``xml_path``; OpenVINO puts the ``.bin`` beside it under the same stem."""
    import openvino as ov  # optional dependency

    ov.save_model(model, str(xml_path), compress_to_fp16=compress_to_fp16)
    return Path(xml_path)


def save_openvino_model(model: object, xml_path: str | os.PathLike, compress_to_fp16: bool) -> Path:
    """``ov.save_model`` to temporary .xml/.bin, then move both into place (``ir_group`` order)."""
    with atomic_paths(ir_group([xml_path])) as temps:
        write_ir(model, temps[-1], compress_to_fp16)
    return Path(xml_path)
