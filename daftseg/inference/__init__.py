"""OpenVINO inference of DAFT's models (spec §7): numpy, OpenCV and OpenVINO only, never torch.

``Segmenter(models_dir).segment(imgs, boxes)`` / ``.segment_file(path)`` is the Python API;
``runner.main(argv)`` is the command line of ``PerfectMetaOpenVINO.py``. Importing this package
imports neither OpenCV nor OpenVINO; they load when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daftseg.inference.options import InferenceOptions
    from daftseg.inference.segmenter import CaseResult, Segmenter

__all__ = ["CaseResult", "InferenceOptions", "Segmenter"]


def __getattr__(name: str):  # PEP 562: keep `import daftseg.inference` cheap
    if name in ("Segmenter", "CaseResult"):
        from daftseg.inference import segmenter
        return getattr(segmenter, name)
    if name == "InferenceOptions":
        from daftseg.inference.options import InferenceOptions
        return InferenceOptions
    raise AttributeError(f"module 'daftseg.inference' has no attribute {name!r}")
